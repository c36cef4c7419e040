"""Many users spawning at once on a real control plane with fake GPU nodes.

Starts the local control plane of the tests (scripts/setup-kube.sh builds it) with
NODES kwok nodes of 8 nvidia.com/gpu each, then spawns USERS servers of 1 GPU each,
CONCURRENCY at a time, in-process as a hub does: first with KubeGPUSpawner, then with
plain KubeSpawner asking for the same GPU (the baseline: no quota, no checks). Prints
the time until every pod is Running, the ratio of the two, the Kubernetes API calls the
hub made per spawn, the ledger database's commits per spawn (its writes are group-committed),
the hub process's CPU time and memory, and the machine's load average before and after
each run (how noisy the figures are). Figures only; nothing is asserted.

    .venv/bin/python benchmarks/bench_kube.py [USERS] [NODES] [CONCURRENCY]
        [--baseline-first] [--rounds=N] [--profile=DIR]

The first run warms the control plane up; --baseline-first swaps the order. With
--rounds=N (default 1) the pair runs N times, the order swapped each round (A B, B A,
...), each run on an empty namespace and, for KubeGPUSpawner, a fresh hub state and
ledger; the ratio of each round and of the two spawners' median times are printed.
"""

import asyncio
import cProfile
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from gpuspawner.testing import kube_cluster

# --profile=DIR: each run's cProfile of the hub process in DIR/<spawner>.prof
PROFILE_DIR = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--profile=")), "")
CALLS: Counter = Counter()
COMMITS: Counter = Counter()  # the ledger database's commits


def count_commits(ledger) -> None:
    from sqlalchemy import event

    event.listen(ledger.engine, "commit", lambda _connection: COMMITS.update(["commit"]))


def count_api_calls() -> None:
    from kubernetes_asyncio.client import api_client

    original = api_client.ApiClient.call_api

    def call_api(self, resource_path, method, *args, **kwargs):
        CALLS["%s %s" % (method, resource_path)] += 1
        return original(self, resource_path, method, *args, **kwargs)

    api_client.ApiClient.call_api = call_api


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def user(name: str):
    return SimpleNamespace(name=name, id=1, url="/user/%s/" % name, escaped_name=name, groups=[])


async def run(label: str, make, users: int, concurrency: int, ledger=None) -> dict:
    from kubespawner import KubeSpawner

    CALLS.clear()
    COMMITS.clear()
    before = rss_mib()
    load_before = os.getloadavg()[0]
    cpu_before = time.process_time()
    gate = asyncio.Semaphore(concurrency)
    spawners = []

    async def one(i: int) -> float:
        async with gate:
            spawner = make("u%04d" % i)
            spawners.append(spawner)
            began = time.monotonic()
            await spawner.start()
            return time.monotonic() - began

    profile = cProfile.Profile() if PROFILE_DIR else None
    if profile is not None:
        profile.enable()
    began = time.monotonic()
    latencies = sorted(await asyncio.gather(*(one(i) for i in range(users))))
    total = time.monotonic() - began
    if profile is not None:
        profile.disable()
        profile.dump_stats(Path(PROFILE_DIR) / ("%s.prof" % label.split()[0]))
    figures = {
        "label": label,
        "all_running_s": total,
        "p50_s": latencies[len(latencies) // 2],
        "p95_s": latencies[int(len(latencies) * 0.95)],
        "calls_per_spawn": sum(CALLS.values()) / users,
        "calls": dict(CALLS.most_common(4)),
        "rss_growth_mib": rss_mib() - before,
        "cpu_s": time.process_time() - cpu_before,
        "ledger_tx_per_spawn": COMMITS["commit"] / users if ledger is not None else None,
        "load": (load_before, os.getloadavg()[0]),
    }
    await KubeSpawner._stop_all_reflectors()
    return figures


async def main(
    users: int, nodes: int, concurrency: int, baseline_first: bool = False, rounds: int = 1
) -> None:
    missing = kube_cluster.missing_binaries()
    if missing:
        sys.exit("needs %s: run bash scripts/setup-kube.sh" % ", ".join(missing))
    workdir = Path(tempfile.mkdtemp(prefix="bench-kube-"))
    t0 = time.monotonic()
    cluster = kube_cluster.Cluster(workdir)
    cluster.start()
    try:
        for i in range(nodes):
            cluster.add_node(
                "gpu-%03d" % i, gpus=8, product=kube_cluster.A100, taints=[kube_cluster.GPU_TAINT]
            )
        cluster.wait_for(lambda: kube_cluster.nodes_ready(cluster) == nodes, "nodes Ready", 300)
        print("control plane and %d nodes ready in %.1f s" % (nodes, time.monotonic() - t0))
        from kubernetes_asyncio.config import kube_config

        os.environ["KUBECONFIG"] = kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(
            cluster.kubeconfig
        )
        count_api_calls()

        from kubespawner import KubeSpawner

        from gpuspawner.kube import KubeGPUSpawner
        from gpuspawner.lifecycle.base import apply_gpu_options

        from gpuspawner.lifecycle.shared import ledger_for, reset_shared_state

        image = {"demo": {"image": "gpuspawner/singleuser:offline"}}
        usage_db = ""

        def gpu_spawner(name):
            orm = SimpleNamespace(user_options={}, server=None, name="")
            spawner = KubeGPUSpawner(
                _mock=True,
                user=user(name),
                orm_spawner=orm,
                namespace="bench-gpu",
                images=image,
                storage_pvc_ensure=False,
                usage_db_url=usage_db,
                start_timeout=600,
                gpu_wait_timeout=300,
            )
            apply_gpu_options(spawner, {"image": "demo", "gpus": 1})
            return spawner

        def plain_spawner(name):
            orm = SimpleNamespace(user_options={}, server=None, name="")
            return KubeSpawner(
                _mock=True,
                user=user(name),
                orm_spawner=orm,
                namespace="bench-plain",
                image="gpuspawner/singleuser:offline",
                image_pull_policy="IfNotPresent",
                start_timeout=600,
                extra_resource_limits={"nvidia.com/gpu": "1"},
                extra_resource_guarantees={"nvidia.com/gpu": "1"},
                tolerations=[
                    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                ],
            )

        pair = [
            ("KubeGPUSpawner", gpu_spawner, "bench-gpu"),
            ("KubeSpawner (baseline)", plain_spawner, "bench-plain"),
        ]
        if baseline_first:
            pair.reverse()
        runs = [run for i in range(rounds) for run in (pair if i % 2 == 0 else pair[::-1])]
        print(
            "\n%d users x 1 GPU onto %d nodes x 8 nvidia.com/gpu, %d spawns at a time"
            " (kube-apiserver %s)" % (users, nodes, concurrency, "v1.33")
        )
        print(
            "%-24s %8s %7s %7s %11s %9s %7s %8s %11s"
            % ("spawner", "all (s)", "p50 (s)", "p95 (s)", "calls/spawn", "commits", "CPU s",
               "RSS +MiB", "load 1-min"), flush=True,
        )  # fmt: skip
        results = []
        for number, (label, make, namespace) in enumerate(runs):
            cluster.kubectl("create", "namespace", namespace)
            cluster.wait_for(lambda n=namespace: cluster._sa_ready(n), "service account", 60)
            run_ledger = None
            if make is gpu_spawner:  # a fresh hub: no holdings, an empty ledger
                reset_shared_state()
                usage_db = "sqlite:///%s" % (workdir / ("usage-%d.sqlite" % number))
                run_ledger = ledger_for(usage_db)
                count_commits(run_ledger)
            r = await run(label, make, users, concurrency, run_ledger)
            results.append(r)
            tx = r["ledger_tx_per_spawn"]
            # each run's row as soon as it is measured
            print(
                "%-24s %8.1f %7.2f %7.2f %11.2f %9s %7.1f %8.1f %5.1f->%.1f"
                % (r["label"], r["all_running_s"], r["p50_s"], r["p95_s"], r["calls_per_spawn"],
                   "-" if tx is None else "%.3f" % tx, r["cpu_s"], r["rss_growth_mib"], *r["load"]),
                flush=True,
            )  # fmt: skip
            # an empty cluster for the next run
            cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=300s")
        for i in range(rounds):
            first, second = results[2 * i : 2 * i + 2]
            gpu, plain = sorted((first, second), key=lambda r: r["label"] != "KubeGPUSpawner")
            print(
                "round %d: KubeGPUSpawner / KubeSpawner: %.2fx the time until all Running"
                " (%s ran first)"
                % (i + 1, gpu["all_running_s"] / plain["all_running_s"], first["label"])
            )
        if rounds > 1:
            medians = {
                label: statistics.median(r["all_running_s"] for r in results if r["label"] == label)
                for label in ("KubeGPUSpawner", "KubeSpawner (baseline)")
            }
            print(
                "median of %d rounds: %.1f s vs %.1f s = %.2fx"
                % (rounds, medians["KubeGPUSpawner"], medians["KubeSpawner (baseline)"],
                   medians["KubeGPUSpawner"] / medians["KubeSpawner (baseline)"])
            )  # fmt: skip
        for r in results[:2]:
            print("%s: most frequent calls %s" % (r["label"], r["calls"]))
    finally:
        cluster.stop()


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:] if not a.startswith("--")]
    users, nodes, concurrency = (args + [1000, 125, 50][len(args) :])[:3]
    rounds = next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--rounds=")), 1)
    asyncio.run(
        main(users, nodes, concurrency, "--baseline-first" in sys.argv, rounds=max(rounds, 1))
    )
