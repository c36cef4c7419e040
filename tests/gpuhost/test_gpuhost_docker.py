"""GPU servers end to end on a GPU host made of software: a real hub process, the real Docker
engine with its nvidia device driver, NVIDIA's real container toolkit (hook and runtime), the
stand-in nvidia-container-cli and the simulated NVML (tools/gpuhost).

The hub discovers the simulated host's GPUs with NVML (no ``gpus`` declared); inside each
container the image's own pynvml reports what it was given.
"""

from __future__ import annotations

import io
import subprocess

import pytest
import simstate
from gpuhost_helpers import cli_records, nvml_inside

pytestmark = pytest.mark.docker


def container_of(client, hub, user, server=""):
    found = [
        c
        for c in client.containers.list(all=True, filters={"label": "gpuspawner.user=" + user})
        if c.labels.get("gpuspawner.server") == server and c.name.startswith(hub.settings["prefix"])
    ]
    assert len(found) == 1, found
    return found[0]


def env_of(container) -> dict:
    return dict(line.split("=", 1) for line in container.attrs["Config"]["Env"])


def configured(client, hub, user, server=""):
    """The server's container, and the devices the toolkit's CLI was asked to attach to it."""
    container = container_of(client, hub, user, server)
    records = cli_records(container)
    assert all(r["result"] == "ok" for r in records), records
    return container, [device for r in records for device in r["devices"]]


@pytest.fixture
def gpu_hub(hub_factory, sim_host, monkeypatch):
    """A hub on the simulated host: it loads the simulated NVML and discovers the GPUs itself."""

    def make(**settings):
        for key, value in sim_host.env().items():
            monkeypatch.setenv(key, value)
        settings.setdefault("gpus", None)
        return hub_factory(**settings)

    return make


@pytest.fixture(scope="session")
def all_gpus_image(nvidia_docker, test_image):
    """The test image with ``ENV NVIDIA_VISIBLE_DEVICES=all``, as CUDA base images have it."""
    return build_all_gpus_image(nvidia_docker, test_image["demo"]["image"])


def build_all_gpus_image(client, base: str) -> str:
    tag = base.rsplit(":", 1)[0] + ":visible-all"
    dockerfile = (
        "FROM %s\nENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility\n"
        % base
    )
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    return tag


def catalog(test_image, all_image):
    return dict(test_image, all={"image": all_image, "display_name": "CUDA-style image"})


def test_one_gpu_spawn_gets_exactly_its_gpu(gpu_hub, nvidia_docker, sim_host):
    hub = gpu_hub(gpu_mode="device-request")
    hub.create_user("ada")
    response = hub.spawn("ada", options={"gpus": 1})
    assert response.status_code in (201, 202), response.text
    hub.wait_ready("ada")
    container, attached = configured(nvidia_docker, hub, "ada")
    (request,) = container.attrs["HostConfig"]["DeviceRequests"]
    (uuid,) = request["DeviceIDs"]
    assert uuid in sim_host.allocatable()  # discovered through the simulated NVML
    assert (
        container.labels["gpuspawner.gpus"] == uuid == env_of(container)["NVIDIA_VISIBLE_DEVICES"]
    )
    assert attached == [uuid]  # the hook asked for exactly this GPU
    seen = nvml_inside(container)
    assert seen == {"devices": [uuid], "driver": "550.54.15"}


def test_two_gpus_and_a_mig_instance_exactly(gpu_hub, nvidia_docker, sim_host):
    hub = gpu_hub(gpu_mode="device-request", gpu_quota=2)
    hub.create_user("bo")
    assert hub.spawn("bo", options={"gpus": 2}).status_code in (201, 202)
    hub.wait_ready("bo")
    container, attached = configured(nvidia_docker, hub, "bo")
    held = container.labels["gpuspawner.gpus"].split(",")
    assert len(set(held)) == 2 and set(held) <= set(sim_host.allocatable())
    assert container.attrs["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == held
    assert sorted(attached) == sorted(held)
    assert sorted(nvml_inside(container)["devices"]) == sorted(held)
    hub.stop_server("bo")

    # a host whose only GPU is in MIG mode: the hub hands out MIG instances by their UUIDs
    sim_host.write(simstate.default_inventory(sim_host.name, count=1, mig_index=0))
    migs = sim_host.allocatable()
    assert len(migs) == 3 and all(m.startswith("MIG-") for m in migs)
    mig_hub = gpu_hub(gpu_mode="device-request")
    mig_hub.create_user("cy")
    assert mig_hub.spawn("cy", options={"gpus": 1}).status_code in (201, 202)
    mig_hub.wait_ready("cy")
    container, attached = configured(nvidia_docker, mig_hub, "cy")
    (mig,) = container.attrs["HostConfig"]["DeviceRequests"][0]["DeviceIDs"]
    assert mig in migs and attached == [mig]
    assert nvml_inside(container)["devices"] == [mig]  # its parent shows only this instance


def test_zero_gpu_servers_see_no_gpu_even_from_an_image_saying_all(
    gpu_hub, nvidia_docker, sim_host, test_image, all_gpus_image
):
    hub = gpu_hub(gpu_mode="device-request", images=catalog(test_image, all_gpus_image))
    hub.create_user("dee")
    for server, image in (("", "demo"), ("cuda", "all")):
        assert hub.spawn("dee", server, {"gpus": 0, "image": image}).status_code in (201, 202)
    for server in ("", "cuda"):
        hub.wait_ready("dee", server)
        container = container_of(nvidia_docker, hub, "dee", server)
        assert not container.attrs["HostConfig"].get("DeviceRequests")
        assert env_of(container)["NVIDIA_VISIBLE_DEVICES"] == "void"
        assert cli_records(container) == []  # the hook never configured a device
        assert nvml_inside(container) == {"error": "NVMLError_LibraryNotFound"}
    # the same image started by hand with a GPU does get one: the probe can tell
    gpu = sim_host.allocatable()[0]
    probe = nvidia_docker.containers.run(
        all_gpus_image,
        "sleep 60",
        detach=True,
        remove=True,
        name="%s-probe" % hub.settings["prefix"],
        device_requests=[{"Driver": "nvidia", "DeviceIDs": [gpu], "Capabilities": [["gpu"]]}],
    )
    try:
        assert nvml_inside(probe)["devices"] == [gpu]
    finally:
        probe.remove(force=True)


def test_a_host_without_a_loaded_driver_refuses_gpu_spawns_and_frees_them(
    gpu_hub, nvidia_docker, sim_host
):
    gpus = [
        {"uuid": u, "name": "NVIDIA A100-SXM4-80GB", "memory_mib": 81920}
        for u in sim_host.allocatable()
    ]
    sim_host.set_system(init_error=simstate.DRIVER_NOT_LOADED)  # NVML, and so the CLI, fail
    hub = gpu_hub(gpu_mode="device-request", gpus=gpus)
    hub.create_user("eve")
    refused = hub.spawn("eve", options={"gpus": 1})
    assert refused.status_code == 503, refused.text
    message = refused.json()["message"]
    assert "cannot attach GPUs" in message
    assert "nvidia-container-cli: initialization error: nvml error: driver not loaded" in message
    assert "cannot attach GPUs: the NVIDIA driver is not loaded on this host" in message
    form = hub.spawn_form(hub.login("eve"), "eve")
    assert "10 of 10 GPUs free on this hub. You hold no GPU." in form


# ---- runtime-env mode: nvidia-container-runtime as the engine's default runtime ----


@pytest.fixture(scope="session")
def runtime_engine(nvidia_docker, test_image):
    """A second engine whose default runtime is NVIDIA's (tools/gpuhost/nvidia-engine.sh),
    holding the test image; returns (docker client, DOCKER_HOST)."""
    import docker

    script = simstate.Path(__file__).resolve().parents[2] / "tools" / "gpuhost" / "nvidia-engine.sh"
    started = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True)
    if started.returncode != 0:
        pytest.fail("the nvidia-runtime engine did not start: " + started.stderr)
    host = started.stdout.strip().splitlines()[-1]
    client = docker.DockerClient(base_url=host)
    assert client.info()["DefaultRuntime"] == "nvidia"
    image = test_image["demo"]["image"]
    wanted = nvidia_docker.images.get(image).id
    try:
        have = client.images.get(image).id
    except docker.errors.ImageNotFound:
        have = None
    if have != wanted:
        subprocess.run(
            "docker save %s | DOCKER_HOST=%s docker load -q" % (image, host),
            shell=True,
            check=True,
            capture_output=True,
        )
    repository = image.rsplit(":", 1)[0]
    client.images.get(image).tag(repository, "second")
    all_image = build_all_gpus_image(client, image)
    yield client, host, all_image
    client.close()


def test_runtime_env_mode_on_nvidias_runtime(
    gpu_hub, runtime_engine, sim_host, test_image, monkeypatch
):
    client, host, all_image = runtime_engine
    monkeypatch.setenv("DOCKER_HOST", host)
    hub = gpu_hub(gpu_mode="runtime-env", gpu_quota=2, images=catalog(test_image, all_image))
    try:
        hub.create_user("fox")
        assert hub.spawn("fox", "one", {"gpus": 1}).status_code in (201, 202)
        assert hub.spawn("fox", "two", {"gpus": 1, "image": "all"}).status_code in (201, 202)
        assert hub.spawn("fox", "none", {"gpus": 0, "image": "all"}).status_code in (201, 202)
        held = set()
        for server in ("one", "two"):
            hub.wait_ready("fox", server)
            container, attached = configured(client, hub, "fox", server)
            assert not container.attrs["HostConfig"].get("DeviceRequests")  # the runtime did it
            uuid = env_of(container)["NVIDIA_VISIBLE_DEVICES"]
            assert uuid in sim_host.allocatable() and attached == [uuid]
            assert nvml_inside(container)["devices"] == [uuid]
            held.add(uuid)
        assert len(held) == 2
        hub.wait_ready("fox", "none")
        container = container_of(client, hub, "fox", "none")
        assert env_of(container)["NVIDIA_VISIBLE_DEVICES"] == "void"
        assert cli_records(container) == []
        assert nvml_inside(container) == {"error": "NVMLError_LibraryNotFound"}
    finally:
        hub.stop()
        for container in client.containers.list(all=True, filters={"name": hub.settings["prefix"]}):
            container.remove(force=True)
