"""The hub process's Prometheus metrics (prometheus_client).

Registered on prometheus_client's default registry, which JupyterHub serves at
``/hub/metrics``: GPUs total/allocated/free per type, allocations by group, spawn refusals
by reason. The admin service's metrics are in :mod:`gpuspawner.service.service_metrics`.
"""

from collections.abc import Iterable, Sequence

from prometheus_client import Counter, Gauge

from ..policy.allocation import Holding
from ..policy.inventory import Gpu

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
