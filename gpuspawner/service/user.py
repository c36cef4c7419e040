"""Each user's own usage: the page, its JSON and the user's ledger as CSV.

Every logged-in user may open their own (``users/<name>``, the service's home page for a
user who is not an admin); another user's answers 403, except to admins. The JupyterLab
GPU panel reads ``api/users/<name>`` with its server's token.

The page is the usage part (``user.html``) followed by :data:`EXTRA_SECTIONS`: a feature
with something to show a user appends an async function ``(handler, user, now) ->
Section | None`` there (see :class:`gpuspawner.service.userpage.Section`), and its route
to :data:`gpuspawner.service.app.ROUTES`.
"""

import asyncio
from datetime import timedelta

from tornado import web

from ..templating import render
from ..usage.adjustments import adjustments_of
from ..usage.ledger import now_utc
from .handler import BaseHandler, is_admin, parse_day
from .report import usage_report
from .userpage import DAYS_SHOWN, user_page_context, user_report

EXTRA_SECTIONS: list = []


class UserHandler(BaseHandler):
    """A route about one user: theirs, or an admin's."""

    async def render_user_page(self, user: str) -> None:
        self.write(await user_page(self, user))

    def allowed(self, user: str) -> str:
        viewer = self.current_user
        if viewer.get("name") != user and not is_admin(viewer):
            raise web.HTTPError(403, "You may see only your own GPU usage.")
        return user

    async def report(self, user: str, now):
        groups = await self.user_groups()
        if user not in groups:
            raise web.HTTPError(404, "The hub has no user %r." % user)
        state = self.state
        start, end = state.period(now)
        store = await asyncio.to_thread(adjustments_of, state.ledger)
        force = await asyncio.to_thread(store.in_force, user, start)
        history = await asyncio.to_thread(store.history, user)
        period = await asyncio.to_thread(state.ledger.intervals, start, end, user)
        recent = await asyncio.to_thread(
            state.ledger.intervals, now - timedelta(days=DAYS_SHOWN + 1), now, user
        )
        (row,) = [
            r
            for r in usage_report(state.settings, period, {user: groups[user]}, now,
                                  {user: force})["users"]
            if r["user"] == user
        ]  # fmt: skip
        open_ = [i for i in period if i.end is None]
        idle = {server: at for (who, server), at in state.watcher.idle.idle_since.items()
                if who == user}  # fmt: skip
        watcher = state.watcher
        limits = {i.server: {name: watcher.limit_of((user, i.server), name)
                             for name in ("gpu_max_age", "gpu_idle_timeout")}
                  for i in open_}  # fmt: skip
        return user_report(
            user, row, state.settings, (start, end), open_, recent, history, now, idle, limits
        )


class UserAPI(UserHandler):
    @web.authenticated
    async def get(self, user: str):
        self.write_json(await self.report(self.allowed(user), now_utc()))


class UserPage(UserHandler):
    @web.authenticated
    async def get(self, user: str):
        await self.render_user_page(self.allowed(user))


async def user_page(handler: UserHandler, user: str) -> str:
    now = now_utc()
    report = await handler.report(user, now)
    context = user_page_context(report, handler.current_user["name"], handler.settings["prefix"],
                                now)  # fmt: skip
    sections = []
    for build in EXTRA_SECTIONS:
        section = await build(handler, user, now)
        if section is not None:
            sections.append(section)
    return render(
        "user.html", handler.state.settings.template_paths, sections=sections,
        is_admin=is_admin(handler.current_user), **context,
    )  # fmt: skip


class UserCSV(UserHandler):
    @web.authenticated
    async def get(self, user: str):
        user = self.allowed(user)
        now = now_utc()
        start = parse_day(
            self.get_argument("start", (now.date() - timedelta(days=90)).isoformat()), "start"
        )
        end = parse_day(self.get_argument("end", now.date().isoformat()), "end") + timedelta(
            days=1
        )
        if end <= start:
            raise web.HTTPError(400, "end must not be before start.")
        body = await asyncio.to_thread(self.state.ledger.csv, start, end, now, user)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header(
            "Content-Disposition",
            'attachment; filename="gpu-usage-%s-%s-%s.csv"'
            % (user, start.date().isoformat(), (end - timedelta(days=1)).date().isoformat()),
        )
        self.write(body)
