"""The container spec built from a dataclass: checked by equality (pure)."""

from gpuspawner.docker.spec import ContainerRequest, container_spec
from gpuspawner.policy.merge import deep_merge

BASE = ContainerRequest(
    name="gpuspawner-alice",
    image="org/pt:2.9",
    command=["jupyterhub-singleuser"],
    env={"NVIDIA_VISIBLE_DEVICES": "GPU-1,GPU-2", "GPU_LIMIT": "2"},
    labels={"gpuspawner.user": "alice", "gpuspawner.gpus": "GPU-1,GPU-2"},
    port=8888,
    workspace_volume="gpuspawner-workspace-alice",
    workspace_path="/home/jovyan/work",
    gpu_uuids=("GPU-1", "GPU-2"),
    mem_limit=8 * 1024**3,
    cpu_limit=2.5,
)


def test_full_spec():
    assert container_spec(BASE) == {
        "image": "org/pt:2.9",
        "name": "gpuspawner-alice",
        "command": ["jupyterhub-singleuser"],
        "environment": {"NVIDIA_VISIBLE_DEVICES": "GPU-1,GPU-2", "GPU_LIMIT": "2"},
        "labels": {"gpuspawner.user": "alice", "gpuspawner.gpus": "GPU-1,GPU-2"},
        "ports": ["8888/tcp"],
        "volumes": ["/home/jovyan/work"],
        "user": "1000",
        "host_config": {
            "binds": {"gpuspawner-workspace-alice": {"bind": "/home/jovyan/work", "mode": "rw"}},
            "mounts": [],
            "shm_size": "2g",
            "network_mode": "bridge",
            "auto_remove": False,
            "device_requests": [
                {"Driver": "nvidia", "DeviceIDs": ["GPU-1", "GPU-2"], "Capabilities": [["gpu"]]}
            ],
            "port_bindings": {8888: ("127.0.0.1",)},
            "mem_limit": 8 * 1024**3,
            "cpu_period": 100_000,
            "cpu_quota": 250_000,
            "privileged": False,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"],
        },
    }


def replace(**changes):
    from dataclasses import replace as dc_replace

    return container_spec(dc_replace(BASE, **changes))


def test_no_gpu_no_device_request():
    assert replace(gpu_uuids=())["host_config"]["device_requests"] == []


def test_runtime_env_mode_has_no_device_request():
    assert replace(gpu_mode="runtime-env")["host_config"]["device_requests"] == []


def test_internal_ip_has_no_port_binding_and_limits_are_optional():
    host = replace(use_internal_ip=True, mem_limit=None, cpu_limit=None, network_name="hubnet")["host_config"]
    assert "port_bindings" not in host and "mem_limit" not in host and "cpu_quota" not in host
    assert host["network_mode"] == "hubnet"


def test_admin_extras_merge_but_cannot_unlock_security_or_gpus():
    spec = replace(
        extra_host_config={
            "privileged": True,
            "cap_drop": [],
            "device_requests": [{"Driver": "nvidia", "Count": -1}],
            "ulimits": [{"Name": "memlock", "Soft": -1, "Hard": -1}],
            "shm_size": "8g",
        },
        extra_create_kwargs={"user": "0", "environment": {"X": "1"}, "labels": {"evil": "1"}, "hostname": "box"},
    )
    host = spec["host_config"]
    assert host["privileged"] is False and host["cap_drop"] == ["ALL"]
    assert host["device_requests"][0]["DeviceIDs"] == ["GPU-1", "GPU-2"]
    assert host["ulimits"] == [{"Name": "memlock", "Soft": -1, "Hard": -1}]
    assert host["shm_size"] == "8g"
    assert spec["user"] == "1000" and spec["hostname"] == "box"
    assert spec["environment"] == BASE.env and spec["labels"] == BASE.labels


def test_extra_binds_kept_beside_workspace():
    spec = replace(binds={"/data": {"bind": "/data", "mode": "ro"}})
    assert spec["volumes"] == ["/data", "/home/jovyan/work"]
    assert spec["host_config"]["binds"]["/data"] == {"bind": "/data", "mode": "ro"}


def test_deep_merge():
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 3}, "e": 4}) == {"a": {"b": 3, "c": 2}, "d": 1, "e": 4}
