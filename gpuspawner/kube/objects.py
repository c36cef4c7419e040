"""The Kubernetes objects of one server, built from dataclasses with no I/O.

:func:`pod_spec` and :func:`pvc_spec` return plain dicts in the API's camelCase (what
``kubectl get -o json`` shows), so a test compares dicts and the spawner sends them as is.
What nodes offer and whether one could run a server is in :mod:`.nodes`; the cluster's
messages in words a student understands are in :mod:`.messages`.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..policy.merge import deep_merge
from ..lifecycle.env import lock_visible_devices
from .nodes import GPU_RESOURCE, PRODUCT_LABEL, PodNeeds, is_gpu_resource, parse_quantity

# the taint GPU node pools usually carry (GKE, AKS, the GPU operator's docs)
DEFAULT_GPU_TOLERATIONS = ({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},)
WORKSPACE_VOLUME = "workspace"
SHM_VOLUME = "dshm"
CONTAINER_NAME = "notebook"
PORT_NAME = "notebook-port"  # kubespawner finds the server's port by this name

# what every server container gets, whatever the admin's extra_container_config says
LOCKED_CONTAINER_SECURITY = {
    "privileged": False,
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


@dataclass(frozen=True)
class GpuPlacement:
    """Which GPUs a server asks for and which nodes may run it."""

    resource: str = GPU_RESOURCE  # or a MIG resource such as "nvidia.com/mig-1g.10gb"
    product: str = ""  # required value of the node label nvidia.com/gpu.product ("" = any)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping, ...] = DEFAULT_GPU_TOLERATIONS


@dataclass(frozen=True)
class PodRequest:
    """Everything the pod of one server depends on."""

    name: str
    image: str
    env: Mapping[str, str]
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    port: int = 8888
    command: Sequence[str] = ()  # empty: the image's own command
    image_pull_policy: str = "IfNotPresent"
    gpu_count: int = 0
    placement: GpuPlacement = GpuPlacement()
    uid: int = 1000
    gid: int = 100
    fs_gid: int | None = 100
    cpu_limit: float | None = None
    cpu_guarantee: float | None = None
    mem_limit: int | None = None  # bytes
    mem_guarantee: int | None = None  # bytes
    shm_size: str | None = "2Gi"  # a quantity; None: the runtime's default /dev/shm
    workspace_pvc: str | None = None
    workspace_path: str = "/home/jovyan/work"
    working_dir: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)  # applies to every server
    service_account: str | None = None
    priority_class_name: str | None = None
    extra_volumes: Sequence[Mapping] = ()
    extra_volume_mounts: Sequence[Mapping] = ()
    extra_container_config: Mapping = field(default_factory=dict)
    extra_pod_config: Mapping = field(default_factory=dict)
    # node selector terms (ORed) a GPU server's node must match: see cuda_affinity_terms
    cuda_terms: Sequence[Sequence[Mapping]] = ()


@dataclass(frozen=True)
class PvcRequest:
    """The user's workspace claim."""

    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    storage: str = "10Gi"
    storage_class: str | None = None  # None: the cluster's default class
    access_modes: Sequence[str] = ("ReadWriteOnce",)


def cpu_quantity(cores: float) -> str:
    """2.0 -> '2', 0.5 -> '500m'."""
    millis = round(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else "%dm" % millis


def docker_size_to_quantity(size: str) -> str:
    """Docker's sizes ('2g', '512m', '1024k', '1000000') as Kubernetes quantities ('2Gi', ...).

    Docker's suffixes are binary; a value that already is a quantity ('2Gi') is kept.
    """
    text = size.strip()
    match = re.fullmatch(r"(\d+)\s*([bkmgt]?)b?", text, re.IGNORECASE)
    if match is None:
        if re.fullmatch(r"\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|M|G|T)?", text):
            return text
        raise ValueError("%r is not a size such as '2g' or '2Gi'." % size)
    number, unit = match.group(1), match.group(2).lower()
    return number + {"": "", "b": "", "k": "Ki", "m": "Mi", "g": "Gi", "t": "Ti"}[unit]


def resources(request: PodRequest) -> dict:
    """Limits and requests; GPU requests always equal GPU limits, and 0 GPUs means none."""
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if request.cpu_limit is not None:
        limits["cpu"] = cpu_quantity(request.cpu_limit)
    if request.cpu_guarantee is not None:
        requests["cpu"] = cpu_quantity(request.cpu_guarantee)
    if request.mem_limit is not None:
        limits["memory"] = str(request.mem_limit)
    if request.mem_guarantee is not None:
        requests["memory"] = str(request.mem_guarantee)
    if request.gpu_count:
        limits[request.placement.resource] = str(request.gpu_count)
        requests[request.placement.resource] = str(request.gpu_count)
    return {"limits": limits, "requests": requests}


def node_affinity(request: PodRequest) -> dict | None:
    """Required node affinity of a GPU server: its GPU product label and its CUDA terms.

    Node selector terms are ORed and a term's expressions ANDed, so the product
    expression is repeated in every CUDA term.
    """
    if not request.gpu_count or not (request.placement.product or request.cuda_terms):
        return None
    base = []
    if request.placement.product:
        base.append({"key": PRODUCT_LABEL, "operator": "In", "values": [request.placement.product]})
    terms = [base + [dict(e) for e in term] for term in request.cuda_terms] or [base]
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": term} for term in terms]
            }
        }
    }


def pod_spec(request: PodRequest) -> dict:
    """The Pod of one server."""
    env = lock_visible_devices(request.env, request.gpu_count)
    mounts = [dict(m) for m in request.extra_volume_mounts]
    volumes = [dict(v) for v in request.extra_volumes]
    if request.workspace_pvc:
        volumes.append(
            {
                "name": WORKSPACE_VOLUME,
                "persistentVolumeClaim": {"claimName": request.workspace_pvc},
            }
        )
        mounts.append({"name": WORKSPACE_VOLUME, "mountPath": request.workspace_path})
    if request.shm_size:
        volumes.append(
            {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": request.shm_size}}
        )
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})

    container: dict = {
        "name": CONTAINER_NAME,
        "image": request.image,
        "imagePullPolicy": request.image_pull_policy,
        "env": [{"name": key, "value": value} for key, value in sorted(env.items())],
        "ports": [{"name": PORT_NAME, "containerPort": request.port}],
        "resources": resources(request),
        "volumeMounts": mounts,
    }
    if request.command:
        container["command"] = list(request.command)
    if request.working_dir:
        container["workingDir"] = request.working_dir
    container = deep_merge(container, request.extra_container_config)
    container["securityContext"] = deep_merge(
        container.get("securityContext") or {},
        dict(LOCKED_CONTAINER_SECURITY, runAsUser=request.uid, runAsGroup=request.gid),
    )
    # the GPUs are the spawner's to give, never the admin's extras
    container["resources"] = container_resources(request)
    container["env"] = [{"name": key, "value": value} for key, value in sorted(env.items())]

    security: dict = {"runAsUser": request.uid, "runAsGroup": request.gid, "runAsNonRoot": True}
    if request.fs_gid is not None:
        security["fsGroup"] = request.fs_gid
    spec: dict = {
        "automountServiceAccountToken": False,
        "securityContext": security,
        "containers": [container],
        "volumes": volumes,
    }
    node_selector = _node_selector(request)
    if request.gpu_count:
        spec["tolerations"] = [dict(t) for t in request.placement.tolerations]
        affinity = node_affinity(request)
        if affinity:
            spec["affinity"] = affinity
    if node_selector:
        spec["nodeSelector"] = node_selector
    if request.service_account:
        spec["serviceAccountName"] = request.service_account
        spec["automountServiceAccountToken"] = True
    if request.priority_class_name:
        spec["priorityClassName"] = request.priority_class_name
    spec = deep_merge(
        spec, {k: v for k, v in request.extra_pod_config.items() if k != "containers"}
    )
    spec["securityContext"] = deep_merge(spec.get("securityContext") or {}, {"runAsNonRoot": True})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": request.name,
            "labels": dict(request.labels),
            "annotations": dict(request.annotations),
        },
        "spec": spec,
    }


def _node_selector(request: PodRequest) -> dict:
    """The labels every node running this server must have (GPU servers: the placement's too)."""
    selector = dict(request.node_selector)
    if request.gpu_count:
        selector.update(request.placement.node_selector)
    return selector


def container_resources(request: PodRequest) -> dict:
    """The server container's limits and requests: the admin's extras without their GPUs,
    then this server's own (GPU requests always equal GPU limits)."""
    extra = (request.extra_container_config or {}).get("resources") or {}
    merged = _without_gpus(deep_merge(resources(request), extra))
    for kind, values in resources(request).items():
        merged.setdefault(kind, {}).update(values)
    return merged


def pod_needs(request: PodRequest) -> PodNeeds:
    """What the pod of ``request`` needs of a node, as typed facts (no pod to parse back).

    The same facts :func:`pod_spec` writes: the container's resources (a request where one
    is given, else the limit), the node selector and tolerations (the admin's
    ``extra_pod_config`` merged as in the pod), and the GPU product a GPU server requires.
    """
    res = container_resources(request)
    amounts = {
        name: parse_quantity(value)
        for name, value in {**res.get("limits", {}), **res.get("requests", {})}.items()
    }
    extra = request.extra_pod_config or {}
    selector = _node_selector(request)
    if isinstance(extra.get("nodeSelector"), Mapping):
        selector = deep_merge(selector, extra["nodeSelector"])
    tolerations = [dict(t) for t in request.placement.tolerations] if request.gpu_count else []
    if "tolerations" in extra:
        tolerations = [dict(t) for t in extra.get("tolerations") or []]
    products = (
        (request.placement.product,) if request.gpu_count and request.placement.product else ()
    )
    return PodNeeds(
        requests=amounts, node_selector=selector, products=products, tolerations=tuple(tolerations)
    )


def _without_gpus(resources_: Mapping) -> dict:
    return {
        kind: {name: value for name, value in (values or {}).items() if not is_gpu_resource(name)}
        for kind, values in resources_.items()
    }


def pvc_spec(request: PvcRequest) -> dict:
    """The user's workspace PersistentVolumeClaim."""
    spec: dict = {
        "accessModes": list(request.access_modes),
        "resources": {"requests": {"storage": request.storage}},
    }
    if request.storage_class is not None:
        spec["storageClassName"] = request.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": request.name,
            "labels": dict(request.labels),
            "annotations": dict(request.annotations),
        },
        "spec": spec,
    }
