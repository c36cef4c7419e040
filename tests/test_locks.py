"""Each key of the admin's engine extras that is locked, and what stays allowed (pure)."""

import pytest

from gpuspawner.policy.locks import host_config_violations, pod_violations

LOCKED_HOST_CONFIG = [
    {"devices": ["/dev/nvidia0:/dev/nvidia0:rwm"]},
    {"devices": ["/dev/null:/dev/nvidia1"]},
    {"devices": [{"PathOnHost": "/dev/nvidiactl", "PathInContainer": "/dev/ctl"}]},
    {"cap_add": ["SYS_ADMIN"]},
    {"cap_add": ["NET_ADMIN"]},
    {"pid_mode": "host"},
    {"ipc_mode": "host"},
    {"network_mode": "host"},
    {"network_mode": "container:other-users-server"},
    {"userns_mode": "host"},
    {"uts_mode": "host"},
    {"cgroupns": "host"},
    {"privileged": True},
    {"security_opt": ["no-new-privileges:false"]},
    {"security_opt": ["seccomp=unconfined"]},
    {"security_opt": ["apparmor=unconfined"]},
    {"device_requests": [{"Driver": "nvidia", "Count": -1, "Capabilities": [["gpu"]]}]},
    {"device_cgroup_rules": ["c 195:* rmw"]},
    {"runtime": "nvidia"},
    {"volumes_from": ["other-users-server"]},
]
ALLOWED_HOST_CONFIG = [
    {},
    {"devices": ["/dev/fuse:/dev/fuse"]},
    {"network_mode": "hub-net"},
    {"ipc_mode": "private"},
    {"security_opt": ["apparmor=docker-default"]},
    {
        "ulimits": [{"name": "memlock", "soft": -1, "hard": -1}],
        "sysctls": {"net.core.somaxconn": "1024"},
    },
]


@pytest.mark.parametrize("extra", LOCKED_HOST_CONFIG, ids=lambda e: "-".join(map(str, e.items())))
def test_each_locked_host_config_key_is_refused(extra):
    (sentence,) = host_config_violations(extra)
    assert next(iter(extra)) in sentence


@pytest.mark.parametrize("extra", ALLOWED_HOST_CONFIG)
def test_harmless_host_config_passes(extra):
    assert host_config_violations(extra) == []


LOCKED_CONTAINER = [
    {"securityContext": {"privileged": True}},
    {"securityContext": {"allowPrivilegeEscalation": True}},
    {"securityContext": {"runAsUser": 0}},
    {"securityContext": {"runAsNonRoot": False}},
    {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}},
    {"resources": {"limits": {"nvidia.com/gpu": "8"}}},
    {"resources": {"requests": {"nvidia.com/mig-1g.10gb": "1"}}},
    {"env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]},
]
LOCKED_POD = [
    {"hostPID": True},
    {"hostIPC": True},
    {"hostNetwork": True},
    {"securityContext": {"runAsUser": 0}},
    {"volumes": [{"name": "dev", "hostPath": {"path": "/dev"}}]},
    {"containers": [{"name": "sidecar", "securityContext": {"privileged": True}}]},
    {"initContainers": [{"name": "init", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
]


@pytest.mark.parametrize("extra", LOCKED_CONTAINER, ids=str)
def test_each_locked_container_key_is_refused(extra):
    assert len(pod_violations(extra, {})) == 1
    assert len(pod_violations({}, {}, extra_containers=[dict(extra, name="x")])) == 1
    assert len(pod_violations({}, {}, init_containers=[dict(extra, name="x")])) == 1


@pytest.mark.parametrize("extra", LOCKED_POD, ids=str)
def test_each_locked_pod_key_is_refused(extra):
    assert len(pod_violations({}, extra)) == 1


def test_harmless_pod_extras_pass():
    container = {
        "resources": {"limits": {"memory": "4Gi", "ephemeral-storage": "10Gi"}},
        "securityContext": {"readOnlyRootFilesystem": True, "runAsUser": 1000},
        "env": [{"name": "HF_HOME", "value": "/home/jovyan/work/hf"}],
    }
    pod = {
        "hostPID": False,
        "dnsPolicy": "ClusterFirst",
        "priorityClassName": "low",
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}],
    }
    assert pod_violations(container, pod) == []
