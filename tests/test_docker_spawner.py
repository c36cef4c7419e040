"""The spawner's own calls against the real Docker engine, without a hub process."""

import docker
import pytest
from traitlets.config import Config

from gpuspawner.docker import GPUDockerSpawner
from gpuspawner.lifecycle.shared import reset_shared_state
from gpuspawner.testing.spawners import hubless_docker_spawner
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
    return hubless_docker_spawner(config, user, server)


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


# --- hub identity and the engine's GPU support (pure) ---

from gpuspawner.docker.host import gpu_support_from  # noqa: E402
from gpuspawner.docker.spawner import (  # noqa: E402
    database_identity,
    holder_of,
    holdings_from_containers,
    leftover_containers,
)


def test_the_engine_without_nvidias_device_driver_cannot_attach_gpus():
    said = 'could not select device driver "nvidia" with capabilities: [[gpu]]'
    support = gpu_support_from(said, ["runc"])
    assert support.attachable is False
    assert "cannot attach GPUs" in support.reason() and said in support.log_text()
    assert gpu_support_from(None, ["nvidia", "runc"]).attachable is True
    unknown = gpu_support_from("nvidia-container-cli: initialization error: driver not loaded")
    assert unknown.attachable is None


def container(user_id, hub_id=None, state="running", gpus="GPU-1", prefix="hub", name=None):
    labels = {
        "gpuspawner.user": "user%s" % user_id,
        "gpuspawner.user-id": str(user_id),
        "gpuspawner.hub": prefix,
        "gpuspawner.server": "",
        "gpuspawner.gpus": gpus,
    }
    if hub_id:
        labels["gpuspawner.hub-id"] = hub_id
    return {
        "Id": "c-%s-%s" % (user_id, hub_id),
        "State": state,
        "Labels": labels,
        "Names": ["/" + (name or "%s-user%s" % (prefix, user_id))],
        "Created": 0,
    }


def test_another_hubs_user_ids_are_not_this_hubs_even_under_the_same_prefix():
    mine, theirs, legacy = container(1, "a"), container(1, "b"), container(2)
    assert holder_of(mine["Labels"], "a") == "hub#1"
    assert holder_of(legacy["Labels"], "a") == "hub#2"  # labelled before hub ids: this hub's
    assert holder_of(theirs["Labels"], "a") == "hub@b#1"
    held = holdings_from_containers([mine, theirs, legacy], (), "a")
    assert [h.user for h in held] == ["hub#1", "hub@b#1", "hub#2"]  # all three GPUs are taken
    ended = [container(3, "b", state="exited"), container(4, "a", state="exited")]
    assert leftover_containers(ended, "hub", 100.0, 10.0, hub_id="a") == ["c-4-a"]


def test_the_hub_identity_comes_from_its_database_without_credentials():
    assert database_identity("sqlite:///jupyterhub.sqlite", "/srv/a") == database_identity(
        "sqlite:////srv/a/jupyterhub.sqlite", "/elsewhere"
    )
    assert database_identity("sqlite:///jupyterhub.sqlite", "/srv/a") != database_identity(
        "sqlite:///jupyterhub.sqlite", "/srv/b"
    )
    assert database_identity("postgresql://hub:one@db/hub", "/") == database_identity(
        "postgresql://hub:two@db/hub", "/"
    )
