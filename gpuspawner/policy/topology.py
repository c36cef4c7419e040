"""Which free GPUs a multi-GPU server gets: the closest ones (pure).

Two GPUs are as close as the tightest link they share (:func:`distance`): one NVLink
island, else one PCIe switch, else one PCIe host bridge, else one NUMA node, else only the
system (or where they sit is unknown). A set of GPUs is as tight as its loosest pair, then
as the sum over its pairs; :func:`closest` picks the tightest set of the free GPUs, the
earliest in inventory order among equally tight ones, so a host without topology gets the
first free GPUs as before.

Every set is compared while there are at most :data:`EXHAUSTIVE_LIMIT` of them; beyond
that a greedy search from each GPU in turn picks the set (exact on hosts whose islands and
switches nest, the usual case). Both run inside the allocation decision, with no await:
benchmarks/bench_topology.py times them.
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
EXHAUSTIVE_LIMIT = 500  # 8 GPUs choose 4 is 70, 10 choose 5 is 252


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
    far = [[distance(a, b) for b in free] for a in free]
    if comb(len(free), count) <= EXHAUSTIVE_LIMIT:
        best = min(combinations(range(len(free)), count), key=lambda s: _spread(far, s))
    else:
        best = _greedy(far, count)
    return tuple(free[i] for i in best)


def _spread(far: list[list[int]], chosen: Sequence[int]) -> tuple[int, int]:
    pairs = [far[a][b] for a, b in combinations(chosen, 2)]
    return (max(pairs, default=NVLINK), sum(pairs))


def _greedy(far: list[list[int]], count: int) -> tuple[int, ...]:
    """From each GPU in turn, add the GPU closest to those chosen (its loosest link to them,
    then the sum, then inventory order); the tightest of these sets, the earliest on ties."""
    n = len(far)
    best: tuple | None = None
    for seed in range(n):
        chosen = [seed]
        loosest = list(far[seed])  # per candidate: its loosest link to the chosen ones
        total = list(far[seed])  # and the sum of its links to them
        taken = [False] * n
        taken[seed] = True
        while len(chosen) < count:
            pick = min(
                (i for i in range(n) if not taken[i]), key=lambda i: (loosest[i], total[i], i)
            )
            chosen.append(pick)
            taken[pick] = True
            for i in range(n):
                loosest[i] = max(loosest[i], far[pick][i])
                total[i] += far[pick][i]
        picked = tuple(sorted(chosen))
        key = (_spread(far, picked), picked)
        if best is None or key < best:
            best = key
    return best[1]
