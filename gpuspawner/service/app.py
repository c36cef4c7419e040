"""The service's routes: each user's usage page; the admin dashboard, its JSON API, CSV
export, adjustments and metrics; behind the hub's OAuth (:mod:`.handler`).

Every route requires a hub identity: an anonymous browser is sent to the hub's login. A user
sees only their own usage (``users/<name>``, also the home page of a user who is not an
admin); the rest answers 403 to anyone but admins.
"""

import asyncio
import os
from datetime import timedelta

from jupyterhub.services.auth import HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado import web

from ..usage.adjustments import adjustments_of
from ..usage.ledger import now_utc
from .adjust import AdjustmentForm, AdjustmentsAPI
from .handler import BaseHandler, admin_only, is_admin, parse_day
from .page import render_page
from .secrets import SECRET_ROUTES
from .user import UserAPI, UserCSV, UserHandler, UserPage


class InventoryAPI(BaseHandler):
    @web.authenticated
    @admin_only
    async def get(self):
        self.write_json(await self.inventory())


class UsageAPI(BaseHandler):
    @web.authenticated
    @admin_only
    async def get(self):
        self.write_json(await self.usage(now_utc(), await self.user_groups()))


class DailyAPI(BaseHandler):
    @web.authenticated
    @admin_only
    async def get(self):
        self.write_json(await self.daily(now_utc(), await self.user_groups()))


class NoticesAPI(BaseHandler):
    @web.authenticated
    @admin_only
    async def get(self):
        notices = await asyncio.to_thread(self.state.ledger.notices, now_utc() - timedelta(days=30))
        self.write_json(notices)


class LedgerCSV(BaseHandler):
    @web.authenticated
    @admin_only
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
    @admin_only
    async def get(self):
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.write(generate_latest(self.state.metrics.registry))


class Home(UserHandler):
    """The dashboard for an admin; for anyone else, their own usage page."""

    @web.authenticated
    async def get(self):
        if not is_admin(self.current_user):
            await self.render_user_page(self.current_user["name"])
            return
        now = now_utc()
        groups = await self.user_groups()
        data = {
            "inventory": await self.inventory(),
            "usage": await self.usage(now, groups),
            "daily": await self.daily(now, groups),
            "utilisation": self.state.watcher.utilisation,
            "adjustments": await asyncio.to_thread(adjustments_of(self.state.ledger).history),
            "xsrf": self.xsrf_token.decode(),
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


#: Every route of the service, under its prefix (JUPYTERHUB_SERVICE_PREFIX): add one here.
ROUTES = [
    ("", Home),
    ("users/([^/]+)", UserPage),
    ("users/([^/]+)/ledger.csv", UserCSV),
    ("api/users/([^/]+)", UserAPI),
    ("adjustments", AdjustmentForm),
    ("api/adjustments", AdjustmentsAPI),
    ("api/inventory", InventoryAPI),
    ("api/usage", UsageAPI),
    ("api/daily", DailyAPI),
    ("api/notices", NoticesAPI),
    ("api/ledger.csv", LedgerCSV),
    ("metrics", Metrics),
    *SECRET_ROUTES,
    ("oauth_callback", HubOAuthCallbackHandler),
]


def make_app(state) -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    return web.Application(
        [(url_path_join(prefix, path), handler) for path, handler in ROUTES],
        cookie_secret=os.urandom(32),
        gpu_state=state,
        prefix=prefix,
    )
