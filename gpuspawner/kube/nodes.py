"""What the cluster's nodes offer, read from the API's node list (pure, no I/O).

GPU resources and the GPU product label; the driver's CUDA version from GPU feature
discovery's node labels and the node affinity that keeps an image off nodes whose driver
cannot run it; and whether any node could ever run a pod (:func:`unsatisfiable_reason`).
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..policy import cuda as cuda_rule
from ..policy.wording import plural

GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
PRODUCT_LABEL = "nvidia.com/gpu.product"
# taints Kubernetes itself sets and lifts with a node's conditions (not-ready, unreachable, ...)
TRANSIENT_TAINTS = "node.kubernetes.io/"


SHARED_RESOURCE = "nvidia.com/gpu.shared"  # NVIDIA's time-sliced/MPS replicas (renameByDefault)
REPLICAS_LABEL = "nvidia.com/gpu.replicas"  # GPU feature discovery: servers per shared GPU


def is_gpu_resource(name: str, shared: Iterable[str] = ()) -> bool:
    """``nvidia.com/gpu``, a MIG slice such as ``nvidia.com/mig-1g.10gb``, the time-sliced
    ``nvidia.com/gpu.shared``, or one of ``shared`` (the admin's shared GPU resources)."""
    return (
        name in (GPU_RESOURCE, SHARED_RESOURCE)
        or name.startswith(MIG_RESOURCE_PREFIX)
        or name in shared
    )


def resource_replicas(nodes: Iterable[Mapping], resources: Iterable[str]) -> dict[str, int]:
    """Shared resource -> servers per GPU, from the label GPU feature discovery puts on the
    nodes offering it (``nvidia.com/gpu.replicas``); the smallest where nodes differ.
    Resources no labelled node offers are left out."""
    wanted = set(resources)
    found: dict[str, int] = {}
    for node in nodes:
        label = str((node.get("metadata", {}).get("labels") or {}).get(REPLICAS_LABEL, ""))
        if not label.isdigit() or int(label) < 1:
            continue
        offered = node.get("status", {}).get("allocatable") or {}
        for resource in wanted & set(offered):
            found[resource] = min(found.get(resource, int(label)), int(label))
    return found


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
        equal = [
            {"key": k, "operator": "In", "values": [str(v)]}
            for k, v in zip(keys[:i], version, strict=False)
        ]
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
            terms += [
                [same_major] + t for t in _at_least(driver_keys, cuda_rule.driver_tuple(minimum))
            ]
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
        if (product and labels.get(PRODUCT_LABEL) != product) or any(
            labels.get(k) != v for k, v in selector.items()
        ):
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


# --- reading what the cluster says ---

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
}


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
        elif toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get(
            "value", ""
        ):
            return True
    return False


def _node_name(node: Mapping) -> str:
    return node.get("metadata", {}).get("name", "?")


@dataclass(frozen=True)
class PodNeeds:
    """What a server's pod needs of any node it could land on (built by ``objects.pod_needs``)."""

    requests: Mapping[str, float] = field(default_factory=dict)  # resource -> amount, GPUs too
    node_selector: Mapping[str, str] = field(default_factory=dict)
    products: tuple[str, ...] = ()  # the node's GPU product label must be one of these
    tolerations: Sequence[Mapping] = ()


@dataclass(frozen=True)
class NodeFacts:
    """What :func:`unsatisfiable_reason` reads of one node, parsed once per node listing
    (:func:`node_facts`) rather than once per spawn."""

    name: str
    schedulable: bool
    labels: Mapping[str, str]
    allocatable: Mapping[str, float]
    hard_taints: tuple[Mapping, ...]  # NoSchedule/NoExecute, not Kubernetes' transient ones


def node_facts(nodes: Iterable[Mapping]) -> tuple[NodeFacts, ...]:
    """The nodes of a node list (the API's dicts), their quantities parsed."""
    facts = []
    for node in nodes:
        allocatable = {}
        for name, value in (node.get("status", {}).get("allocatable") or {}).items():
            try:
                allocatable[name] = parse_quantity(value)
            except ValueError:
                continue
        taints = tuple(
            t
            for t in node.get("spec", {}).get("taints") or []
            if t.get("effect") in ("NoSchedule", "NoExecute")
            and not t.get("key", "").startswith(TRANSIENT_TAINTS)
        )
        labels = node.get("metadata", {}).get("labels") or {}
        schedulable = not node.get("spec", {}).get("unschedulable")
        facts.append(NodeFacts(_node_name(node), schedulable, labels, allocatable, taints))
    return tuple(facts)


def unsatisfiable_reason(
    needs: PodNeeds,
    nodes: Sequence[Mapping] | Sequence[NodeFacts],
    shared: Iterable[str] = (),
) -> str | None:
    """Why no node of the cluster could run a pod with ``needs`` even when empty, or None.

    Checks what never changes while a spawn waits: the node's allocatable GPUs, CPU and
    memory, its labels (node selector, GPU product) and its NoSchedule taints. ``nodes``:
    the API's node list, or its :func:`node_facts` (parsed once for many spawns);
    ``shared``: the admin's shared GPU resources (GPU resources too).
    """
    if not nodes:
        return "This cluster has no node to run servers on. Ask an admin."
    facts = nodes if isinstance(nodes[0], NodeFacts) else node_facts(nodes)
    requests = dict(needs.requests)
    gpu = next(
        ((name, int(count)) for name, count in requests.items() if is_gpu_resource(name, shared)),
        None,
    )
    selector = needs.node_selector
    products = needs.products
    tolerations = needs.tolerations

    def fits_labels(node: NodeFacts) -> bool:
        return all(node.labels.get(key) == value for key, value in selector.items()) and (
            not products or node.labels.get(PRODUCT_LABEL) in products
        )

    def fits_taints(node: NodeFacts) -> bool:
        return all(_tolerates(tolerations, taint) for taint in node.hard_taints)

    candidates = [n for n in facts if n.schedulable]
    if gpu is not None:
        name, count = gpu
        candidates = [n for n in candidates if n.allocatable.get(name, 0.0) > 0]
        if not candidates:
            return (
                "No node of this cluster offers %s, so a server asking for %s can never start."
                " Ask for 0 GPUs, or ask an admin which GPUs this cluster has."
                % (name, plural(count))
            )
    suitable = [n for n in candidates if fits_labels(n) and fits_taints(n)]
    if not suitable:
        if products and not any(fits_labels(n) for n in candidates):
            offered = sorted({n.labels.get(PRODUCT_LABEL) for n in candidates} - {None})
            return (
                "No node of this cluster has the GPU type %s (label %s);"
                " the GPU types here are: %s."
                % (
                    " or ".join(products),
                    PRODUCT_LABEL,
                    ", ".join(offered) or "none",
                )
            )
        return (
            "No node of this cluster that could run this server matches its node selector (%s) and"
            " tolerates the node's taints. Ask an admin."
            % (", ".join("%s=%s" % item for item in sorted(selector.items())) or "none",)
        )
    if gpu is not None:
        name, count = gpu
        best = max(suitable, key=lambda n: n.allocatable.get(name, 0.0))
        most = int(best.allocatable.get(name, 0.0))
        if most < count:
            return (
                "No node of this cluster has %d %s: the most one node has is %d (%s)."
                " Ask for at most %d." % (count, name, most, best.name, most)
            )
    for name, label in (("cpu", "CPU cores"), ("memory", "bytes of memory")):
        if name in requests and not any(
            n.allocatable.get(name, 0.0) >= requests[name] for n in suitable
        ):
            most = max(n.allocatable.get(name, 0.0) for n in suitable)
            return (
                "No node of this cluster has %g %s for this server (the most is %g). Ask an admin."
                % (
                    requests[name],
                    label,
                    most,
                )
            )
    return None


def needs_key(needs: PodNeeds) -> tuple:
    """A hashable key of ``needs``, under which a verdict on one node listing is kept."""
    return (
        tuple(sorted(needs.requests.items())),
        tuple(sorted(needs.node_selector.items())),
        tuple(needs.products),
        tuple(repr(sorted(t.items())) for t in needs.tolerations),
    )
