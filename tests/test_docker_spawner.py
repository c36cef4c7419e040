"""The spawner's own calls against the real Docker engine, without a hub process."""

import types
import zlib

import docker
import pytest
from traitlets.config import Config

from gpuspawner.docker import GPUDockerSpawner
from gpuspawner.lifecycle.shared import reset_shared_state
from gpuspawner.testing.hubprocess import FAKE_GPUS

pytestmark = pytest.mark.docker


# UUIDs of this module's own, so a hub test's containers never hold them
GPUS = [dict(gpu, uuid=gpu["uuid"].replace("GPU-", "GPU-unit")) for gpu in FAKE_GPUS]


def make_spawner(image: str, user: str, server: str = "", **settings) -> GPUDockerSpawner:
    """A spawner as the hub builds it, with the hub's objects reduced to what it reads."""
    config = Config()
    config.GPUDockerSpawner.images = {"demo": {"image": image}}
    config.GPUDockerSpawner.inventory = GPUS
    config.GPUDockerSpawner.prefix = "gpstunit"
    for key, value in settings.items():
        setattr(config.GPUDockerSpawner, key, value)
    reset_shared_state()  # each test is a fresh hub process
    return GPUDockerSpawner(
        user=types.SimpleNamespace(
            name=user, id=zlib.crc32(user.encode()), groups=[], url="/user/%s/" % user
        ),
        orm_spawner=types.SimpleNamespace(name=server, user_options={}, server=None),
        hub=types.SimpleNamespace(
            public_host="", api_url="http://172.17.0.1:8081/hub/api", base_url="/hub/"
        ),
        config=config,
    )


async def test_device_request_names_exactly_the_allocated_gpus(docker_client, test_image):
    spawner = make_spawner(test_image["demo"]["image"], "dora", gpu_quota=2)
    spawner.choice = spawner.choose({"gpus": 2})
    spawner.image = spawner.choice.image.image
    await spawner.reserve_gpus(2)
    created = await spawner.create_object()
    try:
        container = docker_client.containers.get(created["Id"])
        (request,) = container.attrs["HostConfig"]["DeviceRequests"]
        assert request["Driver"] == "nvidia" and request["Capabilities"] == [["gpu"]]
        assert request["DeviceIDs"] == [GPUS[0]["uuid"], GPUS[1]["uuid"]]
        env = dict(line.split("=", 1) for line in container.attrs["Config"]["Env"])
        assert env["NVIDIA_VISIBLE_DEVICES"] == ",".join(request["DeviceIDs"])
        assert env["GPU_LIMIT"] == "2"
        assert container.labels["gpuspawner.gpus"] == ",".join(request["DeviceIDs"])
        # no host here has these GPUs: NVIDIA's hook runs and its CLI refuses them
        # (scripts/setup-gpuhost.sh); the sentence says the host cannot attach them
        with pytest.raises(Exception) as error:
            container.start()
        refusal = spawner.explain_start_error(error.value)
        assert refusal is not None and refusal.status_code == 503
        assert "cannot attach GPUs: this host has no such GPU" in refusal.jupyterhub_message
        assert "nvidia-container-cli: device error: %s: unknown device" % GPUS[0]["uuid"] in (
            refusal.jupyterhub_message
        )
    finally:
        docker_client.containers.get(created["Id"]).remove(force=True)
        await spawner.release_gpus()
    assert {g.uuid for g in spawner.pool.free()} >= {g["uuid"] for g in GPUS[:2]}


async def test_pool_rebuilds_from_running_containers_labels(docker_client, test_image):
    image = test_image["demo"]["image"]
    held = docker_client.containers.run(
        image,
        "sleep 60",
        detach=True,
        name="gpstunit-rebuild",
        labels={
            "gpuspawner.user": "old-hub-user",
            "gpuspawner.server": "x",
            "gpuspawner.gpus": GPUS[0]["uuid"],
        },
    )
    exited = docker_client.containers.run(
        image,
        "true",
        detach=True,
        name="gpstunit-exited",
        labels={
            "gpuspawner.user": "gone",
            "gpuspawner.server": "",
            "gpuspawner.gpus": GPUS[1]["uuid"],
        },
    )
    exited.wait()
    try:
        spawner = make_spawner(image, "newcomer")
        (granted,) = await spawner.reserve_gpus(1)
        assert granted.uuid == GPUS[1]["uuid"]  # GPU 0 is held, GPU 1 is not
        assert granted.name == GPUS[1]["name"]
        holdings = spawner.pool.holdings
        assert spawner.holder in {h.user for h in holdings}  # the newcomer, by its holder key
        owners = {h.owner or h.user for h in holdings}  # the others by the names they record
        assert "old-hub-user" in owners
        assert "gone" not in owners  # an exited container holds nothing
    finally:
        held.remove(force=True)
        try:
            exited.remove(force=True)
        except docker.errors.NotFound:
            pass  # the rebuild removed it already: it ended and holds nothing
