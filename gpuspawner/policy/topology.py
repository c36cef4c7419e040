"""Which free GPUs a multi-GPU server gets: the closest ones (pure).

Two GPUs are as close as the tightest link they share (:func:`distance`): one NVLink
island, else one PCIe switch, else one PCIe host bridge, else one NUMA node, else only the
system (or where they sit is unknown). A set of GPUs is as tight as its loosest pair, then
as the sum over its pairs; :func:`closest` picks the tightest set of the free GPUs, the
earliest in inventory order among equally tight ones, so a host without topology gets the
first free GPUs as before.

Every set is compared while there are at most :data:`EXHAUSTIVE_LIMIT` of them (8 GPUs
choose 4 is 70); beyond that a greedy search from each GPU in turn picks the set (exact on
hosts whose islands and switches nest, the usual case).
"""

from collections.abc import Sequence
from itertools import combinations
from math import comb

from .inventory import Gpu

NVLINK, SWITCH, BRIDGE, NUMA, SYSTEM = range(5)
LINK_WORDS = {
    NVLINK: "in one NVLink island",
    SWITCH: "behind one PCIe switch",
    BRIDGE: "behind one PCIe host bridge",
    NUMA: "on one NUMA node",
    SYSTEM: "across NUMA nodes",
}
EXHAUSTIVE_LIMIT = 20000


def distance(a: Gpu, b: Gpu) -> int:
    """How far apart two GPUs are: NVLINK (closest) .. SYSTEM (farthest, or unknown)."""
    ta, tb = a.topology, b.topology
    for level, field in (
        (NVLINK, "nvlink"),
        (SWITCH, "switch"),
        (BRIDGE, "bridge"),
        (NUMA, "numa"),
    ):
        label = getattr(ta, field)
        if label and label == getattr(tb, field):
            return level
    return SYSTEM


def spread(gpus: Sequence[Gpu]) -> tuple[int, int]:
    """How loose a set is: (its loosest pair's distance, the sum of its pairs' distances)."""
    pairs = [distance(a, b) for a, b in combinations(gpus, 2)]
    return (max(pairs, default=NVLINK), sum(pairs))


def link_of(gpus: Sequence[Gpu]) -> str:
    """'in one NVLink island', for the progress line of a multi-GPU grant."""
    return LINK_WORDS[spread(gpus)[0]]


def closest(free: Sequence[Gpu], count: int) -> tuple[Gpu, ...]:
    """The tightest ``count`` of ``free`` (in inventory order), in inventory order."""
    if count <= 1 or count >= len(free) or not any(gpu.topology.known for gpu in free):
        return tuple(free[:count])
    if comb(len(free), count) <= EXHAUSTIVE_LIMIT:
        best = min(
            combinations(range(len(free)), count), key=lambda s: spread([free[i] for i in s])
        )
        return tuple(free[i] for i in best)
    return tuple(free[i] for i in _greedy(free, count))


def _greedy(free: Sequence[Gpu], count: int) -> tuple[int, ...]:
    best: tuple | None = None
    for seed in range(len(free)):
        chosen = [seed]
        while len(chosen) < count:
            rest = [i for i in range(len(free)) if i not in chosen]
            chosen.append(
                min(rest, key=lambda i: (
                    max(distance(free[i], free[j]) for j in chosen),
                    sum(distance(free[i], free[j]) for j in chosen),
                    i,
                ))
            )  # fmt: skip
        picked = tuple(sorted(chosen))
        key = (spread([free[i] for i in picked]), picked)
        if best is None or key < best:
            best = key
    return best[1]
