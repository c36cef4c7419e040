"""Docker backend benchmarks (not tests): run with the test image built.

    GPUSPAWNER_TEST_IMAGE=gpuspawner/singleuser:offline python benchmarks/bench_docker.py

1. Spawn-to-ready through a real hub: gpuspawner's GPUDockerSpawner vs plain
   DockerSpawner on the same image, same machine, same run; median of N spawns each,
   printed as a ratio.
2. Allocation storm: 200+ concurrent spawners asking for GPUs of 8 declared ones,
   through the spawner's real allocation path (engine listing included); prints
   double allocations (must be 0) and the decision latency p50/p99.
"""

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
import types
from collections import Counter
from pathlib import Path

import docker

from gpuspawner.testing.hubprocess import Hub, hub_settings

IMAGE = os.environ.get("GPUSPAWNER_TEST_IMAGE", "gpuspawner/singleuser:offline")
GPUS = [
    {"uuid": "GPU-bench%04d" % i, "name": "bench GPU"} for i in range(8)
]  # no test hub uses these


def bridge_gateway(client) -> str:
    import ipaddress

    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def spawn_times(spawner: str, rounds: int, client) -> list[float]:
    prefix = "gpbench" + secrets.token_hex(3)
    workdir = Path(tempfile.mkdtemp(prefix="gpuspawner-bench-"))
    settings = hub_settings(
        workdir,
        bridge_gateway(client),
        spawner=spawner,
        images={"demo": {"image": IMAGE}},
        gpus=GPUS,
        prefix=prefix,
    )
    hub = Hub(workdir, settings).start()
    times = []
    try:
        for i in range(rounds + 1):
            user = "bench%d" % i
            hub.create_user(user)
            started = time.perf_counter()
            response = hub.spawn(
                user, options={"image": "demo"} if spawner == "gpu-docker" else None
            )
            assert response.status_code in (201, 202), response.text
            hub.wait_ready(user)
            if i:  # the first spawn warms the engine and the hub up, for both spawners
                times.append(time.perf_counter() - started)
            hub.stop_server(user)
    finally:
        hub.stop()
        for container in client.containers.list(all=True, filters={"name": prefix}):
            container.remove(force=True)
        for volume in client.volumes.list(filters={"name": prefix}):
            volume.remove(force=True)
    return times


async def storm(requests_count: int) -> dict:
    from traitlets.config import Config

    from gpuspawner.docker import GPUDockerSpawner
    from gpuspawner.lifecycle.shared import reset_shared_state

    config = Config()
    config.GPUDockerSpawner.images = {"demo": {"image": IMAGE}}
    config.GPUDockerSpawner.inventory = GPUS
    config.GPUDockerSpawner.gpu_quota = 2
    reset_shared_state()  # a fresh hub process
    spawners = [
        GPUDockerSpawner(
            user=types.SimpleNamespace(name="user%d" % (i % 150), groups=[]),
            orm_spawner=types.SimpleNamespace(name="server%d" % i, user_options={}, server=None),
            config=config,
        )
        for i in range(requests_count)
    ]
    latencies, granted = [], []

    async def ask(spawner, count):
        started = time.perf_counter()
        try:
            uuids = tuple(gpu.uuid for gpu in await spawner.reserve_gpus(count))
        except Exception as refusal:  # the SpawnRefused sentence
            uuids = ()
            assert refusal.status_code in (403, 503), refusal
        latencies.append(time.perf_counter() - started)
        if uuids:
            granted.append((spawner, uuids))

    await asyncio.gather(*(ask(s, 1 + i % 2) for i, s in enumerate(spawners)))
    # half the winners stop, and everyone asks again
    for spawner, _ in granted[::2]:
        await spawner.release_gpus()
    survivors = [(s, u) for s, u in granted[1::2]]
    granted.clear()
    granted.extend(survivors)
    await asyncio.gather(*(ask(s, 1) for s in spawners if all(s is not w for w, _ in survivors)))
    held = Counter(uuid for _, uuids in granted for uuid in uuids)
    per_user = Counter()
    for spawner, uuids in granted:
        per_user[spawner.user.name] += len(uuids)
    latencies.sort()
    return {
        "requests": len(latencies),
        "double_allocations": sum(n - 1 for n in held.values() if n > 1),
        "over_quota_users": sum(1 for n in per_user.values() if n > 2),
        "gpus_held": sum(held.values()),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=5, help="spawns per spawner (median of these)"
    )
    parser.add_argument("--storm", type=int, default=240, help="concurrent allocation requests")
    args = parser.parse_args()
    client = docker.from_env()

    figures = asyncio.run(storm(args.storm))
    results = {name: spawn_times(name, args.rounds, client) for name in ("docker", "gpu-docker")}
    base, ours = (statistics.median(results[name]) for name in ("docker", "gpu-docker"))
    print("spawn-to-ready, median of %d, image %s" % (args.rounds, IMAGE))
    print(
        "  plain DockerSpawner : %.2f s  %s"
        % (base, " ".join("%.2f" % t for t in results["docker"]))
    )
    print(
        "  GPUDockerSpawner    : %.2f s  %s"
        % (ours, " ".join("%.2f" % t for t in results["gpu-docker"]))
    )
    print("  ratio gpuspawner/plain: %.2f" % (ours / base))

    print("allocation storm: %(requests)d requests for 8 GPUs" % figures)
    print(
        "  double allocations: %(double_allocations)d  users over quota: %(over_quota_users)d"
        "  GPUs held at the end: %(gpus_held)d" % figures
    )
    print("  decision latency p50 %(p50_ms).2f ms, p99 %(p99_ms).2f ms" % figures)
    if figures["double_allocations"] or figures["over_quota_users"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
