"""Spawn-to-ready of a 1-GPU server on the simulated GPU host (not a test).

    bash scripts/setup-gpuhost.sh
    GPUSPAWNER_TEST_IMAGE=gpuspawner/singleuser:offline python benchmarks/bench_gpu_spawn.py

Through a real hub process: gpuspawner's GPUDockerSpawner in the default "device-request" mode
with 1 GPU, discovered through the simulated NVML (so the engine's nvidia device driver, NVIDIA's
hook and the stand-in nvidia-container-cli all run on every start), against plain DockerSpawner
on the same image in the same run, spawns alternating between the two hubs. Median of N spawns
each (after one warm-up round), as a ratio.
"""

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools" / "gpuhost"))
import simstate  # noqa: E402

from gpuspawner.testing.hubprocess import Hub, hub_settings  # noqa: E402

IMAGE = os.environ.get("GPUSPAWNER_TEST_IMAGE", "gpuspawner/singleuser:offline")


def bridge_gateway(client) -> str:
    import ipaddress

    config = client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def start_hub(spawner: str, client, env: dict) -> Hub:
    prefix = "gpbench" + secrets.token_hex(3)
    workdir = Path(tempfile.mkdtemp(prefix="gpuspawner-bench-"))
    saved = dict(os.environ)
    os.environ.update(env)  # the hub process inherits it
    try:
        settings = hub_settings(
            workdir,
            bridge_gateway(client),
            spawner=spawner,
            images={"demo": {"image": IMAGE}},
            gpus=None,
            prefix=prefix,
            gpu_mode="device-request",
        )
        return Hub(workdir, settings).start()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def spawn_once(hub: Hub, user: str, options) -> float:
    hub.create_user(user)
    started = time.perf_counter()
    response = hub.spawn(user, options=options)
    assert response.status_code in (201, 202), response.text
    hub.wait_ready(user)
    elapsed = time.perf_counter() - started
    hub.stop_server(user)
    return elapsed


def remove(hub: Hub, client) -> None:
    hub.stop()
    prefix = hub.settings["prefix"]
    for container in client.containers.list(all=True, filters={"name": prefix}):
        container.remove(force=True)
    for volume in client.volumes.list(filters={"name": prefix}):
        volume.remove(force=True)


def spawn_times(rounds: int, client, env: dict) -> tuple[list[float], list[float]]:
    """Alternate spawns on the two hubs, so both see the same load on the machine."""
    gpu_hub, plain_hub = start_hub("gpu-docker", client, env), start_hub("docker", client, env)
    gpu, plain = [], []
    try:
        for i in range(rounds + 1):  # the first round warms the engine and both hubs up
            g = spawn_once(gpu_hub, "bench%d" % i, {"image": "demo", "gpus": 1})
            p = spawn_once(plain_hub, "bench%d" % i, None)
            if i:
                gpu.append(g)
                plain.append(p)
    finally:
        remove(gpu_hub, client)
        remove(plain_hub, client)
    return gpu, plain


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rounds", type=int, default=5, help="spawns per spawner (median of these)"
    )
    args = parser.parse_args()
    client = docker.from_env()
    name = "bench-" + secrets.token_hex(3)
    host = simstate.SimHost.create(name, simstate.default_inventory(name))
    try:
        gpu, plain = spawn_times(args.rounds, client, host.env())
    finally:
        host.remove()
    log = Path(os.environ.get("SIMNVML_CLI_LOG", "/var/lib/simnvml/cli.log"))
    attached = (
        sum(
            1
            for line in log.read_text().splitlines()
            if '"host": "%s"' % name in line and '"result": "ok"' in line
        )
        if log.exists()
        else 0
    )
    base, ours = statistics.median(plain), statistics.median(gpu)
    print("spawn-to-ready, median of %d, image %s" % (args.rounds, IMAGE))
    print(
        "  plain DockerSpawner (no GPU)          : %.2f s  %s"
        % (base, " ".join("%.2f" % t for t in plain))
    )
    print(
        "  GPUDockerSpawner, 1 GPU, DeviceRequest : %.2f s  %s"
        % (ours, " ".join("%.2f" % t for t in gpu))
    )
    print("  ratio gpuspawner-1-GPU/plain: %.2f" % (ours / base))
    print(
        "  GPU attachments by NVIDIA's hook and the CLI: %d of %d spawns"
        % (attached, args.rounds + 1)
    )
    if attached != args.rounds + 1:
        sys.exit("the GPU spawns did not all go through NVIDIA's hook")


if __name__ == "__main__":
    main()
