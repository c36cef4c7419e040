"""The hub's API while many spawns wait in line for a GPU (a benchmark, not a test):

    GPUSPAWNER_TEST_IMAGE=gpuspawner/singleuser:offline python benchmarks/bench_queue.py

One real hub process (GPUDockerSpawner, one declared GPU, "runtime-env" mode, a queue
timeout), the real Docker engine. One user's server holds the GPU; then:

1. baseline: p50/p99 latency of the hub's REST API (GET /users/:name and GET /users) with
   nobody waiting;
2. the same calls with N spawns (default 100) waiting in line;
3. the same calls again once every waiting spawn is cancelled (nobody waiting);
4. the ratio of the waiting p99 to the p99 of both calm measurements, same run, same hub.

The line's cost is the waiters' wake-ups on the hub's event loop (each looks again when a
GPU may have come free, and the head lists the engine every few seconds).
"""

import argparse
import concurrent.futures
import ipaddress
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

from gpuspawner.testing.hubprocess import Hub, hub_settings

IMAGE = os.environ.get("GPUSPAWNER_TEST_IMAGE", "gpuspawner/singleuser:offline")
GPUS = [{"uuid": "GPU-benchqueue0000", "name": "bench GPU"}]  # no test hub uses it


def bridge_gateway(client) -> str:
    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def latencies(hub: Hub, calls: int) -> list[float]:
    times = []
    for i in range(calls):
        path = "/users/holder" if i % 2 else "/users"
        started = time.perf_counter()
        response = hub.api("GET", path)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return times


def p(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=100, help="spawns waiting in line")
    parser.add_argument("--calls", type=int, default=300, help="API calls per measurement")
    args = parser.parse_args()
    client = docker.from_env()
    prefix = "gpbq" + secrets.token_hex(3)
    workdir = Path(tempfile.mkdtemp(prefix="gpuspawner-bench-queue-"))
    settings = hub_settings(
        workdir, bridge_gateway(client), images={"demo": {"image": IMAGE}}, gpus=GPUS,
        prefix=prefix, gpu_mode="runtime-env", gpu_queue_timeout=3600, slow_spawn_timeout=0,
    )  # fmt: skip
    hub = Hub(workdir, settings).start()
    try:
        hub.create_user("holder")
        assert hub.spawn("holder", options={"gpus": 1}).status_code in (201, 202)
        hub.wait_ready("holder")
        users = ["waiter%03d" % i for i in range(args.waiting)]
        for user in users:
            hub.create_user(user)
        latencies(hub, 20)  # warm up
        baseline = latencies(hub, args.calls)

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda u: hub.spawn(u, options={"gpus": 1}).status_code, users))
        assert all(code in (201, 202) for code in codes), codes

        def pending() -> int:
            servers = hub.api("GET", "/users?state=active&limit=1000").json()
            return sum(
                1 for u in servers for s in u.get("servers", {}).values() if s.get("pending")
            )

        deadline = time.monotonic() + 120
        while pending() < args.waiting and time.monotonic() < deadline:
            time.sleep(1)
        waiting = pending()
        time.sleep(6)  # past a head's recheck of the engine
        loaded = latencies(hub, args.calls)
        still = pending()
        # the same hub with nobody waiting again: every waiting spawn cancelled
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda u: hub.api("DELETE", hub.server_path(u)), users))
        deadline = time.monotonic() + 120
        while pending() and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(2)
        after = latencies(hub, args.calls)
    finally:
        hub.stop()
        for container in client.containers.list(all=True, filters={"name": prefix}):
            container.remove(force=True)
        for volume in client.volumes.list(filters={"name": prefix}):
            volume.remove(force=True)

    def line(name: str, values: list[float]) -> str:
        return "%-28s p50 %6.1f ms   p99 %6.1f ms   max %6.1f ms" % (
            name, 1000 * statistics.median(values), 1000 * p(values, 99), 1000 * max(values),
        )  # fmt: skip

    print("hub REST API, %d calls each (GET /users and GET /users/holder)" % args.calls)
    print(line("nobody waiting (before)", baseline))
    print(line("%d spawns waiting" % waiting, loaded))
    print(line("nobody waiting (after)", after))
    print("waiting when measured: %d (after: %d)" % (waiting, still))
    calm = baseline + after
    print("p99 ratio (waiting / nobody waiting): %.2f" % (p(loaded, 99) / p(calm, 99)))
    return 0 if waiting == args.waiting else 1


if __name__ == "__main__":
    sys.exit(main())
