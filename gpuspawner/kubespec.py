"""The Kubernetes objects of one server, built from dataclasses with no I/O.

:func:`pod_spec` and :func:`pvc_spec` return plain dicts in the API's camelCase (what
``kubectl get -o json`` shows), so a test compares dicts and the spawner sends them as is.
The other functions read what the API returns: whether any node could ever run a pod
(:func:`unsatisfiable_reason`) and the scheduler's "0/8 nodes are available: ..." in
words a student understands (:func:`explain_unschedulable`).
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from . import cuda as cuda_rule
from .merge import deep_merge
from .quota import plural

GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
PRODUCT_LABEL = "nvidia.com/gpu.product"
# the taint GPU node pools usually carry (GKE, AKS, the GPU operator's docs)
DEFAULT_GPU_TOLERATIONS = ({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},)
# taints Kubernetes itself sets and lifts with a node's conditions (not-ready, unreachable, ...)
TRANSIENT_TAINTS = "node.kubernetes.io/"
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


def is_gpu_resource(name: str) -> bool:
    """``nvidia.com/gpu`` or a MIG slice such as ``nvidia.com/mig-1g.10gb``."""
    return name == GPU_RESOURCE or name.startswith(MIG_RESOURCE_PREFIX)


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
    gpus: int = 0
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
    if request.gpus:
        limits[request.placement.resource] = str(request.gpus)
        requests[request.placement.resource] = str(request.gpus)
    return {"limits": limits, "requests": requests}


def node_affinity(request: PodRequest) -> dict | None:
    """Required node affinity of a GPU server: its GPU product label and its CUDA terms.

    Node selector terms are ORed and a term's expressions ANDed, so the product
    expression is repeated in every CUDA term.
    """
    if not request.gpus or not (request.placement.product or request.cuda_terms):
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


# --- the driver's CUDA version from GPU feature discovery's node labels ---

#: The newest CUDA version the node's driver supports: GFD's current names, then the
#: older names it still publishes (deprecated). Values are integers ("12", "2").
CUDA_LABELS = (
    ("nvidia.com/cuda.runtime-version.major", "nvidia.com/cuda.runtime-version.minor"),
    ("nvidia.com/cuda.runtime.major", "nvidia.com/cuda.runtime.minor"),
)
#: The driver's own version ("535", "104", "05"), in the same order as CUDA_LABELS.
DRIVER_LABELS = (
    (
        "nvidia.com/cuda.driver-version.major",
        "nvidia.com/cuda.driver-version.minor",
        "nvidia.com/cuda.driver-version.revision",
    ),
    ("nvidia.com/cuda.driver.major", "nvidia.com/cuda.driver.minor", "nvidia.com/cuda.driver.rev"),
)


def node_driver_cuda(labels: Mapping[str, str]) -> cuda_rule.DriverCuda | None:
    """What a node's driver supports, read from its GFD labels; None when unknown."""
    for cuda_keys, driver_keys in zip(CUDA_LABELS, DRIVER_LABELS, strict=True):
        try:
            supported = (int(labels[cuda_keys[0]]), int(labels[cuda_keys[1]]))
        except (KeyError, TypeError, ValueError):
            continue
        parts = []
        for key in driver_keys:
            if not str(labels.get(key, "")).isdigit():
                break
            parts.append(str(int(labels[key])))
        return cuda_rule.DriverCuda(supported, ".".join(parts))
    return None


def _at_least(keys: Sequence[str], version: Sequence[int]) -> list[list[dict]]:
    """Terms (ORed) matching nodes whose integer labels ``keys`` read as >= ``version``."""
    terms = []
    for i, key in enumerate(keys):
        equal = [{"key": k, "operator": "In", "values": [str(v)]} for k, v in zip(keys[:i], version, strict=False)]
        bound = version[i] if i < len(keys) - 1 else version[i] - 1
        terms.append(equal + [{"key": key, "operator": "Gt", "values": [str(bound)]}])
    return terms


def cuda_affinity_terms(image_cuda: str, mode: str = "minor-version") -> list[list[dict]]:
    """Node selector terms (ORed) admitting exactly the nodes that can run ``image_cuda``.

    Written on the nodes' GFD labels rather than their names, so the scheduler judges
    each node by its labels when it places the pod: a node that joins later with an old
    driver is kept out, one whose driver was upgraded is let in. A node without the labels
    (no GPU feature discovery) is admitted: its driver is unknown. cuda.py's rule, in
    labels: the driver's CUDA is not older than the image's, or (``minor-version`` mode)
    it is of the same major and the driver is at least that major's first release, or
    its version is not labelled.
    """
    needed = cuda_rule.parse_cuda(image_cuda)
    major = needed[0]
    terms = [[{"key": keys[0], "operator": "DoesNotExist"} for keys in CUDA_LABELS]]
    minimum = cuda_rule.MINOR_VERSION_MINIMUM_DRIVER.get(major)
    for cuda_keys, driver_keys in zip(CUDA_LABELS, DRIVER_LABELS, strict=True):
        terms += _at_least(cuda_keys, needed)
        if mode == "minor-version" and minimum:
            same_major = {"key": cuda_keys[0], "operator": "In", "values": [str(major)]}
            terms += [[same_major] + t for t in _at_least(driver_keys, cuda_rule.driver_tuple(minimum))]
            terms.append([same_major, {"key": driver_keys[0], "operator": "DoesNotExist"}])
    return terms


@dataclass(frozen=True)
class CudaVerdicts:
    """The GPU nodes a server could land on, by whether their driver runs its image."""

    compatible: tuple[str, ...] = ()
    incompatible: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()  # no GFD labels: admitted
    newest: tuple[int, int] | None = None  # the newest CUDA a labelled node's driver supports

    @property
    def steer(self) -> bool:
        """Whether the pod needs the CUDA affinity (some node would not run the image)."""
        return bool(self.incompatible)

    @property
    def none_compatible(self) -> bool:
        return bool(self.incompatible) and not (self.compatible or self.unknown)


def cuda_verdicts(
    nodes: Sequence[Mapping],
    image_cuda: str,
    resource: str = GPU_RESOURCE,
    mode: str = "minor-version",
    product: str = "",
    node_selector: Mapping[str, str] | None = None,
) -> CudaVerdicts:
    """Sort the schedulable nodes offering ``resource`` (of ``product``, matching
    ``node_selector``) by whether their driver runs an image built for ``image_cuda``."""
    if not image_cuda:
        return CudaVerdicts()
    needed = cuda_rule.parse_cuda(image_cuda)
    selector = dict(node_selector or {})
    sorted_: dict[str, list[str]] = {"compatible": [], "incompatible": [], "unknown": []}
    newest = None
    for node in nodes:
        labels = node.get("metadata", {}).get("labels") or {}
        offered = (node.get("status", {}).get("allocatable") or {}).get(resource)
        if node.get("spec", {}).get("unschedulable") or not offered or parse_quantity(offered) <= 0:
            continue
        if (product and labels.get(PRODUCT_LABEL) != product) or any(labels.get(k) != v for k, v in selector.items()):
            continue
        driver = node_driver_cuda(labels)
        if driver is None:
            sorted_["unknown"].append(_node_name(node))
            continue
        newest = driver.cuda if newest is None else max(newest, driver.cuda)
        verdict = "compatible" if cuda_rule.compatible(needed, driver, mode) else "incompatible"
        sorted_[verdict].append(_node_name(node))
    return CudaVerdicts(**{k: tuple(sorted(v)) for k, v in sorted_.items()}, newest=newest)


def cuda_refusal(key: str, image_cuda: str, verdicts: CudaVerdicts) -> str | None:
    """The sentence refusing a GPU server of image ``key`` when no GPU node can run it."""
    if not verdicts.none_compatible:
        return None
    return (
        "No GPU node of this cluster has a driver for CUDA %s, which image '%s' needs"
        " (the newest supports CUDA %s). Pick another image, or ask an admin to update"
        " the GPU nodes' drivers." % (image_cuda, key, cuda_rule.format_cuda(verdicts.newest))
    )


def pod_spec(request: PodRequest) -> dict:
    """The Pod of one server."""
    env = dict(request.env)
    if request.gpus:
        # the device plugin names the GPUs it hands over; a value of ours would override it
        env.pop("NVIDIA_VISIBLE_DEVICES", None)
    else:
        # an image or a default nvidia runtime must not hand every GPU to a CPU-only server
        env["NVIDIA_VISIBLE_DEVICES"] = "void"
    mounts = [dict(m) for m in request.extra_volume_mounts]
    volumes = [dict(v) for v in request.extra_volumes]
    if request.workspace_pvc:
        volumes.append({"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": request.workspace_pvc}})
        mounts.append({"name": WORKSPACE_VOLUME, "mountPath": request.workspace_path})
    if request.shm_size:
        volumes.append({"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": request.shm_size}})
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
    container["resources"] = _without_gpus(container.get("resources") or {})
    for kind, values in resources(request).items():
        container["resources"].setdefault(kind, {}).update(values)
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
    node_selector = dict(request.node_selector)
    if request.gpus:
        node_selector.update(request.placement.node_selector)
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
    spec = deep_merge(spec, {k: v for k, v in request.extra_pod_config.items() if k != "containers"})
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
        "metadata": {"name": request.name, "labels": dict(request.labels), "annotations": dict(request.annotations)},
        "spec": spec,
    }


# --- reading what the cluster says ---

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def parse_quantity(value) -> float:
    """A Kubernetes quantity ('500m', '8', '64Gi', '1e3') as a number."""
    text = str(value).strip()
    match = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?\d+)?)([KMGTPE]i|[numkMGTPE]?)", text)
    if match is None:
        raise ValueError("%r is not a Kubernetes quantity" % (value,))
    number, suffix = float(match.group(1)), match.group(2)
    return number * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def _tolerates(tolerations: Iterable[Mapping], taint: Mapping) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration.get("effect") != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration.get("key") == taint.get("key"):
                return True
        elif toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def _node_name(node: Mapping) -> str:
    return node.get("metadata", {}).get("name", "?")


def unsatisfiable_reason(pod: Mapping, nodes: Sequence[Mapping]) -> str | None:
    """Why no node of the cluster could run ``pod`` even when empty, or None when one could.

    Checks what never changes while a spawn waits: the node's allocatable GPUs, CPU and
    memory, its labels (node selector, GPU product affinity) and its NoSchedule taints.
    """
    spec = pod["spec"]
    requests = {}
    for container in spec["containers"]:
        res = container.get("resources") or {}
        for name, value in {**(res.get("limits") or {}), **(res.get("requests") or {})}.items():
            requests[name] = requests.get(name, 0) + parse_quantity(value)
    gpu = next(((name, int(count)) for name, count in requests.items() if is_gpu_resource(name)), None)
    selector = spec.get("nodeSelector") or {}
    products = [
        expr["values"]
        for term in spec.get("affinity", {})
        .get("nodeAffinity", {})
        .get("requiredDuringSchedulingIgnoredDuringExecution", {})
        .get("nodeSelectorTerms", [])
        for expr in term.get("matchExpressions", [])
        if expr.get("key") == PRODUCT_LABEL and expr.get("operator") == "In"
    ]
    tolerations = spec.get("tolerations") or []

    if not nodes:
        return "This cluster has no node to run servers on. Ask an admin."

    def allocatable(node, name) -> float:
        value = (node.get("status", {}).get("allocatable") or {}).get(name)
        return parse_quantity(value) if value is not None else 0.0

    def fits_labels(node) -> bool:
        labels = node.get("metadata", {}).get("labels") or {}
        return all(labels.get(key) == value for key, value in selector.items()) and all(
            labels.get(PRODUCT_LABEL) in values for values in products
        )

    def fits_taints(node) -> bool:
        taints = [
            t
            for t in node.get("spec", {}).get("taints") or []
            if t.get("effect") in ("NoSchedule", "NoExecute") and not t.get("key", "").startswith(TRANSIENT_TAINTS)
        ]
        return all(_tolerates(tolerations, taint) for taint in taints)

    candidates = [n for n in nodes if not n.get("spec", {}).get("unschedulable")]
    if gpu is not None:
        name, count = gpu
        candidates = [n for n in candidates if allocatable(n, name) > 0]
        if not candidates:
            return (
                "No node of this cluster offers %s, so a server asking for %s can never start."
                " Ask for 0 GPUs, or ask an admin which GPUs this cluster has." % (name, plural(count))
            )
    suitable = [n for n in candidates if fits_labels(n) and fits_taints(n)]
    if not suitable:
        if products and not any(fits_labels(n) for n in candidates):
            offered = sorted({(n.get("metadata", {}).get("labels") or {}).get(PRODUCT_LABEL) for n in candidates} - {None})
            return "No node of this cluster has the GPU type %s (label %s); the GPU types here are: %s." % (
                " or ".join(products[0]),
                PRODUCT_LABEL,
                ", ".join(offered) or "none",
            )
        return (
            "No node of this cluster that could run this server matches its node selector (%s) and"
            " tolerates the node's taints. Ask an admin."
            % (", ".join("%s=%s" % item for item in sorted(selector.items())) or "none",)
        )
    if gpu is not None:
        name, count = gpu
        best = max(suitable, key=lambda n: allocatable(n, name))
        most = int(allocatable(best, name))
        if most < count:
            return (
                "No node of this cluster has %d %s: the most one node has is %d (%s)."
                " Ask for at most %d." % (count, name, most, _node_name(best), most)
            )
    for name, label in (("cpu", "CPU cores"), ("memory", "bytes of memory")):
        if name in requests and not any(allocatable(n, name) >= requests[name] for n in suitable):
            most = max(allocatable(n, name) for n in suitable)
            return "No node of this cluster has %g %s for this server (the most is %g). Ask an admin." % (
                requests[name],
                label,
                most,
            )
    return None


SCHEDULER_MESSAGE = re.compile(r"(\d+)/(\d+) nodes are available: (.*?)\.(?:\s|$)")
_REASONS = (
    (re.compile(r"Insufficient (nvidia\.com/(?:gpu|mig-\S+))"), "have no free {0}"),
    (re.compile(r"Insufficient cpu"), "have too few free CPU cores"),
    (re.compile(r"Insufficient memory"), "have too little free memory"),
    (re.compile(r"Insufficient (\S+)"), "have no free {0}"),
    (re.compile(r"didn't match Pod's node affinity/selector"), "have another GPU type or role"),
    (re.compile(r"untolerated taint"), "are reserved for other work (tainted)"),
    (re.compile(r"unschedulable"), "are cordoned for maintenance"),
    (re.compile(r"volume node affinity conflict"), "cannot reach your workspace volume"),
    (re.compile(r"Too many pods"), "are full"),
)


def explain_unschedulable(message: str) -> str:
    """'0/8 nodes are available: 8 Insufficient nvidia.com/gpu. ...' in plain words.

    >>> explain_unschedulable("0/8 nodes are available: 8 Insufficient nvidia.com/gpu. preemption: ...")
    'All GPUs of the cluster are in use: 8 of 8 nodes have no free nvidia.com/gpu.'
    """
    if "unbound immediate PersistentVolumeClaims" in message:
        return "Your workspace volume is not ready yet (its claim is not bound to a disk)."
    match = SCHEDULER_MESSAGE.search(message)
    if match is None:
        return "The cluster cannot place this server yet: %s" % message.strip()
    total = int(match.group(2))
    parts = []
    gpu_short = False
    for chunk in match.group(3).split(", "):
        count_match = re.match(r"\s*(\d+) (.*)", chunk)
        if count_match is None:
            continue
        count, reason = count_match.group(1), count_match.group(2)
        for pattern, words in _REASONS:
            found = pattern.search(reason)
            if found:
                parts.append("%s of %d nodes %s" % (count, total, words.format(*found.groups())))
                gpu_short = gpu_short or "nvidia.com/" in words.format(*found.groups())
                break
        else:
            parts.append("%s of %d nodes: %s" % (count, total, reason))
    head = "All GPUs of the cluster are in use" if gpu_short else "No node can take this server right now"
    return "%s: %s." % (head, "; ".join(parts) if parts else match.group(0))


QUOTA_MESSAGE = re.compile(
    r"exceeded quota: ([^,]+), requested: (\S+?), used: (\S+?), limited: (\S+)"
)


def explain_quota_rejection(message: str, namespace: str) -> str:
    """The API server's 'exceeded quota: ...' refusal of a pod, in plain words.

    >>> explain_quota_rejection('pods "p" is forbidden: exceeded quota: gpus, requested:'
    ...     ' requests.nvidia.com/gpu=1, used: requests.nvidia.com/gpu=2, limited:'
    ...     ' requests.nvidia.com/gpu=2', "jhub-alice")
    ... # doctest: +NORMALIZE_WHITESPACE
    "The cluster refused this server: namespace jhub-alice may use at most 2 nvidia.com/gpu\
 (ResourceQuota 'gpus'), 2 are in use and this server asks for 1. Stop a server holding GPUs,\
 or ask an admin to raise the quota."
    """
    match = QUOTA_MESSAGE.search(message)
    if match is None:
        return "The cluster refused this server because of a quota in namespace %s: %s" % (namespace, message)
    name = match.group(1)

    def values(text: str) -> dict[str, str]:
        return dict(item.split("=", 1) for item in text.split(",") if "=" in item)

    requested, used, limited = (values(match.group(i)) for i in (2, 3, 4))
    parts = []
    for key, limit in limited.items():
        resource = key.removeprefix("requests.")
        parts.append(
            "may use at most %s %s (ResourceQuota %r), %s %s in use and this server asks for %s"
            % (limit, resource, name, used.get(key, "0"), "is" if used.get(key) == "1" else "are",
               requested.get(key, "?"))
        )
    gpu = any(is_gpu_resource(k.split("requests.", 1)[-1]) for k in limited)
    return "The cluster refused this server: namespace %s %s. %s" % (
        namespace,
        "; ".join(parts),
        "Stop a server holding GPUs, or ask an admin to raise the quota." if gpu else "Ask an admin to raise the quota.",
    )
