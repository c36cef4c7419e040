"""Who may open which server over SSH: pure decisions on the hub's answers, no I/O.

The SSH password is a hub API token. The hub says whose token it is (GET /hub/api/user
with that token); the login name says which of that user's servers to open.
"""

from dataclasses import dataclass

PENDING = {"spawn": "starting", "stop": "stopping"}


class Refused(Exception):
    """A login the service turns down; the message is shown to the SSH client."""

    @property
    def message(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class Target:
    """A running server a login opens: whose, which, and its path behind the proxy."""

    user: str
    server: str  # "" is the default server
    path: str  # e.g. /user/alice/ or /user/alice/train/, as the hub gives it

    def describe(self) -> str:
        if self.server:
            return "%s's server %r" % (self.user, self.server)
        return "%s's server" % self.user


def requested_server(login: str, owner: str) -> str:
    """The server a login name asks for, given the token's owner: ``owner`` is the default
    server, ``owner/NAME`` the named server NAME. Any other name is another user's."""
    if login == owner:
        return ""
    prefix = owner + "/"
    if login.startswith(prefix):
        server = login[len(prefix):]
        if server and "/" not in server:
            return server
    raise Refused(
        "Refused: this token belongs to another user, not to %s. Log in as yourself "
        "(user or user/server) with a token of your own." % login.split("/")[0]
    )


def token_owner(status: int, model: dict | None, login: str, hub_url: str) -> str:
    """The user a token belongs to, from the hub's answer to GET /hub/api/user with it."""
    if status in (401, 403):
        raise Refused(
            "Refused: the password must be a valid JupyterHub API token of %s; this one is not. "
            "Create one at %shub/token." % (login.split("/")[0], hub_url)
        )
    if status != 200 or not isinstance(model, dict):
        raise Refused("Refused: the hub did not answer (HTTP %d); try again later." % status)
    if model.get("kind", "user") != "user" or not model.get("name"):
        raise Refused("Refused: this is not a user's token (it belongs to a service).")
    return model["name"]


def running_target(owner: str, server: str, status: int, user_model: dict | None,
                   hub_url: str) -> Target:
    """The server to open, from the hub's model of the token's owner (GET /hub/api/users/NAME
    with the service's token), or why there is none."""
    if status != 200 or not isinstance(user_model, dict):
        raise Refused("Refused: the hub did not answer (HTTP %d); try again later." % status)
    model = (user_model.get("servers") or {}).get(server)
    named = " named %r" % server if server else ""
    if model and model.get("ready") and model.get("url"):
        return Target(user=owner, server=server, path=model["url"])
    if model and model.get("pending"):
        raise Refused(
            "Refused: %s's server%s is still %s; connect again when it is ready."
            % (owner, named, PENDING.get(model["pending"], model["pending"]))
        )
    raise Refused(
        "Refused: %s has no running server%s. Start it at %shub/home, then connect again."
        % (owner, named, hub_url)
    )
