"""The Docker backend: a DockerSpawner that hands out distinct GPUs by UUID.

Who holds which GPU is recorded in the labels of each server's container. The engine
is the truth: the pool is rebuilt from running containers on the first spawn or poll
after a hub start, and again every ``gpu_resync_interval`` seconds.
"""

import asyncio
import hashlib
import inspect
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from dockerspawner import DockerSpawner
from traitlets import (
    Bool, Dict, Enum, Float, Integer, List, TraitError, Unicode, default, observe, validate,
)  # fmt: skip

from ..errors import ConfigError
from ..lifecycle.base import GPUSpawnerMixin, holder_key
from ..lifecycle.env import gpu_env
from ..lifecycle.refusal import SpawnRefused
from ..lifecycle.shared import SharedState
from ..policy import cuda
from ..policy.allocation import Holding
from ..policy.inventory import (
    Gpu, Topology, apply_sharing, check_sharing, from_nvml, parse_inventory,
)  # fmt: skip
from ..policy.locks import host_config_violations, refusal
from ..policy.names import DOCKER_NAME_MAX, fit_name
from ..policy.wording import plural
from . import pull
from .host import GpuSupport, gpu_support_from, probe_gpu_attach, read_image_status
from .workspace import LABEL_HUB, LABEL_HUB_ID, LABEL_USER_ID, DockerWorkspace
from .scratch import prepare_scratch
from .spec import GPU_MODES, ContainerRequest, ProfileLimits, extend_create_kwargs

LABEL_USER = "gpuspawner.user"
LABEL_SERVER = "gpuspawner.server"
LABEL_GPUS = "gpuspawner.gpus"
LABEL_IMAGE = "gpuspawner.image"
LABEL_SHARED_BY = "gpuspawner.gpu-shared-by"  # a slot of a shared GPU: by how many at most
SHARE_MODES = ("time-sliced", "mps")
HOLDING_STATES = {"running", "restarting", "paused"}
ENDED_STATES = {"exited", "dead"}  # killed from outside (docker kill, OOM) or crashed
NO_GPU_RUNTIME_ERRORS = (
    "could not select device driver",
    "nvidia-container-cli",
    "unknown runtime",
)
PULLING_POLICIES = ("ifnotpresent", "always")
HOST_READ_TIMEOUT = 30.0  # seconds the engine and registries may take to say what is there


def holder_of(labels, hub_id: str | None = None) -> str:
    """Who holds a container's GPUs: the hub user id (and hub) its labels record, which a
    rename does not change; the user's name for containers labelled before ids were.

    A container another hub (``gpuspawner.hub-id`` other than ``hub_id``) started is held by
    a key of that hub's own: its user ids are not this hub's, even with the same prefix."""
    if LABEL_USER_ID in labels and LABEL_HUB in labels:
        scope = labels[LABEL_HUB]
        other = labels.get(LABEL_HUB_ID)
        if hub_id is not None and other and other != hub_id:
            scope = "%s@%s" % (scope, other)
        return holder_key(scope, labels[LABEL_USER_ID])
    return labels[LABEL_USER]


def sharing_note(gpus: Sequence[Gpu]) -> str:
    """'; shared: GPU-aa by 4, GPU-bb by 2' for the inventory's log line ('' when none is)."""
    shared = [gpu for gpu in gpus if gpu.is_shared]
    if not shared:
        return ""
    return "; shared: %s" % ", ".join("%s by %d" % (g.uuid, g.shared_by) for g in shared)


def slot_label(gpus: Sequence[Gpu]) -> dict[str, str]:
    """The label recording a slot's share, so a hub restart counts it 1/N again."""
    if len(gpus) == 1 and gpus[0].is_shared:
        return {LABEL_SHARED_BY: str(gpus[0].shared_by)}
    return {}


def is_other_hubs(labels, hub_id: str | None) -> bool:
    """Whether a container was started by another hub (its hub-id label names another)."""
    other = labels.get(LABEL_HUB_ID)
    return bool(hub_id is not None and other and other != hub_id)


def holdings_from_containers(
    containers, inventory: Sequence[Gpu] = (), hub_id: str | None = None
) -> list[Holding]:
    """The GPU holdings recorded by the labels of live containers (``docker ps`` output),
    each GPU named as in ``inventory`` (a bare Gpu for one the inventory does not list).
    Other hubs' containers hold their GPUs under keys of their own (see :func:`holder_of`)."""
    known = {gpu.uuid: gpu for gpu in inventory}
    holdings = []
    for container in containers:
        labels = container.get("Labels") or {}
        if container.get("State") not in HOLDING_STATES or LABEL_USER not in labels:
            continue
        uuids = [uuid for uuid in labels.get(LABEL_GPUS, "").split(",") if uuid]
        gpus = tuple(known.get(uuid, Gpu(uuid)) for uuid in uuids)
        shared_by = labels.get(LABEL_SHARED_BY, "")
        if shared_by.isdigit() and int(shared_by) > 1:
            # a slot keeps the share it was granted, whatever shared_gpus says since
            gpus = tuple(replace(gpu, shared_by=int(shared_by)) for gpu in gpus)
        holder = holder_of(labels, hub_id)
        owner = labels[LABEL_USER] if holder != labels[LABEL_USER] else ""
        holdings.append(Holding(holder, labels.get(LABEL_SERVER, ""), gpus, owner=owner))
    return holdings


def leftover_containers(
    containers,
    prefix: str,
    now: float,
    created_grace: float,
    in_flight=frozenset(),
    hub_id: str | None = None,
) -> list[str]:
    """IDs of this hub's containers that hold nothing and will never run again (``docker ps``
    output): ended ones, and ones left "Created" by a start that failed more than
    ``created_grace`` seconds ago, unless a spawn of that server is in flight. Another hub's
    containers are never this hub's to remove, even under the same prefix."""
    leftovers = []
    for container in containers:
        labels = container.get("Labels") or {}
        names = [name.lstrip("/") for name in container.get("Names") or ()]
        if LABEL_USER not in labels or not any(n.startswith(prefix + "-") for n in names):
            continue
        if is_other_hubs(labels, hub_id):
            continue
        state = container.get("State")
        key = (holder_of(labels, hub_id), labels.get(LABEL_SERVER, ""))
        stale = state == "created" and now - container.get("Created", now) > created_grace
        if (state in ENDED_STATES or stale) and key not in in_flight:
            leftovers.append(container["Id"])
    return leftovers


@dataclass
class DockerState(SharedState):
    """The Docker backend's state in a hub process: the pool, the driver's CUDA, and what the
    host can do (docker/host.py: GPUs it can attach, images it can start)."""

    driver_cuda: cuda.DriverCuda | None = None
    driver_cuda_read: bool = False
    inventory_note: str | None = None  # how the inventory was found, once logged
    gpu_support: GpuSupport | None = None  # None: not probed (or no image to probe with)
    image_statuses: dict = field(default_factory=dict)  # catalog key -> host.ImageStatus
    host_read_at: float | None = None  # time.monotonic() of the last read


def database_identity(db_url: str, cwd: str) -> str:
    """A hub's identity from its database (two hubs never share one): its URL without
    credentials, a relative sqlite path made absolute, hashed."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(db_url)
        if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
            url = url.set(database=os.path.join(cwd, url.database))
        text = url.render_as_string(hide_password=True)  # the password masked
    except Exception:  # not a URL SQLAlchemy reads: the hub will say so itself
        text = db_url
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def is_missing_gpu_runtime(error: Exception) -> bool:
    """Whether Docker refused to start a container because it cannot attach GPUs."""
    text = str(getattr(error, "explanation", "") or error)
    return any(marker in text for marker in NO_GPU_RUNTIME_ERRORS)


# what nvidia-container-cli (run by NVIDIA's hook) says, and what it means for an admin
GPU_ATTACH_CAUSES = (
    ("driver not loaded", "the NVIDIA driver is not loaded on this host"),
    ("unknown device", "this host has no such GPU (the hub's GPU list does not match the host)"),
    ("requirement error", "the host's NVIDIA driver is too old for this image's CUDA"),
)


def gpu_attach_cause(text: str) -> str:
    """The reason a GPU container could not start, in an admin's words."""
    for marker, cause in GPU_ATTACH_CAUSES:
        if marker in text:
            return cause
    return "the NVIDIA Container Toolkit is not installed or not configured for Docker"


class GPUDockerSpawner(DockerWorkspace, GPUSpawnerMixin, DockerSpawner):
    """One container per server with its own GPUs, a quota and a persistent workspace."""

    inventory = List(
        None,
        allow_none=True,
        help="""The GPUs this hub hands out, when it cannot discover them with NVML
        (hub in a container, tests): a list of {"uuid": "GPU-…", "name": "…",
        "memory_mib": 81920}. MIG instances are listed by their "MIG-…" UUIDs. Optional
        "nvlink", "switch", "bridge", "numa" labels say where a GPU sits (GPUs with equal
        labels share an NVLink island, PCIe switch, host bridge, NUMA node): servers of 2 or
        more GPUs get the closest free ones. NVML reports this itself when it discovers them.

        Default (None): discover the host's GPUs with NVML at start; with no NVML,
        the hub hands out no GPU.
        """,
    ).tag(config=True)

    gpus = List(
        None,
        allow_none=True,
        help="Deprecated in gpuspawner 0.x: use ``inventory`` (same value).",
    ).tag(config=True)

    # old name -> (new name, version it was renamed in); the old one still works, with a warning
    _deprecated_aliases = {"gpus": ("inventory", "0.x")}

    @observe(*_deprecated_aliases)
    def _deprecated_trait(self, change):
        new_name, version = self._deprecated_aliases[change.name]
        if getattr(self, new_name) != change.new:
            self.log.warning(
                "%s.%s is deprecated in gpuspawner %s, use %s.%s instead",
                type(self).__name__, change.name, version, type(self).__name__, new_name,
            )  # fmt: skip
            setattr(self, new_name, change.new)

    shared_gpus = Dict(
        help="""GPUs that several servers hold at once, each a *slot*: a GPU UUID or a GPU
        type -> how many servers (2 or more), e.g. {"T4": 4, "GPU-5d3c…": 2}.

        A type matches a GPU whose name has the type's words as whole words ("T4" matches
        "Tesla T4", not "Tesla T40"; see gpuspawner/policy/inventory.py); a UUID wins over a
        type. A user asks for a slot with the user option ``"shared": true`` (one GPU). A
        whole-GPU request never gets a shared GPU. A slot counts as 1/N GPU against
        ``gpu_quota`` (a quota of 1: one whole GPU or N slots) and is charged 1/N of the GPU's
        weight in GPU-hour budgets. The servers of one GPU share its memory and compute with
        no isolation (``shared_gpu_mode`` "mps" limits each). Checked at start: every key
        must name a GPU of this hub.""",
    ).tag(config=True)

    shared_gpu_mode = Enum(
        SHARE_MODES,
        "time-sliced",
        help="""How the servers holding slots of one shared GPU share it.

        "time-sliced" (default): the GPU's scheduler switches between them; a server may use
        all of the memory, so one can starve the others. "mps": through CUDA MPS (Volta or
        newer), each server is limited to 1/N of the GPU's memory and threads
        (CUDA_MPS_PINNED_DEVICE_MEM_LIMIT, CUDA_MPS_ACTIVE_THREAD_PERCENTAGE). It needs the
        MPS control daemon running on the GPU host (``nvidia-cuda-mps-control -d``) and its
        pipe directory (CUDA_MPS_PIPE_DIRECTORY, default /tmp/nvidia-mps) mounted into the
        servers, e.g. ``volumes = {"/tmp/nvidia-mps": "/tmp/nvidia-mps"}``, with the IPC
        namespace the daemon's (README: Shared GPUs).""",
    ).tag(config=True)

    @validate("shared_gpus")
    def _validate_shared_gpus(self, proposal):
        try:
            check_sharing(proposal.value)
        except ConfigError as e:
            raise TraitError(str(e)) from None
        return proposal.value

    gpu_mode = Enum(
        GPU_MODES,
        "device-request",
        help="""How GPUs reach the container.

        "device-request": a Docker DeviceRequest naming the GPUs by UUID (needs the
        NVIDIA Container Toolkit; Docker 19.03+). "runtime-env": only
        NVIDIA_VISIBLE_DEVICES, for hosts whose default runtime is nvidia.
        """,
    ).tag(config=True)

    gpu_resync_interval = Float(
        60,
        help="Seconds between rebuilds of the GPU holdings from the engine's running containers.",
    ).tag(config=True)

    container_user = Unicode(
        "1000",
        help="User (uid[:gid]) the server runs as. Root is refused: servers run unprivileged.",
    ).tag(config=True)

    workspace_volume_template = Unicode(
        "gpuspawner-workspace-{username}",
        help="""Name of the user's workspace volume; {username} is the escaped user name.
        One volume per user, shared by their servers, kept when a server stops.""",
    ).tag(config=True)

    driver_cuda_version = Unicode(
        "",
        help="""The newest CUDA version the GPU hosts' driver supports, e.g. "12.2", for
        hubs that cannot see the GPUs (hub in a container). Default: ask NVML on the hub
        host; with neither, images are not checked against the driver.

        A catalog image whose "cuda" the driver cannot run is hidden from the spawn
        form and refused through the API (see ``cuda_compatibility``).
        """,
    ).tag(config=True)

    driver_version = Unicode(
        "",
        help="""The GPU hosts' driver version, e.g. "535.104.05", used with
        ``driver_cuda_version`` (NVML reports it otherwise). Optional.""",
    ).tag(config=True)

    cuda_compatibility = Enum(
        cuda.MODES,
        "minor-version",
        help="""Which images a driver may run.

        "minor-version" (default): an image of the driver's CUDA major runs on any
        driver of that major from the major's first release on (CUDA minor-version
        compatibility, e.g. a 12.8 image on a driver that supports 12.2); images of
        a newer major are refused. "strict": the image's CUDA must not be newer than
        the driver's. See gpuspawner/policy/cuda.py for the whole rule.
        """,
    ).tag(config=True)

    pull_timeout = Integer(
        900,
        help="""Seconds an image pull may take before the spawn is refused.

        JupyterHub's ``start_timeout`` covers all of ``start()``, the pull included,
        so when ``pull_policy`` may pull ("ifnotpresent", "always") this spawner adds
        ``pull_timeout`` to ``start_timeout``: ``start_timeout`` stays the time a
        container may take to start, and the pull gets its own budget on top.
        Pre-pull the catalog (python -m gpuspawner.prepull) to keep spawns short.
        """,
    ).tag(config=True)

    hub_id = Unicode(
        help="""What tells this hub's containers and workspace volumes from another hub's on
        a shared Docker engine (the label gpuspawner.hub-id). GPUs other hubs' servers hold
        count as taken here, but their users, usage and budgets are not this hub's.

        Default: derived from the hub's database URL (``JupyterHub.db_url``, a relative
        sqlite path made absolute), which no two hubs share. Set it to keep the identity
        when the database moves.""",
    ).tag(config=True)

    @default("hub_id")
    def _default_hub_id(self):
        hub = self.config.JupyterHub if "JupyterHub" in self.config else {}
        return database_identity(hub.get("db_url", "sqlite:///jupyterhub.sqlite"), os.getcwd())

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.pull_policy.lower() in PULLING_POLICIES:
            self.start_timeout = self.start_timeout + self.pull_timeout

    @validate("driver_cuda_version", "driver_version")
    def _validate_driver_setting(self, proposal):
        parse = (
            cuda.parse_cuda if proposal.trait.name == "driver_cuda_version" else cuda.driver_tuple
        )
        if proposal.value:
            try:
                parse(proposal.value)
            except ValueError as e:
                raise TraitError("%s: %s." % (proposal.trait.name, e)) from None
        return proposal.value

    @default("remove")
    def _default_remove(self):
        # containers are disposable (GPUs are allocated afresh each start); the data lives in
        # the workspace volume
        return True

    @default("prefix")
    def _default_prefix(self):
        return "gpuspawner"

    @validate("container_user")
    def _validate_container_user(self, proposal):
        uid = proposal.value.split(":", 1)[0]
        if uid in ("", "0", "root"):
            raise TraitError(
                "container_user must be a non-root uid such as '1000', not %r." % proposal.value
            )
        return proposal.value

    # --- the backend contract (gpuspawner.lifecycle.base) ---

    shared_state_class = DockerState

    allow_unsafe_host_config = Bool(
        False,
        help="""Pass the keys of ``extra_host_config`` that are refused by default: NVIDIA
        device nodes in ``devices``, ``cap_add``, host or container namespaces (``pid_mode``,
        ``ipc_mode``, ``network_mode``, ``userns_mode``, ``uts_mode``, ``cgroupns``),
        ``device_requests``, ``device_cgroup_rules``, ``runtime``, ``security_opt`` entries
        that undo no-new-privileges, seccomp or AppArmor, ``volumes_from``. UNSAFE: servers
        may then reach GPUs outside the allocation, the host, or other users' servers.
        Privileged mode, dropped capabilities, no-new-privileges and the allocator's
        DeviceRequest stay enforced either way.""",
    ).tag(config=True)

    def check_config(self):
        super().check_config()
        self.gpu_inventory()
        if not callable(self.extra_host_config):
            problem = self.host_config_problem(self.extra_host_config)
            if problem:
                raise ConfigError(problem)

    def host_config_problem(self, extra_host_config) -> str | None:
        """Why ``extra_host_config`` is refused (see allow_unsafe_host_config), or None."""
        if self.allow_unsafe_host_config:
            return None
        violations = host_config_violations(extra_host_config or {})
        if not violations:
            return None
        return refusal("extra_host_config", "allow_unsafe_host_config", violations)

    def gpu_inventory(self) -> tuple[Gpu, ...]:
        """The allocatable GPUs: declared, or discovered with NVML; shared as ``shared_gpus``
        says."""
        gpus, note = self.found_gpus()
        if gpus:
            gpus = apply_sharing(gpus, self.shared_gpus)
        if note:
            self.note_inventory(note + sharing_note(gpus))
        return gpus

    def found_gpus(self) -> tuple[tuple[Gpu, ...], str]:
        """The GPUs declared, or discovered with NVML (with where each sits), and how."""
        if self.inventory is not None:
            gpus = parse_inventory(self.inventory)
            return gpus, "%s declared (inventory)" % plural(len(gpus))
        from .. import nvml

        try:
            devices = nvml.discover_gpus()
            try:
                placed = {uuid: Topology(**labels) for uuid, labels in nvml.topology().items()}
            except nvml.NvmlUnavailable:
                placed = {}
            gpus = from_nvml(devices, placed)
        except nvml.NvmlUnavailable as e:
            self.note_inventory(
                "none: no NVIDIA driver was found (%s), so GPUs are not offered. Declare them"
                " with GPUSPAWNER_GPUS (jupyterhub_config.py) or c.GPUDockerSpawner.inventory"
                " when the hub cannot see the GPUs its engine attaches" % e,
                warn=True,
            )
            return (), ""
        return gpus, "%s found with NVML" % plural(len(gpus))

    def note_inventory(self, note: str, warn: bool = False) -> None:
        """Log how the inventory was found, once per hub process (and when it changes)."""
        state = self.shared
        if state.inventory_note != note:
            state.inventory_note = note
            (self.log.warning if warn else self.log.info)("GPUs of this hub: %s", note)

    # --- what the host can do (docker/host.py) ---

    def report_host(self) -> None:
        """At hub start: read and log what this host offers (GPUs, engine, images)."""
        self.gpu_inventory()
        try:
            self.read_host(self.client)
        except Exception as e:  # the engine may come up later: the first spawn reads it again
            self.log.warning("Could not read what this Docker host offers: %s", e)
            self.shared.host_read_at = None

    async def refresh_host(self) -> None:
        """At a resync: read what the host offers again (at most every gpu_resync_interval)."""
        state = self.shared
        now = time.monotonic()
        if state.host_read_at is not None and now - state.host_read_at < self.gpu_resync_interval:
            return
        state.host_read_at = now
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self.read_host, self.client), HOST_READ_TIMEOUT
            )
        except (asyncio.TimeoutError, DockerException, OSError) as e:
            self.log.warning("Could not read what this Docker host offers: %s", e)

    def read_host(self, client) -> None:
        """Read (blocking) each image's status and, in device-request mode, whether the
        engine can attach GPUs; log what changed."""
        state = self.shared
        state.host_read_at = time.monotonic()
        statuses = read_image_status(client, self.catalog, self.pull_policy)
        for key, status in statuses.items():
            before = state.image_statuses.get(key)
            if before is None or before.note != status.note:
                log = self.log.info if status.startable else self.log.warning
                log("Image %s: %s%s", key, status.note, "" if status.startable else "; not offered")
        state.image_statuses = statuses
        support = state.gpu_support
        if self.gpu_mode != "device-request" or not self.pool.inventory:
            return
        if support is not None and support.attachable is not False:
            return  # probed; a start that cannot attach says so (explain_start_error)
        present = [i.image for i in self.catalog if statuses[i.key].present]
        if not present:
            return
        support = probe_gpu_attach(client, present[0], self.prefix)
        self.note_gpu_support(support)

    def note_gpu_support(self, support: GpuSupport) -> None:
        state = self.shared
        before = state.gpu_support
        state.gpu_support = support
        if before is None or before.attachable != support.attachable:
            log = self.log.info if support.attachable is not False else self.log.warning
            log("Docker engine and GPUs (device-request mode): %s", support.log_text())

    def gpus_unavailable_reason(self) -> str | None:
        if not self.pool.inventory:
            return "This hub has no GPUs: servers run on the CPU only."
        support = self.shared.gpu_support
        if self.gpu_mode == "device-request" and support is not None:
            return support.reason() if support.attachable is False else None
        return None

    def image_note(self, image) -> str:
        status = self.shared.image_statuses.get(image.key)
        return status.note if status is not None else ""

    @property
    def holdings_max_age(self) -> float:
        return self.gpu_resync_interval

    async def engine_holdings(self) -> list[Holding]:
        containers = await self.docker("containers", all=True, filters={"label": LABEL_USER})
        await self.refresh_lost_gpus()
        await self.refresh_host()
        if self.remove:
            await self.remove_leftovers(containers)
        return holdings_from_containers(containers, self.pool.inventory, self.hub_id)

    async def remove_leftovers(self, containers) -> None:
        """Remove this hub's containers that ended or never started (never a volume)."""
        leftovers = leftover_containers(
            containers,
            self.prefix,
            time.time(),
            self.start_timeout,
            self.pool.in_flight(),
            self.hub_id,
        )
        for container_id in leftovers:
            self.log.info("Removing container %s: it ended or never started", container_id[:12])
            try:
                await self.docker("remove_container", container_id, force=True)
            except APIError as e:
                if e.status_code not in (404, 409):
                    raise

    async def reserve_gpus(self, count: int, **kind):
        if count:
            await self.refresh_lost_gpus()
        return await super().reserve_gpus(count, **kind)

    async def refresh_lost_gpus(self) -> None:
        """Mark the inventory GPUs NVML reports lost, so they are not handed out.

        Only for an inventory discovered with NVML: a declared one may name GPUs that
        this host cannot see. A GPU that answers again is handed out again.
        """
        if self.inventory is not None:
            return
        from .. import nvml

        pool = self.pool
        uuids = [gpu.uuid for gpu in pool.inventory or ()]
        try:
            lost = frozenset(await asyncio.to_thread(nvml.lost_gpus, uuids))
        except nvml.NvmlUnavailable as e:
            self.log.warning("Cannot check the GPUs for lost ones: %s", e)
            return
        for gpu in pool.lookup(sorted(lost - pool.lost)):
            self.log.error(
                "GPU %s is lost (fallen off the bus); it is not handed out", gpu.describe()
            )
        for gpu in pool.lookup(sorted(pool.lost - lost)):
            self.log.warning("GPU %s answers again; it is handed out again", gpu.describe())
        pool.lost = lost

    async def gpu_totals(self) -> dict[str, int]:
        return dict(Counter(gpu.name for gpu in self.pool.inventory))

    def engine_environment(self) -> dict[str, str]:
        # what docker.from_env() reads (client_kwargs and tls_config travel in the config)
        names = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
        return {name: os.environ[name] for name in names if name in os.environ}

    def server_namespace(self) -> str:
        return ""  # containers have no namespace: utilisation is matched by GPU UUID

    async def start_engine(self) -> str:
        self.emit_progress(30, "Preparing workspace volume %s" % self.workspace_volume)
        await self.prepare_workspace()
        await prepare_scratch(self)  # a course profile's per-group scratch (docker/scratch.py)
        self.emit_progress(50, "Starting container from %s" % self.choice.image.display_name)
        try:
            address = await DockerSpawner.start(self)
        except BaseException:
            if self.remove and self.object_id:
                # the start failed: the container stays "Created" and would never run
                try:
                    await self.remove_object()
                except Exception as e:  # the start's own error is the one to report
                    self.log.warning("Could not remove %s: %s", self.object_name, e)
                self.object_id = ""
            raise
        self.emit_progress(90, "Container started; waiting for JupyterLab to answer")
        return address

    async def poll_engine(self) -> int | None:
        container = await self.get_object()
        if container is not None and container["State"]["Running"]:
            return None
        return container["State"]["ExitCode"] if container is not None else 0

    # --- images: what the driver can run, and pulls with progress ---

    def driver_cuda(self) -> cuda.DriverCuda | None:
        """The driver's CUDA version: configured, else from NVML (read once per hub), else None."""
        if self.driver_cuda_version:
            return cuda.DriverCuda(cuda.parse_cuda(self.driver_cuda_version), self.driver_version)
        state = self.shared
        if not state.driver_cuda_read:
            from .. import nvml

            try:
                version, supported = nvml.driver_info()
                state.driver_cuda = cuda.DriverCuda(supported, version)
                self.log.info("NVIDIA driver %s supports CUDA up to %d.%d", version, *supported)
            except nvml.NvmlUnavailable as e:
                self.log.info("Images are not checked against the driver: %s", e)
            state.driver_cuda_read = True
        return state.driver_cuda

    def image_problem(self, image):
        driver = self.driver_cuda()
        problem = cuda.check_image_cuda(image.key, image.cuda, driver, self.cuda_compatibility)
        if problem is not None:
            return problem
        status = self.shared.image_statuses.get(image.key)
        return status.problem if status is not None and not status.startable else None

    async def pull_image(self, image):
        """DockerSpawner's pull, through the engine's stream, with progress and a timeout."""
        policy = self.pull_policy.lower()
        if policy == "skip":
            return
        if policy != "always":
            try:
                await self.docker("inspect_image", image)
                return
            except NotFound:
                if policy == "never":
                    raise  # explain_start_error says it is missing
        key = self.choice.image.key if self.choice else image
        display_name = self.choice.image.display_name if self.choice else image
        started = time.monotonic()
        self.emit_progress(
            50, "pulling %s: asking the registry %s" % (key, pull.registry_of(image))
        )

        def report(progress: pull.PullProgress) -> None:
            self.emit_progress(50 + int(35 * progress.fraction()), progress.message(key))

        try:
            progress = await pull.pull_with_progress(
                self.client, image, timeout=self.pull_timeout, report=report
            )
        except pull.PullTimedOut as e:
            raise SpawnRefused(
                pull.timeout_refusal(image, display_name, e, key),
                reason="image-pull",
                status_code=503,
            ) from None
        except (pull.PullFailed, APIError) as e:
            text = str(getattr(e, "explanation", "") or e)
            refusal = pull.pull_refusal(image, display_name, text)
            raise SpawnRefused(refusal, reason="image-pull", status_code=503) from None
        self.emit_progress(85, progress.summary(key, time.monotonic() - started))

    def explain_start_error(self, error: Exception) -> SpawnRefused | None:
        """A sentence for the engine errors a user or admin can act on."""
        if isinstance(error, (ImageNotFound, NotFound)) and "image" in str(error).lower():
            return SpawnRefused(
                "The image %s of %r is not on this Docker host and could not be pulled"
                " (pull_policy %r). Ask an admin to pull or build it."
                % (self.image, self.choice.image.display_name, self.pull_policy),
                reason="image",
                status_code=503,
            )
        if isinstance(error, APIError) and is_missing_gpu_runtime(error):
            said = str(error.explanation or error)
            if self.gpu_mode == "device-request" and gpu_support_from(said).attachable is False:
                self.note_gpu_support(gpu_support_from(said))  # not offered from now on
            return SpawnRefused(
                "This Docker host cannot attach GPUs: %s (Docker said: %s). Ask an admin,"
                " or start the server with 0 GPUs." % (gpu_attach_cause(said), said),
                reason="gpu-runtime",
                status_code=503,
            )
        return None

    async def check_allowed(self, image):
        # the catalog already decided (apply_user_options); DockerSpawner's own list is unused
        return self.choice.image.image if self.choice is not None else image

    @property
    def workspace_volume(self) -> str:
        """The workspace volume's name, within the engine's limit for any user name; the
        volume of the user's id once found (docker/workspace.py)."""
        return self.workspace_volume_name()

    @property
    def holder_scope(self) -> str:
        return self.prefix

    @default("object_name")
    def _object_name_default(self):
        # the container's name, within the engine's limit for any user and server name
        return fit_name(super()._object_name_default(), DOCKER_NAME_MAX)

    async def create_object(self):
        problem = self.host_config_problem(await self._evaluated(self.extra_host_config))
        if problem:
            self.log.error("%s: %s", self._log_name, problem)
            raise SpawnRefused(
                "This hub's settings for servers are refused (ask an admin): " + problem,
                reason="config",
                status_code=503,
            )
        # DockerSpawner builds the container from its settings and the admin's extras;
        # docker("create_container") below adds this server's part to what it built
        return await DockerSpawner.create_object(self)

    def docker(self, method, *args, **kwargs):
        """DockerSpawner's calls to the engine. The container DockerSpawner creates gets this
        server's workspace, GPUs, labels, user and locks added (docker/spec.py)."""
        if method == "create_container":
            kwargs = extend_create_kwargs(kwargs, self.container_request())
        return super().docker(method, *args, **kwargs)

    def container_request(self) -> ContainerRequest:
        """This server's part of its container, for the pure builder."""
        gpu_uuids = tuple(gpu.uuid for gpu in self.held_gpus)
        return ContainerRequest(
            labels={
                LABEL_USER: self.user.name,
                LABEL_USER_ID: str(self.user.id),
                LABEL_HUB: self.prefix,
                LABEL_HUB_ID: self.hub_id,
                LABEL_SERVER: self.server_name,
                LABEL_GPUS: ",".join(gpu_uuids),
                LABEL_IMAGE: self.choice.image.key,
                **slot_label(self.held_gpus),
            },
            gpu_env=gpu_env(self.held_gpus, self.no_gpu_reason(), share_mode=self.shared_gpu_mode),
            workspace_volume=self.workspace_volume,
            workspace_path=self.workspace_path,
            user=self.container_user,
            gpu_uuids=gpu_uuids,
            gpu_mode=self.gpu_mode,
            shm_size=self.shm_size,
            profile=self.profile_limits(),
        )

    def profile_limits(self) -> ProfileLimits | None:
        """This spawn's course profile on its container (lifecycle/profiles.py), or None."""
        profile = self.choice_profile()
        if profile is None:
            return None
        return ProfileLimits(
            cpu_limit=profile.cpu_limit,
            mem_limit=profile.mem_limit,
            shm_size=profile.shm_size,
            volumes=tuple((v.source, v.path, v.read_only) for v in self.profile_mounts()),
        )

    async def _evaluated(self, setting) -> dict:
        value = self._eval_if_callable(setting)
        if inspect.isawaitable(value):
            value = await value
        return self._render_templates(value or {})
