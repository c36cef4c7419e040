"""Pod and PVC specs built from dataclasses, and the cluster's words read back (pure)."""

import copy
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubespawner.objects import make_pod

from gpuspawner.kube.messages import explain_quota_rejection, explain_unschedulable
from gpuspawner.kube.nodes import PodNeeds, parse_quantity, unsatisfiable_reason
from gpuspawner.kube.objects import (
    GpuPlacement,
    PodRequest,
    PvcRequest,
    api_dict,
    cpu_quantity,
    docker_size_to_quantity,
    patch_model,
    pod_needs,
    pod_spec,
    pvc_spec,
)


def kubespawner_pod(**settings) -> dict:
    """The pod plain kubespawner builds (its pure make_pod), as the API's dict."""
    arguments = {
        "name": "jupyter-alice",
        "cmd": ["jupyterhub-singleuser"],
        "port": 8888,
        "image": "org/pt:2.9",
        "image_pull_policy": "IfNotPresent",
        "env": {"HF_TOKEN": "x", "GPU_LIMIT": "2"},
        "labels": {"component": "singleuser-server"},
        "annotations": {"hub.jupyter.org/username": "alice"},
        "uid": 1000,
        "gid": 100,
        "fs_gid": 100,
        "cpu_limit": 4.0,
        "cpu_guarantee": 0.5,
        "mem_limit": 8 * 1024**3,
    }
    arguments.update(settings)
    return api_dict(make_pod(**arguments))


KUBESPAWNER_POD = kubespawner_pod()
BASE = PodRequest(
    gpu_count=2,
    labels={"gpuspawner.io/gpus": "2"},
    annotations={"gpuspawner.io/gpu-resource": "nvidia.com/gpu"},
    workspace_pvc="gpuspawner-workspace-alice",
)


def test_kubespawners_pod_as_the_api_shows_it():
    assert KUBESPAWNER_POD == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "jupyter-alice",
            "labels": {"component": "singleuser-server"},
            "annotations": {"hub.jupyter.org/username": "alice"},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "args": ["jupyterhub-singleuser"],
                    "env": [
                        {"name": "GPU_LIMIT", "value": "2"},
                        {"name": "HF_TOKEN", "value": "x"},
                    ],
                    "image": "org/pt:2.9",
                    "imagePullPolicy": "IfNotPresent",
                    "name": "notebook",
                    "ports": [{"containerPort": 8888, "name": "notebook-port"}],
                    "resources": {
                        "limits": {"cpu": 4.0, "memory": 8 * 1024**3},
                        "requests": {"cpu": 0.5},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "runAsGroup": 100,
                        "runAsUser": 1000,
                    },
                    "volumeMounts": [],
                }
            ],
            "restartPolicy": "OnFailure",
            "securityContext": {"fsGroup": 100},
            "volumes": [],
        },
    }


def test_full_gpu_pod():
    expected = copy.deepcopy(KUBESPAWNER_POD)
    expected["metadata"]["labels"]["gpuspawner.io/gpus"] = "2"
    expected["metadata"]["annotations"]["gpuspawner.io/gpu-resource"] = "nvidia.com/gpu"
    spec = expected["spec"]
    spec["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    spec["volumes"] = [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": "gpuspawner-workspace-alice"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
    ]
    container = spec["containers"][0]
    container["resources"] = {
        "limits": {"cpu": "4.0", "memory": str(8 * 1024**3), "nvidia.com/gpu": "2"},
        "requests": {"cpu": "0.5", "nvidia.com/gpu": "2"},
    }
    container["volumeMounts"] = [
        {"name": "workspace", "mountPath": "/home/jovyan/work"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "runAsGroup": 100,
        "runAsUser": 1000,
        "privileged": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod_spec(KUBESPAWNER_POD, BASE) == expected
    assert KUBESPAWNER_POD == kubespawner_pod()  # the base is not changed


def test_zero_gpus_no_gpu_resources_no_tolerations_and_void():
    request = replace(BASE, gpu_count=0, placement=GpuPlacement(product="NVIDIA-A100-SXM4-80GB"))
    spec = pod_spec(KUBESPAWNER_POD, request)["spec"]
    resources = spec["containers"][0]["resources"]
    assert resources == {
        "limits": {"cpu": "4.0", "memory": str(8 * 1024**3)},
        "requests": {"cpu": "0.5"},
    }
    assert "tolerations" not in spec and "affinity" not in spec and "nodeSelector" not in spec
    assert spec["containers"][0]["env"][-1] == {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}


def test_gpu_pod_never_names_devices_itself():
    base = kubespawner_pod(env={"NVIDIA_VISIBLE_DEVICES": "all"})
    assert pod_spec(base, BASE)["spec"]["containers"][0]["env"] == []
    # without GPUs the entry is locked in place, whatever it was (a valueFrom too)
    secret = {"valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    base = kubespawner_pod(env={"A": "1", "NVIDIA_VISIBLE_DEVICES": dict(secret), "Z": "2"})
    env = pod_spec(base, replace(BASE, gpu_count=0))["spec"]["containers"][0]["env"]
    assert env == [
        {"name": "A", "value": "1"},
        {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"},
        {"name": "Z", "value": "2"},
    ]


def test_the_admins_env_is_merged_by_name_and_value_from_kept():
    secret = {"valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    base = kubespawner_pod(env={"BASE": "/data", "CACHE": "$(BASE)/c", "TOKEN": dict(secret)})
    extra = ({"name": "CACHE", "value": "/fast"}, {"name": "NEW", **secret})
    env = pod_spec(base, replace(BASE, extra_env=extra))["spec"]["containers"][0]["env"]
    # kubespawner's order (a $(VAR) after VAR), the admin's entries in place or appended
    assert env == [
        {"name": "BASE", "value": "/data"},
        {"name": "TOKEN", **secret},
        {"name": "CACHE", "value": "/fast"},
        {"name": "NEW", **secret},
    ]


def test_mig_resource_and_product_affinity_and_selector():
    placement = GpuPlacement(
        resource="nvidia.com/mig-1g.10gb",
        product="NVIDIA-A100-SXM4-80GB",
        node_selector={"pool": "mig"},
        tolerations=(
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
        ),
    )
    base = kubespawner_pod(node_selector={"zone": "a"})
    spec = pod_spec(base, replace(BASE, gpu_count=1, placement=placement))["spec"]
    resources = spec["containers"][0]["resources"]
    assert (
        resources["limits"]["nvidia.com/mig-1g.10gb"]
        == resources["requests"]["nvidia.com/mig-1g.10gb"]
        == "1"
    )
    assert "nvidia.com/gpu" not in resources["limits"]
    assert spec["nodeSelector"] == {"zone": "a", "pool": "mig"}
    assert spec["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    ]
    assert spec["affinity"] == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "nvidia.com/gpu.product",
                                "operator": "In",
                                "values": ["NVIDIA-A100-SXM4-80GB"],
                            }
                        ]
                    }
                ]
            }
        }
    }


USER_POOL = {"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "user",
             "effect": "NoSchedule"}  # fmt: skip
PURPOSE = {"key": "hub.jupyter.org/node-purpose", "operator": "In", "values": ["user"]}


def test_the_gpu_placement_is_added_to_kubespawners():
    preferred = {"weight": 100, "preference": {"matchExpressions": [PURPOSE]}}
    base = kubespawner_pod(
        tolerations=[USER_POOL],
        node_affinity_required=[{"matchExpressions": [PURPOSE]}, {"matchFields": [PURPOSE]}],
        node_affinity_preferred=[preferred],
    )
    placement = GpuPlacement(product="NVIDIA-L4")
    cuda = [[{"key": "c", "operator": "Gt", "values": ["1"]}], [{"key": "d", "operator": "In",
            "values": ["x"]}]]  # fmt: skip
    spec = pod_spec(base, replace(BASE, placement=placement, cuda_terms=cuda))["spec"]
    gpu = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert spec["tolerations"] == [USER_POOL, gpu]
    product = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L4"]}
    node_affinity = spec["affinity"]["nodeAffinity"]
    assert node_affinity["preferredDuringSchedulingIgnoredDuringExecution"] == [preferred]
    assert node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [
            {"matchExpressions": [PURPOSE, product, *cuda[0]]},
            {"matchExpressions": [PURPOSE, product, *cuda[1]]},
            {"matchFields": [PURPOSE], "matchExpressions": [product, *cuda[0]]},
            {"matchFields": [PURPOSE], "matchExpressions": [product, *cuda[1]]},
        ]
    }
    # a toleration kubespawner already has is not repeated
    again = pod_spec(kubespawner_pod(tolerations=[gpu]), BASE)["spec"]["tolerations"]
    assert again == [gpu]


def test_admin_extras_cannot_add_gpus_or_privilege():
    base = kubespawner_pod(
        extra_container_config={
            "securityContext": {
                "privileged": True,
                "allowPrivilegeEscalation": True,
                "readOnlyRootFilesystem": True,
                "runAsUser": 0,
            },
            "resources": {"limits": {"nvidia.com/gpu": "8", "example.com/fpga": "1"}},
        },
        extra_resource_limits={"amd.com/gpu": "1"},
        extra_pod_config={"hostIPC": False},
    )
    spec = pod_spec(base, replace(BASE, gpu_count=0))["spec"]
    container = spec["containers"][0]
    assert container["securityContext"] == {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 100,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"] == {"limits": {"example.com/fpga": "1"}, "requests": {}}
    assert spec["hostIPC"] is False and len(spec["containers"]) == 1


def test_kubespawners_other_containers_are_kept_as_they_are():
    root = {"privileged": True, "runAsUser": 0, "capabilities": {"add": ["NET_ADMIN"]}}
    init = {"name": "block-cloud-metadata", "image": "tools:1", "securityContext": root}
    sidecar = {"name": "sidecar", "image": "busybox:1"}
    base = kubespawner_pod(init_containers=[init], extra_containers=[sidecar])
    spec = pod_spec(base, BASE)["spec"]
    assert spec["initContainers"] == [init]
    assert spec["containers"][1] == sidecar
    assert "runAsNonRoot" not in spec["securityContext"]  # the init container runs as root


def test_kubespawners_pod_is_never_changed_and_what_is_kept_is_shared():
    """pod_spec changes nothing of kubespawner's pod, whatever the request touches (the
    capacity check and the model patch read it afterwards), and shares what it keeps, so
    patch_model finds those parts by identity."""
    from gpuspawner.kube.objects import ProfilePod

    init = {"name": "block-cloud-metadata", "image": "tools:1"}
    sidecar = {"name": "sidecar", "image": "busybox:1"}
    base = kubespawner_pod(
        init_containers=[init], extra_containers=[sidecar], node_selector={"zone": "a"},
        tolerations=[USER_POOL], node_affinity_required=[{"matchExpressions": [PURPOSE]}],
        volumes=[{"name": "dshm", "emptyDir": {"medium": "Memory"}}],
        volume_mounts=[{"name": "dshm", "mountPath": "/dev/shm"}],
    )  # fmt: skip
    before = copy.deepcopy(base)
    request = replace(
        BASE,
        shm_size="1Gi",
        placement=GpuPlacement(product="NVIDIA-A100-SXM4-80GB", node_selector={"pool": "a"}),
        cuda_terms=[[{"key": "cuda", "operator": "In", "values": ["12.8"]}]],
        extra_env=[{"name": "HF_TOKEN", "value": "y"}],
        profile=ProfilePod(cpu_limit=2.0, mem_limit=4 * 1024**3, shm_size=2 * 1024**3,
                           volumes=(("datasets", "/data", True),)),  # fmt: skip
    )
    pod = pod_spec(base, request)
    assert base == before
    assert pod["spec"]["containers"][0]["env"] != before["spec"]["containers"][0]["env"]
    assert pod["spec"]["initContainers"] is base["spec"]["initContainers"]
    assert pod["spec"]["containers"][1] is base["spec"]["containers"][1]
    assert pod["spec"]["containers"][0]["image"] == base["spec"]["containers"][0]["image"]


def test_a_pod_without_kubespawners_container_is_an_error():
    with pytest.raises(ValueError, match="no container named 'notebook'"):
        pod_spec({"spec": {"containers": [{"name": "other"}]}}, BASE)


def test_no_workspace_no_shm():
    spec = pod_spec(KUBESPAWNER_POD, replace(BASE, workspace_pvc=None, shm_size=None))["spec"]
    assert spec["volumes"] == [] and spec["containers"][0]["volumeMounts"] == []


def test_api_dict_reads_either_clients_models():
    from kubernetes_asyncio.client import V1Capabilities, V1Container, V1SecurityContext

    container = V1Container(
        name="init",
        security_context=V1SecurityContext(run_as_user=0, capabilities=V1Capabilities(add=["X"])),
    )
    assert api_dict([container, {"a": container}]) == [
        {"name": "init", "securityContext": {"runAsUser": 0, "capabilities": {"add": ["X"]}}},
        {
            "a": {
                "name": "init",
                "securityContext": {"runAsUser": 0, "capabilities": {"add": ["X"]}},
            }
        },
    ]


def test_pvc():
    request = PvcRequest(
        name="gpuspawner-workspace-alice",
        labels={"a": "b"},
        annotations={},
        storage="5Gi",
        storage_class="fast",
    )
    assert pvc_spec(request) == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "gpuspawner-workspace-alice", "labels": {"a": "b"}, "annotations": {}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "5Gi"}},
            "storageClassName": "fast",
        },
    }
    assert "storageClassName" not in pvc_spec(replace(request, storage_class=None))["spec"]
    selector = {"matchLabels": {"disk": "alice"}}
    assert pvc_spec(replace(request, selector=selector))["spec"]["selector"] == selector


@pytest.mark.parametrize(
    "size, quantity",
    [
        ("2g", "2Gi"),
        ("512m", "512Mi"),
        ("64M", "64Mi"),
        ("1024k", "1024Ki"),
        ("100", "100"),
        ("2Gi", "2Gi"),
    ],
)
def test_docker_size_to_quantity(size, quantity):
    assert docker_size_to_quantity(size) == quantity


def test_bad_size():
    with pytest.raises(ValueError):
        docker_size_to_quantity("lots")


@given(st.integers(min_value=1, max_value=10**6))
def test_cpu_quantity_round_trips(millis):
    assert parse_quantity(cpu_quantity(millis / 1000)) == pytest.approx(millis / 1000)


@pytest.mark.parametrize(
    "text, value", [("500m", 0.5), ("8", 8), ("64Gi", 64 * 2**30), ("1k", 1000), ("1e3", 1000)]
)
def test_parse_quantity(text, value):
    assert parse_quantity(text) == value


def node(
    name,
    gpus=0,
    resource="nvidia.com/gpu",
    product=None,
    taints=(),
    labels=None,
    cpu="64",
    memory="512Gi",
):
    node_labels = dict(labels or {})
    if product:
        node_labels["nvidia.com/gpu.product"] = product
    allocatable = {"cpu": cpu, "memory": memory, "pods": "110"}
    if gpus:
        allocatable[resource] = str(gpus)
    return {
        "metadata": {"name": name, "labels": node_labels},
        "spec": {"taints": list(taints)},
        "status": {"allocatable": allocatable},
    }


GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
CLUSTER = [
    node("a100-0", 8, product="NVIDIA-A100-SXM4-80GB", taints=[GPU_TAINT]),
    node("a100-1", 8, product="NVIDIA-A100-SXM4-80GB", taints=[GPU_TAINT]),
    node(
        "mig-0",
        7,
        resource="nvidia.com/mig-1g.10gb",
        product="NVIDIA-A100-SXM4-80GB",
        taints=[GPU_TAINT],
    ),
    node("cpu-0"),
]


def needs(request: PodRequest = BASE, **settings) -> PodNeeds:
    """What the pod of ``request`` over kubespawner's pod from ``settings`` needs of a node."""
    return pod_needs(pod_spec(kubespawner_pod(**settings), request))


def test_satisfiable_requests():
    assert unsatisfiable_reason(needs(), CLUSTER) is None
    mig = replace(BASE, gpu_count=7, placement=GpuPlacement(resource="nvidia.com/mig-1g.10gb"))
    assert unsatisfiable_reason(needs(mig), CLUSTER) is None
    assert unsatisfiable_reason(needs(replace(BASE, gpu_count=0)), CLUSTER) is None


def test_too_many_gpus_for_any_node():
    reason = unsatisfiable_reason(needs(replace(BASE, gpu_count=9)), CLUSTER)
    assert reason == (
        "No node of this cluster has 9 nvidia.com/gpu: the most one node has is 8 (a100-0)."
        " Ask for at most 8."
    )


def test_unknown_gpu_type():
    request = replace(BASE, placement=GpuPlacement(product="NVIDIA-H100-80GB-HBM3"))
    assert unsatisfiable_reason(needs(request), CLUSTER) == (
        "No node of this cluster has the GPU type NVIDIA-H100-80GB-HBM3 (label"
        " nvidia.com/gpu.product);"
        " the GPU types here are: NVIDIA-A100-SXM4-80GB."
    )


def test_resource_nobody_offers():
    request = replace(BASE, gpu_count=1, placement=GpuPlacement(resource="nvidia.com/mig-3g.40gb"))
    assert unsatisfiable_reason(needs(request), CLUSTER).startswith(
        "No node of this cluster offers nvidia.com/mig-3g.40gb, so a server asking for 1 GPU can"
        " never start."
    )


def test_untolerated_taint_makes_gpu_nodes_unusable():
    request = replace(BASE, placement=GpuPlacement(tolerations=()))
    assert "tolerates the node's taints" in unsatisfiable_reason(needs(request), CLUSTER)


def test_memory_larger_than_any_node():
    reason = unsatisfiable_reason(needs(mem_limit=2**40), CLUSTER)
    assert reason.startswith("No node of this cluster has 1.09951e+12 bytes of memory")


def test_no_nodes():
    assert (
        unsatisfiable_reason(needs(), [])
        == "This cluster has no node to run servers on. Ask an admin."
    )


@pytest.mark.parametrize(
    "message, words",
    [
        (
            (
                "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector,"
                " 3 Insufficient nvidia.com/gpu. preemption: 0/4 nodes are available: 4 No"
                " preemption victims."
            ),
            (
                "All GPUs of the cluster are in use: 1 of 4 nodes have another GPU type or role;"
                " 3 of 4 nodes have no free nvidia.com/gpu."
            ),
        ),
        (
            "0/2 nodes are available: 2 Insufficient nvidia.com/mig-1g.10gb.",
            "All GPUs of the cluster are in use: 2 of 2 nodes have no free nvidia.com/mig-1g.10gb.",
        ),
        (
            (
                "0/3 nodes are available: 1 node(s) had untolerated taint {nvidia.com/gpu:"
                " present},"
                " 2 Insufficient memory."
            ),
            (
                "No node can take this server right now: 1 of 3 nodes are reserved for other work"
                " (tainted);"
                " 2 of 3 nodes have too little free memory."
            ),
        ),
        (
            "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
            "Your workspace volume is not ready yet (its claim is not bound to a disk).",
        ),
        ("something else", "The cluster cannot place this server yet: something else"),
    ],
)
def test_explain_unschedulable(message, words):
    assert explain_unschedulable(message) == words


def test_explain_quota_rejection():
    message = (
        'pods "jupyter-bob" is forbidden: exceeded quota: course-cap, requested:'
        " requests.nvidia.com/gpu=1,"
        " used: requests.nvidia.com/gpu=0, limited: requests.nvidia.com/gpu=0"
    )
    assert explain_quota_rejection(message, "hub-bob") == (
        "The cluster refused this server: namespace hub-bob may use at most 0 nvidia.com/gpu"
        " (ResourceQuota 'course-cap'), 0 are in use and this server asks for 1."
        " Stop a server holding GPUs, or ask an admin to raise the quota."
    )
    assert explain_quota_rejection("odd", "ns").endswith("namespace ns: odd")


RESOURCE_NAMES = st.sampled_from(
    ["nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "nvidia.com/mig-3g.40gb"]
)


@given(
    gpus=st.integers(min_value=0, max_value=16),
    resource=RESOURCE_NAMES,
    extra_limits=st.dictionaries(
        st.one_of(RESOURCE_NAMES, st.just("example.com/fpga")), st.sampled_from(["1", "8"])
    ),
    env_devices=st.sampled_from([None, "all", "0,1", "void"]),
)
def test_gpu_resources_are_exactly_what_was_granted(gpus, resource, extra_limits, env_devices):
    env = {} if env_devices is None else {"NVIDIA_VISIBLE_DEVICES": env_devices}
    base = kubespawner_pod(
        env=env,
        extra_resource_limits=extra_limits,
        extra_container_config={"resources": {"limits": extra_limits, "requests": extra_limits}},
    )
    request = replace(BASE, gpu_count=gpus, placement=GpuPlacement(resource=resource))
    container = pod_spec(base, request)["spec"]["containers"][0]
    gpu_limits = {
        k: v for k, v in container["resources"]["limits"].items() if k.startswith("nvidia.com/")
    }
    gpu_requests = {
        k: v for k, v in container["resources"]["requests"].items() if k.startswith("nvidia.com/")
    }
    assert gpu_limits == gpu_requests == ({resource: str(gpus)} if gpus else {})
    env_out = {e["name"]: e["value"] for e in container["env"]}
    assert env_out.get("NVIDIA_VISIBLE_DEVICES") == (None if gpus else "void")


def test_the_typed_needs_are_what_the_pod_asks_for():
    init = {"name": "init", "resources": {"requests": {"cpu": "8", "memory": "1Gi"}}}
    sidecar = {"name": "side", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
    request = replace(BASE, placement=GpuPlacement(product="NVIDIA-L4", node_selector={"g": "y"}))
    got = needs(
        request,
        init_containers=[init],
        extra_containers=[sidecar],
        node_selector={"zone": "a"},
        tolerations=[USER_POOL],
        mem_guarantee=2**30,
    )
    assert got == PodNeeds(
        # cpu: the init container's 8 beats the containers' 0.5 + 1; memory: 1 + 1 Gi
        requests={"cpu": 8.0, "memory": 2.0 * 2**30, "nvidia.com/gpu": 2.0},
        node_selector={"zone": "a", "g": "y"},
        products=("NVIDIA-L4",),
        tolerations=(
            USER_POOL,
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        ),
    )
    # the product is ANDed into kubespawner's required terms; without GPUs none is asked
    anywhere = needs(request, node_affinity_required=[{"matchExpressions": [PURPOSE]}])
    assert anywhere.products == ("NVIDIA-L4",)
    assert needs(replace(BASE, gpu_count=0), node_affinity_required=[
        {"matchExpressions": [PURPOSE]}]).products == ()  # fmt: skip


@pytest.mark.parametrize("told", [False, True], ids=["looked-at", "current-given"])
def test_patch_model_changes_only_what_differs(told):
    from kubernetes_asyncio.client import V1Container, V1PodSpec, V1Toleration

    made = []

    def deserialize(data, kind):
        made.append(kind)
        return ("made", kind, data)

    toleration = V1Toleration(key="a", operator="Exists")
    spec = V1PodSpec(
        containers=[V1Container(name="notebook", image="i")],
        tolerations=[toleration],
        node_selector={"zone": "a"},
    )
    same = api_dict(spec)
    extra = {"current": copy.deepcopy(same)} if told else {}
    assert patch_model(spec, same, "V1PodSpec", deserialize, **extra) is spec and made == []
    wanted = copy.deepcopy(same)
    wanted["tolerations"].append({"key": "nvidia.com/gpu", "operator": "Exists"})
    wanted["containers"][0]["image"] = "j"
    patched = patch_model(spec, wanted, "V1PodSpec", deserialize, **extra)
    assert patched is spec and patched.tolerations[0] is toleration
    assert patched.tolerations[1] == ("made", "V1Toleration", wanted["tolerations"][1])
    assert patched.containers[0].image == "j"  # a value as it is
    assert patched.node_selector == {"zone": "a"}
    wanted["nodeSelector"] = None
    extra = {"current": api_dict(spec)} if told else {}
    assert patch_model(spec, wanted, "V1PodSpec", deserialize, **extra).node_selector is None


def test_patch_model_keeps_parts_the_caller_says_are_as_wanted():
    """With ``current`` (the model's api_dict, which the spawner has at hand), a part that
    reads there as wanted is kept without walking into it."""
    from kubernetes_asyncio.client import V1Container, V1PodSpec

    container = V1Container(name="notebook", image="i")
    spec = V1PodSpec(containers=[container], node_selector={"zone": "a"})
    wanted = {"containers": [{"name": "notebook", "image": "j"}], "nodeSelector": {"zone": "b"}}
    # the caller's view: the container already reads as wanted, the selector does not
    current = {"containers": [{"name": "notebook", "image": "j"}], "nodeSelector": {"zone": "a"}}
    patched = patch_model(spec, wanted, "V1PodSpec", lambda data, kind: None, current)
    assert patched.containers[0] is container and container.image == "i"
    assert patched.node_selector == {"zone": "b"}
