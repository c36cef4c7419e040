"""How long a topology-aware grant takes inside the allocation decision (pure, no engine).

    python benchmarks/bench_topology.py [--repeat 20]

For hosts of 8 to 64 GPUs in NVLink islands of 4 (PCIe switches of 2, NUMA nodes of 8),
half of them held, it times ``decide()`` for 2, 4 and 8 GPUs with the topology known
against the same decision on the same GPUs without topology (the first free GPUs, the
baseline measured in the same run) and prints the medians and their ratio. The decision
runs with no await, so its time is how long the hub's event loop waits.
"""

import argparse
import statistics
import time

from gpuspawner.policy.allocation import GpuRequest, Holding, decide
from gpuspawner.policy.inventory import Gpu, Topology
from gpuspawner.policy.quota import GpuLimit


def host(count: int, placed: bool) -> tuple[Gpu, ...]:
    return tuple(
        Gpu(
            "GPU-%03d" % i,
            "NVIDIA A100",
            topology=Topology(nvlink=str(i // 4), switch=str(i // 2), numa=str(i // 8))
            if placed
            else Topology(),
        )
        for i in range(count)
    )


def median_ms(inventory, count: int, repeat: int) -> float:
    held = [Holding("u%d" % i, "", (g,)) for i, g in enumerate(inventory) if i % 4 in (0, 3)]
    request = GpuRequest("ann", "", count, GpuLimit(count, "bench"))
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        decide(request, inventory, held)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print("%6s %5s %14s %14s %7s" % ("GPUs", "asked", "topology ms", "first-free ms", "ratio"))
    for gpus in (8, 16, 32, 64):
        for count in (2, 4, 8):
            if count > gpus // 2:
                continue
            placed = median_ms(host(gpus, True), count, args.repeat)
            plain = median_ms(host(gpus, False), count, args.repeat)
            print(
                "%6d %5d %14.3f %14.3f %7.1f" % (gpus, count, placed, plain, placed / plain)
            )


if __name__ == "__main__":
    main()
