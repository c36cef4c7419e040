"""Spawn-to-ready on the real Kubernetes node: KubeGPUSpawner against plain KubeSpawner.

    .venv/bin/python benchmarks/bench_kube_ready.py [--rounds N]   # as root

Starts the tests' control plane (gpuspawner.testing.kube_cluster), a simulated GPU host
(tools/gpuhost/simstate.py) and the real kubelet node with the project's device plugin over it
(tests/kube_node.py, which takes the node's lock as a test session does; needs root and
scripts/setup-kube.sh + scripts/setup-kube-node.sh). The image ($GPUSPAWNER_TEST_IMAGE, the
offline single-user image by default) is imported into the node's containerd. Spawners run
in-process, as a hub runs them, against a stand-in for the hub's API on the node's bridge
gateway (the single-user server asks it for the hub's version before it listens).

Four variants on the same image, pod resources and namespace: plain KubeSpawner without a GPU
(the baseline), plain KubeSpawner asking for 1 nvidia.com/gpu, and KubeGPUSpawner with 0 and
with 1 GPU (its catalog image, quota, ledger; no workspace claim, as plain KubeSpawner has
none). Each round spawns every variant once, in an order that alternates from round to round,
after a warm-up round that is not counted. Each spawn is timed from the spawner.start() call
to (a) start() returning (kubespawner: the pod Running with an IP) and (b) the single-user
server answering HTTP on the URL start() returned (any answer below 500, what the hub's
wait_for_http_server accepts), polled from this process every 50 ms over the bridge. Prints
per-variant medians, each variant's ratio to the baseline measured in the same run, and the
Kubernetes API calls the spawner made during start() (not its reflectors' list-and-watch, which
runs beside it) and the load average before and after. Figures only; nothing is asserted.
"""

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools" / "gpuhost"))
import kube_node  # noqa: E402
import simstate  # noqa: E402

from gpuspawner.testing import kube_cluster  # noqa: E402

IMAGE = os.environ.get("GPUSPAWNER_TEST_IMAGE", "gpuspawner/singleuser:offline")
NAMESPACE = "bench-ready"
BASELINE = "KubeSpawner, no GPU"
CALLS: Counter = Counter()  # the Kubernetes API calls a spawner made, by method and path
REFLECTOR = os.path.join("kubespawner", "reflector.py")


def count_api_calls() -> None:
    from kubernetes_asyncio.client import api_client

    original = api_client.ApiClient.call_api

    def call_api(self, resource_path, method, *args, **kwargs):
        # the reflectors' periodic list-and-watch runs beside the spawns: not counted
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename.endswith(REFLECTOR):
                break
            frame = frame.f_back
        else:
            CALLS["%s %s" % (method, resource_path)] += 1
        return original(self, resource_path, method, *args, **kwargs)

    api_client.ApiClient.call_api = call_api


async def start_hub_api(host: str, port: int):
    """What the single-user server asks of its hub while it starts and runs: the API's root
    (version) and activity reports. Returns the runner (cleanup) and the API's URL."""
    from aiohttp import web
    from jupyterhub import __version__

    async def answer(request):
        body = {"version": __version__} if request.path.rstrip("/") == "/hub/api" else {}
        return web.json_response(body, headers={"X-JupyterHub-Version": __version__})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner, "http://%s:%d/hub/api" % (host, port)


def user(name: str):
    return SimpleNamespace(name=name, id=1, url="/user/%s/" % name, escaped_name=name, groups=[])


def hub(api_url: str):
    return SimpleNamespace(
        public_host="", url=api_url[: -len("api")], base_url="/hub/", api_url=api_url
    )


# the tests' pod resources (tests/kube_hub_config.py), for every variant alike
RESOURCES = {"cpu_guarantee": 0.05, "mem_guarantee": "64M", "mem_limit": "2G"}


def variants(api_url: str, usage_db: str) -> dict:
    """Label -> a function making that variant's spawner for a user name."""
    from kubespawner import KubeSpawner

    from gpuspawner.kube import KubeGPUSpawner
    from gpuspawner.lifecycle.base import apply_gpu_options

    def common(name: str) -> dict:
        orm = SimpleNamespace(user_options={}, server=None, name="")
        return dict(
            _mock=True,
            user=user(name),
            hub=hub(api_url),
            orm_spawner=orm,
            api_token=secrets.token_hex(16),
            namespace=NAMESPACE,
            image_pull_policy="Never",  # the node's containerd has the image
            start_timeout=300,
            **RESOURCES,
        )

    def plain(gpus: int):
        def make(name: str):
            extra = {"nvidia.com/gpu": str(gpus)} if gpus else {}
            return KubeSpawner(
                image=IMAGE,
                extra_resource_limits=extra,
                extra_resource_guarantees=extra,
                **common(name),
            )

        return make

    def ours(gpus: int):
        def make(name: str):
            spawner = KubeGPUSpawner(
                images={"demo": {"image": IMAGE}},
                storage_pvc_ensure=False,
                usage_db_url=usage_db,
                gpu_wait_timeout=120,
                **common(name),
            )
            apply_gpu_options(spawner, {"image": "demo", "gpus": gpus})
            return spawner

        return make

    return {
        BASELINE: plain(0),
        "KubeSpawner, 1 GPU": plain(1),
        "KubeGPUSpawner, 0 GPU": ours(0),
        "KubeGPUSpawner, 1 GPU": ours(1),
    }


async def answered(url: str, timeout: float) -> int:
    """Poll ``url`` until it answers below 500; its status code."""
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        while True:
            try:
                async with session.get(url, allow_redirects=False) as response:
                    if response.status < 500:
                        return response.status
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("%s did not answer in %d s" % (url, timeout))
            await asyncio.sleep(0.05)


async def spawn_once(node, make, name: str) -> dict:
    spawner = make(name)
    allocations = len(node.allocations())
    CALLS.clear()
    began = time.perf_counter()
    url = await spawner.start()
    running = time.perf_counter() - began
    calls, calls_by = sum(CALLS.values()), dict(CALLS)
    if isinstance(url, tuple):
        url = "http://%s:%d" % url
    status = await answered(url.rstrip("/") + spawner.user.url, 120)
    ready = time.perf_counter() - began
    # the device plugin's Allocate answers for this pod: 1 for a GPU, none without
    devices = len(node.allocations()) - allocations
    await spawner.stop()
    return {
        "running": running, "ready": ready, "calls": calls, "calls_by": calls_by,
        "status": status, "devices": devices,
    }  # fmt: skip


async def measure(node, api_url: str, usage_db: str, rounds: int, warmup: int) -> dict:
    makers = variants(api_url, usage_db)
    labels = list(makers)
    results: dict[str, list[dict]] = {label: [] for label in labels}
    for i in range(warmup + rounds):
        order = labels if i % 2 == 0 else labels[::-1]
        for label in order:
            name = "r%d-%s" % (i, secrets.token_hex(2))
            figures = await spawn_once(node, makers[label], name)
            counted = i >= warmup
            print(
                "  %-8s %-22s start() %5.2f s, HTTP %d at %5.2f s, %d API calls, %d Allocate"
                % ("round %d" % (i - warmup + 1) if counted else "warm-up", label,
                   figures["running"], figures["status"], figures["ready"], figures["calls"],
                   figures["devices"]),
                flush=True,
            )  # fmt: skip
            if counted:
                results[label].append(figures)
    return results


def report(results: dict, rounds: int) -> None:
    keys = ("running", "ready", "calls", "devices")
    medians = {
        label: {k: statistics.median(r[k] for r in runs) for k in keys}
        for label, runs in results.items()
    }
    base = medians[BASELINE]
    print(
        "\nspawn-to-ready on the real node (%s), image %s, median of %d rounds"
        % (kube_node.NODE_NAME, IMAGE, rounds)
    )
    print(
        "%-24s %10s %8s %9s %8s %12s %9s  %s"
        % ("spawner", "start() s", "HTTP s", "x start", "x HTTP", "calls/spawn", "Allocate",
           "HTTP s each")
    )  # fmt: skip
    for label, m in medians.items():
        print(
            "%-24s %10.2f %8.2f %8.2fx %7.2fx %12.0f %9.0f  %s"
            % (label, m["running"], m["ready"], m["running"] / base["running"],
               m["ready"] / base["ready"], m["calls"], m["devices"],
               " ".join("%.2f" % r["ready"] for r in results[label]))
        )  # fmt: skip
    gpu1, plain1 = medians["KubeGPUSpawner, 1 GPU"], medians["KubeSpawner, 1 GPU"]
    print(
        "KubeGPUSpawner 1 GPU / KubeSpawner 1 GPU: %.2fx to HTTP, %.2fx to start() returning"
        % (gpu1["ready"] / plain1["ready"], gpu1["running"] / plain1["running"])
    )
    print("(x: against %s, measured in the same run)" % BASELINE)
    for label, runs in results.items():
        print("%s: API calls of its last spawn %s" % (label, runs[-1]["calls_by"]))


async def run_all(cluster, node, args, workdir: Path) -> None:
    from kubernetes_asyncio.config import kube_config

    os.environ["KUBECONFIG"] = kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(cluster.kubeconfig)
    count_api_calls()
    from kubespawner import KubeSpawner

    runner, api_url = await start_hub_api(kube_node.GATEWAY, kube_cluster.free_port())
    load_before = os.getloadavg()[0]
    try:
        results = await measure(
            node, api_url, "sqlite:///%s" % (workdir / "usage.sqlite"), args.rounds, args.warmup
        )
    finally:
        await KubeSpawner._stop_all_reflectors()
        await runner.cleanup()
    report(results, args.rounds)
    print("load average (1 min) %.1f -> %.1f" % (load_before, os.getloadavg()[0]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="spawns per variant (median)")
    parser.add_argument("--warmup", type=int, default=1, help="rounds not counted, first")
    args = parser.parse_args()
    missing = kube_cluster.missing_binaries()
    if missing:
        sys.exit("needs %s: run bash scripts/setup-kube.sh" % ", ".join(missing))
    reason = kube_node.unavailable_reason()
    if reason:
        sys.exit(reason)
    lib_dir = simstate.lib_dir()
    workdir = Path(tempfile.mkdtemp(prefix="bench-kube-ready-"))
    cluster = kube_cluster.Cluster(workdir / "cluster")
    cluster.workdir.mkdir()
    name = "bench-%s" % secrets.token_hex(3)
    host = simstate.SimHost.create(name, simstate.default_inventory(name))
    node = kube_node.Node(cluster, workdir / "node", host, lib_dir)
    t0 = time.monotonic()
    try:
        cluster.start()
        node.start()
        node.import_image(IMAGE)
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.wait_for(lambda: cluster._sa_ready(NAMESPACE), "service account", 60)
        print("control plane and node %s ready in %.1f s" % (kube_node.NODE_NAME,
                                                             time.monotonic() - t0))  # fmt: skip
        asyncio.run(run_all(cluster, node, args, workdir))
    finally:
        node.stop()
        cluster.stop()
        host.remove()


if __name__ == "__main__":
    main()
