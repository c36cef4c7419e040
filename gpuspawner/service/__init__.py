"""The admin service: a JupyterHub-managed service with the GPU dashboard, its JSON API,
CSV export, Prometheus metrics, and the loop that enforces budgets, maximum age and
GPU-idle culling. Add it at the end of the hub's config, after ``spawner_class``::

    from gpuspawner.service import add_admin_service
    add_admin_service(c)          # /services/gpu-admin/, admins only

It works for every backend (``gpu-docker``, ``gpu-kubernetes``): it reads the spawner's
settings (budgets, weights, culling, ledger URL) from the same config, so everything is
configured once, on the spawner, and it builds one spawner of the hub's class in its own
process to ask the backend what the hub hands out (the backend contract of
:mod:`gpuspawner.lifecycle.base`: ``gpu_inventory``, ``gpu_totals``,
``engine_environment``).
"""

import json
import os
import sys
from importlib.metadata import entry_points

from sqlalchemy.engine import make_url
from traitlets import Dict, Float, List, Unicode
from traitlets.config import LazyConfigValue
from traitlets.utils.importstring import import_item

from ..errors import ConfigError
from ..usage.secrets import KEYS_ENV
from ..policy.profiles import profile_limits
from ..usage.settings import UsageSettings
from .handler import ADMIN_SCOPE

SETTINGS_ENV = "GPUSPAWNER_ADMIN_SETTINGS"
LOG_ENV = "GPUSPAWNER_ADMIN_LOG"
SERVICE_SCOPES = [
    "list:users",
    "read:users",
    "read:servers",
    "delete:servers",
    "list:groups",
    "read:groups",
]


class StandInUser:
    """The user of the spawner built only to read settings and ask the backend (never
    started): some spawner settings render templates with the user's name and id."""

    name = "gpu-admin-settings"
    id = 0
    url = "/user/gpu-admin-settings/"
    escaped_name = name
    groups: list = []


class AdminSettings(UsageSettings):
    """What the service needs from the hub's config: the spawner's usage settings under their
    own names (:class:`UsageSettings`, validated the same way), the quota groups that name
    accounting groups, and the backend (the spawner class and its config) the service asks
    what the hub hands out. Passed to the service as JSON in its environment.
    """

    gpu_quota_groups = Dict(help="The spawner's gpu_quota_groups (they name accounting groups).")
    check_interval = Float(30, help="Seconds between the service's enforcement passes.")
    template_paths = List(help="The spawner's template_paths (admin.html may be overridden).")
    profile_limits = Dict(
        help="""Per course profile key, the gpu_max_age / gpu_idle_timeout (seconds) it sets
        for its servers, over the spawner's (policy.profiles.profile_limits)."""
    )
    backend = Unicode(
        "gpuspawner.docker.spawner.GPUDockerSpawner",
        help="The hub's spawner class, as an import path (the backend the service asks).",
    )
    backend_config = Dict(
        help="The hub config's sections for the spawner's classes (JSON values only).",
    )

    @classmethod
    def names(cls) -> list[str]:
        return sorted(cls.class_trait_names(config=True)) + [
            "backend", "backend_config", "check_interval", "gpu_quota_groups", "template_paths",
            "profile_limits",
        ]  # fmt: skip

    def to_json(self) -> str:
        return json.dumps({name: getattr(self, name) for name in self.names()})

    @classmethod
    def from_environment(cls) -> "AdminSettings":
        return cls(**json.loads(os.environ[SETTINGS_ENV]))

    def build_backend(self, **kwargs):
        """One spawner of the hub's class with the hub's config, to ask the backend."""
        from traitlets.config import Config

        spawner_class = import_item(self.backend)
        return spawner_class(config=Config(self.backend_config), user=StandInUser(), **kwargs)


def absolute_db_url(url: str, cwd: str) -> str:
    """A relative sqlite path made absolute, so the service finds the hub's file."""
    parsed = make_url(url)
    if (
        parsed.get_backend_name() == "sqlite"
        and parsed.database
        and not os.path.isabs(parsed.database)
    ):
        return parsed.set(database=os.path.join(cwd, parsed.database)).render_as_string(
            hide_password=False
        )
    return url


def hub_spawner_class(config, spawner_class=None) -> type:
    """The spawner class the service works with: ``spawner_class`` (a class, import path or
    entry point name), else the hub's ``c.JupyterHub.spawner_class``; a gpuspawner backend."""
    from ..lifecycle.base import GPUSpawnerMixin

    if spawner_class is None:
        spawner_class = config.JupyterHub.get("spawner_class")
    if spawner_class is None:
        raise ConfigError(
            "add_admin_service needs the hub's spawner_class: set c.JupyterHub.spawner_class"
            ' ("gpu-docker" or "gpu-kubernetes") before calling it, or pass spawner_class=.'
        )
    if isinstance(spawner_class, str):
        named = {e.name.lower(): e for e in entry_points(group="jupyterhub.spawners")}
        entry = named.get(spawner_class.lower())
        spawner_class = entry.load() if entry is not None else import_item(spawner_class)
    if not (isinstance(spawner_class, type) and issubclass(spawner_class, GPUSpawnerMixin)):
        raise ConfigError(
            "The admin service works with gpuspawner's spawners (gpu-docker, gpu-kubernetes),"
            " not %r." % (spawner_class,)
        )
    return spawner_class


def _json_value(value):
    """``value`` as JSON data, or raise TypeError (a callable, an object)."""

    def encode(item):
        if isinstance(item, (set, frozenset)):
            return sorted(item, key=str)
        raise TypeError(type(item).__name__)

    return json.loads(json.dumps(value, default=encode))


# what servers get (secrets among them), never what the service asks the backend
SERVER_ONLY_SETTINGS = {"environment", "user_environment", "group_environment", "secrets_keys"}


def backend_config(config, spawner) -> dict:
    """The hub config's sections for the classes of ``spawner``, with JSON values only.

    A value built up in the config (``c.Spawner.env_keep.append(...)``) is the spawner's
    resolved value; callables (hooks run at spawn time) and the servers' environment are left
    out, since the service never spawns.
    """
    sections: dict[str, dict] = {}
    for klass in type(spawner).__mro__:
        name = klass.__name__
        if name not in config or name in sections:
            continue
        section = {}
        for key, value in config[name].items():
            if key in SERVER_ONLY_SETTINGS:
                continue
            if isinstance(value, LazyConfigValue):
                if not spawner.has_trait(key):
                    continue
                value = getattr(spawner, key)
            try:
                section[key] = _json_value(value)
            except (TypeError, ValueError):
                continue
        sections[name] = section
    return sections


def backend_from_config(config, spawner_class=None):
    """One spawner of the hub's class built from the hub's config (never started)."""
    return hub_spawner_class(config, spawner_class)(config=config, user=StandInUser())


def settings_of(spawner, config, check_interval: float = 30) -> AdminSettings:
    """The settings the service enforces, read from a spawner of the hub's class."""
    usage = {name: getattr(spawner, name) for name in UsageSettings.class_own_traits(config=True)}
    usage["usage_db_url"] = absolute_db_url(spawner.usage_db_url, os.getcwd())
    klass = type(spawner)
    return AdminSettings(
        **usage,
        gpu_quota_groups=dict(spawner.gpu_quota_groups),
        check_interval=check_interval,
        template_paths=list(spawner.template_paths),
        profile_limits=profile_limits(spawner.profile_set),
        backend="%s.%s" % (klass.__module__, klass.__qualname__),
        backend_config=backend_config(config, spawner),
    )


def settings_from_config(config, spawner_class=None, check_interval: float = 30) -> AdminSettings:
    """Build one spawner from the hub's config and read the settings the service enforces."""
    return settings_of(backend_from_config(config, spawner_class), config, check_interval)


def add_admin_service(
    config,
    name: str = "gpu-admin",
    port: int = 10101,
    spawner_class=None,
    check_interval: float = 30,
    log_file: str | None = None,
    url: str | None = None,
) -> None:
    """Add the admin service and its role to the hub's ``config`` (``c`` in jupyterhub_config.py).

    ``spawner_class``: the hub's by default (``c.JupyterHub.spawner_class``, so set that
    first). ``log_file``: a file the service appends its output to (default: the hub's
    output). ``url``: where the hub's proxy reaches the service (default
    ``http://127.0.0.1:<port>``); with a host name rather than an address, e.g.
    ``http://hub:10101`` on zero-to-jupyterhub where the proxy runs in a pod of its own, the
    service listens on every interface of the hub's pod.

    Every user may reach the service at /services/<name>/ (it is added to the hub's
    ``extra_user_scopes``, so the hub's Services menu lists it): a user sees their own GPU
    usage there; the dashboard, the JSON API about everyone and the adjustments answer only
    the hub's admins and roles granted the scope ``custom:gpuspawner:admin`` (to delegate).
    Servers get the path of their user's page (GPUSPAWNER_USAGE_URL) for the JupyterLab GPU
    panel. The service's own token may list users and stop servers, nothing more.
    """
    config.UsageSettings.usage_service = name  # before the spawner is built: it is passed on
    spawner = backend_from_config(config, spawner_class)
    settings = settings_of(spawner, config, check_interval)
    environment = {**spawner.engine_environment(), SETTINGS_ENV: settings.to_json()}
    if spawner.secrets_keys:  # users' secrets: the page stores them with the hub's keys
        environment[KEYS_ENV] = ",".join(spawner.secrets_keys)
    if log_file:
        environment[LOG_ENV] = os.path.abspath(log_file)
    config.JupyterHub.services.append(
        {
            "name": name,
            "url": url or "http://127.0.0.1:%d" % port,
            "command": [sys.executable, "-m", "gpuspawner.service"],
            # JupyterHub gives a service a trimmed environment: add how the backend reaches
            # its engine (e.g. KUBECONFIG), as the hub reaches it
            "environment": environment,
            "oauth_no_confirm": True,
            # a browser's token carries the admin scope of a user granted it (delegation)
            "oauth_client_allowed_scopes": [ADMIN_SCOPE],
            "display": True,
        }
    )
    config.JupyterHub.load_roles.append(
        {"name": name + "-service", "services": [name], "scopes": SERVICE_SCOPES}
    )
    config.JupyterHub.extra_user_scopes.add("access:services!service=" + name)
    config.JupyterHub.custom_scopes.update(
        {ADMIN_SCOPE: {"description": "Admin of the GPU service (dashboard, adjustments)."}}
    )
