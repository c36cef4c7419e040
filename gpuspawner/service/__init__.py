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
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

from sqlalchemy.engine import make_url

SETTINGS_ENV = "GPUSPAWNER_ADMIN_SETTINGS"
SERVICE_SCOPES = ["list:users", "read:users", "read:servers", "delete:servers", "list:groups", "read:groups"]


@dataclass
class AdminSettings:
    """What the service needs from the hub's config (passed to it as JSON in its environment)."""

    db_url: str
    inventory: list = field(default_factory=list)  # [{"uuid", "name"}]
    budget_default: float | None = None
    budget_groups: dict = field(default_factory=dict)
    quota_groups: dict = field(default_factory=dict)
    period: str = "week"
    reset_time: str = "00:00"
    reset_weekday: str = "monday"
    reset_day: int = 1
    timezone: str = "UTC"
    weights: dict = field(default_factory=dict)
    grace_seconds: float = 600
    max_age_seconds: float = 0
    idle_timeout_seconds: float = 0
    idle_threshold: float = 5.0
    utilisation_source: str = "nvml"
    check_interval: float = 30

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_environment(cls) -> "AdminSettings":
        return cls(**json.loads(os.environ[SETTINGS_ENV]))


def absolute_db_url(url: str, cwd: str) -> str:
    """A relative sqlite path made absolute, so the service finds the hub's file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not os.path.isabs(parsed.database):
        return parsed.set(database=os.path.join(cwd, parsed.database)).render_as_string(hide_password=False)
    return url


def settings_from_config(config, spawner_class=None, check_interval: float = 30) -> AdminSettings:
    """Build one spawner from the hub's config and read the settings the service enforces."""
    if spawner_class is None:
        from ..docker import GPUDockerSpawner as spawner_class
    # a stand-in user: some spawner settings render templates with the user's name
    spawner = spawner_class(config=config, user=SimpleNamespace(name="gpu-admin-settings", groups=[]))
    inventory = spawner.inventory() if hasattr(spawner, "inventory") else ()
    return AdminSettings(
        db_url=absolute_db_url(spawner.usage_db_url, os.getcwd()),
        inventory=[{"uuid": gpu.uuid, "name": gpu.name} for gpu in inventory],
        budget_default=spawner.gpu_hour_budget,
        budget_groups=dict(spawner.gpu_hour_budget_groups),
        quota_groups=dict(spawner.gpu_quota_groups),
        period=spawner.budget_period,
        reset_time=spawner.budget_reset_time,
        reset_weekday=spawner.budget_reset_weekday,
        reset_day=spawner.budget_reset_day,
        timezone=spawner.budget_timezone,
        weights=dict(spawner.gpu_hour_weights),
        grace_seconds=spawner.budget_grace_period,
        max_age_seconds=spawner.gpu_max_age,
        idle_timeout_seconds=spawner.gpu_idle_timeout,
        idle_threshold=spawner.gpu_idle_threshold,
        utilisation_source=spawner.gpu_utilisation_source,
        check_interval=check_interval,
    )


def add_admin_service(config, name: str = "gpu-admin", port: int = 10101, spawner_class=None,
                      check_interval: float = 30) -> None:
    """Add the admin service and its role to the hub's ``config`` (``c`` in jupyterhub_config.py).

    Users reach it at /services/<name>/ once the hub lets them (the ``access:services``
    scope: the admin role has it; grant ``access:services!service=<name>`` to a role to
    delegate). The service's own token may list users and stop servers, nothing more.
    """
    settings = settings_from_config(config, spawner_class, check_interval)
    config.JupyterHub.services.append({
        "name": name,
        "url": "http://127.0.0.1:%d" % port,
        "command": [sys.executable, "-m", "gpuspawner.service"],
        "environment": {SETTINGS_ENV: settings.to_json()},
        "oauth_no_confirm": True,
        "display": True,
    })
    config.JupyterHub.load_roles.append({"name": name + "-service", "services": [name], "scopes": SERVICE_SCOPES})
