"""Pod and PVC specs built from dataclasses, and the cluster's words read back (pure)."""

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuspawner.kube.messages import explain_quota_rejection, explain_unschedulable
from gpuspawner.kube.nodes import PodNeeds, parse_quantity, unsatisfiable_reason
from gpuspawner.kube.objects import (
    GpuPlacement,
    PodRequest,
    PvcRequest,
    cpu_quantity,
    docker_size_to_quantity,
    pod_needs,
    pod_spec,
    pvc_spec,
)

BASE = PodRequest(
    name="jupyter-alice",
    image="org/pt:2.9",
    env={"GPU_LIMIT": "2", "HF_TOKEN": "x"},
    labels={"component": "singleuser-server", "gpuspawner.io/gpus": "2"},
    annotations={"hub.jupyter.org/username": "alice"},
    command=["jupyterhub-singleuser"],
    gpu_count=2,
    cpu_limit=4.0,
    cpu_guarantee=0.5,
    mem_limit=8 * 1024**3,
    workspace_pvc="gpuspawner-workspace-alice",
)


def test_full_gpu_pod():
    assert pod_spec(BASE) == {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "jupyter-alice",
            "labels": {"component": "singleuser-server", "gpuspawner.io/gpus": "2"},
            "annotations": {"hub.jupyter.org/username": "alice"},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsUser": 1000,
                "runAsGroup": 100,
                "runAsNonRoot": True,
                "fsGroup": 100,
            },
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "containers": [
                {
                    "name": "notebook",
                    "image": "org/pt:2.9",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["jupyterhub-singleuser"],
                    "env": [
                        {"name": "GPU_LIMIT", "value": "2"},
                        {"name": "HF_TOKEN", "value": "x"},
                    ],
                    "ports": [{"name": "notebook-port", "containerPort": 8888}],
                    "resources": {
                        "limits": {"cpu": "4", "memory": str(8 * 1024**3), "nvidia.com/gpu": "2"},
                        "requests": {"cpu": "500m", "nvidia.com/gpu": "2"},
                    },
                    "volumeMounts": [
                        {"name": "workspace", "mountPath": "/home/jovyan/work"},
                        {"name": "dshm", "mountPath": "/dev/shm"},
                    ],
                    "securityContext": {
                        "privileged": False,
                        "allowPrivilegeEscalation": False,
                        "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]},
                        "runAsUser": 1000,
                        "runAsGroup": 100,
                    },
                }
            ],
            "volumes": [
                {
                    "name": "workspace",
                    "persistentVolumeClaim": {"claimName": "gpuspawner-workspace-alice"},
                },
                {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
            ],
        },
    }


def test_zero_gpus_no_gpu_resources_no_tolerations_and_void():
    spec = pod_spec(
        replace(BASE, gpu_count=0, placement=GpuPlacement(product="NVIDIA-A100-SXM4-80GB"))
    )["spec"]
    resources = spec["containers"][0]["resources"]
    assert resources == {
        "limits": {"cpu": "4", "memory": str(8 * 1024**3)},
        "requests": {"cpu": "500m"},
    }
    assert "tolerations" not in spec and "affinity" not in spec and "nodeSelector" not in spec
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in spec["containers"][0]["env"]


def test_gpu_pod_never_names_devices_itself():
    spec = pod_spec(replace(BASE, env={"NVIDIA_VISIBLE_DEVICES": "all"}))["spec"]
    assert spec["containers"][0]["env"] == []


def test_mig_resource_and_product_affinity_and_selector():
    placement = GpuPlacement(
        resource="nvidia.com/mig-1g.10gb",
        product="NVIDIA-A100-SXM4-80GB",
        node_selector={"pool": "mig"},
        tolerations=(
            {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},
        ),
    )
    spec = pod_spec(replace(BASE, gpu_count=1, placement=placement, node_selector={"zone": "a"}))[
        "spec"
    ]
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


def test_admin_extras_cannot_add_gpus_or_privilege():
    request = replace(
        BASE,
        gpu_count=0,
        extra_container_config={
            "securityContext": {
                "privileged": True,
                "allowPrivilegeEscalation": True,
                "readOnlyRootFilesystem": True,
            },
            "resources": {"limits": {"nvidia.com/gpu": "8", "example.com/fpga": "1"}},
        },
        extra_pod_config={
            "securityContext": {"runAsNonRoot": False},
            "hostIPC": False,
            "containers": [],
        },
    )
    spec = pod_spec(request)["spec"]
    container = spec["containers"][0]
    assert container["securityContext"]["privileged"] is False
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"] == {
        "example.com/fpga": "1",
        "cpu": "4",
        "memory": str(8 * 1024**3),
    }
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["hostIPC"] is False and len(spec["containers"]) == 1


def test_no_workspace_no_shm():
    spec = pod_spec(replace(BASE, workspace_pvc=None, shm_size=None))["spec"]
    assert spec["volumes"] == [] and spec["containers"][0]["volumeMounts"] == []


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


def test_satisfiable_requests():
    assert unsatisfiable_reason(pod_needs(BASE), CLUSTER) is None
    mig = replace(BASE, gpu_count=7, placement=GpuPlacement(resource="nvidia.com/mig-1g.10gb"))
    assert unsatisfiable_reason(pod_needs(mig), CLUSTER) is None
    assert unsatisfiable_reason(pod_needs(replace(BASE, gpu_count=0)), CLUSTER) is None


def test_too_many_gpus_for_any_node():
    reason = unsatisfiable_reason(pod_needs(replace(BASE, gpu_count=9)), CLUSTER)
    assert reason == (
        "No node of this cluster has 9 nvidia.com/gpu: the most one node has is 8 (a100-0)."
        " Ask for at most 8."
    )


def test_unknown_gpu_type():
    request = replace(BASE, placement=GpuPlacement(product="NVIDIA-H100-80GB-HBM3"))
    assert unsatisfiable_reason(pod_needs(request), CLUSTER) == (
        "No node of this cluster has the GPU type NVIDIA-H100-80GB-HBM3 (label"
        " nvidia.com/gpu.product);"
        " the GPU types here are: NVIDIA-A100-SXM4-80GB."
    )


def test_resource_nobody_offers():
    request = replace(BASE, gpu_count=1, placement=GpuPlacement(resource="nvidia.com/mig-3g.40gb"))
    assert unsatisfiable_reason(pod_needs(request), CLUSTER).startswith(
        "No node of this cluster offers nvidia.com/mig-3g.40gb, so a server asking for 1 GPU can"
        " never start."
    )


def test_untolerated_taint_makes_gpu_nodes_unusable():
    request = replace(BASE, placement=GpuPlacement(tolerations=()))
    assert "tolerates the node's taints" in unsatisfiable_reason(pod_needs(request), CLUSTER)


def test_memory_larger_than_any_node():
    reason = unsatisfiable_reason(pod_needs(replace(BASE, mem_limit=2**40)), CLUSTER)
    assert reason.startswith("No node of this cluster has 1.09951e+12 bytes of memory")


def test_no_nodes():
    assert (
        unsatisfiable_reason(pod_needs(BASE), [])
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
    request = replace(
        BASE,
        gpu_count=gpus,
        env=env,
        placement=GpuPlacement(resource=resource),
        extra_container_config={"resources": {"limits": extra_limits, "requests": extra_limits}},
    )
    container = pod_spec(request)["spec"]["containers"][0]
    gpu_limits = {
        k: v for k, v in container["resources"]["limits"].items() if k.startswith("nvidia.com/")
    }
    gpu_requests = {
        k: v for k, v in container["resources"]["requests"].items() if k.startswith("nvidia.com/")
    }
    assert gpu_limits == gpu_requests == ({resource: str(gpus)} if gpus else {})
    env_out = {e["name"]: e["value"] for e in container["env"]}
    assert env_out.get("NVIDIA_VISIBLE_DEVICES") == (None if gpus else "void")


def needs_read_back(pod: dict) -> PodNeeds:
    """What a pod needs of a node, read back from the pod itself (the oracle for pod_needs)."""
    spec = pod["spec"]
    res = spec["containers"][0].get("resources") or {}
    requests = {
        name: parse_quantity(value)
        for name, value in {**(res.get("limits") or {}), **(res.get("requests") or {})}.items()
    }
    terms = (
        spec.get("affinity", {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", {})
        .get("nodeSelectorTerms", [])
    )
    products = sorted(
        {
            value
            for term in terms
            for e in term.get("matchExpressions", [])
            if e.get("key") == "nvidia.com/gpu.product" and e.get("operator") == "In"
            for value in e["values"]
        }
    )
    return PodNeeds(
        requests,
        spec.get("nodeSelector") or {},
        tuple(products),
        tuple(spec.get("tolerations") or ()),
    )


@given(
    gpus=st.integers(min_value=0, max_value=4),
    product=st.sampled_from(["", "NVIDIA-L4"]),
    selector=st.dictionaries(
        st.sampled_from(["pool", "zone"]), st.sampled_from(["a", "b"]), max_size=2
    ),
    extra_selector=st.dictionaries(
        st.sampled_from(["zone", "rack"]), st.sampled_from(["c"]), max_size=2
    ),
    extra_tolerations=st.sampled_from([None, [], [{"key": "x", "operator": "Exists"}]]),
    cpu=st.sampled_from([None, 0.5, 2.0]),
    memory=st.sampled_from([None, 2**30]),
    extra_limits=st.dictionaries(
        st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]), st.sampled_from(["1", "8"])
    ),
)
def test_the_typed_needs_are_what_the_pod_asks_for(
    gpus, product, selector, extra_selector, extra_tolerations, cpu, memory, extra_limits
):
    extra_pod = {"nodeSelector": extra_selector} if extra_selector else {}
    if extra_tolerations is not None:
        extra_pod["tolerations"] = extra_tolerations
    request = replace(
        BASE,
        gpu_count=gpus,
        placement=GpuPlacement(product=product, node_selector={"gpu": "yes"}),
        node_selector=selector,
        cpu_guarantee=cpu,
        mem_limit=memory,
        extra_pod_config=extra_pod,
        extra_container_config={"resources": {"limits": extra_limits}},
    )
    assert pod_needs(request) == needs_read_back(pod_spec(request))
