"""What every route of the service shares: the hub's OAuth, refusals as sentences, who
is an admin.

Identity comes from the hub (:class:`HubOAuthenticated`: the browser's OAuth cookie, or a
token in the Authorization header). Every hub user may reach the service (each sees their
own usage); the dashboard, the JSON API about everyone and the adjustments answer only
admins (:func:`is_admin`), anyone else gets 403. A form POST made with the browser's cookie
needs the hub's XSRF token (``_xsrf``), checked by HubOAuth; one made with a token does not.
"""

import asyncio
import functools
import json
from datetime import date, datetime, timedelta, timezone

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from ..policy.names import quote_input
from .page import DAYS_PLOTTED
from .report import daily_report, inventory_report, usage_report

#: A custom scope (defined by add_admin_service) that makes its holders the service's admins.
ADMIN_SCOPE = "custom:gpuspawner:admin"


def is_admin(model: dict | None) -> bool:
    """Whether the hub identity ``model`` (a user's or a service's) is an admin here: the hub's
    admins, and whoever a role grants ADMIN_SCOPE."""
    return bool(model) and (bool(model.get("admin")) or ADMIN_SCOPE in (model.get("scopes") or ()))


def admin_only(method):
    """A handler method that answers 403 to anyone but admins (after @web.authenticated)."""

    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        if not is_admin(self.current_user):
            raise web.HTTPError(403, "Only the hub's admins may see this.")
        return await method(self, *args, **kwargs)

    return wrapper


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    @property
    def state(self):
        return self.settings["gpu_state"]

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
        in_force = await self.state.watcher.in_force(now)
        return usage_report(self.state.settings, period, groups, now, in_force)

    async def daily(self, now: datetime, groups: dict) -> dict:
        plotted_from = now - timedelta(days=DAYS_PLOTTED + 1)
        recent = await asyncio.to_thread(self.state.ledger.intervals, plotted_from, now)
        return daily_report(self.state.settings, recent, groups, now, DAYS_PLOTTED)

    def write_json(self, value) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(value, indent=1, default=str))




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
