"""GPU nodes judged by their drivers' CUDA version from GFD labels, and the pod's affinity
(pure)."""

from dataclasses import replace

import pytest

from gpuspawner.kube.nodes import (
    CudaVerdicts,
    cuda_affinity_terms,
    cuda_refusal,
    cuda_verdicts,
    node_driver_cuda,
)
from gpuspawner.kube.objects import GpuPlacement, PodRequest, pod_spec
from gpuspawner.policy import cuda


def gfd(cuda_version: str, driver: str, old_names_only: bool = False) -> dict:
    """The labels GPU feature discovery publishes for a driver (new and deprecated names)."""
    major, minor = cuda_version.split(".")
    d = driver.split(".")
    labels = {
        "nvidia.com/cuda.runtime.major": major,
        "nvidia.com/cuda.runtime.minor": minor,
        "nvidia.com/cuda.driver.major": d[0],
        "nvidia.com/cuda.driver.minor": d[1],
        "nvidia.com/cuda.driver.rev": d[2],
    }
    if not old_names_only:
        labels.update(
            {
                "nvidia.com/cuda.runtime-version.major": major,
                "nvidia.com/cuda.runtime-version.minor": minor,
                "nvidia.com/cuda.runtime-version.full": cuda_version,
                "nvidia.com/cuda.driver-version.major": d[0],
                "nvidia.com/cuda.driver-version.minor": d[1],
                "nvidia.com/cuda.driver-version.revision": d[2],
                "nvidia.com/cuda.driver-version.full": driver,
            }
        )
    return labels


def node(
    name: str,
    labels: dict | None = None,
    gpus: int = 8,
    resource="nvidia.com/gpu",
    unschedulable=False,
):
    allocatable = {"cpu": "64", "memory": "512Gi"}
    if gpus:
        allocatable[resource] = str(gpus)
    spec = {"unschedulable": True} if unschedulable else {}
    return {
        "metadata": {"name": name, "labels": dict(labels or {})},
        "spec": spec,
        "status": {"allocatable": allocatable},
    }


OLD = gfd("11.8", "520.61.05")  # a CUDA 11 driver
NEW = gfd("12.8", "570.124.06")
MID = gfd("12.2", "535.104.05")


def test_driver_cuda_from_labels():
    assert node_driver_cuda(MID) == cuda.DriverCuda((12, 2), "535.104.5")
    assert node_driver_cuda(gfd("12.2", "535.104.05", old_names_only=True)) == cuda.DriverCuda(
        (12, 2), "535.104.5"
    )
    assert node_driver_cuda(
        {
            "nvidia.com/cuda.runtime-version.major": "13",
            "nvidia.com/cuda.runtime-version.minor": "0",
        }
    ) == (cuda.DriverCuda((13, 0), ""))
    assert node_driver_cuda({}) is None
    assert (
        node_driver_cuda(
            {"nvidia.com/cuda.runtime.major": "x", "nvidia.com/cuda.runtime.minor": "2"}
        )
        is None
    )


def test_verdicts_sort_gpu_nodes_only():
    nodes = [
        node("old", OLD),
        node("new", NEW),
        node("mid", MID),
        node("bare"),
        node("cpu", NEW, gpus=0),
        node("cordoned", NEW, unschedulable=True),
        node("mig", OLD, resource="nvidia.com/mig-1g.10gb"),
    ]
    assert cuda_verdicts(nodes, "12.8") == CudaVerdicts(
        compatible=("mid", "new"), incompatible=("old",), unknown=("bare",), newest=(12, 8)
    )
    assert cuda_verdicts(nodes, "12.8", mode="strict") == CudaVerdicts(
        compatible=("new",), incompatible=("mid", "old"), unknown=("bare",), newest=(12, 8)
    )
    assert cuda_verdicts(nodes, "12.8", resource="nvidia.com/mig-1g.10gb") == CudaVerdicts(
        incompatible=("mig",), newest=(11, 8)
    )
    assert cuda_verdicts(nodes, "") == CudaVerdicts()


def test_verdicts_follow_product_and_node_selector():
    a100 = {"nvidia.com/gpu.product": "A100", "pool": "a"}
    nodes = [
        node("a", {**OLD, **a100}),
        node("h", {**NEW, "nvidia.com/gpu.product": "H100", "pool": "h"}),
    ]
    assert cuda_verdicts(nodes, "12.8", product="A100") == CudaVerdicts(
        incompatible=("a",), newest=(11, 8)
    )
    assert cuda_verdicts(nodes, "12.8", node_selector={"pool": "h"}) == CudaVerdicts(
        compatible=("h",), newest=(12, 8)
    )


def test_refusal_only_when_no_node_can():
    verdicts = cuda_verdicts([node("old-0", OLD), node("old-1", gfd("12.2", "525.60.11"))], "12.8")
    assert verdicts.none_compatible
    assert cuda_refusal("pytorch-2.9", "12.8", verdicts) == (
        "No GPU node of this cluster has a driver for CUDA 12.8, which image 'pytorch-2.9' needs"
        " (the newest supports CUDA 12.2). Pick another image, or ask an admin to update the GPU"
        " nodes' drivers."
    )
    assert (
        cuda_refusal("x", "12.8", cuda_verdicts([node("old", OLD), node("bare")], "12.8")) is None
    )
    assert cuda_refusal("x", "12.8", cuda_verdicts([node("new", NEW)], "12.8")) is None
    assert cuda_refusal("x", "12.8", CudaVerdicts()) is None


def test_affinity_terms_strict():
    dne = [
        {"key": "nvidia.com/cuda.runtime-version.major", "operator": "DoesNotExist"},
        {"key": "nvidia.com/cuda.runtime.major", "operator": "DoesNotExist"},
    ]
    assert cuda_affinity_terms("12.8", "strict") == [
        dne,
        [{"key": "nvidia.com/cuda.runtime-version.major", "operator": "Gt", "values": ["12"]}],
        [
            {"key": "nvidia.com/cuda.runtime-version.major", "operator": "In", "values": ["12"]},
            {"key": "nvidia.com/cuda.runtime-version.minor", "operator": "Gt", "values": ["7"]},
        ],
        [{"key": "nvidia.com/cuda.runtime.major", "operator": "Gt", "values": ["12"]}],
        [
            {"key": "nvidia.com/cuda.runtime.major", "operator": "In", "values": ["12"]},
            {"key": "nvidia.com/cuda.runtime.minor", "operator": "Gt", "values": ["7"]},
        ],
    ]


def matches(labels: dict, terms) -> bool:
    """The scheduler's reading of required node selector terms (In, Gt, DoesNotExist)."""

    def one(expr):
        value = labels.get(expr["key"])
        if expr["operator"] == "DoesNotExist":
            return value is None
        if value is None:
            return False
        if expr["operator"] == "In":
            return value in expr["values"]
        if expr["operator"] == "Gt":
            return int(value) > int(expr["values"][0])
        raise AssertionError(expr)

    return any(all(one(e) for e in term) for term in terms)


DRIVERS = [
    ("11.0", "450.51.06"),
    ("11.8", "520.61.05"),
    ("12.0", "525.60.11"),
    ("12.0", "525.60.13"),
    ("12.0", "525.85.12"),
    ("12.2", "535.104.05"),
    ("12.8", "570.124.06"),
    ("12.9", "575.57.08"),
    ("13.0", "580.65.06"),
    ("13.2", "595.91.07"),
]


@pytest.mark.parametrize("mode", cuda.MODES)
@pytest.mark.parametrize("image", ["11.2", "11.8", "12.0", "12.8", "13.0", "13.1", "14.0"])
def test_affinity_terms_agree_with_the_rule(image, mode):
    """A node is admitted by the labels exactly when cuda.py's rule says its driver runs the
    image."""
    terms = cuda_affinity_terms(image, mode)
    for version, driver in DRIVERS:
        for old_only in (False, True):
            labels = gfd(version, driver, old_names_only=old_only)
            expected = cuda.compatible(cuda.parse_cuda(image), node_driver_cuda(labels), mode)
            assert matches(labels, terms) is expected, (image, mode, version, driver, old_only)
        cuda_only = {
            "nvidia.com/cuda.runtime.major": version.split(".")[0],
            "nvidia.com/cuda.runtime.minor": version.split(".")[1],
        }
        assert matches(cuda_only, terms) is cuda.compatible(
            cuda.parse_cuda(image), cuda.DriverCuda(cuda.parse_cuda(version)), mode
        )
    assert matches({"nvidia.com/gpu.product": "A100"}, terms)  # no GFD labels: unknown, admitted


BASE = PodRequest(gpu_count=1)
KUBESPAWNER_POD = {"spec": {"containers": [{"name": "notebook", "image": "i"}]}}


def test_pod_affinity_combines_product_and_cuda_terms():
    terms = [
        [{"key": "k", "operator": "Gt", "values": ["1"]}],
        [{"key": "j", "operator": "DoesNotExist"}],
    ]
    product = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["A100"]}
    spec = pod_spec(
        KUBESPAWNER_POD, replace(BASE, cuda_terms=terms, placement=GpuPlacement(product="A100"))
    )["spec"]
    assert spec["affinity"] == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            product,
                            {"key": "k", "operator": "Gt", "values": ["1"]},
                        ]
                    },
                    {"matchExpressions": [product, {"key": "j", "operator": "DoesNotExist"}]},
                ]
            }
        }
    }
    only_cuda = pod_spec(KUBESPAWNER_POD, replace(BASE, cuda_terms=terms))["spec"]["affinity"]
    assert only_cuda["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ] == [{"matchExpressions": t} for t in terms]
    zero = replace(BASE, cuda_terms=terms, gpu_count=0)
    assert "affinity" not in pod_spec(KUBESPAWNER_POD, zero)["spec"]
    assert "affinity" not in pod_spec(KUBESPAWNER_POD, BASE)["spec"]
