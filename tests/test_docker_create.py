"""GPUDockerSpawner extends the container DockerSpawner.create_object builds (no engine).

The engine call is replaced by a recorder, so this runs against any dockerspawner in the
supported range (scripts/lower-bounds.sh runs it with the lowest).
"""

import asyncio
import types

import pytest
from dockerspawner import DockerSpawner
from traitlets.config import Config

from gpuspawner.docker import GPUDockerSpawner
from gpuspawner.lifecycle.shared import reset_shared_state
from gpuspawner.policy.inventory import Gpu

GPUS = [
    {"uuid": "GPU-create0", "name": "NVIDIA A100"},
    {"uuid": "GPU-create1", "name": "NVIDIA A100"},
]


@pytest.fixture
def engine_calls(monkeypatch):
    """What the spawner asks the engine, recorded instead of sent."""
    calls = []

    def docker(self, method, *args, **kwargs):
        calls.append((method, kwargs))
        future = asyncio.get_running_loop().create_future()
        future.set_result({"Id": "recorded"})
        return future

    monkeypatch.setattr(DockerSpawner, "docker", docker)
    # DockerSpawner keeps one client per class: this test's, asked for no engine version,
    # must not outlive it
    monkeypatch.setattr(GPUDockerSpawner, "_client", None)
    reset_shared_state()
    yield calls
    reset_shared_state()


def make_spawner(**settings) -> GPUDockerSpawner:
    config = Config()
    config.GPUDockerSpawner.images = {"demo": {"image": "org/demo:1.0"}}
    config.GPUDockerSpawner.inventory = GPUS
    config.GPUDockerSpawner.cmd = ["jupyterhub-singleuser"]
    config.GPUDockerSpawner.client_kwargs = {"version": "1.41"}  # no engine asked for its version
    for key, value in settings.items():
        setattr(config.GPUDockerSpawner, key, value)
    return GPUDockerSpawner(
        user=types.SimpleNamespace(name="cleo", id=7, groups=[], url="/user/cleo/"),
        orm_spawner=types.SimpleNamespace(name="", user_options={}, server=None),
        hub=types.SimpleNamespace(
            public_host="", api_url="http://172.17.0.1:8081/hub/api", base_url="/hub/"
        ),
        config=config,
    )


async def create(spawner, gpus=1) -> dict:
    spawner.choice = spawner.choose({"gpus": gpus})
    spawner.image = spawner.choice.image.image
    spawner.held_gpus = tuple(Gpu(**gpu) for gpu in GPUS[:gpus])
    await spawner.create_object()


async def test_dockerspawners_settings_and_the_admins_extras_are_kept(engine_calls):
    spawner = make_spawner(
        links={"db": "db"},
        cpu_limit=2.0,
        mem_limit="4G",
        extra_host_config={
            "cpu_period": 50_000,
            "ulimits": [{"Name": "memlock", "Soft": -1, "Hard": -1}],
        },
        extra_create_kwargs={"labels": {"team": "vision"}, "environment": {"HF_HOME": "/cache"}},
    )
    await create(spawner)
    ((method, kwargs),) = engine_calls
    host = kwargs["host_config"]
    assert method == "create_container"
    assert host["Links"] == ["db:db"]
    assert (host["CpuPeriod"], host["CpuQuota"]) == (
        50_000,
        100_000,
    )  # 2 CPUs with the admin's period
    assert host["Memory"] == 4 * 1024**3
    assert host["Ulimits"] == [{"Name": "memlock", "Soft": -1, "Hard": -1}]
    assert (
        host["Privileged"] is False and host["CapDrop"] == ["ALL"] and host["AutoRemove"] is False
    )
    assert host["DeviceRequests"] == [{"Driver": "nvidia", "Count": 0, "DeviceIDs": ["GPU-create0"],
                                       "Capabilities": [["gpu"]], "Options": {}}]  # fmt: skip
    assert "gpuspawner-workspace-cleo:/home/jovyan/work:rw" in host["Binds"]
    assert (
        kwargs["labels"]["team"] == "vision"
        and kwargs["labels"]["gpuspawner.gpus"] == "GPU-create0"
    )
    env = kwargs["environment"]
    assert env["HF_HOME"] == "/cache" and env["NVIDIA_VISIBLE_DEVICES"] == "GPU-create0"
    assert env["GPU_LIMIT"] == "1" and kwargs["user"] == "1000"


async def test_a_server_without_gpu_sees_none_whatever_the_extras_say(engine_calls):
    spawner = make_spawner(extra_create_kwargs={"environment": {"NVIDIA_VISIBLE_DEVICES": "all"}})
    await create(spawner, gpus=0)
    ((_, kwargs),) = engine_calls
    assert kwargs["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert kwargs["host_config"]["DeviceRequests"] == []


async def test_check_allowed_outside_a_spawn_does_not_raise(engine_calls):
    spawner = make_spawner()
    assert await spawner.check_allowed("org/demo:1.0") == "org/demo:1.0"
