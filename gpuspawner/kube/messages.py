"""What the cluster says, in words a student understands (pure, no I/O).

The scheduler's "0/8 nodes are available: ..." (:func:`explain_unschedulable`), the API
server's "exceeded quota" refusal (:func:`explain_quota_rejection`), and which pending pod
the scheduler could not place (:func:`unschedulable_message`).
"""

import re
from collections.abc import Mapping

from .nodes import is_gpu_resource

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

    >>> explain_unschedulable(
    ...     "0/8 nodes are available: 8 Insufficient nvidia.com/gpu. preemption: ..."
    ... )
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
    head = (
        "All GPUs of the cluster are in use"
        if gpu_short
        else "No node can take this server right now"
    )
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
        return "The cluster refused this server because of a quota in namespace %s: %s" % (
            namespace,
            message,
        )
    name = match.group(1)

    def values(text: str) -> dict[str, str]:
        return dict(item.split("=", 1) for item in text.split(",") if "=" in item)

    requested, used, limited = (values(match.group(i)) for i in (2, 3, 4))
    parts = []
    for key, limit in limited.items():
        resource = key.removeprefix("requests.")
        parts.append(
            "may use at most %s %s (ResourceQuota %r), %s %s in use and this server asks for %s"
            % (
                limit,
                resource,
                name,
                used.get(key, "0"),
                "is" if used.get(key) == "1" else "are",
                requested.get(key, "?"),
            )
        )
    gpu = any(is_gpu_resource(k.split("requests.", 1)[-1]) for k in limited)
    return "The cluster refused this server: namespace %s %s. %s" % (
        namespace,
        "; ".join(parts),
        "Stop a server holding GPUs, or ask an admin to raise the quota."
        if gpu
        else "Ask an admin to raise the quota.",
    )


def unschedulable_message(pod: Mapping) -> str | None:
    """The scheduler's verdict on a pending pod it could not place, or None."""
    status = pod.get("status") or {}
    if status.get("phase") != "Pending":
        return None
    for condition in status.get("conditions") or []:
        if (condition.get("type"), condition.get("status"), condition.get("reason")) == (
            "PodScheduled",
            "False",
            "Unschedulable",
        ):
            return condition.get("message") or "Unschedulable"
    return None
