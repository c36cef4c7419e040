"""A course profile on Kubernetes: its limits, /dev/shm and claims reach KubeGPUSpawner's
pod (built offline, then created on the real API server, which validates and stores it)."""

import json
import types

import pytest
from traitlets import TraitError
from traitlets.config import Config

from gpuspawner.kube.objects import api_dict
from gpuspawner.testing import kube_cluster

CATALOG = {"demo": {"image": "gpuspawner/singleuser:offline", "display_name": "Demo"}}
PROFILES = {
    "lab": {
        "image": "demo",
        "cpu_limit": 0.5,
        "mem_limit": "1G",
        "shm_size": "256M",
        "volumes": [
            {"source": "course-data", "path": "/data/course"},
            {"source": "scratch-{group}", "path": "/scratch", "read_only": False},
        ],
        "environment": {"COURSE": "cs101"},
        "groups": ["cs101"],
    },
    "mig": {"image": "demo", "mig": "1g.10gb"},
    "slot": {"image": "demo", "shared": True},
}


def make(config: Config, groups=("cs101",)):
    from gpuspawner.kube import KubeGPUSpawner

    user = types.SimpleNamespace(
        name="stu", id=7, url="/user/stu/", escaped_name="stu",
        groups=[types.SimpleNamespace(name=g) for g in groups],
    )  # fmt: skip
    orm = types.SimpleNamespace(user_options={}, server=None, name="")
    spawner = KubeGPUSpawner(_mock=True, user=user, orm_spawner=orm, config=config)
    spawner.api_token = "token"
    return spawner


def config(profiles=PROFILES) -> Config:
    c = Config()
    c.KubeGPUSpawner.images = CATALOG
    c.KubeGPUSpawner.profiles = profiles
    c.KubeGPUSpawner.cpu_limit = 2.0
    c.KubeGPUSpawner.cpu_guarantee = 1.0
    c.KubeGPUSpawner.mem_limit = "4G"
    c.KubeGPUSpawner.mem_guarantee = "2G"
    c.KubeGPUSpawner.image_pull_policy = "IfNotPresent"
    c.KubeGPUSpawner.storage_pvc_ensure = False
    return c


async def profile_pod(options) -> dict:
    spawner = make(config())
    spawner.user_options = options
    spawner.spawn_choice()
    await spawner.load_user_options()
    if spawner.choice.gpu_count:
        spawner.held_gpus = spawner.requested_gpus(spawner.choice.gpu_count)
    pod = api_dict(await spawner.get_pod_manifest())
    pod["_env"] = spawner.get_env()
    return pod


def server(pod: dict) -> dict:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return container


async def test_the_profiles_limits_shm_and_claims_reach_the_pod(offline_kubeconfig):
    pod = await profile_pod({"profile": "lab"})
    container = server(pod)
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi"}
    # kubespawner's guarantees were above the profile's limits: lowered to them
    assert container["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}
    assert volumes["profile-volume-0"]["persistentVolumeClaim"] == {
        "claimName": "course-data", "readOnly": True,
    }  # fmt: skip
    assert volumes["profile-volume-1"]["persistentVolumeClaim"] == {
        "claimName": "scratch-cs101", "readOnly": False,
    }  # fmt: skip
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/data/course"] == {
        "name": "profile-volume-0", "mountPath": "/data/course", "readOnly": True,
    }  # fmt: skip
    assert mounts["/scratch"]["readOnly"] is False
    assert pod["_env"]["COURSE"] == "cs101" and pod["_env"]["GPUSPAWNER_PROFILE"] == "lab"


async def test_a_mig_profile_asks_for_its_mig_resource(offline_kubeconfig):
    pod = await profile_pod({"profile": "mig"})
    assert server(pod)["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "1"


async def test_a_shared_slot_profile_asks_for_the_shared_resource_counted_one_nth(
    offline_kubeconfig,
):
    pod = await profile_pod({"profile": "slot"})
    limits = server(pod)["resources"]["limits"]
    assert limits["nvidia.com/gpu.shared"] == "1" and "nvidia.com/gpu" not in limits
    assert pod["metadata"]["annotations"]["gpuspawner.io/gpu-shared-by"] == "4"
    spawner = make(config(profiles={}))
    spawner.user_options = {"gpus": 1, "shared": True}
    spawner.spawn_choice()
    (slot,) = spawner.requested_gpus(1)
    assert (slot.resource, slot.shared_by) == ("nvidia.com/gpu.shared", 4)


async def test_a_shared_slot_on_a_hub_without_shared_resources_is_a_400(offline_kubeconfig):
    from gpuspawner.lifecycle.refusal import SpawnRefused

    c = config()
    c.KubeGPUSpawner.shared_gpu_resources = {}
    spawner = make(c)
    with pytest.raises(SpawnRefused, match="This hub has no shared GPUs") as refused:
        spawner.choose({"profile": "slot"})
    assert refused.value.status_code == 400
    with pytest.raises(SpawnRefused, match="The profile 'lab' gives no GPU, not 1 GPU: pick"):
        spawner.choose({"profile": "lab", "gpus": 1})


async def test_a_host_path_volume_is_refused_on_kubernetes(offline_kubeconfig):
    bad = {"p": {"volumes": [{"source": "/srv/data", "path": "/data"}]}}
    with pytest.raises(TraitError, match="is a host path; on KubeGPUSpawner a volume's source"):
        make(config(bad))


@pytest.mark.kubernetes
async def test_the_api_server_stores_the_profiles_pod(offline_kubeconfig, tmp_path):
    if kube_cluster.missing_binaries():
        pytest.skip("needs the control plane binaries: run `bash scripts/setup-kube.sh`")
    pod = await profile_pod({"profile": "lab"})
    pod.pop("_env")
    pod["metadata"]["namespace"] = "default"
    cluster = kube_cluster.start_cluster(tmp_path / "cluster")
    try:
        cluster.wait_for(lambda: cluster._sa_ready("default"), "the default service account", 60)
        cluster.kubectl("create", "-f", "-", input=json.dumps(pod))
        stored = cluster.get_json("pod", pod["metadata"]["name"], "-n", "default")
    finally:
        cluster.stop()
    container = server(stored)
    assert container["resources"] == {
        "limits": {"cpu": "500m", "memory": "1Gi"},
        "requests": {"cpu": "500m", "memory": "1Gi"},
    }
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/data/course"]["readOnly"] is True
    assert "readOnly" not in mounts["/scratch"]  # false: the API server leaves it out
    volumes = {v["name"]: v for v in stored["spec"]["volumes"]}
    assert volumes["profile-volume-0"]["persistentVolumeClaim"] == {
        "claimName": "course-data", "readOnly": True,
    }  # fmt: skip
