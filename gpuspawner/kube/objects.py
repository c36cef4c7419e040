"""The Kubernetes objects of one server, with no I/O.

The pod is kubespawner's: :func:`pod_spec` takes the pod ``KubeSpawner.get_pod_manifest``
built (every setting kubespawner honours: init containers, tolerations, affinities, the
scheduler, image pull secrets, lifecycle hooks, internal SSL, ``extra_pod_config``...) as
the API's camelCase dict (:func:`api_dict`) and adds what a GPU server needs, from a
:class:`PodRequest`: its GPU resources, NVIDIA_VISIBLE_DEVICES, its GPU nodes'
tolerations, selector and affinity, the workspace and /dev/shm volumes, and the locked
security settings. :func:`pvc_spec` builds the workspace claim. Both return plain dicts,
so a test compares dicts and the spawner sends them as is. What nodes offer and whether one
could run a server is in :mod:`.nodes`; the cluster's messages in words a student
understands are in :mod:`.messages`.
"""

import copy
import datetime
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..lifecycle.env import NO_DEVICES, VISIBLE
from ..policy.locks import GPU_RESOURCE_PREFIXES
from ..policy.merge import deep_merge
from .nodes import GPU_RESOURCE, PRODUCT_LABEL, PodNeeds, parse_quantity

# the taint GPU node pools usually carry (GKE, AKS, the GPU operator's docs)
DEFAULT_GPU_TOLERATIONS = ({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},)
WORKSPACE_VOLUME = "workspace"
SHM_VOLUME = "dshm"
CONTAINER_NAME = "notebook"  # the server's container in kubespawner's pod
PORT_NAME = "notebook-port"  # kubespawner finds the server's port by this name
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
# the client's kinds of JSON values it keeps as they are
PLAIN_KINDS = ("str", "int", "bool", "float", "object")

# what the server container gets, whatever the admin's extra_container_config says
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
class ProfilePod:
    """What a course profile (policy/profiles.py) sets on the server's container: CPU
    cores, memory and /dev/shm in bytes, and claims mounted as (claim, path, read_only)."""

    cpu_limit: float | None = None
    mem_limit: int | None = None
    shm_size: int | None = None
    volumes: tuple[tuple[str, str, bool], ...] = ()


def bytes_quantity(amount: int) -> str:
    """1073741824 -> '1Gi'; a number of bytes no binary unit divides stays a number."""
    for unit, power in (("Ti", 4), ("Gi", 3), ("Mi", 2), ("Ki", 1)):
        if amount % 1024**power == 0:
            return "%d%s" % (amount // 1024**power, unit)
    return str(amount)


def profile_volume_name(index: int) -> str:
    return "profile-volume-%d" % index


def apply_profile(pod: dict, container: dict, profile: ProfilePod) -> None:
    """The profile's limits over kubespawner's (a request above a new limit is lowered to
    it), its /dev/shm size, and its claims (read-only ones mounted read-only), in place."""
    resources = container.setdefault("resources", {})
    limits = resources.setdefault("limits", {})
    requests = resources.setdefault("requests", {})
    for name, amount, quantity in (
        ("cpu", profile.cpu_limit, cpu_quantity(profile.cpu_limit or 0)),
        ("memory", profile.mem_limit, bytes_quantity(profile.mem_limit or 0)),
    ):
        if amount is None:
            continue
        limits[name] = quantity
        if name in requests and parse_quantity(str(requests[name])) > amount:
            requests[name] = quantity
    spec = pod["spec"]
    if profile.shm_size is not None:
        shm = {"medium": "Memory", "sizeLimit": bytes_quantity(profile.shm_size)}
        for index, volume in enumerate(spec["volumes"]):
            if volume.get("name") == SHM_VOLUME:
                spec["volumes"][index] = dict(volume, emptyDir=shm)
                break
        else:
            spec["volumes"].append({"name": SHM_VOLUME, "emptyDir": shm})
            container["volumeMounts"].append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    paths = {path for _, path, _ in profile.volumes}
    container["volumeMounts"] = [m for m in container["volumeMounts"]
                                 if m.get("mountPath") not in paths]  # fmt: skip
    for index, (claim, path, read_only) in enumerate(profile.volumes):
        name = profile_volume_name(index)
        spec["volumes"].append(
            {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}
        )
        container["volumeMounts"].append({"name": name, "mountPath": path, "readOnly": read_only})


@dataclass(frozen=True)
class PodRequest:
    """What the pod of one server adds to the pod kubespawner builds."""

    gpu_count: int = 0
    placement: GpuPlacement = GpuPlacement()
    # node selector terms (ORed) a GPU server's node must match: see nodes.cuda_affinity_terms
    cuda_terms: Sequence[Sequence[Mapping]] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    uid: int = 1000
    gid: int = 100
    shm_size: str | None = "2Gi"  # a quantity; None: the runtime's default /dev/shm
    workspace_pvc: str | None = None
    workspace_path: str = "/home/jovyan/work"
    # the env entries of the admin's extra_container_config, merged into the server's by name
    extra_env: Sequence[Mapping] = ()
    profile: ProfilePod | None = None  # the spawn's course profile, over kubespawner's


@dataclass(frozen=True)
class PvcRequest:
    """The user's workspace claim."""

    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    storage: str = "10Gi"
    storage_class: str | None = None  # None: the cluster's default class
    access_modes: Sequence[str] = ("ReadWriteOnce",)
    selector: Mapping | None = None  # kubespawner's storage_selector: which volumes may bind


def api_dict(value):
    """A Kubernetes client model (or dicts and lists holding them) as the API's JSON dict.

    camelCase keys as ``kubectl get -o json`` shows them, unset fields left out; models of
    both the kubernetes and the kubernetes_asyncio clients (z2jh's hub config builds its
    init container from one of them). Containers are new, so the result can be changed.
    """
    kind = type(value)
    if value is None or kind in _SCALARS:
        return value
    if kind is dict:
        return {key: api_dict(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [api_dict(item) for item in value]
    fields = _model_fields(kind)
    if fields is not None:
        found = {}
        for attribute, name in fields:
            item = getattr(value, attribute)
            if item is not None:
                found[name] = api_dict(item)
        return found
    if isinstance(value, (str, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [api_dict(item) for item in value]
    if isinstance(value, Mapping):
        return {key: api_dict(item) for key, item in value.items()}
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    return value


@functools.lru_cache(maxsize=None)  # per class: api_dict and patch_model run per spawn
def _model_fields(kind: type) -> tuple[tuple[str, str], ...] | None:
    """(attribute, camelCase name) of a client model class, in the client's order; None
    for a class that is not one."""
    names = getattr(kind, "attribute_map", None)
    types = getattr(kind, "openapi_types", None)
    if not (isinstance(names, dict) and isinstance(types, dict)):
        return None
    return tuple((attribute, names[attribute]) for attribute in types)


@functools.lru_cache(maxsize=None)
def _api_names(kind: type) -> frozenset[str]:
    """The camelCase field names of a client model class."""
    return frozenset(name for _, name in _model_fields(kind) or ())


_SCALARS = frozenset((str, int, float, bool))
_UNKNOWN = object()


def patch_model(model, wanted, kind: str, deserialize, current=_UNKNOWN):
    """``model`` (a client model, or what kubespawner put where one goes) changed to read
    as ``wanted`` (its :func:`api_dict` after :func:`pod_spec`), in place where it can be.

    Parts that already read as wanted are kept as they are, so kubespawner's objects (and
    the dicts it leaves in them, such as an affinity term's ``preference``) reach the pod
    and ``modify_pod_hook`` unchanged; a changed or new part is ``deserialize(data, kind)``
    of its kind ("V1Container", "list[V1Toleration]", "dict(str, str)", ...).
    ``current``: ``api_dict(model)`` where the caller has it; a part equal there to its
    wanted part is kept without being looked into again.
    """
    if current is not _UNKNOWN and (current is wanted or current == wanted):
        return model  # pod_spec shares what it keeps: mostly found by identity
    kinds = getattr(model, "openapi_types", None)
    if isinstance(kinds, dict) and isinstance(wanted, dict):
        names = model.attribute_map
        if not wanted.keys() <= _api_names(type(model)):
            return deserialize(wanted, kind)
        known = current if isinstance(current, dict) else None
        for attribute, attribute_kind in kinds.items():
            name = names[attribute]
            value, part = wanted.get(name), getattr(model, attribute)
            if part is not None or value is not None:
                was = known.get(name) if known is not None else _UNKNOWN
                patched = patch_model(part, value, attribute_kind, deserialize, was)
                if patched is not part:
                    setattr(model, attribute, patched)
        return model
    if isinstance(model, list) and isinstance(wanted, list) and kind.startswith("list["):
        item_kind = kind[len("list[") : -1]
        known = current if isinstance(current, list) and len(current) == len(model) else None
        return [
            patch_model(
                model[i], item, item_kind, deserialize, known[i] if known is not None else _UNKNOWN
            )
            if i < len(model)
            else deserialize(item, item_kind)
            for i, item in enumerate(wanted)
        ]
    if wanted is None:
        return None
    if (api_dict(model) if current is _UNKNOWN else current) == wanted:
        return model  # a value, or a dict kubespawner left where a model goes
    if kind in PLAIN_KINDS or kind.startswith("dict(str, str"):
        return copy.deepcopy(wanted)  # already what the client would make of it
    return deserialize(wanted, kind)


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


def gpu_resources(request: PodRequest) -> dict:
    """The server's GPU limits and requests (requests always equal limits); none for 0 GPUs."""
    if not request.gpu_count:
        return {"limits": {}, "requests": {}}
    amount = {request.placement.resource: str(request.gpu_count)}
    return {"limits": dict(amount), "requests": dict(amount)}


def node_selector_terms(request: PodRequest, required_terms: Sequence[Mapping] = ()) -> list[dict]:
    """The required node selector terms (ORed) of a GPU server's pod.

    Each term kubespawner wrote (``node_affinity_required``, z2jh's node purpose in its
    "require" mode) ANDed with the GPU product and with each CUDA term: a term's
    expressions are ANDed, so the product expression is repeated in every term.
    """
    product = []
    if request.placement.product:
        product.append(
            {"key": PRODUCT_LABEL, "operator": "In", "values": [request.placement.product]}
        )
    ours = [product + [dict(e) for e in term] for term in request.cuda_terms] or [product]
    if not required_terms:
        return [{"matchExpressions": expressions} for expressions in ours]
    return [
        dict(term, matchExpressions=[dict(e) for e in term.get("matchExpressions") or ()] + expr)
        for term in required_terms
        for expr in ours
    ]


def server_env(env: Sequence[Mapping], request: PodRequest) -> list[dict]:
    """The server container's env entries: kubespawner's (in its order, ``valueFrom`` kept),
    the admin's ``extra_container_config`` entries merged by name (replacing in place,
    else appended), then NVIDIA_VISIBLE_DEVICES as :func:`lifecycle.env.lock_visible_devices`
    rules it: unset with GPUs (the device plugin's value must win), ``void`` without."""
    entries = [dict(entry) for entry in env]
    for extra in request.extra_env:
        entries = _set_env(entries, dict(extra))
    if request.gpu_count:
        return [entry for entry in entries if entry.get("name") != VISIBLE]
    return _set_env(entries, {"name": VISIBLE, "value": NO_DEVICES})


def _set_env(entries: list[dict], entry: dict) -> list[dict]:
    names = [e.get("name") for e in entries]
    if entry.get("name") in names:
        return [entry if name == entry.get("name") else e for e, name in zip(entries, names)]
    return entries + [entry]


def server_resources(resources: Mapping, request: PodRequest) -> dict:
    """The server container's resources: kubespawner's (CPU, memory, ``extra_resource_*``,
    ``extra_container_config``) without any GPU, then this server's own GPUs; quantities as
    strings (kubespawner may give numbers)."""
    merged = {
        kind: {
            name: str(value)
            for name, value in (values or {}).items()
            if not str(name).startswith(GPU_RESOURCE_PREFIXES)
        }
        for kind, values in resources.items()
    }
    for kind, values in gpu_resources(request).items():
        merged.setdefault(kind, {}).update(values)
    return merged


def server_container(spec: Mapping) -> dict:
    """The server's container in a pod spec (kubespawner names it "notebook")."""
    for container in spec.get("containers") or ():
        if container.get("name") == CONTAINER_NAME:
            return container
    raise ValueError("The pod has no container named %r." % CONTAINER_NAME)


def pod_spec(base: Mapping, request: PodRequest) -> dict:
    """The Pod of one server: kubespawner's pod ``base`` (an :func:`api_dict`) with the GPU
    server's parts added, and its locks applied after every admin extra.

    ``base`` is not changed: what is changed is new, what is not is shared with ``base``
    (so :func:`patch_model` finds the parts kept by identity, without looking into them).
    """
    pod = dict(base)
    metadata = pod["metadata"] = dict(pod.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **request.labels}
    metadata["annotations"] = {**(metadata.get("annotations") or {}), **request.annotations}
    spec = pod["spec"] = dict(pod.get("spec") or {})
    server = server_container(spec)
    container = dict(server)
    spec["containers"] = [container if c is server else c for c in spec["containers"]]
    container["env"] = server_env(container.get("env") or (), request)
    container["resources"] = server_resources(container.get("resources") or {}, request)
    security = deep_merge(
        container.get("securityContext") or {},
        dict(LOCKED_CONTAINER_SECURITY, runAsUser=request.uid, runAsGroup=request.gid),
    )
    # exactly the locked capabilities: none added (kubespawner's container_security_context)
    security["capabilities"] = copy.deepcopy(LOCKED_CONTAINER_SECURITY["capabilities"])
    container["securityContext"] = security
    volumes = spec["volumes"] = list(spec.get("volumes") or ())
    mounts = container["volumeMounts"] = list(container.get("volumeMounts") or ())
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
    if request.profile is not None:
        apply_profile(pod, container, request.profile)
    if not request.gpu_count:
        return pod
    tolerations = list(spec.get("tolerations") or ())
    tolerations += [dict(t) for t in request.placement.tolerations if dict(t) not in tolerations]
    if tolerations:
        spec["tolerations"] = tolerations
    if request.placement.node_selector:
        spec["nodeSelector"] = {
            **(spec.get("nodeSelector") or {}),
            **request.placement.node_selector,
        }
    if request.placement.product or request.cuda_terms:
        affinity = spec["affinity"] = dict(spec.get("affinity") or {})
        node_affinity = affinity["nodeAffinity"] = dict(affinity.get("nodeAffinity") or {})
        required = node_affinity.get(REQUIRED) or {}
        node_affinity[REQUIRED] = dict(
            required,
            nodeSelectorTerms=node_selector_terms(request, required.get("nodeSelectorTerms") or ()),
        )
    return pod


def _amounts(container: Mapping) -> dict[str, float]:
    resources = container.get("resources") or {}
    # a request defaults to the limit
    asked = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return {name: parse_quantity(str(value)) for name, value in asked.items()}


def pod_needs(pod: Mapping) -> PodNeeds:
    """What ``pod`` needs of a node, as typed facts read from the pod the spawner sends.

    Resources as the scheduler counts them: the containers' sum, or the largest init
    container's where that is more (init containers run one at a time, before the others);
    a request where one is given, else the limit. The node selector, the tolerations, and
    the GPU products the required node affinity admits (none when a term admits any).
    """
    spec = pod.get("spec") or {}
    requests: dict[str, float] = {}
    for container in spec.get("containers") or ():
        for name, amount in _amounts(container).items():
            requests[name] = requests.get(name, 0.0) + amount
    for container in spec.get("initContainers") or ():
        for name, amount in _amounts(container).items():
            requests[name] = max(requests.get(name, 0.0), amount)
    node_affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    terms = (node_affinity.get(REQUIRED) or {}).get("nodeSelectorTerms") or ()
    per_term = [
        {
            value
            for expression in term.get("matchExpressions") or ()
            if expression.get("key") == PRODUCT_LABEL and expression.get("operator") == "In"
            for value in expression.get("values") or ()
        }
        for term in terms
    ]
    products = tuple(sorted(set().union(*per_term))) if per_term and all(per_term) else ()
    return PodNeeds(
        requests=requests,
        node_selector=dict(spec.get("nodeSelector") or {}),
        products=products,
        tolerations=tuple(dict(t) for t in spec.get("tolerations") or ()),
    )


def pvc_spec(request: PvcRequest) -> dict:
    """The user's workspace PersistentVolumeClaim."""
    spec: dict = {
        "accessModes": list(request.access_modes),
        "resources": {"requests": {"storage": request.storage}},
    }
    if request.storage_class is not None:
        spec["storageClassName"] = request.storage_class
    if request.selector:
        spec["selector"] = api_dict(request.selector)
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
