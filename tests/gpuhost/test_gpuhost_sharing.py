"""Shared GPUs and close multi-GPU grants on the GPU host made of software: the real Docker
engine with NVIDIA's container toolkit, the stand-in nvidia-container-cli and the simulated
NVML (tools/gpuhost); inside each container the image's own pynvml says what it was given.

The slot tests drive the spawner's own lifecycle (reserve, create, start) against the engine
without a hub process; the topology test runs a real hub that discovers the simulated
host's GPUs and where they sit with NVML.
"""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import simstate
from gpuhost_helpers import cli_records, nvml_inside

from gpuspawner.docker import GPUDockerSpawner
from gpuspawner.lifecycle.refusal import SpawnRefused
from gpuspawner.lifecycle.shared import reset_shared_state
from gpuspawner.testing.spawners import hubless_docker_spawner

pytestmark = pytest.mark.docker

PREFIX = "gpstshare"


def env_of(container) -> dict:
    return dict(line.split("=", 1) for line in container.attrs["Config"]["Env"])


@pytest.fixture
def servers(nvidia_docker, test_image, sim_host):
    """make(user, server, **settings) -> a spawner of one hub process on ``sim_host``'s GPUs
    (declared by UUID, as a hub in a container declares them); start(spawner) creates and
    starts its container with the engine. Everything is removed afterwards."""
    made = []
    inventory = [
        {"uuid": g.uuid, "name": g.name, "memory_mib": g.memory_total // 2**20}
        for g in sim_host.gpus
        if not g.mig
    ]
    reset_shared_state()  # one fresh hub process for the test

    def make(user: str, server: str = "", **settings) -> GPUDockerSpawner:
        from traitlets.config import Config

        config = Config()
        config.GPUDockerSpawner.images = {"demo": {"image": test_image["demo"]["image"]}}
        config.GPUDockerSpawner.inventory = inventory
        config.GPUDockerSpawner.prefix = PREFIX
        config.GPUDockerSpawner.workspace_volume_template = PREFIX + "-workspace-{username}"
        config.GPUDockerSpawner.pull_policy = "never"
        config.GPUDockerSpawner.cmd = ["sh", "-c", "sleep 600", "server"]  # no hub to reach
        for key, value in settings.items():
            setattr(config.GPUDockerSpawner, key, value)
        spawner = hubless_docker_spawner(config, user, server)
        spawner.choice = spawner.choose({"gpus": 1})
        spawner.image = spawner.choice.image.image
        made.append(spawner)
        return spawner

    async def start(spawner: GPUDockerSpawner):
        created = await spawner.create_object()
        container = nvidia_docker.containers.get(created["Id"])
        container.start()
        container.reload()
        return container

    make.start = start
    yield make
    for container in nvidia_docker.containers.list(all=True, filters={"name": PREFIX}):
        container.remove(force=True)
    for volume in nvidia_docker.volumes.list(filters={"name": PREFIX}):
        volume.remove(force=True)
    reset_shared_state()


async def test_two_slots_of_one_shared_gpu_both_see_it_and_a_whole_gpu_is_another(
    servers, nvidia_docker, sim_host
):
    shared = sim_host.gpus[0].uuid
    settings = {"shared_gpus": {shared: 2}, "gpu_quota": 1}
    ada, bo = servers("ada", **settings), servers("bo", **settings)
    (ada_slot,) = await ada.reserve_gpus(1, shared=True)
    (bo_slot,) = await bo.reserve_gpus(1, shared=True)
    assert ada_slot.uuid == bo_slot.uuid == shared and ada_slot.shared_by == 2
    containers = [await servers.start(ada), await servers.start(bo)]
    for container in containers:
        env = env_of(container)
        assert env["NVIDIA_VISIBLE_DEVICES"] == shared and env["GPU_LIMIT"] == "1"
        assert env["GPUSPAWNER_GPU_SHARED_BY"] == "2"
        assert env["GPUSPAWNER_GPU_SHARE_MODE"] == "time-sliced"
        assert container.labels["gpuspawner.gpu-shared-by"] == "2"
        assert container.attrs["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == [shared]
        records = cli_records(container)
        assert [d for r in records for d in r["devices"]] == [shared], records
        assert nvml_inside(container)["devices"] == [shared]  # the one GPU, seen by both

    # the GPU is full: a third slot is refused for capacity, a whole GPU is another GPU
    cy = servers("cy", **settings)
    with pytest.raises(SpawnRefused) as refused:
        await cy.reserve_gpus(1, shared=True)
    assert refused.value.status_code == 503
    assert "No shared GPU slot is free: all 2 slots of the 1 shared GPU are taken" in str(
        refused.value.jupyterhub_message
    )
    (whole,) = await cy.reserve_gpus(1)
    assert whole.uuid != shared and not whole.is_shared
    container = await servers.start(cy)
    assert nvml_inside(container)["devices"] == [whole.uuid]
    assert "GPUSPAWNER_GPU_SHARED_BY" not in env_of(container)

    # a hub restart: the slots are rebuilt from the containers' labels, still full
    reset_shared_state()
    dee = servers("dee", **settings)
    with pytest.raises(SpawnRefused, match="No shared GPU slot is free"):
        await dee.reserve_gpus(1, shared=True)
    assert sorted(h.share for h in dee.pool.holdings) == [Fraction(1, 2)] * 2 + [1]


async def test_a_quota_of_one_is_one_whole_gpu_or_n_slots(servers, nvidia_docker, sim_host):
    shared = sim_host.gpus[0].uuid
    settings = {"shared_gpus": {shared: 2, sim_host.gpus[1].uuid: 2}, "gpu_quota": 1}
    first, second = servers("eve", "a", **settings), servers("eve", "b", **settings)
    (one,) = await first.reserve_gpus(1, shared=True)
    (two,) = await second.reserve_gpus(1, shared=True)
    assert one.uuid != two.uuid  # spread over the shared GPUs: the least held first
    for spawner, slot in ((first, one), (second, two)):
        assert nvml_inside(await servers.start(spawner))["devices"] == [slot.uuid]
    third = servers("eve", "c", **settings)
    with pytest.raises(SpawnRefused) as refused:
        await third.reserve_gpus(1, shared=True)
    assert refused.value.status_code == 403
    assert str(refused.value.jupyterhub_message).startswith(
        "You asked for 1/2 GPU (a shared slot), but your limit is 1 GPU at once"
    )
    whole = servers("eve", "d", **settings)
    with pytest.raises(SpawnRefused, match="you already hold 1/2 GPU \\(a shared slot\\)"):
        await whole.reserve_gpus(1)
    await first.release_gpus()
    await second.release_gpus()
    (gpu,) = await whole.reserve_gpus(1)  # both slots given back: room for a whole GPU
    assert not gpu.is_shared


TOPOLOGY_PROBE = """
import json
from gpuspawner import nvml
print(json.dumps(nvml.topology()))
"""


def test_nvml_topology_of_the_simulated_host(sim_host, run_nvml):
    sim_host.write(simstate.default_inventory(sim_host.name, mig_index=None))
    uuids = [g.uuid for g in sim_host.gpus]
    placed = json.loads(run_nvml(TOPOLOGY_PROBE).strip().splitlines()[-1])
    assert [placed[u]["switch"] for u in uuids] == ["gpu%d" % (2 * (i // 2)) for i in range(8)]
    assert [placed[u]["bridge"] for u in uuids] == ["gpu%d" % (4 * (i // 4)) for i in range(8)]
    assert {placed[u]["nvlink"] for u in uuids} == {"gpu0"}  # one NVLink group on this host

    # two NVLink islands of four; GPU 1 cannot say its PCIe ancestor: it is close to none
    state = sim_host.read()
    for gpu in state.gpus:
        gpu.nvlink = 1 + gpu.index // 4
    sim_host.write(state)
    sim_host.fail(uuids[1], "nvmlDeviceGetTopologyCommonAncestor", simstate.NOT_SUPPORTED)
    placed = json.loads(run_nvml(TOPOLOGY_PROBE).strip().splitlines()[-1])
    assert [placed[u]["nvlink"] for u in uuids] == ["gpu0"] * 4 + ["gpu4"] * 4
    assert [placed[u]["switch"] for u in uuids[:4]] == ["gpu0", "gpu1", "gpu2", "gpu2"]
    assert placed[uuids[1]]["numa"] == "gpu1" and placed[uuids[2]]["numa"] == "gpu0"


@pytest.fixture
def gpu_hub(hub_factory, sim_host, monkeypatch):
    """A hub on the simulated host: it loads the simulated NVML and discovers the GPUs itself."""

    def make(**settings):
        for key, value in sim_host.env().items():
            monkeypatch.setenv(key, value)
        settings.setdefault("gpus", None)
        return hub_factory(**settings)

    return make


def test_a_two_gpu_server_gets_a_pair_behind_one_pcie_switch(gpu_hub, nvidia_docker, sim_host):
    # no NVLink on this host: GPUs pair up on PCIe switches (0-1, 2-3, ...)
    state = simstate.default_inventory(sim_host.name, mig_index=None)
    for gpu in state.gpus:
        gpu.nvlink = 0
    sim_host.write(state)
    uuids = [g.uuid for g in sim_host.gpus]
    hub = gpu_hub(gpu_mode="device-request", gpu_quota=2)
    hub.create_user("ann")
    hub.create_user("bea")
    assert hub.spawn("ann", options={"gpus": 1}).status_code in (201, 202)
    hub.wait_ready("ann")
    assert hub.spawn("bea", options={"gpus": 2}).status_code in (201, 202)
    hub.wait_ready("bea")
    (bea,) = [
        c
        for c in nvidia_docker.containers.list(filters={"label": "gpuspawner.user=bea"})
        if c.name.startswith(hub.settings["prefix"])
    ]
    held = bea.labels["gpuspawner.gpus"].split(",")
    # ann holds GPU 0; the first two free would be 1 and 2 (two switches): 2 and 3 share one
    assert held == [uuids[2], uuids[3]]
    assert sorted(nvml_inside(bea)["devices"]) == sorted(held)
    assert "Allocated 2 GPUs (behind one PCIe switch)" in hub.log_tail(400)


def test_a_hub_gives_two_users_slots_of_one_shared_gpu(gpu_hub, nvidia_docker, sim_host):
    """Through a real hub: "shared": true asks for a slot; both servers see the one GPU."""
    shared = sim_host.gpus[0].uuid
    hub = gpu_hub(gpu_mode="device-request", shared_gpus={shared: 2})
    for user in ("fay", "gil"):
        hub.create_user(user)
        response = hub.spawn(user, options={"gpus": 1, "shared": True})
        assert response.status_code in (201, 202), response.text
        hub.wait_ready(user)
        (container,) = [
            c
            for c in nvidia_docker.containers.list(filters={"label": "gpuspawner.user=" + user})
            if c.name.startswith(hub.settings["prefix"])
        ]
        assert env_of(container)["GPUSPAWNER_GPU_SHARED_BY"] == "2"
        assert nvml_inside(container)["devices"] == [shared]
    hub.create_user("hal")
    response = hub.spawn("hal", options={"gpus": 1, "shared": True})
    assert response.status_code == 503, response.text
    assert "No shared GPU slot is free" in response.text
