"""What the admin service asks the hub's backend, through the backend contract only.

The service is a process of its own: it builds one spawner of the hub's class from the hub's
config (:meth:`AdminSettings.build_backend`, never started) and asks it
:meth:`~gpuspawner.lifecycle.base.GPUSpawnerMixin.gpu_inventory` (the GPUs the hub hands out
by UUID, or None where the engine picks the devices, as on Kubernetes) and
:meth:`~gpuspawner.lifecycle.base.GPUSpawnerMixin.gpu_totals` (GPUs per type, e.g. from the
cluster's nodes). Who holds what comes from the ledger, which the hub keeps.
"""

import logging

from ..policy.inventory import Gpu

log = logging.getLogger("gpuspawner.service")


class EngineView:
    """The hub's GPUs as its backend reports them, for the dashboard and the watcher."""

    def __init__(self, backend):
        self.backend = backend
        self._inventory: tuple[Gpu, ...] | None = None
        self._inventory_read = False
        self.totals_problem: str | None = None  # why the last gpu_totals() failed

    @classmethod
    def from_settings(cls, settings) -> "EngineView":
        """The view through a spawner of the hub's class; without one when it cannot be built
        here (budgets, maximum age and culling need none; the dashboard then lists held GPUs)."""
        try:
            backend = settings.build_backend(log=logging.getLogger("gpuspawner.service.backend"))
        except Exception as e:
            log.error(
                "Cannot build the hub's spawner %s here (%s: %s): the dashboard lists only the"
                " GPUs held", settings.backend, type(e).__name__, e,
            )  # fmt: skip
            backend = None
        return cls(backend)

    @property
    def inventory(self) -> tuple[Gpu, ...] | None:
        """The GPUs the hub hands out by UUID (read once), or None: the engine picks them."""
        if not self._inventory_read:
            self._inventory = None if self.backend is None else self.backend.gpu_inventory()
            self._inventory_read = True
        return self._inventory

    @property
    def named(self) -> tuple[Gpu, ...]:
        """The GPUs known by UUID (none where the engine picks the devices)."""
        return self.inventory or ()

    @property
    def namespace(self) -> str:
        """The engine's namespace of the hub's servers ("" where none, or unknown)."""
        return "" if self.backend is None else self.backend.server_namespace()

    async def totals(self) -> dict[str, int] | None:
        """GPUs per type where the engine picks the devices (None: unknown or named)."""
        if self.backend is None or self.inventory is not None:
            return None
        try:
            totals = await self.backend.gpu_totals()
        except Exception as e:
            problem = "%s: %s" % (type(e).__name__, e)
            level = logging.DEBUG if problem == self.totals_problem else logging.WARNING
            log.log(level, "Cannot read the engine's GPUs per type (%s)", problem)
            self.totals_problem = problem
            return None
        self.totals_problem = None
        return totals
