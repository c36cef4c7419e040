"""Who holds GPUs on Kubernetes: the GPU requests of the hub's pods (pure, no I/O).

Kubernetes decides which GPU a pod gets; the hub knows how many each server asked for
from the label ``gpuspawner.io/gpus`` of its pod (read from kubespawner's pod reflector)
and whether the user may ask for more (:func:`quota_refusal`).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..policy.allocation import Holding
from ..policy.quota import GpuLimit, over_quota, plural, server_label
from .nodes import GPU_RESOURCE

LABEL_GPUS = "gpuspawner.io/gpus"
ANNOTATION_RESOURCE = "gpuspawner.io/gpu-resource"
ANNOTATION_IMAGE = "gpuspawner.io/image"
ANNOTATION_USER = "hub.jupyter.org/username"  # set by kubespawner, unescaped
ANNOTATION_SERVER = "hub.jupyter.org/servername"
DONE_PHASES = {"Succeeded", "Failed"}


@dataclass(frozen=True)
class PodHolding:
    """GPUs requested by one server's pod, as the pod reflector sees it."""

    user: str
    server: str
    gpus: int
    resource: str
    pod: str
    node: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.user, self.server)

    def ids(self) -> tuple[str, ...]:
        """Names for the GPUs (Kubernetes does not tell the hub their UUIDs)."""
        return tuple("%s/%s#%d" % (self.pod, self.resource, i) for i in range(self.gpus))

    def holding(self) -> Holding:
        return Holding(self.user, self.server, self.ids())

    def describe(self) -> str:
        where = "on node %s" % self.node if self.node else "waiting for a node"
        return "%s on %s (pod %s, %s)" % (plural(self.gpus), server_label(self.server), self.pod, where)


def holdings_from_pods(pods: Iterable[Mapping]) -> list[PodHolding]:
    """The GPU requests of the hub's live pods (the reflector's values)."""
    holdings = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        labels = metadata.get("labels") or {}
        annotations = metadata.get("annotations") or {}
        if LABEL_GPUS not in labels or ANNOTATION_USER not in annotations:
            continue
        if (pod.get("status") or {}).get("phase") in DONE_PHASES:
            continue
        try:
            gpus = int(labels[LABEL_GPUS])
        except ValueError:
            continue
        holdings.append(
            PodHolding(
                user=annotations[ANNOTATION_USER],
                server=annotations.get(ANNOTATION_SERVER, ""),
                gpus=gpus,
                resource=annotations.get(ANNOTATION_RESOURCE, GPU_RESOURCE),
                pod=metadata.get("name", ""),
                node=(pod.get("spec") or {}).get("nodeName") or "",
            )
        )
    return holdings


def quota_refusal(user: str, server: str, count: int, limit: GpuLimit, holdings: Iterable[PodHolding]) -> str | None:
    """Why ``user`` may not ask for ``count`` more GPUs on ``server``, or None (pure)."""
    mine = sorted(
        (h for h in holdings if h.user == user and h.server != server and h.gpus), key=lambda h: h.server
    )
    return over_quota(count, limit, [(h.gpus, h.describe()) for h in mine])


