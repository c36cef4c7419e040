"""KubeGPUSpawner against a real control plane (etcd, kube-apiserver, scheduler,
controller-manager) with fake GPU nodes played by kwok.

The spawner is driven in-process, as the hub drives it (apply_user_options, start,
progress, poll, stop): pods on kwok nodes run nothing, so a hub could never reach
their servers. Everything up to "pod Running with an IP and the right spec" is real:
admission, validation, ResourceQuota, PVC binding and scheduling are Kubernetes' own.
"""

import asyncio
import json
import os
import secrets
import time
import zlib
from fractions import Fraction
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from gpuspawner.lifecycle.base import apply_gpu_options
from gpuspawner.lifecycle.refusal import SpawnRefused
from gpuspawner.lifecycle.shared import reset_shared_state
from gpuspawner.testing import kube_cluster

pytestmark = pytest.mark.kubernetes

REQUIRE = os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1"
IMAGES = {
    "demo": {"image": "gpuspawner/singleuser:offline", "display_name": "Demo"},
    "demo-mig": {"image": "gpuspawner/singleuser:offline", "display_name": "Demo on a MIG slice"},
    "demo-h100": {"image": "gpuspawner/singleuser:offline", "display_name": "Demo on an H100"},
    "demo-cuda": {
        "image": "gpuspawner/singleuser:offline",
        "display_name": "Demo for CUDA 12.8",
        "cuda": "12.8",
    },
}
PROFILES = {
    "demo-mig": {"resource": "nvidia.com/mig-1g.10gb"},
    "demo-h100": {"product": "NVIDIA-H100-80GB-HBM3"},
    "demo-cuda": {"product": "NVIDIA-L4"},
}
STORAGE_CLASS = "gpuspawner-test"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    missing = kube_cluster.missing_binaries()
    if missing:
        reason = (
            "needs the control plane binaries %s: run `bash scripts/setup-kube.sh`"
            % ", ".join(missing)
        )
        if REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = kube_cluster.start_cluster(tmp_path_factory.mktemp("kube") / "cluster")
    # workspace disks for the PV controller to bind claims to (no provisioner here)
    cluster.apply(
        *[
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": "disk-%02d" % i},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": STORAGE_CLASS,
                    "hostPath": {"path": "/tmp/gpuspawner-disk-%02d" % i},
                },
            }
            for i in range(24)
        ]
    )
    # the client read $KUBECONFIG when it was imported; point it at this cluster
    from kubernetes_asyncio.config import kube_config

    os.environ["KUBECONFIG"] = kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(cluster.kubeconfig)
    yield cluster
    cluster.stop()
    for name in ("kube-apiserver", "kube-scheduler", "kwok"):
        # shown by pytest only when a test failed
        print("---- %s ----\n%s" % (name, cluster.log_tail(name, 15)))


@pytest.fixture
def namespace(cluster):
    name = "t-" + secrets.token_hex(3)
    cluster.kubectl("create", "namespace", name)
    cluster.wait_for(lambda: cluster._sa_ready(name), "the default service account of " + name, 30)
    return name


@pytest.fixture
async def make_spawner(cluster, namespace, tmp_path):
    from gpuspawner.kube import KubeGPUSpawner

    spawners = []

    def make(user="alice", server="", groups=(), **config):
        settings = {
            "namespace": namespace,
            "images": IMAGES,
            "gpu_profiles": PROFILES,
            "storage_class": STORAGE_CLASS,
            "storage_capacity": "1Gi",
            "gpu_wait_timeout": 30,
            "start_timeout": 60,
            "k8s_api_request_timeout": 10,
            "usage_db_url": "sqlite:///%s" % (tmp_path / "usage.sqlite"),
        }
        settings.update(config)
        orm = SimpleNamespace(user_options={}, server=None, name=server)
        person = SimpleNamespace(
            name=user,
            id=zlib.crc32(user.encode()),
            url="/user/%s/" % user,
            escaped_name=user,
            groups=[SimpleNamespace(name=g) for g in groups],
        )
        spawner = KubeGPUSpawner(_mock=True, user=person, orm_spawner=orm, **settings)
        spawners.append(spawner)
        return spawner

    yield make
    for spawner in spawners:
        if (
            spawner.gpu_count
            or spawner.pod_reflector
            and spawner.pod_reflector.pods.get("%s/%s" % (spawner.namespace, spawner.pod_name))
        ):
            await spawner.stop(now=True)
    await reset_hub_process()


async def reset_hub_process():
    """Forget everything a hub process keeps in memory (what a hub restart does)."""
    from gpuspawner.kube import KubeGPUSpawner

    await KubeGPUSpawner._stop_all_reflectors()
    reset_shared_state()


async def spawn(spawner, **options):
    """What the hub does: set user_options, call apply_user_options, then start."""
    spawner.user_options = dict(options)
    apply_gpu_options(spawner, options)
    return await asyncio.wait_for(spawner.start(), 90)


def messages(spawner) -> list[str]:
    return [entry["message"] for entry in spawner._progress_log]


def pod_of(cluster, spawner) -> dict:
    return cluster.get_json("pod", spawner.pod_name, "-n", spawner.namespace)


def env_of(pod) -> dict:
    return {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}


async def test_gpu_server_runs_on_a_gpu_node(cluster, make_spawner):
    spawner = make_spawner(gpu_quota=2)
    url = await spawn(spawner, image="demo", gpus=2)
    pod = pod_of(cluster, spawner)
    assert pod["status"]["phase"] == "Running"
    assert url == "http://%s:8888" % pod["status"]["podIP"]
    assert pod["spec"]["nodeName"] in ("a100-0", "a100-1")
    container = pod["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "2"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in pod["spec"][
        "volumes"
    ]
    env = env_of(pod)
    assert env["GPU_LIMIT"] == "2" and "NVIDIA_VISIBLE_DEVICES" not in env
    assert pod["metadata"]["labels"]["gpuspawner.io/gpus"] == "2"
    assert (
        messages(spawner)[-1]
        == "Pod running on node %s; waiting for JupyterLab to answer" % pod["spec"]["nodeName"]
    )
    assert await spawner.poll() is None
    # the GPUs are typed by their node's product: the hub's gauge and the ledger's intervals
    # say A100, so GPU-type weights apply to this server's usage
    gauge = {"gpu_type": kube_cluster.A100, "state": "allocated"}
    assert REGISTRY.get_sample_value("gpuspawner_gpus", gauge) == 2
    free = {"gpu_type": kube_cluster.A100, "state": "free"}
    assert REGISTRY.get_sample_value("gpuspawner_gpus", free) == 16 - 2  # two 8-GPU A100 nodes
    # the MIG node's slices are a type of their own, not whole A100s
    slices = {"gpu_type": kube_cluster.A100 + " MIG 1g.10gb", "state": "free"}
    assert REGISTRY.get_sample_value("gpuspawner_gpus", slices) == 7
    names = {i.gpu_name for i in spawner.accounting.ledger.open_intervals() if i.user == "alice"}
    assert names == {kube_cluster.A100}

    await spawner.stop(now=True)
    assert (
        cluster.kubectl(
            "get", "pod", spawner.pod_name, "-n", spawner.namespace, check=False
        ).returncode
        != 0
    )
    assert spawner.gpu_count == 0


async def test_the_charts_settings_reach_the_pod_on_the_api_server(cluster, make_spawner):
    """What zero-to-jupyterhub's hub config sets: the init container blocking the cloud
    metadata server (root, privileged, NET_ADMIN), the user-pool tolerations, the
    node-purpose affinity, a named scheduler; a secret's value; the pod hook."""
    from kubernetes_asyncio import client as k8s

    block = k8s.V1Container(
        name="block-cloud-metadata",
        image="gpuspawner/singleuser:offline",
        command=["iptables", "--append", "OUTPUT", "--destination", "169.254.169.254",
                 "--jump", "DROP"],  # fmt: skip
        security_context=k8s.V1SecurityContext(
            privileged=True, run_as_user=0, capabilities=k8s.V1Capabilities(add=["NET_ADMIN"])
        ),
    )
    user_pool = [
        {"key": key, "operator": "Equal", "value": "user", "effect": "NoSchedule"}
        for key in ("hub.jupyter.org/dedicated", "hub.jupyter.org_dedicated")
    ]
    purpose = {"key": "hub.jupyter.org/node-purpose", "operator": "In", "values": ["user"]}
    preferred = [{"weight": 100, "preference": {"matchExpressions": [purpose]}}]
    secret = {"secretKeyRef": {"name": "hf", "key": "token", "optional": True}}

    def hook(spawner, pod):
        pod.metadata.labels["hooked"] = "yes"
        return pod

    spawner = make_spawner(
        user="zed",
        init_containers=[block],
        tolerations=user_pool,
        node_affinity_preferred=preferred,
        scheduler_name="default-scheduler",
        environment={"HF_TOKEN": {"valueFrom": secret}},
        modify_pod_hook=hook,
    )
    await spawn(spawner, image="demo", gpus=1)
    pod = pod_of(cluster, spawner)
    spec = pod["spec"]
    (init,) = spec["initContainers"]
    assert init["name"] == "block-cloud-metadata" and init["command"][0] == "iptables"
    assert init["securityContext"] == {
        "privileged": True,
        "runAsUser": 0,
        "capabilities": {"add": ["NET_ADMIN"]},
    }
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert all(t in spec["tolerations"] for t in user_pool + [gpu])
    assert spec["affinity"]["nodeAffinity"] == {
        "preferredDuringSchedulingIgnoredDuringExecution": preferred
    }
    assert spec["schedulerName"] == "default-scheduler" and spec["restartPolicy"] == "OnFailure"
    assert {"name": "HF_TOKEN", "valueFrom": secret} in spec["containers"][0]["env"]
    assert pod["metadata"]["labels"]["hooked"] == "yes"
    assert pod["status"]["phase"] == "Running" and spec["nodeName"] in ("a100-0", "a100-1")


async def test_mig_slice_lands_on_the_mig_node(cluster, make_spawner):
    spawner = make_spawner(user="mia")
    await spawn(spawner, image="demo-mig", gpus=1)
    pod = pod_of(cluster, spawner)
    assert pod["spec"]["nodeName"] == "mig-0"
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-1g.10gb": "1"}


async def test_cpu_only_server_has_no_gpu_resources_and_void(cluster, make_spawner):
    spawner = make_spawner(user="carl")
    await spawn(spawner, image="demo", gpus=0)
    pod = pod_of(cluster, spawner)
    limits = pod["spec"]["containers"][0]["resources"]
    assert not any("nvidia.com" in name for kind in limits.values() for name in kind)
    assert env_of(pod)["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert env_of(pod)["GPU_LIMIT"] == "0"
    assert "tolerations" not in pod["spec"] or not any(
        t.get("key") == "nvidia.com/gpu" for t in pod["spec"]["tolerations"]
    )
    assert pod["spec"]["nodeName"] == "cpu-0"  # GPU nodes are tainted


async def test_quota_across_named_servers_and_after_a_hub_restart(cluster, make_spawner):
    first = make_spawner(user="quinn", server="train")
    await spawn(first, image="demo", gpus=1)
    second = make_spawner(user="quinn", server="eval")
    with pytest.raises(SpawnRefused) as refused:
        await spawn(second, image="demo", gpus=1)
    assert refused.value.status_code == 403
    assert refused.value.jupyterhub_message.startswith(
        "You asked for 1 GPU, but your limit is 1 GPU at once (the default for every user)"
        " and you already hold 1 GPU on server 'train' (pod %s, on node a100-" % first.pod_name
    )
    # a GPU request is never inherited: the next spawn without options has none
    await spawn(second)
    assert env_of(pod_of(cluster, second))["GPU_LIMIT"] == "0"
    await second.stop(now=True)

    # a new hub process knows the count from the cluster alone
    await reset_hub_process()
    third = make_spawner(user="quinn", server="eval")
    with pytest.raises(SpawnRefused, match="already hold 1 GPU on server 'train'"):
        await spawn(third, image="demo", gpus=1)
    staff = make_spawner(
        user="quinn", server="eval", groups=["staff"], gpu_quota_groups={"staff": 3}
    )
    await spawn(staff, image="demo", gpus=2)
    assert (await staff.gpu_availability()).held == 3


async def test_a_pod_deleted_outside_the_hub_no_longer_counts_at_the_next_spawn(
    cluster, make_spawner
):
    """The holdings read from the pod cache are reused for a while (a second), but a
    refusal is judged on a fresh reading: a pod deleted with kubectl a moment after that
    reading frees the user's quota for the next spawn, before any poll of its server."""
    first = make_spawner(user="kim", server="train")
    await spawn(first, image="demo", gpus=1)
    await first.sync_holdings(max_age=0)  # a reading that still sees the pod, just now
    cluster.kubectl(
        "delete", "pod", first.pod_name, "-n", first.namespace, "--grace-period=0", "--force"
    )
    key = "%s/%s" % (first.namespace, first.pod_name)
    for _ in range(100):  # the reflector's watch runs on this event loop
        if key not in first.pod_reflector.pods:
            break
        await asyncio.sleep(0.1)
    assert key not in first.pod_reflector.pods
    assert first.pool.held_by(first.holder)  # not polled: the hub's pool still has it
    second = make_spawner(user="kim", server="eval")
    second.holdings_max_age = 60  # the reading is reused for any spawn, but not for a refusal
    await spawn(second, image="demo", gpus=1)
    assert env_of(pod_of(cluster, second))["GPU_LIMIT"] == "1"


async def test_form_counts_the_gpus_the_server_would_ask_for(cluster, make_spawner):
    """On a mixed cluster the form's free count is of this server's placement: the A100
    nodes' 16 whole GPUs for the default resource, not the MIG node's 7 slices as well; an
    image placed on the slices counts the slices; a GPU type no node has, none."""
    running = make_spawner(user="ada", gpu_quota=2)
    await spawn(running, image="demo", gpus=2)

    whole = await make_spawner(user="ben").gpu_availability()
    assert (whole.free, whole.total) == (14, 16)
    on_slices = make_spawner(user="cy")
    apply_gpu_options(on_slices, {"image": "demo-mig"})
    slices = await on_slices.gpu_availability()
    assert (slices.free, slices.total) == (7, 7)
    h100 = make_spawner(user="dee", gpu_product="NVIDIA-H100-80GB-HBM3")
    elsewhere = await h100.gpu_availability()
    assert (elsewhere.free, elsewhere.total) == (0, 0)


async def test_the_capacity_check_judges_the_pod_its_profile_makes(cluster, make_spawner):
    """The pod the capacity check judges is the one that is created: a kubespawner profile's
    overrides apply before the check (a CPU guarantee no node has is refused at once, no pod
    made), and they are applied once per start (a callable override is called once)."""
    calls, wanted = [], [512.0]

    def cores(spawner):
        calls.append(spawner.pod_name)
        return wanted[0]

    profile = {"display_name": "Cores", "default": True, "kubespawner_override": {
        "cpu_guarantee": cores}}  # fmt: skip
    spawner = make_spawner(user="ivy", gpu_quota=1, profile_list=[profile])
    with pytest.raises(SpawnRefused, match="No node of this cluster has 512 CPU cores"):
        await spawn(spawner, image="demo", gpus=1)
    assert calls == [spawner.pod_name]
    pods = cluster.kubectl("get", "pods", "-n", spawner.namespace, "-o", "name").stdout
    assert "pod/%s" % spawner.pod_name not in pods.split()
    calls.clear()
    wanted[0] = 2.0
    await spawn(spawner, image="demo", gpus=1)
    assert calls == [spawner.pod_name]
    resources = pod_of(cluster, spawner)["spec"]["containers"][0]["resources"]
    assert resources["requests"]["cpu"] == "2"
    await spawner.stop(now=True)


async def test_a_time_sliced_gpu_is_a_slot_the_quota_counts_as_one_nth(cluster, make_spawner):
    """A server asking for nvidia.com/gpu.shared (NVIDIA's time-sliced replicas) gets a pod
    with that resource and holds a slot of a GPU shared by the node's nvidia.com/gpu.replicas
    (4, over the setting's 2): the quota counts it as 1/4, so two fit a quota of 1 GPU and a
    whole GPU more does not."""
    cluster.add_node("shared-0", gpus=8, resource="nvidia.com/gpu.shared",
                     product=kube_cluster.A100, taints=[kube_cluster.GPU_TAINT],
                     labels={"nvidia.com/gpu.replicas": "4"})  # fmt: skip
    try:
        cluster.wait_for(lambda: kube_cluster.nodes_ready(cluster) == 5, "shared-0 Ready", 60)
        settings = {
            "gpu_quota": 1,
            "gpu_profiles": dict(PROFILES, demo={"resource": "nvidia.com/gpu.shared"}),
            "shared_gpu_resources": {"nvidia.com/gpu.shared": 2},
        }
        first = make_spawner(user="sam", server="a", **settings)
        await spawn(first, image="demo", gpus=1)
        pod = pod_of(cluster, first)
        assert pod["spec"]["nodeName"] == "shared-0"
        resources = pod["spec"]["containers"][0]["resources"]
        assert resources["limits"] == {"nvidia.com/gpu.shared": "1"}
        assert pod["metadata"]["annotations"]["gpuspawner.io/gpu-shared-by"] == "4"
        (gpu,) = first.held_gpus
        assert (gpu.resource, gpu.shared_by) == ("nvidia.com/gpu.shared", 4)
        assert first.pool.holding(first.holder, "a").share == Fraction(1, 4)

        second = make_spawner(user="sam", server="b", **settings)
        await spawn(second, image="demo", gpus=1)  # 2/4 of a GPU: within the quota of 1
        # a new hub process reads the slots back from the pods
        await reset_hub_process()
        whole = make_spawner(user="sam", server="c", **settings)
        with pytest.raises(SpawnRefused) as refused:
            await spawn(whole, image="demo-h100", gpus=1)
        assert refused.value.reason == "gpu-quota"
        shares = sorted(h.share for h in whole.pool.held_by(whole.holder))
        assert shares == [Fraction(1, 4), Fraction(1, 4)]
    finally:
        cluster.kubectl("delete", "node", "shared-0", "--wait=false")


async def test_unsatisfiable_requests_are_refused_at_once(cluster, make_spawner):
    spawner = make_spawner(user="uma", gpu_quota=16, max_gpus_per_server=16)
    began = time.monotonic()
    with pytest.raises(SpawnRefused) as refused:
        await spawn(spawner, image="demo", gpus=9)
    assert time.monotonic() - began < 5
    assert refused.value.status_code == 400
    assert refused.value.jupyterhub_message == (
        "No node of this cluster has 9 nvidia.com/gpu: the most one node has is 8 (a100-0). Ask"
        " for at most 8."
    )
    with pytest.raises(SpawnRefused, match="has the GPU type NVIDIA-H100-80GB-HBM3"):
        await spawn(make_spawner(user="uma"), image="demo-h100", gpus=1)
    pods = cluster.get_json("pods", "-n", spawner.namespace)["items"]
    assert pods == []


@pytest.fixture
def all_gpus_taken(cluster):
    """Pods of another tenant that hold every nvidia.com/gpu of the cluster."""
    cluster.kubectl("create", "namespace", "tenant")
    cluster.wait_for(lambda: cluster._sa_ready("tenant"), "the tenant's service account", 30)
    hogs = [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "hog-%s" % node, "namespace": "tenant"},
            "spec": {
                "nodeName": node,
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                "containers": [
                    {
                        "name": "train",
                        "image": "train:1",
                        "resources": {"limits": {"nvidia.com/gpu": "8"}},
                    }
                ],
            },
        }
        for node in ("a100-0", "a100-1")
    ]
    cluster.apply(*hogs)
    yield
    cluster.kubectl("delete", "namespace", "tenant", "--wait=false")


async def test_all_gpus_taken_waits_with_reason_then_fails(cluster, make_spawner, all_gpus_taken):
    spawner = make_spawner(user="wanda", gpu_wait_timeout=4)
    began = time.monotonic()
    with pytest.raises(SpawnRefused) as refused:
        await spawn(spawner, image="demo", gpus=1)
    assert 4 <= time.monotonic() - began < 30
    assert refused.value.status_code == 503
    message = refused.value.jupyterhub_message
    assert message.startswith(
        "No room for this server was found within 4 s. All GPUs of the cluster are in use:"
    )
    assert "nodes have no free nvidia.com/gpu" in message and message.endswith(
        "start with fewer GPUs."
    )
    waiting = [m for m in messages(spawner) if m.startswith("Waiting for room")]
    assert waiting and "All GPUs of the cluster are in use" in waiting[0]
    # the pending pod is gone and the GPU is not counted any more
    cluster.wait_for(
        lambda: not cluster.get_json("pods", "-n", spawner.namespace)["items"],
        "the pending pod to go",
        30,
    )
    assert spawner.gpu_count == 0
    await spawn(make_spawner(user="wanda", server="cpu"), image="demo", gpus=0)


async def test_cluster_resource_quota_refusal_is_a_sentence(cluster, make_spawner):
    cluster.kubectl("create", "namespace", "q-bob")
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "course-cap", "namespace": "q-bob"},
            "spec": {"hard": {"requests.nvidia.com/gpu": "0"}},
        }
    )
    cluster.wait_for(
        lambda: (
            cluster.get_json("resourcequota", "course-cap", "-n", "q-bob")
            .get("status", {})
            .get("hard")
        ),
        "the quota's status",
        30,
    )
    settings = {
        "enable_user_namespaces": True,
        "user_namespace_template": "q-{username}",
        "storage_pvc_ensure": False,
    }
    spawner = make_spawner(user="bob", **settings)
    with pytest.raises(SpawnRefused) as refused:
        await spawn(spawner, image="demo", gpus=1)
    assert refused.value.status_code == 403
    assert refused.value.jupyterhub_message == (
        "The cluster refused this server: namespace q-bob may use at most 0 nvidia.com/gpu"
        " (ResourceQuota 'course-cap'), 0 are in use and this server asks for 1."
        " Stop a server holding GPUs, or ask an admin to raise the quota."
    )

    # a new namespace per user, with the spawner's own quota in it
    eve = make_spawner(user="eve", user_namespace_gpu_quota=True, gpu_quota=2, **settings)
    await spawn(eve, image="demo", gpus=2)
    quota = cluster.get_json("resourcequota", "gpuspawner-gpus", "-n", "q-eve")
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "2"
    assert pod_of(cluster, eve)["status"]["phase"] == "Running"
    # and one without a quota: the pod waits for the namespace's service account, not fails
    await spawn(make_spawner(user="fay", **settings), image="demo", gpus=1)
    assert cluster.get_json("pods", "-n", "q-fay")["items"][0]["status"]["phase"] == "Running"


async def test_workspace_claim_survives_stop_and_start(cluster, make_spawner):
    spawner = make_spawner(user="pat")
    await spawn(spawner, image="demo", gpus=0)
    claim = cluster.get_json("pvc", "gpuspawner-workspace-pat", "-n", spawner.namespace)
    assert claim["status"]["phase"] == "Bound"
    assert pod_of(cluster, spawner)["spec"]["volumes"][0] == {
        "name": "workspace",
        "persistentVolumeClaim": {"claimName": "gpuspawner-workspace-pat"},
    }
    await spawner.stop(now=True)
    spawner.clear_state()
    assert (
        cluster.get_json("pvc", "gpuspawner-workspace-pat", "-n", spawner.namespace)["metadata"][
            "uid"
        ]
        == (claim["metadata"]["uid"])
    )
    await spawn(spawner, image="demo", gpus=1)
    pod = pod_of(cluster, spawner)
    assert {"name": "workspace", "mountPath": "/home/jovyan/work"} in pod["spec"]["containers"][0][
        "volumeMounts"
    ]
    again = cluster.get_json("pvc", "gpuspawner-workspace-pat", "-n", spawner.namespace)
    assert again["metadata"]["uid"] == claim["metadata"]["uid"]
    assert json.dumps(again["spec"]["volumeName"]) == json.dumps(claim["spec"]["volumeName"])


async def test_hub_without_node_access_waits_then_fails_with_the_scheduler_reason(
    cluster, make_spawner, namespace
):
    """A hub allowed only its own namespace (z2jh's default Role) cannot list nodes: no
    fail-fast."""
    from kubernetes_asyncio.config import kube_config

    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "hub", "namespace": namespace},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "persistentvolumeclaims", "events"],
                    "verbs": ["get", "list", "watch", "create", "delete"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "hub", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hub"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "hub"}],
        },
    )
    from kubespawner import clients

    # kubespawner loads the client configuration once per process and shares one client
    # per event loop: switch the configuration to the hub's token and drop the clients
    await kube_config.load_kube_config(config_file=str(cluster.hub_kubeconfig))
    clients._client_cache.clear()
    try:
        spawner = make_spawner(
            user="nina", gpu_quota=16, max_gpus_per_server=16, gpu_wait_timeout=3
        )
        with pytest.raises(SpawnRefused) as refused:
            await spawn(spawner, image="demo", gpus=9)
        assert refused.value.status_code == 503
        assert refused.value.jupyterhub_message.startswith(
            "No room for this server was found within 3 s. All GPUs of the cluster are in use:"
        )
        await spawn(make_spawner(user="nina", server="small", gpu_quota=16), image="demo", gpus=1)
    finally:
        await kube_config.load_kube_config(config_file=str(cluster.kubeconfig))
        clients._client_cache.clear()


def driver_labels(cuda_version: str, driver: str) -> dict:
    """GPU feature discovery's labels for a driver (the current and the deprecated names)."""
    (major, minor), d = cuda_version.split("."), driver.split(".")
    return {
        "nvidia.com/cuda.runtime-version.major": major,
        "nvidia.com/cuda.runtime-version.minor": minor,
        "nvidia.com/cuda.runtime.major": major,
        "nvidia.com/cuda.runtime.minor": minor,
        "nvidia.com/cuda.driver-version.major": d[0],
        "nvidia.com/cuda.driver-version.minor": d[1],
        "nvidia.com/cuda.driver-version.revision": d[2],
        "nvidia.com/cuda.driver.major": d[0],
        "nvidia.com/cuda.driver.minor": d[1],
        "nvidia.com/cuda.driver.rev": d[2],
    }


@pytest.fixture
def l4_nodes(cluster):
    """Two L4 nodes: l4-old with 8 GPUs and a CUDA 11.8 driver, l4-new with 2 and CUDA 12.8.

    The scheduler prefers the emptier node, so only the affinity keeps servers off l4-old.
    """

    names = ("l4-old", "l4-new")
    cluster.add_node(
        "l4-old",
        gpus=8,
        product="NVIDIA-L4",
        taints=[kube_cluster.GPU_TAINT],
        labels=driver_labels("11.8", "520.61.05"),
    )
    cluster.add_node(
        "l4-new",
        gpus=2,
        product="NVIDIA-L4",
        taints=[kube_cluster.GPU_TAINT],
        labels=driver_labels("12.8", "570.124.06"),
    )
    cluster.wait_for(lambda: kube_cluster.nodes_ready(cluster) == 6, "the L4 nodes Ready", 90)
    reset_shared_state()  # the hub's cached node list predates them
    yield names
    cluster.kubectl("delete", "node", *names, "--wait=false")
    reset_shared_state()


async def test_cuda_image_is_steered_to_nodes_whose_driver_runs_it(cluster, l4_nodes, make_spawner):
    spawners = [make_spawner(user="cuda%d" % i) for i in range(2)]
    for spawner in spawners:
        await spawn(spawner, image="demo-cuda", gpus=1)
    for spawner in spawners:
        pod = pod_of(cluster, spawner)
        assert pod["status"]["phase"] == "Running"
        assert pod["spec"]["nodeName"] == "l4-new"
        terms = pod["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]["nodeSelectorTerms"]
        assert {
            "key": "nvidia.com/cuda.runtime-version.major",
            "operator": "Gt",
            "values": ["12"],
        } in (terms[1]["matchExpressions"])
        assert all(
            {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L4"]}
            in t["matchExpressions"]
            for t in terms
        )
    # an image without a CUDA version, or a CPU-only server, is not steered
    cpu = make_spawner(user="cuda-cpu")
    await spawn(cpu, image="demo-cuda", gpus=0)
    assert "affinity" not in pod_of(cluster, cpu)["spec"]


async def test_cuda_image_is_refused_when_no_node_can_run_it(cluster, l4_nodes, make_spawner):
    cluster.kubectl(
        "label",
        "node",
        "l4-new",
        "--overwrite",
        *("%s=%s" % item for item in driver_labels("11.8", "520.61.05").items()),
    )
    spawner = make_spawner(user="cudaold")
    began = time.monotonic()
    with pytest.raises(SpawnRefused) as refused:
        await spawn(spawner, image="demo-cuda", gpus=1)
    assert time.monotonic() - began < 5
    assert refused.value.status_code == 400
    assert refused.value.jupyterhub_message == (
        "No GPU node of this cluster has a driver for CUDA 12.8, which image 'demo-cuda' needs"
        " (the newest supports CUDA 11.8). Pick another image, or ask an admin to update the GPU"
        " nodes' drivers."
    )
    assert cluster.get_json("pods", "-n", spawner.namespace)["items"] == []
    # in strict mode too; and a server without GPUs starts from the same image
    with pytest.raises(
        SpawnRefused, match="No GPU node of this cluster has a driver for CUDA 12.8"
    ):
        await spawn(
            make_spawner(user="cudaold", cuda_compatibility="strict"), image="demo-cuda", gpus=1
        )
    cpu = make_spawner(user="cudaold", server="cpu")
    await spawn(cpu, image="demo-cuda", gpus=0)
    assert pod_of(cluster, cpu)["spec"]["nodeName"] == "cpu-0"


# --- hostile names, renames and the admin's extras (issue 14) ---


def gpus_allocated() -> float:
    from prometheus_client import REGISTRY

    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "gpuspawner_gpus"
        for sample in metric.samples
        if sample.labels.get("state") == "allocated"
    )


async def test_renamed_user_keeps_the_quota_and_leaves_no_open_interval(
    cluster, make_spawner, tmp_path
):
    from gpuspawner.usage.ledger import Ledger

    first = make_spawner(user="rita", server="a")
    await spawn(first, image="demo", gpus=1)
    assert pod_of(cluster, first)["metadata"]["labels"]["gpuspawner.io/user-id"] == str(
        first.user.id
    )
    first.user.name = "rita-renamed"  # PATCH /hub/api/users/rita {"name": ...}: the same user
    second = make_spawner(user="rita-renamed", server="b")
    second.user = first.user
    with pytest.raises(SpawnRefused) as refused:
        await spawn(second, image="demo", gpus=1)
    assert refused.value.status_code == 403 and "already hold 1 GPU on server 'a'" in str(
        refused.value
    )
    await reset_hub_process()  # a restarted hub still counts the renamed user's pod as theirs
    third = make_spawner(user="rita-renamed", server="b")
    third.user = first.user
    with pytest.raises(SpawnRefused, match="already hold 1 GPU on server 'a'"):
        await spawn(third, image="demo", gpus=1)
    await first.stop(now=True)
    ledger = Ledger("sqlite:///%s" % (tmp_path / "usage.sqlite"))
    assert [i for i in ledger.open_intervals() if i.user in ("rita", "rita-renamed")] == []
    assert {i.user for i in ledger.intervals()} <= {"rita", "rita-renamed"}
    assert gpus_allocated() == 0
    await spawn(third, image="demo", gpus=1)  # the GPU is free for the renamed user now


async def test_long_user_names_get_valid_pod_and_pvc_names(cluster, make_spawner):
    names = ["学" * 100, "a" * 255, "A.B--c_" * 30]
    spawners = [make_spawner(user=name, server="x" * 200) for name in names]
    for spawner in spawners:
        await spawn(spawner, image="demo", gpus=0)
        pod = pod_of(cluster, spawner)
        assert pod["status"]["phase"] == "Running"
        claim = pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
        assert len(claim) <= 63 and len(spawner.pod_name) <= 63
    assert len({s.pvc_name for s in spawners}) == len({s.pod_name for s in spawners}) == len(names)


@pytest.mark.parametrize(
    "extra",
    [
        {"extra_pod_config": {"hostPID": True}},
        {"extra_pod_config": {"hostIPC": True}},
        {"extra_pod_config": {"hostNetwork": True}},
        {"extra_container_config": {"securityContext": {"privileged": True}}},
        {"extra_container_config": {"securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}},
        {"extra_container_config": {"securityContext": {"allowPrivilegeEscalation": True}}},
        {"extra_container_config": {"securityContext": {"runAsUser": 0}}},
        {"extra_container_config": {"resources": {"limits": {"nvidia.com/gpu": "8"}}}},
    ],
    ids=lambda e: json.dumps(e)[:60],
)
async def test_unsafe_pod_extras_are_refused_unless_opted_out(cluster, make_spawner, extra):
    from traitlets import TraitError

    with pytest.raises(TraitError, match="allow_unsafe_pod_config"):
        make_spawner(user="pat", **extra)
    spawner = make_spawner(
        user="pat", allow_unsafe_pod_config=True, storage_pvc_ensure=False, **extra
    )
    await spawn(spawner, image="demo", gpus=0)
    spec = pod_of(cluster, spawner)["spec"]
    container = spec["containers"][0]
    for key, value in extra.get("extra_pod_config", {}).items():
        assert spec[key] == value  # passed on when opted out ...
    security = container["securityContext"]
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["runAsNonRoot"] is True and "nvidia.com/gpu" not in str(container["resources"])


async def test_deleted_user_disk_is_archived_and_a_new_user_of_that_name_gets_a_new_one(
    cluster, make_spawner
):
    first = make_spawner(user="dora")
    await spawn(first, image="demo", gpus=0)
    namespace, claim = first.namespace, first.pvc_name
    disk = cluster.get_json("pvc", claim, "-n", namespace)["spec"]["volumeName"]
    await first.stop(now=True)
    await first.delete_forever()  # what JupyterHub calls when the user is deleted
    cluster.wait_for(
        lambda: cluster.kubectl("get", "pvc", claim, "-n", namespace, check=False).returncode != 0,
        "the claim's removal",
        30,
    )
    kept = cluster.get_json("pv", disk)
    assert kept["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert kept["metadata"]["annotations"]["gpuspawner.io/archived-user"] == "dora"
    assert kept["metadata"]["labels"]["gpuspawner.io/archived-user-id"] == str(first.user.id)
    second = make_spawner(user="dora")  # a new person given the same name
    await spawn(second, image="demo", gpus=0)
    assert second.pvc_name == claim
    assert cluster.get_json("pvc", claim, "-n", namespace)["spec"]["volumeName"] != disk
    assert cluster.get_json("pv", disk)["status"]["phase"] == "Released"  # never bound again
