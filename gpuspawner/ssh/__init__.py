"""SSH into one's own running server, through the hub. Add it at the end of the hub's config::

    from gpuspawner.ssh import add_ssh_service
    add_ssh_service(c)            # ssh -p 8022 <user>@<hub host>, password: a hub API token

A hub-managed service (``python -m gpuspawner.ssh``) listens for SSH. The password is the
user's JupyterHub API token: the service asks the hub whose token it is, refuses it unless
it is the login user's own, and opens a terminal in that user's running server through the
server's terminal API behind the hub's proxy, as a browser would. Nothing runs on the hub
host: every session is a terminal of the user's own container or pod, on any backend.

The login name picks the server: ``alice`` for the default server, ``alice/train`` for the
named server ``train``. ``ssh alice@hub`` opens a shell; ``ssh alice@hub 'python x.py'``
runs one command and returns its exit status; ``ssh -L``/``-D``/``-W`` connect from inside
the server (gpuspawner.ssh.forward). SFTP/scp, remote forwarding (-R), agent and X11
forwarding are refused.
"""

import json
import os
import sys
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

SETTINGS_ENV = "GPUSPAWNER_SSH_SETTINGS"
# what the service's own token may do: see users' names and servers, nothing more
SERVICE_SCOPES = ["read:users:name", "read:servers"]


@dataclass
class SSHSettings:
    """What the service needs from the hub's config (passed to it as JSON in its environment)."""

    hub_url: str  # the hub's public URL, e.g. https://hub.example.org/ (servers are reached there)
    host_key_path: str
    listen_host: str = "0.0.0.0"
    port: int = 8022
    login_timeout: float = 60

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_environment(cls) -> "SSHSettings":
        return cls(**json.loads(os.environ[SETTINGS_ENV]))


def _set(section, key):
    return section[key] if key in section else None


def public_hub_url(config) -> str:
    """Where the hub's proxy answers, read from the hub's config: public_url, bind_url, or
    ip/port/base_url (an empty or wildcard ip is reached on 127.0.0.1)."""
    hub = config.JupyterHub
    for key in ("public_url", "bind_url"):
        url = _set(hub, key)
        if url:
            parts = urlsplit(url)
            host = parts.hostname or "127.0.0.1"
            if host in ("0.0.0.0", "::", ""):
                netloc = "127.0.0.1" + (":%d" % parts.port if parts.port else "")
                url = url.replace(parts.netloc, netloc, 1)
            return url.rstrip("/") + "/"
    ip = _set(hub, "ip") or "127.0.0.1"
    if ip in ("0.0.0.0", "::"):
        ip = "127.0.0.1"
    if ":" in ip:
        ip = "[%s]" % ip
    port = _set(hub, "port") or 8000
    base_url = (_set(hub, "base_url") or "/").strip("/")
    return "http://%s:%d/%s" % (ip, port, base_url + "/" if base_url else "")


def add_ssh_service(config, name: str = "ssh", port: int = 8022, listen_host: str = "0.0.0.0",
                    hub_url: str | None = None, host_key_path: str | None = None) -> None:
    """Add the SSH service and its role to the hub's ``config`` (``c`` in jupyterhub_config.py).

    ``hub_url`` is the hub's public URL (default: read from the config, see public_hub_url);
    the service opens terminals there and names it in its messages. ``host_key_path`` is the
    service's SSH host key, created on first start (default: ``gpuspawner-ssh-host-key`` in
    the hub's working directory); keep it, or clients will see a changed host key.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("add_ssh_service: port must be a TCP port number from 1 to 65535, "
                         "not %r." % (port,))
    hub_url = hub_url or public_hub_url(config)
    if urlsplit(hub_url).scheme not in ("http", "https") or not urlsplit(hub_url).netloc:
        raise ValueError("add_ssh_service: hub_url must be the hub's public http(s) URL, "
                         "such as https://hub.example.org/, not %r." % (hub_url,))
    settings = SSHSettings(
        hub_url=hub_url.rstrip("/") + "/",
        host_key_path=os.path.abspath(host_key_path or "gpuspawner-ssh-host-key"),
        listen_host=listen_host,
        port=port,
    )
    config.JupyterHub.services.append({
        "name": name,
        "command": [sys.executable, "-m", "gpuspawner.ssh"],
        "environment": {SETTINGS_ENV: settings.to_json()},
        "display": False,
    })
    config.JupyterHub.load_roles.append({
        "name": name + "-service", "services": [name], "scopes": list(SERVICE_SCOPES)
    })
