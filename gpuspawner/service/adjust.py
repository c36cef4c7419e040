"""Admins adjust one user's limits: from the dashboard's form and through the JSON API.

``POST api/adjustments`` (JSON ``{"user": "ann", "kind": "top-up", "value": 5, "reason":
"thesis"}``; ``kind``: ``quota`` (GPUs at once), ``budget`` (GPU-hours per period) or
``top-up`` (GPU-hours added to the current period); a ``quota``/``budget`` without a value
ends that override) answers 201 with the adjustment; ``GET api/adjustments[?user=ann]``
lists them. The dashboard's form posts the same fields to ``adjustments`` with the hub's
XSRF token. Admins only. The next spawn and the next enforcement pass use them
(:mod:`gpuspawner.usage.adjustments`).
"""

import asyncio
import json

from tornado import web

from ..usage.adjustments import adjustments_of, check_adjustment
from ..usage.ledger import now_utc
from .handler import BaseHandler, admin_only


class AdjustmentHandler(BaseHandler):
    async def adjust(self, fields: dict) -> dict:
        user = fields.get("user")
        if not isinstance(user, str) or not user.strip():
            raise web.HTTPError(400, "Name the user to adjust (user).")
        user = user.strip()
        if user not in await self.user_groups():
            raise web.HTTPError(400, "The hub has no user %r." % user)
        try:
            kind, value, reason = check_adjustment(
                fields.get("kind"), fields.get("value"), fields.get("reason")
            )
        except ValueError as e:
            raise web.HTTPError(400, str(e)) from None
        now = now_utc()
        start, _ = self.state.period(now)
        store = await asyncio.to_thread(adjustments_of, self.state.ledger)
        made = await asyncio.to_thread(
            store.add, user, kind, value, reason, self.current_user["name"], now, start
        )
        return made.as_json()


class AdjustmentsAPI(AdjustmentHandler):
    @web.authenticated
    @admin_only
    async def get(self):
        store = await asyncio.to_thread(adjustments_of, self.state.ledger)
        user = self.get_argument("user", None)
        self.write_json([a.as_json() for a in await asyncio.to_thread(store.history, user)])

    @web.authenticated
    @admin_only
    async def post(self):
        try:
            fields = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "The body must be JSON, such as"
                                ' {"user": "ann", "kind": "top-up", "value": 5, "reason": "…"}.'
                                ) from None  # fmt: skip
        if not isinstance(fields, dict):
            raise web.HTTPError(400, "The body must be a JSON object.")
        made = await self.adjust(fields)
        self.set_status(201)
        self.write_json(made)


class AdjustmentForm(AdjustmentHandler):
    """The dashboard's form (a cookie POST: HubOAuth checks its ``_xsrf`` first)."""

    @web.authenticated
    @admin_only
    async def post(self):
        fields = {name: self.get_body_argument(name, None)
                  for name in ("user", "kind", "value", "reason")}  # fmt: skip
        made = await self.adjust(fields)
        self.redirect("%s?adjusted=%d#adjustments" % (self.settings["prefix"], made["id"]),
                      status=303)  # fmt: skip
