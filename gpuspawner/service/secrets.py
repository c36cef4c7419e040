"""Each user's secrets: the "Your secrets" section of their page, its form and JSON API.

Only the user themself may list, set or delete their secrets: another user, a service and
an admin get 403 (admins never see a user's secrets, not even their names). No route ever
answers a value: once saved, a secret shows as its name and a hint (the last two characters
of a long value, else "set"). Stored by :mod:`gpuspawner.usage.secrets` in the usage
database, encrypted with the hub's ``secrets_keys`` (passed to this service by
``add_admin_service`` as ``$GPUSPAWNER_SECRETS_KEY``).

=========================================== ==========================================
``GET api/users/<name>/secrets``            ``{"enabled": true, "secrets": [{"name":
                                            "HF_TOKEN", "hint": "…3f", "updated": …}]}``
``PUT api/users/<name>/secrets/<NAME>``     body ``{"value": "…"}``: 201 (new) or 200
``DELETE api/users/<name>/secrets/<NAME>``  204, or 404 when there is none
``POST users/<name>/secrets``               the page's form (``action`` ``set`` with
                                            ``name`` and ``value``, or ``delete`` with
                                            ``name``; the hub's ``_xsrf``): 303 back
=========================================== ==========================================

A server started after a change gets it; a running one keeps what it started with.
"""

import asyncio
import json
import os
from datetime import datetime
from urllib.parse import quote

from tornado import web

from ..usage.secrets import (
    DISABLED_SENTENCE,
    KEYS_ENV,
    SecretError,
    SecretStore,
    keys_from_text,
    store_for,
)
from .handler import BaseHandler
from .user import EXTRA_SECTIONS
from .userpage import Section

FORBIDDEN = "You may see and change only your own secrets."


async def listing(handler: BaseHandler, user: str) -> dict:
    """What the page and the API show of ``user``'s secrets: names and hints, never values."""
    store = await asyncio.to_thread(service_store, handler)
    infos = await asyncio.to_thread(store.names, user)
    shown = {"enabled": store.enabled, "secrets": [i.as_dict() for i in infos]}
    if not store.enabled:
        shown["message"] = DISABLED_SENTENCE
    return shown


def service_store(handler: BaseHandler) -> SecretStore:
    """The secrets store of the hub's usage database, with the hub's keys (none: off)."""
    return store_for(
        handler.state.settings.usage_db_url, keys_from_text(os.environ.get(KEYS_ENV, ""))
    )


class SecretsHandler(BaseHandler):
    """A route about one user's secrets: only that user's own identity may use it."""

    def own(self, user: str) -> str:
        viewer = self.current_user or {}
        if viewer.get("kind", "user") != "user" or viewer.get("name") != user:
            raise web.HTTPError(403, FORBIDDEN)
        self.set_header("Cache-Control", "no-store")
        return user

    async def store(self) -> SecretStore:
        return await asyncio.to_thread(service_store, self)

    async def listing(self, user: str) -> dict:
        return await listing(self, user)

    def back_to_page(self, user: str, query: str = "") -> None:
        self.redirect(
            "%susers/%s%s#secrets" % (self.settings["prefix"], quote(user, safe=""), query),
            status=303,
        )

    async def set_secret(self, user: str, name, value) -> bool:
        store = await self.store()
        try:
            return await asyncio.to_thread(store.set, user, name, value)
        except SecretError as e:
            raise web.HTTPError(400, str(e)) from None

    async def delete_secret(self, user: str, name) -> bool:
        store = await self.store()
        if not store.enabled:
            raise web.HTTPError(400, DISABLED_SENTENCE)
        if not isinstance(name, str) or not name:
            raise web.HTTPError(400, "Name the secret to delete.")
        return await asyncio.to_thread(store.delete, user, name)


class SecretsAPI(SecretsHandler):
    @web.authenticated
    async def get(self, user: str):
        self.write_json(await self.listing(self.own(user)))


class SecretAPI(SecretsHandler):
    @web.authenticated
    async def put(self, user: str, name: str):
        user = self.own(user)
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise web.HTTPError(400, 'The body must be a JSON object such as {"value": "…"}.')
        new = await self.set_secret(user, name, body.get("value"))
        self.set_status(201 if new else 200)
        (info,) = [s for s in (await self.listing(user))["secrets"] if s["name"] == name]
        self.write_json(info)

    @web.authenticated
    async def delete(self, user: str, name: str):
        if not await self.delete_secret(self.own(user), name):
            raise web.HTTPError(404, "You have no secret named %s." % name[:128])
        self.set_status(204)


class SecretsForm(SecretsHandler):
    """The page's form (a cookie POST: HubOAuth checks its ``_xsrf`` first)."""

    @web.authenticated
    async def get(self, user: str):
        self.back_to_page(self.own(user))

    @web.authenticated
    async def post(self, user: str):
        user = self.own(user)
        action = self.get_body_argument("action", "set")
        name = (self.get_body_argument("name", "") or "").strip()
        if action == "delete":
            done = "deleted" if await self.delete_secret(user, name) else "missing"
        elif action == "set":
            new = await self.set_secret(user, name, self.get_body_argument("value", ""))
            done = "added" if new else "replaced"
        else:
            raise web.HTTPError(400, "action must be set or delete.")
        self.back_to_page(user, "?secret=" + done)


DONE_TEXT = {
    "added": "Secret saved. Servers you start from now on get it.",
    "replaced": "Secret replaced. Servers you start from now on get the new value.",
    "deleted": "Secret deleted. Servers you start from now on no longer get it.",
    "missing": "There was no such secret.",
}


async def secrets_section(handler, user: str, now) -> Section | None:
    """The "Your secrets" section of the user's own page (none on an admin's view of it)."""
    if (handler.current_user or {}).get("name") != user:
        return None
    shown = await listing(handler, user)
    for secret in shown["secrets"]:
        at = datetime.fromisoformat(secret["updated"].rstrip("Z"))
        secret["updated_text"] = at.strftime("%d %b %Y %H:%M UTC")
    return Section(
        id="secrets",
        title="Your secrets",
        template="secrets.html",
        context={
            **shown,
            "action": "%susers/%s/secrets" % (handler.settings["prefix"], quote(user, safe="")),
            "xsrf": handler.xsrf_token.decode(),
            "done": DONE_TEXT.get(handler.get_argument("secret", ""), ""),
        },
    )


EXTRA_SECTIONS.append(secrets_section)

#: The routes, added to gpuspawner.service.app.ROUTES.
SECRET_ROUTES = [
    ("users/([^/]+)/secrets", SecretsForm),
    ("api/users/([^/]+)/secrets", SecretsAPI),
    ("api/users/([^/]+)/secrets/([^/]+)", SecretAPI),
]
