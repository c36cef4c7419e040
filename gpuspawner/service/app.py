"""The admin dashboard: HTML page, JSON API, CSV export and metrics, behind the hub's OAuth.

Every handler requires a hub identity with access to this service (the admin role
has it); anyone else gets 403, an anonymous browser is sent to the hub's login.
"""

import asyncio
import json
import os
from datetime import date, datetime, timedelta, timezone

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado import web

from ..policy.names import quote_input
from ..usage.ledger import now_utc
from .page import DAYS_PLOTTED, render_page
from .report import daily_report, inventory_report, usage_report


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    @property
    def state(self):
        return self.settings["gpu_state"]

    def check_xsrf_cookie(self):
        pass  # read-only GET handlers only

    def write_error(self, status_code, **kwargs):
        """The sentence of a refusal (HTTPError's message), never a traceback."""
        error = (kwargs.get("exc_info") or (None, None, None))[1]
        said = isinstance(error, web.HTTPError) and error.log_message and status_code < 500
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(
            "%d %s%s\n" % (status_code, self._reason, ": " + error.log_message if said else "")
        )

    async def user_groups(self) -> dict:
        """The hub's users and their groups (the last known ones when the hub does not answer)."""
        watcher = self.state.watcher
        try:
            return await watcher.refresh_users()
        except Exception:
            return watcher.user_groups

    async def inventory(self) -> list[dict]:
        state = self.state
        open_ = await asyncio.to_thread(state.ledger.open_intervals)
        named = state.engine.inventory
        rows = None if named is None else [{"uuid": g.uuid, "name": g.name} for g in named]
        totals = await state.engine.totals()
        return inventory_report(rows, open_, state.watcher.lost, totals)

    async def usage(self, now: datetime, groups: dict) -> dict:
        start, end = self.state.period(now)
        period = await asyncio.to_thread(self.state.ledger.intervals, start, end)
        return usage_report(self.state.settings, period, groups, now)

    async def daily(self, now: datetime, groups: dict) -> dict:
        plotted_from = now - timedelta(days=DAYS_PLOTTED + 1)
        recent = await asyncio.to_thread(self.state.ledger.intervals, plotted_from, now)
        return daily_report(self.state.settings, recent, groups, now, DAYS_PLOTTED)

    def write_json(self, value) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(value, indent=1, default=str))


class InventoryAPI(BaseHandler):
    @web.authenticated
    async def get(self):
        self.write_json(await self.inventory())


class UsageAPI(BaseHandler):
    @web.authenticated
    async def get(self):
        self.write_json(await self.usage(now_utc(), await self.user_groups()))


class DailyAPI(BaseHandler):
    @web.authenticated
    async def get(self):
        self.write_json(await self.daily(now_utc(), await self.user_groups()))


class NoticesAPI(BaseHandler):
    @web.authenticated
    async def get(self):
        notices = await asyncio.to_thread(self.state.ledger.notices, now_utc() - timedelta(days=30))
        self.write_json(notices)


# the dates the ledger export takes (the end day is included, so the day after it must exist)
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9999, 12, 30)


def parse_day(text: str, name: str) -> datetime:
    try:
        day = date.fromisoformat(text)
    except (TypeError, ValueError):
        raise web.HTTPError(
            400, "%s must be a date such as 2026-11-23, not %s." % (name, quote_input(text))
        ) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise web.HTTPError(
            400, "%s must be a date from %s to %s, not %s."
            % (name, FIRST_DAY.isoformat(), LAST_DAY.isoformat(), day.isoformat()),
        )  # fmt: skip
    return datetime.combine(day, datetime.min.time(), timezone.utc)


class LedgerCSV(BaseHandler):
    @web.authenticated
    async def get(self):
        now = now_utc()
        today = now.date().isoformat()
        start = parse_day(
            self.get_argument("start", (now.date() - timedelta(days=30)).isoformat()), "start"
        )
        end = parse_day(self.get_argument("end", today), "end") + timedelta(
            days=1
        )  # the end day is included
        if end <= start:
            raise web.HTTPError(400, "end must not be before start.")
        body = await asyncio.to_thread(self.state.ledger.csv, start, end, now)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header(
            "Content-Disposition",
            'attachment; filename="gpu-ledger-%s-%s.csv"'
            % (start.date().isoformat(), (end - timedelta(days=1)).date().isoformat()),
        )
        self.write(body)


class Metrics(BaseHandler):
    @web.authenticated
    async def get(self):
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.write(generate_latest(self.state.metrics.registry))


class Dashboard(BaseHandler):
    @web.authenticated
    async def get(self):
        now = now_utc()
        groups = await self.user_groups()
        data = {
            "inventory": await self.inventory(),
            "usage": await self.usage(now, groups),
            "daily": await self.daily(now, groups),
            "utilisation": self.state.watcher.utilisation,
        }
        notices = await asyncio.to_thread(self.state.ledger.notices, now - timedelta(days=7))
        self.write(
            render_page(
                data,
                notices,
                self.state.settings,
                self.current_user["name"],
                self.settings["prefix"],
                now,
            )
        )


def make_app(state) -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    routes = [
        ("", Dashboard),
        ("api/inventory", InventoryAPI),
        ("api/usage", UsageAPI),
        ("api/daily", DailyAPI),
        ("api/notices", NoticesAPI),
        ("api/ledger.csv", LedgerCSV),
        ("metrics", Metrics),
        ("oauth_callback", HubOAuthCallbackHandler),
    ]
    return web.Application(
        [(url_path_join(prefix, path), handler) for path, handler in routes],
        cookie_secret=os.urandom(32),
        gpu_state=state,
        prefix=prefix,
    )
