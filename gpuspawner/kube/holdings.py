"""Who holds GPUs on Kubernetes: the GPU requests of the hub's pods (pure, no I/O).

Kubernetes decides which GPU a pod gets; the hub knows how many each server asked for
from the label ``gpuspawner.io/gpus`` of its pod (read from kubespawner's pod reflector).
Kubernetes does not tell the hub the GPUs' UUIDs, so each is named after its pod and
resource (:func:`pod_gpus`), and typed by the GPU product label of the node it runs on
(a MIG slice with its profile, :func:`gpu_type`), so GPU-type weights apply to its ledger
intervals.
"""

from collections.abc import Iterable, Mapping

from ..policy.allocation import Holding
from ..policy.inventory import Gpu
from .nodes import GPU_RESOURCE, MIG_RESOURCE_PREFIX, PRODUCT_LABEL, is_gpu_resource, parse_quantity

LABEL_GPUS = "gpuspawner.io/gpus"
LABEL_USER_ID = "gpuspawner.io/user-id"  # the hub's user id: survives a rename
ANNOTATION_RESOURCE = "gpuspawner.io/gpu-resource"
ANNOTATION_PRODUCT = "gpuspawner.io/gpu-product"
ANNOTATION_IMAGE = "gpuspawner.io/image"
ANNOTATION_SHARED_BY = "gpuspawner.io/gpu-shared-by"  # servers per GPU of a shared resource
ANNOTATION_USER = "hub.jupyter.org/username"  # set by kubespawner, unescaped
ANNOTATION_SERVER = "hub.jupyter.org/servername"
DONE_PHASES = {"Succeeded", "Failed"}


def pod_gpus(
    pod: str, resource: str, count: int, gpu_type: str, shared_by: int = 1
) -> tuple[Gpu, ...]:
    """The ``count`` GPUs of a pod, named '<pod>/<resource>#<i>' and typed ``gpu_type``;
    of a shared resource (time-sliced replicas), each a slot of a GPU ``shared_by`` servers
    share, which the quota counts as 1/``shared_by``."""
    return tuple(
        Gpu(
            uuid="%s/%s#%d" % (pod, resource, i),
            name=gpu_type,
            resource=resource,
            shared_by=max(shared_by, 1),
        )  # fmt: skip
        for i in range(count)
    )


def gpu_type(product: str | None, resource: str) -> str:
    """A GPU's type: the product (the node's GPU feature discovery label) of a whole GPU; of a
    MIG slice, the product and the slice's profile, as NVML names it ("NVIDIA-A100-SXM4-80GB
    MIG 1g.10gb"), so a slice is neither counted nor weighed as a whole GPU; the resource
    when no product is known."""
    if not product:
        return resource
    if resource.startswith(MIG_RESOURCE_PREFIX):
        return "%s MIG %s" % (product, resource[len(MIG_RESOURCE_PREFIX) :])
    if resource == GPU_RESOURCE:
        return product
    return "%s %s" % (product, resource)


def node_products(nodes: Iterable[Mapping]) -> dict[str, str]:
    """node name -> its GPU product label (GPU feature discovery), for nodes that have one."""
    products = {}
    for node in nodes:
        metadata = node.get("metadata") or {}
        product = (metadata.get("labels") or {}).get(PRODUCT_LABEL)
        if product:
            products[metadata.get("name", "")] = product
    return products


def gpu_totals(nodes: Iterable[Mapping], shared: Iterable[str] = ()) -> dict[str, int]:
    """GPUs per type (:func:`gpu_type`) on schedulable nodes (of a shared resource: its
    replicas, the slots servers may hold); ``shared``: the admin's shared GPU resources."""
    totals: dict[str, int] = {}
    for kind, _, count in _node_gpus(nodes, tuple(shared)):
        totals[kind] = totals.get(kind, 0) + count
    return totals


def gpu_kinds(nodes: Iterable[Mapping], shared: Iterable[str] = ()) -> dict[str, tuple[str, str]]:
    """GPU type (:func:`gpu_type`) -> (its resource, its product or "") on schedulable nodes:
    which types of :func:`gpu_totals` a server asking for a resource and product may get."""
    return {kind: where for kind, where, _ in _node_gpus(nodes, tuple(shared))}


def _node_gpus(nodes: Iterable[Mapping], shared: tuple[str, ...]):
    for node in nodes:
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        product = ((node.get("metadata") or {}).get("labels") or {}).get(PRODUCT_LABEL) or ""
        for resource, value in ((node.get("status") or {}).get("allocatable") or {}).items():
            count = int(parse_quantity(value)) if is_gpu_resource(resource, shared) else 0
            if count > 0:
                yield gpu_type(product, resource), (resource, product), count


def holdings_from_pods(
    pods: Iterable[Mapping],
    products: Mapping[str, str] | None = None,
    memo: dict | None = None,
) -> list[Holding]:
    """The GPU requests of the hub's live pods (the reflector's values), one per server.

    ``products``: node name -> GPU product (:func:`node_products`). A GPU is typed
    (:func:`gpu_type`) by its node's product, else by the product the pod asked for, else by
    its resource. ``memo``: a dict kept between calls (a hub's spawners share one). The
    reflector replaces a pod's object on every change and never changes one in place, so a
    pod object seen before with the same ``products`` object is not read again (one identity
    check per pod: the hub rebuilds its holdings up to once a second); pods that are gone
    leave it.
    """
    products = products or {}
    known = memo if memo is not None and memo.get(_PRODUCTS) is products else {}
    holdings = []
    seen: dict = {_PRODUCTS: products}
    for pod in pods:
        entry = known.get(id(pod))
        if entry is not None and entry[0] is pod:
            holding = entry[1]
        else:
            holding = holding_from_pod(pod, products)
        seen[id(pod)] = (pod, holding)  # the pod is kept, so its id is not reused meanwhile
        if holding is not None:
            holdings.append(holding)
    if memo is not None:
        memo.clear()
        memo.update(seen)
    return holdings


_PRODUCTS = "products"  # the memo's key of the node products its holdings were read with


def holding_from_pod(pod: Mapping, products: Mapping[str, str]) -> Holding | None:
    """What one live pod of the hub holds, or None (not a GPU server's pod, or done)."""
    metadata = pod.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    if LABEL_GPUS not in labels or ANNOTATION_USER not in annotations:
        return None
    if (pod.get("status") or {}).get("phase") in DONE_PHASES:
        return None
    try:
        count = int(labels[LABEL_GPUS])
    except ValueError:
        return None
    name = metadata.get("name", "")
    node = (pod.get("spec") or {}).get("nodeName") or ""
    resource = annotations.get(ANNOTATION_RESOURCE, GPU_RESOURCE)
    product = products.get(node) or annotations.get(ANNOTATION_PRODUCT)
    where = "on node %s" % node if node else "waiting for a node"
    user_id = labels.get(LABEL_USER_ID)
    shared_by = str(annotations.get(ANNOTATION_SHARED_BY, "1"))
    return Holding(
        user="#" + user_id if user_id else annotations[ANNOTATION_USER],
        owner=annotations[ANNOTATION_USER] if user_id else "",
        server=annotations.get(ANNOTATION_SERVER, ""),
        gpus=pod_gpus(
            name,
            resource,
            count,
            gpu_type(product, resource),
            int(shared_by) if shared_by.isdigit() else 1,
        ),  # fmt: skip
        detail="pod %s, %s" % (name, where),
    )
