"""The admin service: a JupyterHub-managed service with the GPU dashboard, its JSON API,
CSV export, Prometheus metrics, and the loop that enforces budgets, maximum age and
GPU-idle culling. Add it at the end of the hub's config::

    from gpuspawner.service import add_admin_service
    add_admin_service(c)          # /services/gpu-admin/, admins only

It reads the spawner's settings (budgets, weights, culling, ledger URL, inventory) from
the same config, so everything is configured once, on the spawner.
"""

import json
import os
import sys
from types import SimpleNamespace

from sqlalchemy.engine import make_url
from traitlets import Dict, Float, List

from ..usage.settings import UsageSettings

SETTINGS_ENV = "GPUSPAWNER_ADMIN_SETTINGS"
SERVICE_SCOPES = [
    "list:users",
    "read:users",
    "read:servers",
    "delete:servers",
    "list:groups",
    "read:groups",
]


class AdminSettings(UsageSettings):
    """What the service needs from the hub's config: the spawner's usage settings under their
    own names (:class:`UsageSettings`, validated the same way), the quota groups that name
    accounting groups, and the GPU inventory. Passed to the service as JSON in its environment.
    """

    gpu_quota_groups = Dict(help="The spawner's gpu_quota_groups (they name accounting groups).")
    inventory = List(help='The GPUs the hub hands out: [{"uuid": ..., "name": ...}].')
    check_interval = Float(30, help="Seconds between the service's enforcement passes.")
    template_paths = List(help="The spawner's template_paths (admin.html may be overridden).")

    @classmethod
    def names(cls) -> list[str]:
        return sorted(cls.class_trait_names(config=True)) + [
            "check_interval", "gpu_quota_groups", "inventory", "template_paths",
        ]  # fmt: skip

    def to_json(self) -> str:
        return json.dumps({name: getattr(self, name) for name in self.names()})

    @classmethod
    def from_environment(cls) -> "AdminSettings":
        return cls(**json.loads(os.environ[SETTINGS_ENV]))


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


def settings_from_config(config, spawner_class=None, check_interval: float = 30) -> AdminSettings:
    """Build one spawner from the hub's config and read the settings the service enforces."""
    if spawner_class is None:
        from ..docker import GPUDockerSpawner as spawner_class
    # a stand-in user: some spawner settings render templates with the user's name
    spawner = spawner_class(
        config=config, user=SimpleNamespace(name="gpu-admin-settings", groups=[])
    )
    inventory = spawner.gpu_inventory() or ()  # None: the engine names the GPUs (Kubernetes)
    usage = {name: getattr(spawner, name) for name in UsageSettings.class_own_traits(config=True)}
    usage["usage_db_url"] = absolute_db_url(spawner.usage_db_url, os.getcwd())
    return AdminSettings(
        **usage,
        gpu_quota_groups=dict(spawner.gpu_quota_groups),
        inventory=[{"uuid": gpu.uuid, "name": gpu.name} for gpu in inventory],
        check_interval=check_interval,
        template_paths=list(spawner.template_paths),
    )


def add_admin_service(
    config,
    name: str = "gpu-admin",
    port: int = 10101,
    spawner_class=None,
    check_interval: float = 30,
) -> None:
    """Add the admin service and its role to the hub's ``config`` (``c`` in jupyterhub_config.py).

    Users reach it at /services/<name>/ once the hub lets them (the ``access:services``
    scope: the admin role has it; grant ``access:services!service=<name>`` to a role to
    delegate). The service's own token may list users and stop servers, nothing more.
    """
    settings = settings_from_config(config, spawner_class, check_interval)
    config.JupyterHub.services.append(
        {
            "name": name,
            "url": "http://127.0.0.1:%d" % port,
            "command": [sys.executable, "-m", "gpuspawner.service"],
            "environment": {SETTINGS_ENV: settings.to_json()},
            "oauth_no_confirm": True,
            "display": True,
        }
    )
    config.JupyterHub.load_roles.append(
        {"name": name + "-service", "services": [name], "scopes": SERVICE_SCOPES}
    )
