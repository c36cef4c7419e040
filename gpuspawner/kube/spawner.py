"""The Kubernetes backend: a KubeSpawner whose pods ask for GPUs as extended resources.

Kubernetes decides which GPU a pod gets (the scheduler picks a node, the NVIDIA device
plugin picks the devices). The hub decides whether the user may ask: a user's GPUs are
counted across all of their servers from kubespawner's pod reflector (the watch cache of
the hub's pods, labelled ``gpuspawner.io/gpus``), so a spawn costs no extra LIST and a
restarted hub knows the counts as soon as the reflector has loaded.
"""

import asyncio
import contextlib
import json
import os
import time
from dataclasses import dataclass, field

from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from tornado.gen import maybe_future
from traitlets import Bool, Dict, Enum, Float, Int, List, TraitError, Unicode, default, validate

from ..lifecycle.base import GPUSpawnerMixin
from ..lifecycle.form import spawn_failed
from ..lifecycle.refusal import SpawnRefused
from ..lifecycle.shared import SharedState
from ..policy.allocation import Holding
from ..policy import cuda
from ..policy.inventory import Gpu
from ..policy.locks import init_container_violations, pod_violations, refusal
from ..policy.names import KUBE_NAME_MAX, fit_name
from ..policy.wording import plural
from ..usage.secrets import sync_kube_secret
from .holdings import (
    ANNOTATION_IMAGE,
    ANNOTATION_PRODUCT,
    ANNOTATION_RESOURCE,
    ANNOTATION_SHARED_BY,
    LABEL_GPUS,
    LABEL_USER_ID,
    gpu_type,
    holdings_from_pods,
    pod_gpus,
)
from .messages import explain_quota_rejection, explain_unschedulable, unschedulable_message
from .nodes import (
    GPU_RESOURCE,
    SHARED_RESOURCE,
    cuda_affinity_terms,
    cuda_refusal,
    cuda_verdicts,
    is_gpu_resource,
    needs_key,
    unsatisfiable_reason,
)
from .listing import KubeNodeList, NodeSummary
from .namespace import KubeNamespace
from .workspace import KubeWorkspace
from .objects import (
    DEFAULT_GPU_TOLERATIONS,
    GpuPlacement,
    PodRequest,
    ProfilePod,
    PvcRequest,
    api_dict,
    docker_size_to_quantity,
    patch_model,
    pod_needs,
    pod_spec,
    pvc_spec,
)

PROFILE_FIELDS = {"resource", "product", "node_selector", "tolerations"}


@dataclass
class BuiltPod:
    """A server's pod, built once for the capacity check and the creation."""

    model: object  # kubespawner's V1Pod
    base: dict  # its api_dict
    wanted: dict  # objects.pod_spec of it: what is sent
    key: tuple  # what it was built for (namespace, pod, claim, image)


@dataclass
class KubeState(SharedState):
    """The Kubernetes backend's state in a hub process: the pool and the cached node list."""

    nodes: list[dict] | None = None
    nodes_listed_at: float = 0.0
    nodes_forbidden: bool = False
    nodes_listing: asyncio.Future | None = None
    node_summary: NodeSummary | None = None  # what was read from the node list above
    # id(pod object) -> (the object, its Holding), with the node products (holdings_from_pods)
    pod_holdings: dict = field(default_factory=dict)


class _Json:
    """What kubernetes_asyncio's deserializer reads: a response with a JSON body."""

    def __init__(self, data):
        self.data = json.dumps(data)


class KubeGPUSpawner(KubeWorkspace, KubeNamespace, KubeNodeList, GPUSpawnerMixin, KubeSpawner):
    """One pod per server with GPUs as extended resources, a quota and a persistent workspace."""

    profile_host_paths = False  # a course profile's volumes are claims here

    gpu_resource = Unicode(
        GPU_RESOURCE,
        help="""The extended resource a GPU server asks for: "nvidia.com/gpu", a MIG
        resource such as "nvidia.com/mig-1g.10gb" (the device plugin's "mixed" strategy),
        or a shared resource of ``shared_gpu_resources`` ("nvidia.com/gpu.shared").
        Per image with ``gpu_profiles``.""",
    ).tag(config=True)

    shared_gpu_resources = Dict(
        default_value={SHARED_RESOURCE: 4},
        key_trait=Unicode(),
        value_trait=Int(),
        help="""Extended resources whose units are slots of a shared GPU (time-slicing or
        MPS in NVIDIA's device plugin), with how many servers share one GPU: resource ->
        replicas, e.g. {"nvidia.com/gpu.shared": 4} (the plugin's name for time-sliced
        replicas with renameByDefault). A server asking for one (``gpu_resource`` or a
        ``gpu_profiles`` resource) holds slots, which the quota counts as 1/replicas GPU
        each. The node label ``nvidia.com/gpu.replicas`` (GPU feature discovery), where
        the nodes offering the resource have it, overrides the number given here. Memory
        is not isolated between the servers sharing a GPU.""",
    ).tag(config=True)

    gpu_product = Unicode(
        "",
        help="""GPU type GPU servers must run on: a value of the node label
        ``nvidia.com/gpu.product`` (set by GPU feature discovery), e.g.
        "NVIDIA-A100-SXM4-80GB". Empty: any GPU node. Per image with ``gpu_profiles``.""",
    ).tag(config=True)

    gpu_node_selector = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help='Node labels GPU servers require, e.g. {"pool": "gpu"}.'
        " Per image with ``gpu_profiles``.",
    ).tag(config=True)

    gpu_tolerations = List(
        [dict(t) for t in DEFAULT_GPU_TOLERATIONS],
        help="""Tolerations GPU servers get, for tainted GPU nodes (default: the
        ``nvidia.com/gpu`` NoSchedule taint). Servers without GPUs get none, so they stay
        off GPU nodes. Per image with ``gpu_profiles``.""",
    ).tag(config=True)

    gpu_profiles = Dict(
        key_trait=Unicode(),
        value_trait=Dict(),
        help="""Placement of GPU servers per catalog image key, overriding ``gpu_resource``,
        ``gpu_product``, ``gpu_node_selector`` and ``gpu_tolerations``::

            {"pytorch-2.9-mig": {"resource": "nvidia.com/mig-1g.10gb"},
             "pytorch-2.9-h100": {"product": "NVIDIA-H100-80GB-HBM3",
                                  "node_selector": {"pool": "h100"}}}
        """,
    ).tag(config=True)

    gpu_wait_timeout = Float(
        120,
        help="""Seconds a GPU server may wait for the scheduler to find a free GPU. The
        progress page says why it waits; after this long the pod is deleted and the spawn
        fails with the scheduler's reason. Keep it below ``start_timeout``.""",
    ).tag(config=True)

    check_node_capacity = Bool(
        True,
        help="""Refuse at once a server no node could ever run (too many GPUs, an unknown GPU
        type, a resource no node offers), from a cached list of nodes. Needs permission to
        list nodes (deploy/z2jh-values.yaml grants it); without it the check is skipped.""",
    ).tag(config=True)

    cuda_compatibility = Enum(
        cuda.MODES,
        "minor-version",
        help="""Which GPU nodes may run an image with a "cuda" version, judged from the
        driver labels GPU feature discovery puts on nodes (``nvidia.com/cuda.runtime-version.*``
        or the older ``nvidia.com/cuda.runtime.*``, and the driver version). A GPU server
        is kept off nodes whose driver cannot run its image and refused when no GPU node
        can; nodes without the labels count as able. "minor-version" (default) or
        "strict", as on the Docker backend; see gpuspawner/policy/cuda.py. Needs
        ``check_node_capacity`` and read access to nodes.""",
    ).tag(config=True)

    node_cache_seconds = Float(
        30,
        help="How long the node list used by ``check_node_capacity`` is reused.",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fit_object_names()

    def fit_object_names(self) -> None:
        """Pod, PVC and namespace names within Kubernetes' 63 characters for any user name
        (kubespawner's slugs fit, the templates around them may not)."""
        if getattr(self, "user", None) is None or not self.pod_name:
            return
        self.pod_name = fit_name(self.pod_name, KUBE_NAME_MAX)
        self.pvc_name = fit_name(self.pvc_name, KUBE_NAME_MAX)
        self.namespace = fit_name(self.namespace, KUBE_NAME_MAX)
        self.dns_name = self.dns_name_template.format(namespace=self.namespace, name=self.pod_name)

    def clear_state(self):
        super().clear_state()
        self.fit_object_names()

    @default("start_timeout")
    def _default_start_timeout(self):
        return 300

    @default("events_enabled")
    def _default_events_enabled(self):
        # progress comes from the pod's own status (the scheduler's verdict), not from events
        return False

    @default("image_pull_policy")
    def _default_image_pull_policy(self):
        return "IfNotPresent"

    @default("uid")
    def _default_uid(self):
        return 1000

    @default("gid")
    def _default_gid(self):
        return 100

    @default("fs_gid")
    def _default_fs_gid(self):
        return 100

    @default("storage_pvc_ensure")
    def _default_storage_pvc_ensure(self):
        return True

    @default("storage_capacity")
    def _default_storage_capacity(self):
        return "10Gi"

    @default("pvc_name_template")
    def _default_pvc_name_template(self):
        # one workspace per user, shared by their named servers
        return "gpuspawner-workspace-{username}"

    @validate("uid")
    def _validate_uid(self, proposal):
        if proposal.value == 0:
            raise TraitError("uid must not be 0: servers run as a non-root user.")
        return proposal.value

    @validate("shared_gpu_resources")
    def _validate_shared_gpu_resources(self, proposal):
        for resource, replicas in proposal.value.items():
            if "/" not in resource:
                raise TraitError(
                    "shared_gpu_resources: %r is not an extended resource name such as %r."
                    % (resource, SHARED_RESOURCE)
                )
            if replicas < 2:
                raise TraitError(
                    "shared_gpu_resources[%r] is %d: a shared GPU is shared by at least 2"
                    " servers." % (resource, replicas)
                )
        return proposal.value

    @validate("gpu_profiles")
    def _validate_gpu_profiles(self, proposal):
        for key, profile in proposal.value.items():
            unknown = sorted(set(profile) - PROFILE_FIELDS)
            if unknown:
                raise TraitError(
                    "gpu_profiles[%r] has unknown field(s) %s; the fields are: %s."
                    % (key, ", ".join(map(repr, unknown)), ", ".join(sorted(PROFILE_FIELDS)))
                )
            resource = profile.get("resource", GPU_RESOURCE)
            # an admin's shared resource (shared_gpu_resources, maybe set later): check_config
            if not isinstance(resource, str) or "/" not in resource:
                raise TraitError(
                    "gpu_profiles[%r]: %r is not a GPU resource name." % (key, resource)
                )
        return proposal.value

    allow_unsafe_pod_config = Bool(
        False,
        help="""Pass the keys of ``extra_container_config``, ``extra_pod_config`` and
        ``extra_containers`` that are refused by default: hostPID, hostIPC, hostNetwork,
        hostPath volumes, privileged, allowPrivilegeEscalation, capabilities.add, running as
        root (runAsUser 0, runAsNonRoot false), GPU resources (nvidia.com/*, amd.com/*,
        gpu.intel.com/*) and the GPU environment variables (NVIDIA_VISIBLE_DEVICES,
        CUDA_VISIBLE_DEVICES, NVIDIA_DRIVER_CAPABILITIES); and the GPU resources and GPU
        environment of ``init_containers``. Init containers may run as root, privileged and
        with added capabilities: they run the admin's image and command to completion
        before the server starts (z2jh's block-cloud-metadata sets iptables rules so). UNSAFE:
        servers may then reach GPUs outside the quota, the node, or other users' pods. The
        server container's own locks (not privileged, no privilege escalation, non-root, all
        capabilities dropped, the spawner's GPU resources) stay enforced either way.""",
    ).tag(config=True)

    def pod_config_problem(self, extra_container_config, extra_pod_config) -> str | None:
        """Why the admin's pod extras are refused (see allow_unsafe_pod_config), or None."""
        if self.allow_unsafe_pod_config:
            return None
        containers = api_dict(self._sorted_dict_values(self.extra_containers))
        violations = pod_violations(api_dict(extra_container_config), api_dict(extra_pod_config),
                                    containers)  # fmt: skip
        for container in api_dict(self._sorted_dict_values(self.init_containers)):
            violations += init_container_violations(container, "init_containers")
        if not violations:
            return None
        settings = "extra_container_config, extra_pod_config and the extra containers"
        return refusal(settings, "allow_unsafe_pod_config", violations)

    def check_config(self):
        super().check_config()
        problem = self.pod_config_problem(self.extra_container_config, self.extra_pod_config)
        if problem:
            raise TraitError(problem)
        unknown = sorted(set(self.gpu_profiles) - {image.key for image in self.catalog})
        if unknown:
            raise TraitError(
                "gpu_profiles has key(s) %s that are not catalog images." % ", ".join(unknown)
            )
        for key, profile in self.gpu_profiles.items():  # shared_gpu_resources may come later
            resource = profile.get("resource", GPU_RESOURCE)
            if not is_gpu_resource(resource, self.shared_gpu_resources):
                raise TraitError(
                    "gpu_profiles[%r]: %r is not a GPU resource name." % (key, resource)
                )
        if not is_gpu_resource(self.gpu_resource, self.shared_gpu_resources):
            raise TraitError("gpu_resource %r is not a GPU resource name." % self.gpu_resource)
        if self.gpu_wait_timeout >= self.start_timeout:
            self.log.warning(
                "gpu_wait_timeout (%s s) is not below start_timeout (%s s): the hub gives up first",
                self.gpu_wait_timeout,
                self.start_timeout,
            )

    # --- the backend contract (gpuspawner.lifecycle.base) ---

    shared_state_class = KubeState
    secrets_by_reference = True  # users' secrets: a Secret per user, secretKeyRef in the pod
    # the holdings come from the pod reflector's cache, which its watch keeps current: a
    # rebuild costs no API call, but walks every pod, so spawns and polls share one a second;
    # a refusal is judged on a fresh one
    holdings_max_age = 1.0
    refusal_max_age = 0.0

    def gpu_inventory(self) -> None:
        return None  # the scheduler and the device plugin pick the devices

    def requested_gpus(self, count: int) -> tuple[Gpu, ...]:
        placement = self.placement()
        kind = gpu_type(placement.product, placement.resource)
        shared_by = self.gpu_replicas(placement.resource)
        return pod_gpus(self.pod_name, placement.resource, count, kind, shared_by)

    def gpu_replicas(self, resource: str) -> int:
        """How many servers share one GPU of ``resource``: 1 (whole GPUs, MIG slices); of a
        shared resource the nodes' ``nvidia.com/gpu.replicas`` label, else the number in
        ``shared_gpu_resources``."""
        configured = self.shared_gpu_resources.get(resource)
        if configured is None:
            return 1
        return self._node_summary(self.shared.nodes).replicas.get(resource, configured)

    async def engine_holdings(self) -> list[Holding]:
        if self.check_node_capacity:  # node products and replicas (cached; a failure: none)
            with contextlib.suppress(ApiException, asyncio.TimeoutError, OSError):
                await self.list_nodes()
        await self._start_watching_pods()
        pods = self.pod_reflector.pods.values()
        products = self._node_summary(self.shared.nodes).products
        held = holdings_from_pods(pods, products, memo=self.shared.pod_holdings)
        return [h for h in held if h.gpus]

    async def gpu_totals(self) -> dict[str, int] | None:
        nodes = await self.list_nodes() if self.check_node_capacity else None
        return self._node_summary(nodes).totals if nodes else None

    def offered_gpu_types(self, totals: dict[str, int]) -> set[str]:
        """The GPU types of this server's placement: its resource, of its product if it asks
        for one (a mixed cluster's MIG slices and other GPU types are not counted)."""
        placement = self.placement()
        kinds = self._node_summary(self.shared.nodes).kinds
        return {
            kind
            for kind, (resource, product) in kinds.items()
            if kind in totals
            and resource == placement.resource
            and (not placement.product or product == placement.product)
        }

    def engine_environment(self) -> dict[str, str]:
        # what kubespawner's load_config reads: in-cluster, or a kubeconfig file
        names = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")
        return {name: os.environ[name] for name in names if name in os.environ}

    def server_namespace(self) -> str:
        return "" if self.enable_user_namespaces else self.namespace

    async def check_startable(self) -> None:
        self._checked_pod = None
        self._options_loaded = False
        await self._refuse_if_unsatisfiable()

    async def start_engine(self) -> str:
        if self.storage_pvc_ensure:
            self.emit_progress(20, "Preparing workspace volume %s" % self.pvc_name)
        self.emit_progress(
            30, "Creating pod %s from %s" % (self.pod_name, self.choice.image.display_name)
        )
        await sync_kube_secret(self)  # the user's Secret, before the pod naming it
        url = await self._start_and_watch()
        pod = self.pod_reflector.pods.get("%s/%s" % (self.namespace, self.pod_name)) or {}
        self.emit_progress(
            90,
            "Pod running on node %s; waiting for JupyterLab to answer"
            % ((pod.get("spec") or {}).get("nodeName") or "?"),
        )
        return url

    async def placed_holding(self) -> Holding | None:
        pod = self.pod_reflector.pods.get("%s/%s" % (self.namespace, self.pod_name))
        if pod is None:
            return None
        nodes = await self.list_nodes() if self.check_node_capacity else None
        placed = holdings_from_pods([pod], self._node_summary(nodes).products)
        return placed[0] if placed else None

    async def poll_engine(self) -> int | None:
        return await KubeSpawner.poll(self)

    def reserved_message(self, gpus: tuple[Gpu, ...]) -> str:
        placement = self.placement()
        return "Asking the cluster for %s (%s)" % (
            plural(len(gpus)),
            placement.product or placement.resource,
        )

    # --- this server ---

    def choose(self, user_options):
        choice = super().choose(user_options)
        if choice.shared and choice.gpu_count and not self.shared_gpu_resources:
            spawn_failed(self)
            raise SpawnRefused(
                "This hub has no shared GPUs (shared_gpu_resources is empty): ask for whole"
                " GPUs instead of a shared slot.",
                reason="options",
                status_code=400,
            )
        return choice

    def placement(self) -> GpuPlacement:
        """Where this server's GPUs come from: the image's profile over the defaults."""
        key = self.choice.image.key if self.choice else ""
        profile = self.gpu_profiles.get(key, {})
        course = self.choice_profile()  # a course profile's MIG slice: its MIG resource
        resource = profile.get("resource", self.gpu_resource)
        if course is not None and course.mig:
            resource = "nvidia.com/mig-" + course.mig
        elif (
            self.choice is not None
            and self.choice.shared
            and resource not in self.shared_gpu_resources
        ):
            # a shared slot asked for (a course profile's, or the "shared" option): the first
            # of the admin's shared resources (choose() refused it where there is none)
            resource = next(iter(self.shared_gpu_resources))
        return GpuPlacement(
            resource=resource,
            product=profile.get("product", self.gpu_product),
            node_selector=dict(profile.get("node_selector", self.gpu_node_selector)),
            tolerations=tuple(dict(t) for t in profile.get("tolerations", self.gpu_tolerations)),
        )

    # --- the objects: kubespawner's, with the pure builders' GPU parts ---

    async def pod_request(self) -> PodRequest:
        """What this server's pod adds to kubespawner's, for the pure builder."""

        async def value(setting):
            return await maybe_future(setting(self)) if callable(setting) else setting

        placement = self.placement()
        cuda_terms = []
        verdicts = await self.cuda_verdicts()
        if verdicts is not None and verdicts.steer:
            cuda_terms = cuda_affinity_terms(self.choice.image.cuda, self.cuda_compatibility)
        annotations = {ANNOTATION_RESOURCE: placement.resource}
        if placement.product:
            annotations[ANNOTATION_PRODUCT] = placement.product
        annotations[ANNOTATION_IMAGE] = self.choice.image.key if self.choice else ""
        shared_by = self.gpu_replicas(placement.resource)
        if self.gpu_count and shared_by > 1:
            annotations[ANNOTATION_SHARED_BY] = str(shared_by)
        return PodRequest(
            gpu_count=self.gpu_count,
            placement=placement,
            cuda_terms=cuda_terms,
            labels={LABEL_GPUS: str(self.gpu_count), LABEL_USER_ID: str(self.user.id)},
            annotations=annotations,
            uid=await value(self.uid),
            gid=await value(self.gid),
            shm_size=docker_size_to_quantity(self.shm_size) if self.shm_size else None,
            workspace_pvc=self.pvc_name if self.storage_pvc_ensure else None,
            workspace_path=self.workspace_path,
            extra_env=api_dict(list(self.extra_container_config.get("env") or ())),
            profile=self.profile_pod(),
        )

    def profile_pod(self) -> ProfilePod | None:
        """This spawn's course profile on its pod (lifecycle/profiles.py), or None."""
        profile = self.choice_profile()
        if profile is None:
            return None
        return ProfilePod(
            cpu_limit=profile.cpu_limit,
            mem_limit=profile.mem_limit,
            shm_size=profile.shm_size,
            volumes=tuple((v.source, v.path, v.read_only) for v in self.profile_mounts()),
        )

    async def kubespawner_pod(self):
        """The pod (a V1Pod) plain KubeSpawner builds from this hub's settings.

        The admin's ``extra_container_config`` env is left to :func:`objects.pod_spec`,
        which merges it into the server's env by name (kubespawner would replace the whole
        list, and with it the hub's variables).
        """
        extra = self.extra_container_config
        if "env" not in extra:
            return await KubeSpawner.get_pod_manifest(self)
        self.extra_container_config = {k: v for k, v in extra.items() if k != "env"}
        try:
            return await KubeSpawner.get_pod_manifest(self)
        finally:
            self.extra_container_config = extra

    async def pod_manifest(self) -> dict:
        """This server's pod as the API's dict: kubespawner's, with the GPU server's parts
        and locks."""
        return (await self._build_pod()).wanted

    def _pod_key(self) -> tuple:
        return (self.namespace, self.pod_name, self.pvc_name, self.image)

    async def _build_pod(self) -> BuiltPod:
        pod = await self.kubespawner_pod()
        base = api_dict(pod)
        return BuiltPod(pod, base, pod_spec(base, await self.pod_request()), self._pod_key())

    async def cuda_verdicts(self, nodes: list[dict] | None = None):
        """Which GPU nodes this GPU server may use by its image's CUDA; None when unknown."""
        image = self.choice.image if self.choice else None
        if not (self.gpu_count and image and image.cuda and self.check_node_capacity):
            return None
        if nodes is None:
            nodes = await self.list_nodes()
        if not nodes:
            return None
        placement = self.placement()
        return cuda_verdicts(
            nodes,
            image.cuda,
            resource=placement.resource,
            mode=self.cuda_compatibility,
            product=placement.product,
            node_selector={**self.node_selector, **placement.node_selector},
        )

    def _model(self, data: dict, kind: str):
        return self.api.api_client.deserialize(_Json(data), kind)

    async def get_pod_manifest(self):
        problem = self.pod_config_problem(
            self.extra_container_config, self._expand_all(self.extra_pod_config)
        )
        if problem:
            raise SpawnRefused(
                "This hub's settings for servers are refused (ask an admin): " + problem,
                reason="config",
                status_code=503,
            )
        # the pod the capacity check judged, unless what it was built for has changed since
        built, self._checked_pod = self._checked_pod, None
        if built is None or built.key != self._pod_key():
            built = await self._build_pod()
        # kubespawner's V1Pod, changed only where the GPU parts change it
        return patch_model(built.model, built.wanted, "V1Pod", self._model, built.base)

    _checked_pod: BuiltPod | None = None
    _options_loaded = False

    async def load_user_options(self):
        """kubespawner's profiles apply (a profile_list default profile too), but the image
        stays the catalog image the user picked: a profile's image never replaces it.

        Once per start: the capacity check loads them before it builds the pod, so the pod
        it judges is the one kubespawner's start creates (a profile's overrides may be
        callables, which are not called twice)."""
        if self._options_loaded:
            return
        options = self.user_options
        if self.profiles and isinstance(options, dict) and "profile" in options:
            # a course profile (gpuspawner's "profile" option), not a profile_list slug
            self.user_options = {k: v for k, v in options.items() if k != "profile"}
        try:
            await super().load_user_options()
        finally:
            self.user_options = options
        self.image = self.spawn_choice().image.image
        self._options_loaded = True

    def pvc_request(self) -> PvcRequest:
        labels = self._build_common_labels(self._expand_all(self.storage_extra_labels))
        labels.update(
            {"app.kubernetes.io/component": self.component_label, "component": "singleuser-storage"}
        )
        return PvcRequest(
            name=self.pvc_name,
            labels=labels,
            annotations=self._build_common_annotations(
                self._expand_all(self.storage_extra_annotations)
            ),
            storage=self.storage_capacity or "10Gi",
            storage_class=self.storage_class or None,
            access_modes=tuple(self.storage_access_modes),
            selector=self._expand_all(self.storage_selector) or None,
        )

    def get_pvc_manifest(self):
        # kubespawner's claim, changed only where ours differs (an empty storage_class: the
        # cluster's default class)
        claim = KubeSpawner.get_pvc_manifest(self)
        return patch_model(
            claim, pvc_spec(self.pvc_request()), "V1PersistentVolumeClaim", self._model
        )

    # --- the spawner ---

    async def _refuse_if_unsatisfiable(self) -> None:
        if not (self.check_node_capacity and self.gpu_count):
            return
        nodes = await self.list_nodes()
        if nodes is None:
            return
        await self.load_user_options()  # a profile's overrides are part of the pod judged
        self._checked_pod = await self._build_pod()
        needs = pod_needs(self._checked_pod.wanted)
        reason = self._unsatisfiable(needs, nodes)
        if reason is not None:
            # the node list may be old: look again before refusing
            self.forget_nodes()
            reason = self._unsatisfiable(needs, await self.list_nodes() or nodes)
        if reason is not None:
            raise SpawnRefused(reason, reason="gpu-unsatisfiable", status_code=400)
        refusal = self._cuda_refusal(await self.cuda_verdicts(nodes))
        if refusal is not None:
            self.forget_nodes()  # a driver may have been upgraded since the list
            refusal = self._cuda_refusal(await self.cuda_verdicts(await self.list_nodes() or nodes))
        if refusal is not None:
            raise SpawnRefused(refusal, reason="image", status_code=400)

    def _unsatisfiable(self, needs, nodes: list[dict]) -> str | None:
        """unsatisfiable_reason on the listing's parsed nodes, once per kind of pod."""
        summary = self._node_summary(nodes)
        key = needs_key(needs)
        if key not in summary.verdicts:
            shared = self.shared_gpu_resources
            summary.verdicts[key] = unsatisfiable_reason(needs, summary.facts, shared)
        return summary.verdicts[key]

    def _cuda_refusal(self, verdicts) -> str | None:
        if verdicts is None:
            return None
        return cuda_refusal(self.choice.image.key, self.choice.image.cuda, verdicts)

    async def _start_and_watch(self) -> str:
        """KubeSpawner's start, watched: the scheduler's verdicts become progress, a long wait
        a failure."""
        self._gpu_wait_refusal = None
        start = KubeSpawner.start(self)  # the engine's start (self.start is the lifecycle)
        watcher = asyncio.ensure_future(self._watch_pending(start))
        try:
            return await start
        except asyncio.CancelledError:
            if self._gpu_wait_refusal is None:
                raise
            await self._delete_pod()
            raise self._gpu_wait_refusal from None
        finally:
            watcher.cancel()

    async def _watch_pending(self, start: asyncio.Future) -> None:
        ref_key = "%s/%s" % (self.namespace, self.pod_name)
        began = time.monotonic()
        said = ""
        said_at = 0.0
        node = ""
        while not start.done():
            await asyncio.sleep(0.5)
            reflector = self.pod_reflector
            pod = reflector.pods.get(ref_key) if reflector else None
            if pod is None:
                continue
            if (pod.get("spec") or {}).get("nodeName") and not node:
                node = pod["spec"]["nodeName"]
                self.emit_progress(70, "Scheduled on node %s; starting the server" % node)
                continue
            message = unschedulable_message(pod)
            if message is None:
                continue
            waited = time.monotonic() - began
            words = explain_unschedulable(message)
            if waited >= self.gpu_wait_timeout:
                self._gpu_wait_refusal = SpawnRefused(
                    "No room for this server was found within %d s. %s"
                    " Try again later, or start with %s."
                    % (
                        self.gpu_wait_timeout,
                        words,
                        "fewer GPUs" if self.gpu_count else "less memory or CPU",
                    ),
                    reason="gpu-capacity",
                    status_code=503,
                )
                self.log.info(
                    "%s: %s (scheduler: %s)",
                    self._log_name,
                    self._gpu_wait_refusal.jupyterhub_message,
                    message,
                )
                start.cancel()
                return
            if words != said or time.monotonic() - said_at >= 10:
                self.emit_progress(
                    50,
                    "Waiting for room (%d of at most %d s): %s"
                    % (waited, self.gpu_wait_timeout, words),
                )
                said, said_at = words, time.monotonic()

    async def _delete_pod(self) -> None:
        try:
            await self.api.delete_namespaced_pod(
                self.pod_name, self.namespace, grace_period_seconds=0
            )
        except ApiException as e:
            if e.status != 404:
                raise

    def explain_start_error(self, error: Exception) -> SpawnRefused | None:
        """A sentence for the API's refusals a user or admin can act on."""
        if (
            isinstance(error, ApiException)
            and error.status == 403
            and "exceeded quota" in str(error.body)
        ):
            try:
                message = json.loads(error.body).get("message", "")
            except (TypeError, ValueError):
                message = str(error.body)
            return SpawnRefused(
                explain_quota_rejection(message, self.namespace),
                reason="cluster-quota",
                status_code=403,
            )
        return None
