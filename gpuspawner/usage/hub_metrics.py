"""The hub process's Prometheus metrics (prometheus_client).

Registered on prometheus_client's default registry, which JupyterHub serves at
``/hub/metrics``: GPUs total/allocated/free per type, allocations by group, spawn refusals
by reason. The admin service's metrics are in :mod:`gpuspawner.service.service_metrics`.
"""

from collections import Counter as Tally
from collections.abc import Iterable, Mapping

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
    "Spawns refused before start, by reason"
    " (options, image, gpu-quota, gpu-capacity, gpu-runtime, budget)",
    ["reason"],
)


def count_refusal(reason: str) -> None:
    SPAWN_REFUSALS.labels(reason=reason).inc()


def count_allocation(group: str, gpus: int) -> None:
    if gpus:
        ALLOCATIONS.labels(group=group).inc(gpus)


def gpu_counts(
    totals: Mapping[str, int] | None, holdings: Iterable[Holding], lost: Iterable[Gpu] = ()
) -> dict[tuple[str, str], int]:
    """{(gpu type, "allocated"|"free"|"lost"): count} for every type the engine has or a
    server holds.

    ``totals``: GPUs per type (a GPU's name); None when unknown (only allocated is known).
    ``lost``: GPUs NVML reports lost and no server holds: counted as "lost", never as free.
    """
    holdings = list(holdings)
    # a shared GPU held by several servers (each a slot) is one GPU allocated
    distinct = {gpu.uuid: gpu for holding in holdings for gpu in holding.gpus}
    allocated = Tally(gpu.name for gpu in distinct.values())
    held = set(distinct)
    lost_by_type = Tally(gpu.name for gpu in lost if gpu.uuid not in held)
    counts: dict[tuple[str, str], int] = {}
    for gpu_type in sorted(set(totals or {}) | set(allocated)):
        counts[(gpu_type, "allocated")] = allocated.get(gpu_type, 0)
        if totals is not None:
            free = totals.get(gpu_type, 0) - allocated.get(gpu_type, 0) - lost_by_type[gpu_type]
            counts[(gpu_type, "free")] = max(free, 0)
            counts[(gpu_type, "lost")] = lost_by_type[gpu_type]
    return counts


def set_gpu_counts(
    totals: Mapping[str, int] | None, holdings: Iterable[Holding], lost: Iterable[Gpu] = ()
) -> None:
    counts = gpu_counts(totals, holdings, lost)
    # a type no longer held or known (e.g. a reservation's type before the node named it) is 0
    for gpu_type, state in _published - set(counts):
        GPUS.labels(gpu_type=gpu_type, state=state).set(0)
    for (gpu_type, state), count in counts.items():
        GPUS.labels(gpu_type=gpu_type, state=state).set(count)
    _published.update(counts)


_published: set[tuple[str, str]] = set()  # the label pairs set so far
