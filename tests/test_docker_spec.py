"""This server's part added to the container DockerSpawner builds: checked by equality (pure)."""

from dataclasses import replace

import pytest

from gpuspawner.docker.spec import ContainerRequest, extend_create_kwargs, size_bytes
from gpuspawner.policy.merge import deep_merge

GPU_ENV = {
    "GPU_LIMIT": "2",
    "GPUSPAWNER_GPU_UUIDS": "GPU-1,GPU-2",
    "NVIDIA_VISIBLE_DEVICES": "GPU-1,GPU-2",
    "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
}
BASE = ContainerRequest(
    labels={"gpuspawner.user": "alice", "gpuspawner.gpus": "GPU-1,GPU-2"},
    gpu_env=GPU_ENV,
    workspace_volume="gpuspawner-workspace-alice",
    workspace_path="/home/jovyan/work",
    gpu_uuids=("GPU-1", "GPU-2"),
)
# what DockerSpawner.create_object hands to create_container (its HostConfig in API names)
PARENT = {
    "image": "org/pt:2.9",
    "environment": {"JUPYTERHUB_API_TOKEN": "t", **GPU_ENV},
    "volumes": [],
    "name": "gpuspawner-alice",
    "command": ["jupyterhub-singleuser"],
    "ports": {"8888/tcp": None},
    "host_config": {
        "AutoRemove": True,
        "Binds": [],
        "Links": [],
        "Mounts": [],
        "PortBindings": {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
        "NetworkMode": "bridge",
        "Memory": 8 * 1024**3,
        "CpuPeriod": 100_000,
        "CpuQuota": 250_000,
    },
}


def test_this_servers_part_is_added_to_what_dockerspawner_built():
    assert extend_create_kwargs(PARENT, BASE) == {
        "image": "org/pt:2.9",
        "environment": {"JUPYTERHUB_API_TOKEN": "t", **GPU_ENV},
        "volumes": ["/home/jovyan/work"],
        "name": "gpuspawner-alice",
        "command": ["jupyterhub-singleuser"],
        "ports": {"8888/tcp": None},
        "labels": {"gpuspawner.user": "alice", "gpuspawner.gpus": "GPU-1,GPU-2"},
        "user": "1000",
        "host_config": {
            "Binds": ["gpuspawner-workspace-alice:/home/jovyan/work:rw"],
            "Links": [],
            "Mounts": [],
            "PortBindings": {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
            "NetworkMode": "bridge",
            "Memory": 8 * 1024**3,
            "CpuPeriod": 100_000,
            "CpuQuota": 250_000,
            "ShmSize": 2 * 1024**3,
            "DeviceRequests": [
                {
                    "Driver": "nvidia",
                    "Count": 0,
                    "DeviceIDs": ["GPU-1", "GPU-2"],
                    "Capabilities": [["gpu"]],
                    "Options": {},
                }
            ],
            "Privileged": False,
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "AutoRemove": False,
        },
    }


def test_no_gpu_or_runtime_env_mode_has_no_device_request():
    assert (
        extend_create_kwargs(PARENT, replace(BASE, gpu_uuids=()))["host_config"]["DeviceRequests"]
        == []
    )
    spec = extend_create_kwargs(PARENT, replace(BASE, gpu_mode="runtime-env"))
    assert spec["host_config"]["DeviceRequests"] == []


def test_admin_extras_are_kept_but_cannot_unlock_security_or_gpus():
    parent = deep_merge(
        PARENT,
        {
            "labels": {"team": "vision", "gpuspawner.user": "mallory"},
            "environment": {"X": "1", "NVIDIA_VISIBLE_DEVICES": "all", "GPU_LIMIT": "8"},
            "user": "0",
            "hostname": "box",
            "host_config": {
                "Privileged": True,
                "CapDrop": [],
                "Links": ["db:db"],
                "DeviceRequests": [{"Driver": "nvidia", "Count": -1}],
                "Ulimits": [{"Name": "memlock", "Soft": -1, "Hard": -1}],
                "ShmSize": 8 * 1024**3,
            },
        },
    )
    spec = extend_create_kwargs(parent, BASE)
    host = spec["host_config"]
    assert (
        host["Privileged"] is False and host["CapDrop"] == ["ALL"] and host["AutoRemove"] is False
    )
    assert (
        host["DeviceRequests"][0]["DeviceIDs"] == ["GPU-1", "GPU-2"]
        and len(host["DeviceRequests"]) == 1
    )
    assert host["Links"] == ["db:db"] and host["Ulimits"] == [
        {"Name": "memlock", "Soft": -1, "Hard": -1}
    ]
    assert host["ShmSize"] == 8 * 1024**3  # the admin's /dev/shm size wins over the default
    assert spec["user"] == "1000" and spec["hostname"] == "box"
    assert spec["labels"] == {
        "team": "vision",
        "gpuspawner.user": "alice",
        "gpuspawner.gpus": "GPU-1,GPU-2",
    }
    assert spec["environment"] == {"JUPYTERHUB_API_TOKEN": "t", "X": "1", **GPU_ENV}


def test_extra_binds_kept_beside_workspace_and_environment_lines_read():
    parent = deep_merge(
        PARENT, {"volumes": ["/data"], "host_config": {"Binds": ["/data:/data:ro"]}}
    )
    parent["environment"] = ["A=1", "B=x=y"]
    spec = extend_create_kwargs(parent, BASE)
    assert spec["volumes"] == ["/data", "/home/jovyan/work"]
    assert spec["host_config"]["Binds"] == [
        "/data:/data:ro",
        "gpuspawner-workspace-alice:/home/jovyan/work:rw",
    ]
    assert spec["environment"] == {"A": "1", "B": "x=y", **GPU_ENV}


def test_deep_merge():
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 3}, "e": 4}) == {
        "a": {"b": 3, "c": 2},
        "d": 1,
        "e": 4,
    }


def test_sizes_as_docker_reads_them():
    from docker.utils import parse_bytes

    for size in ("2g", "512m", "1024k", "1000000", "64M", "1.5g", "3b"):
        assert size_bytes(size) == parse_bytes(size), size
    with pytest.raises(ValueError):
        size_bytes("two gigs")
