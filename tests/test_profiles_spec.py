"""A course profile's limits and volumes on the container DockerSpawner builds (pure)."""

from dataclasses import replace

from gpuspawner.docker.spec import (
    ContainerRequest,
    ProfileLimits,
    extend_create_kwargs,
    profile_host_config,
)

REQUEST = ContainerRequest(
    labels={"gpuspawner.user": "ann"},
    gpu_env={"NVIDIA_VISIBLE_DEVICES": "void"},
    workspace_volume="ws-ann",
    workspace_path="/home/jovyan/work",
)
PARENT = {
    "image": "org/pt:2.9",
    "volumes": ["/data/cs231n"],
    "host_config": {
        "Binds": ["old-data:/data/cs231n:rw", "keep:/keep:ro"],
        "Memory": 2 * 1024**3,
        "MemorySwap": 3 * 1024**3,
        "CpuPeriod": 100_000,
        "CpuQuota": 50_000,
        "ShmSize": 64 * 1024**2,  # the admin's extra_host_config
    },
}
LAB = ProfileLimits(
    cpu_limit=2.5,
    mem_limit=8 * 1024**3,
    shm_size=1024**3,
    volumes=(("cs231n-data", "/data/cs231n", True), ("scratch-cs231n", "/scratch", False)),
)


def test_the_profile_replaces_limits_and_adds_its_volumes():
    host = extend_create_kwargs(PARENT, replace(REQUEST, profile=LAB))["host_config"]
    assert host["NanoCpus"] == 2_500_000_000
    assert "CpuPeriod" not in host and "CpuQuota" not in host  # the engine refuses both
    assert host["Memory"] == 8 * 1024**3
    assert host["MemorySwap"] == 8 * 1024**3  # below the new memory: raised to it
    assert host["ShmSize"] == 1024**3  # over the admin's extra
    assert host["Binds"] == [
        "keep:/keep:ro",
        "ws-ann:/home/jovyan/work:rw",
        "cs231n-data:/data/cs231n:ro",
        "scratch-cs231n:/scratch:rw",
    ]
    create = extend_create_kwargs(PARENT, replace(REQUEST, profile=LAB))
    assert create["volumes"] == ["/data/cs231n", "/home/jovyan/work", "/scratch"]
    assert host["Privileged"] is False  # the locks still apply after the profile


def test_no_profile_leaves_dockerspawners_limits():
    host = extend_create_kwargs(PARENT, REQUEST)["host_config"]
    assert (host["Memory"], host["CpuQuota"], host["ShmSize"]) == (
        2 * 1024**3,
        50_000,
        64 * 1024**2,
    )
    assert "NanoCpus" not in host
    assert host["Binds"] == [
        "old-data:/data/cs231n:rw",
        "keep:/keep:ro",
        "ws-ann:/home/jovyan/work:rw",
    ]


def test_a_profile_setting_only_some_limits():
    host = profile_host_config({"Memory": 1, "MemorySwap": -1}, ProfileLimits(mem_limit=1024))
    assert host == {"Memory": 1024, "MemorySwap": -1, "Binds": []}
    assert profile_host_config({"CpuQuota": 1}, ProfileLimits()) == {"CpuQuota": 1, "Binds": []}
