"""Prometheus metrics (prometheus_client).

Two places can be scraped. The hub process registers its metrics on prometheus_client's
default registry, which JupyterHub serves at ``/hub/metrics``: GPUs total/allocated/free
per type, allocations by group, spawn refusals by reason. The admin service keeps its own
registry (:func:`service_registry`), served at ``/services/<name>/metrics``: GPU-hours
used and budgeted per group and the utilisation of held GPUs.
"""

from collections.abc import Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from .allocation import Holding
from .inventory import Gpu

GPUS = Gauge(
    "gpuspawner_gpus",
    "GPUs this hub hands out, by type and state (allocated or free)",
    ["gpu_type", "state"],
)
ALLOCATIONS = Counter(
    "gpuspawner_gpu_allocations",
    "GPUs handed to servers that started, by the user's accounting group",
    ["group"],
)
SPAWN_REFUSALS = Counter(
    "gpuspawner_spawn_refusals",
    "Spawns refused before start, by reason (options, image, gpu-quota, gpu-capacity, gpu-runtime, budget)",
    ["reason"],
)


def count_refusal(reason: str) -> None:
    SPAWN_REFUSALS.labels(reason=reason).inc()


def count_allocation(group: str, gpus: int) -> None:
    if gpus:
        ALLOCATIONS.labels(group=group).inc(gpus)


def gpu_counts(inventory: Sequence[Gpu], holdings: Iterable[Holding]) -> dict[tuple[str, str], int]:
    """{(gpu type, "allocated"|"free"): count} for every type in the inventory (pure)."""
    held = {uuid for holding in holdings for uuid in holding.uuids}
    counts: dict[tuple[str, str], int] = {}
    for gpu in inventory:
        counts.setdefault((gpu.name, "allocated"), 0)
        counts.setdefault((gpu.name, "free"), 0)
        counts[(gpu.name, "allocated" if gpu.uuid in held else "free")] += 1
    return counts


def set_gpu_counts(inventory: Sequence[Gpu], holdings: Iterable[Holding]) -> None:
    for (gpu_type, state), count in gpu_counts(inventory, holdings).items():
        GPUS.labels(gpu_type=gpu_type, state=state).set(count)


class ServiceMetrics:
    """The admin service's gauges, on a registry of its own."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.budget_used = Gauge(
            "gpuspawner_budget_used_gpu_hours",
            "Weighted GPU-hours used in the current budget period, by accounting group",
            ["group"], registry=self.registry,
        )
        self.budget_limit = Gauge(
            "gpuspawner_budget_limit_gpu_hours",
            "Sum of the GPU-hour budgets of the group's users who have used GPUs this period",
            ["group"], registry=self.registry,
        )
        self.utilisation = Gauge(
            "gpuspawner_gpu_utilisation_percent",
            "GPU utilisation of held GPUs, as last sampled",
            ["gpu_uuid", "user", "server"], registry=self.registry,
        )
        self.held = Gauge(
            "gpuspawner_gpus_held",
            "GPUs held by running servers, by GPU type",
            ["gpu_type"], registry=self.registry,
        )
        self.culls = Counter(
            "gpuspawner_servers_stopped",
            "GPU servers the service stopped, by reason (gpu-idle, budget-spent, max-age)",
            ["reason"], registry=self.registry,
        )
