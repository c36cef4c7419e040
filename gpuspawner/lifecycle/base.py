"""The spawn lifecycle every backend shares, and the contract a backend implements.

A backend mixes :class:`GPUSpawnerMixin` in before its engine's spawner class
(``class GPUDockerSpawner(GPUSpawnerMixin, DockerSpawner)``) and implements the methods
under "the backend contract" below; each raises NotImplementedError here. Nothing else is
probed or required (docs/backends.md walks through a new backend).

:meth:`GPUSpawnerMixin.start` is the one lifecycle of every backend:

1. choose: the user's options against the catalog (``apply_user_options``, or again here)
2. check: the GPU-hour budget (:meth:`Accounting.refusal`)
3. reserve: quota and capacity on the hub's :class:`GpuPool`, rebuilt from
   :meth:`engine_holdings`; no await between the decision and the reservation, so
   concurrent spawns see each other
4. start: :meth:`check_startable`, then :meth:`start_engine`
5. confirm (:meth:`placed_holding`, the ledger opens its intervals) or, on any failure,
   release (the pool forgets the reservation, the ledger closes what was open)

``stop()`` and ``poll()`` release the same way. Shared state lives in
:mod:`gpuspawner.lifecycle.shared`; usage in :mod:`gpuspawner.usage.accounting`.
"""

import asyncio
import math
import time
from dataclasses import dataclass, replace
from fractions import Fraction

from traitlets import (
    Bool,
    Callable,
    Dict,
    Int,
    List,
    TraitError,
    Unicode,
    Union,
    default,
    validate,
)

from ..errors import ConfigError, OptionsError
from ..policy.allocation import (
    GpuPool, GpuRequest, Grant, Holding, describe_holdings, free_slots,
)  # fmt: skip
from ..policy.catalog import CatalogImage, images_for, parse_catalog
from ..policy.inventory import Gpu
from ..policy.names import unservable_reason
from ..policy.options import SpawnChoice, options_from_form, parse_user_options
from ..policy.quota import GpuLimit, amount_text, check_limits, gpu_limit
from ..policy.topology import link_of
from ..policy.wording import plural
from ..usage import hub_metrics
from ..usage.accounting import Accounting
from ..usage.secrets import SecretSettings, secret_env
from ..usage.settings import UsageSettings
from . import queue, reserved
from .env import gpu_env
from .form import remember_form, render_options_form, spawn_failed
from .profiles import ProfileSettings
from .refusal import SpawnRefused, install_on
from .shared import SharedState, ledger_for, parsed_once, shared_state

REFUSAL_STATUS = {"quota": 403, "capacity": 503, "options": 400}  # options: never on this hub
REFUSAL_RESYNC_SECONDS = 2.0  # how fresh the engine's view must be to refuse for capacity
MIN_RECONCILE_SECONDS = 10.0  # the ledger is matched with the engine at most this often


@dataclass(frozen=True)
class Availability:
    """What the spawn form shows: free GPUs and what the user already holds.

    ``free``/``total`` count whole GPUs (shared GPUs are not among them); ``held`` is the
    user's holdings in whole GPUs, a slot's 1/N rounded up (what is left for whole GPUs is
    the quota less ``held``); ``slots_free``/``slots_total``: slots of the shared GPUs."""

    free: int
    total: int
    held: int
    held_text: str
    slots_free: int = 0
    slots_total: int = 0
    held_share: Fraction = Fraction(0)  # exactly, slots as 1/N


def config_error_to_trait(check, *args, **kwargs):
    """Run a parser and turn its ConfigError into a TraitError (a start-up error)."""
    try:
        return check(*args, **kwargs)
    except ConfigError as e:
        raise TraitError(str(e)) from None


def gpu_to_state(gpu: Gpu) -> dict:
    entry = {"uuid": gpu.uuid, "name": gpu.name}
    if gpu.resource:
        entry["resource"] = gpu.resource
    if gpu.shared_by > 1:  # a slot: the quota and the ledger count it 1/N after a restart
        entry["shared_by"] = gpu.shared_by
    return entry


class GPUSpawnerMixin(UsageSettings, SecretSettings, queue.QueueSettings, ProfileSettings):
    """Catalog, quota, user options, progress, environment and the spawn lifecycle."""

    images = Dict(
        help="""The image catalog: users pick one of these by key.

        A dict of key -> settings, in the order shown in the spawn form::

            {"pytorch-2.9": {"display_name": "PyTorch 2.9 (CUDA 12.8)",
                             "image": "org/pytorch-notebook:2.9.1-cuda12.8",
                             "cuda": "12.8", "groups": ["staff"]}}

        ``image`` must be pinned (a tag other than ``latest``, or a digest) unless
        ``allow_unpinned_images`` is set; ``groups`` (optional) limits who may start it.
        """,
    ).tag(config=True)

    allow_unpinned_images = Bool(
        False,
        help="Allow catalog images with no tag or the tag 'latest' (refused by default).",
    ).tag(config=True)

    default_image = Unicode(
        "",
        help="Catalog key started when the user picks none"
        " (default: the first image they may use).",
    ).tag(config=True)

    gpu_quota = Int(
        1,
        help="""GPUs one user may hold at once, counted across all of their named servers.

        Overridden per group by ``gpu_quota_groups``.
        """,
    ).tag(config=True)

    gpu_quota_groups = Dict(
        key_trait=Unicode(),
        value_trait=Int(),
        help="""Per-group GPU limits, e.g. {"staff": 4, "cpu-only": 0}.

        A user in several groups gets the most generous of their groups' limits;
        a user in no listed group gets ``gpu_quota``.
        """,
    ).tag(config=True)

    max_gpus_per_server = Int(
        8,
        help="The most GPUs one server may ask for (the quota still applies).",
    ).tag(config=True)

    workspace_path = Unicode(
        "/home/jovyan/work",
        help="Where the user's persistent workspace is mounted in the server.",
    ).tag(config=True)

    shm_size = Unicode(
        "2g",
        help="""Size of /dev/shm in the server. PyTorch DataLoader workers share batches
        through it; Docker's default of 64 MB is too small for them.""",
    ).tag(config=True)

    user_environment = Dict(
        key_trait=Unicode(),
        value_trait=Dict(),
        help="""Extra environment per user name, e.g. {"alice": {"HF_TOKEN": "..."}}.

        Secrets are passed at start and never baked into images or written to labels.
        """,
    ).tag(config=True)

    group_environment = Dict(
        key_trait=Unicode(),
        value_trait=Dict(),
        help='Extra environment for members of a group, e.g. {"staff": {"WANDB_MODE": "online"}}.',
    ).tag(config=True)

    template_paths = List(
        Unicode(),
        help="""Directories searched for gpuspawner's templates before the packaged ones
        (gpuspawner/templates/): spawn_form.html for the spawn form, admin.html for the
        admin service's dashboard. Copy one there to change it.""",
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.clear_progress()
        config_error_to_trait(self.check_config)
        install_on(self.log)  # refusals on one line in the hub's log

    def check_config(self) -> None:
        """Raise ConfigError, with the reason, for settings the hub cannot use."""
        if not self.catalog:
            raise ConfigError("The image catalog (images) is empty: list at least one image.")
        check_limits(self.gpu_quota, self.gpu_quota_groups)
        if self.default_image and self.default_image not in {i.key for i in self.catalog}:
            raise ConfigError(
                "default_image %r is not a key of the image catalog." % self.default_image
            )
        self.check_usage_config()
        self.check_profiles()

    @validate("gpu_quota", "max_gpus_per_server")
    def _validate_non_negative(self, proposal):
        if proposal.value < 0:
            raise TraitError(
                "%s must be 0 or more, not %d." % (proposal.trait.name, proposal.value)
            )
        return proposal.value

    @default("options_form")
    def _default_options_form(self):
        return render_options_form

    # JupyterHub's setting, declared again so that it wins over a backend's plain method of
    # that name (dockerspawner 13.0's options_from_form keeps only the image)
    options_from_form = Union(
        [Callable(), Unicode()],
        help="""How the spawn form's fields become ``user_options`` (JupyterHub's setting of the
        same name). The default reads gpuspawner's form: the image and the GPU count.
        "passthrough", "simple" or a callable replace it.""",
    ).tag(config=True)

    @default("options_from_form")
    def _default_options_from_form(self):
        return options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return apply_gpu_options

    # --- the backend contract: a backend implements these, and nothing else ---

    #: The state this backend's spawners share in a hub process (a SharedState subclass
    #: for the backend's own caches). Each backend declares its own.
    shared_state_class: type[SharedState] = SharedState

    def gpu_inventory(self) -> tuple[Gpu, ...] | None:
        """The identity of each GPU this hub hands out, by UUID and name (Docker: declared
        or from NVML). None: the engine picks the devices itself (Kubernetes: the device
        plugin), so the hub checks only the quota and names the GPUs with
        :meth:`requested_gpus`."""
        raise NotImplementedError("Override in a backend: the GPUs this hub hands out")

    def requested_gpus(self, count: int) -> tuple[Gpu, ...]:
        """Where the engine picks the devices: ``count`` GPUs named for this server (their
        ``resource`` is what it asks for). Not called when :meth:`gpu_inventory` names them."""
        raise NotImplementedError("Override in a backend whose gpu_inventory() is None")

    async def engine_holdings(self) -> list[Holding]:
        """What the engine says is held: one Holding per live server of this hub with GPUs,
        read from the engine (Docker: containers' labels; Kubernetes: the pod reflector)."""
        raise NotImplementedError("Override in a backend: the engine's GPU holdings")

    async def gpu_totals(self) -> dict[str, int] | None:
        """How many GPUs of each type (a GPU's name) the engine has for this hub's servers,
        for the form and the gpuspawner_gpus gauge; None when unknown."""
        raise NotImplementedError("Override in a backend: GPUs per type")

    async def start_engine(self) -> str:
        """Create and start this server's container or pod, holding :attr:`held_gpus`,
        with :meth:`get_env`; return its URL. Emit progress from 20 to 90."""
        raise NotImplementedError("Override in a backend: start the server")

    async def poll_engine(self) -> int | None:
        """None while the server runs, else its exit status (an int; 0 when unknown)."""
        raise NotImplementedError("Override in a backend: whether the server runs")

    def engine_environment(self) -> dict[str, str]:
        """The variables of the hub's environment through which this backend reaches its
        engine (Kubernetes: KUBECONFIG, the in-cluster service address; Docker: DOCKER_HOST).
        The admin service, a process JupyterHub starts with a trimmed environment, gets them
        so that its own spawner of this class reaches the same engine."""
        raise NotImplementedError("Override in a backend: how a process reaches the engine")

    def server_namespace(self) -> str:
        """The engine's namespace of this hub's servers, as a GPU exporter's labels name it
        (Kubernetes: the pods' namespace; "" where the engine has none, or where each user has
        a namespace of their own). The admin service matches utilisation with it."""
        raise NotImplementedError("Override in a backend: the namespace of the hub's servers")

    # --- optional hooks of a backend (the defaults here are complete) ---

    #: Seconds a rebuild of the holdings from the engine is reused (0: every time). Between
    #: rebuilds the pool itself counts what this hub reserves, starts and stops.
    holdings_max_age: float = 0.0

    #: How fresh the rebuild must be before a refusal for capacity is believed, in seconds
    #: (0: the engine is listed again first).
    refusal_max_age: float = REFUSAL_RESYNC_SECONDS

    #: How the servers holding slots of one shared GPU share it ("time-sliced" or "mps"; the
    #: Docker backend's setting of that name), for the environment (lifecycle/env.py).
    shared_gpu_mode: str = "time-sliced"

    def image_problem(self, image: CatalogImage) -> str | None:
        """Why this hub cannot start ``image`` (hidden from the form, refused by the API)."""
        return None

    def image_note(self, image: CatalogImage) -> str:
        """What the form says next to ``image`` (Docker: on this host, or pulled at its first
        start); empty: nothing."""
        return ""

    def gpus_unavailable_reason(self) -> str | None:
        """Why this hub offers no GPU at all (it has none, or its engine cannot attach them),
        in a user's words; None when it offers GPUs."""
        return None

    def report_host(self) -> None:
        """Log what this host offers, at hub start (gpuspawner.config.check_config)."""
        return None

    async def check_startable(self) -> None:
        """Raise SpawnRefused for a server the engine could never run (after the reservation)."""
        return None

    async def placed_holding(self) -> Holding | None:
        """What the engine says this server holds once started (e.g. GPUs named by the node's
        GPU type); None: what was reserved."""
        return None

    def reserved_message(self, gpus: tuple[Gpu, ...]) -> str:
        """The progress line once ``gpus`` are reserved for this server."""
        link = " (%s)" % link_of(gpus) if len(gpus) > 1 and gpus[0].topology.known else ""
        return "Allocated %s%s: %s" % (
            amount_text(gpus), link, ", ".join(g.describe() for g in gpus),
        )  # fmt: skip

    def explain_start_error(self, error: Exception) -> SpawnRefused | None:
        """A sentence for an engine error a user or admin can act on, or None."""
        return None

    # --- what a backend reads ---

    choice: SpawnChoice | None = None
    held_gpus: tuple[Gpu, ...] = ()  # what this server holds: reserved, running or restored
    _accounting: Accounting | None = None

    @property
    def gpu_count(self) -> int:
        """How many GPUs this server holds (GPU_LIMIT in its environment)."""
        return len(self.held_gpus)

    @property
    def catalog(self):
        images, allow_unpinned = self.images, self.allow_unpinned_images
        return parsed_once(
            self,
            "catalog",
            (images, allow_unpinned),
            lambda: parse_catalog(images, allow_unpinned=allow_unpinned),
        )

    @property
    def user_groups(self) -> list[str]:
        return sorted(group.name for group in self.user.groups)

    @property
    def user_quota(self) -> GpuLimit:
        """The user's GPU quota across all of their servers (GPU_LIMIT is this server's count):
        their groups', or the one an admin set for them (gpuspawner.usage.adjustments)."""
        limit = gpu_limit(self.user_groups, self.gpu_quota, self.gpu_quota_groups)
        return self.accounting.quota(limit)

    @property
    def server_name(self) -> str:
        return self.name or ""

    @property
    def shared(self) -> SharedState:
        return shared_state(type(self))

    @property
    def pool(self) -> GpuPool:
        """Who holds which GPU, for every spawner of this backend in this hub process."""
        shared = self.shared
        if shared.pool is None:
            shared.pool = GpuPool(inventory=self.gpu_inventory())
        return shared.pool

    @property
    def engine_picks_devices(self) -> bool:
        return self.pool.inventory is None

    @property
    def accounting(self) -> Accounting:
        """This server's ledger and budget (a fresh one at each start)."""
        if self._accounting is None:
            self._accounting = Accounting(
                self, ledger_for(self.usage_db_url), self.user.name, self.server_name,
                self.user_groups, self.log,
            )  # fmt: skip
        return self._accounting

    def choose(self, user_options) -> SpawnChoice:
        """Check ``user_options``; bad input is an HTTP 400 with the sentence."""
        try:
            choice = parse_user_options(
                user_options,
                self.catalog,
                self.user_groups,
                max_gpus=self.max_gpus_per_server,
                default_image=self.default_image,
                profiles=self.profile_set,
            )
        except OptionsError as e:
            spawn_failed(self)
            raise SpawnRefused(str(e), reason="options", status_code=400) from None
        problem = self.image_problem(choice.image)
        if problem is not None:
            spawn_failed(self)
            raise SpawnRefused(problem, reason="image", status_code=400)
        no_gpus = self.gpus_unavailable_reason() if choice.gpu_count else None
        if no_gpus is not None:
            spawn_failed(self)
            raise SpawnRefused(
                "%s You asked for %s: start the server with 0 GPUs."
                % (no_gpus, plural(choice.gpu_count)),
                reason="gpu-none",
                status_code=400,
            )
        return choice

    def run_options_from_form(self, form_data):
        remember_form(self, form_data)  # for the form JupyterHub renders if the spawn fails
        return super().run_options_from_form(form_data)

    def offered_images(self) -> list[CatalogImage]:
        """The catalog images this user may start on this hub, in catalog order."""
        return [
            i for i in images_for(self.catalog, self.user_groups) if self.image_problem(i) is None
        ]

    # --- the lifecycle ---

    async def start(self):
        self.clear_progress()
        self._accounting = None
        self.refuse_unservable_names()
        choice = self.spawn_choice()
        refusal = await self.accounting.refusal(choice.gpu_count)
        if refusal is not None:
            spawn_failed(self)
            raise SpawnRefused(refusal, reason="budget", status_code=403)
        try:
            await self.reserve_gpus(
                choice.gpu_count, gpu_type=choice.gpu_type, shared=choice.shared
            )
        except SpawnRefused:
            spawn_failed(self)
            raise
        try:
            await self.check_startable()
            url = await self.start_engine()
        except BaseException as error:
            spawn_failed(self)
            await self.release_gpus()
            if isinstance(error, SpawnRefused) or not isinstance(error, Exception):
                raise
            explained = self.explain_start_error(error)
            if explained is None:
                raise
            raise explained from None
        await self.confirm_gpus()
        return url

    #: What keeps one hub's holder keys apart from another's on a shared engine (Docker: the
    #: container prefix); the hub user id does the rest.
    holder_scope: str = ""

    @property
    def holder(self) -> str:
        """Who holds this server's GPUs in the pool and the engine's labels: the hub's user id,
        which a rename does not change (a user name would let a renamed user exceed the quota)."""
        user_id = getattr(self.user, "id", None)
        return self.user.name if user_id is None else holder_key(self.holder_scope, user_id)

    def by_holder(self, holdings: list[Holding]) -> list[Holding]:
        """The engine's holdings keyed by holder, with each user's current name as ``owner``:
        labels written before user ids were recorded name the user, labels since then name
        the id; the hub's database tells which user has which id now."""
        db = getattr(self.user, "db", None)
        if db is None or not holdings:
            return holdings
        from jupyterhub import orm

        prefix = holder_key(self.holder_scope, "")
        ids = {h.user[len(prefix) :] for h in holdings if h.user.startswith(prefix)}
        legacy = {h.user for h in holdings if not h.user.startswith(prefix)}
        names = dict(db.query(orm.User.id, orm.User.name).filter(orm.User.id.in_(
            [int(i) for i in ids if i.isdigit()])).all()) if ids else {}  # fmt: skip
        legacy_ids = dict(db.query(orm.User.name, orm.User.id).filter(
            orm.User.name.in_(legacy)).all()) if legacy else {}  # fmt: skip
        keyed = []
        for h in holdings:
            if h.user.startswith(prefix):
                user_id = h.user[len(prefix) :]
                keyed.append(replace(h, owner=names.get(int(user_id), h.owner) if user_id.isdigit()
                                     else h.owner))  # fmt: skip
            elif h.user in legacy_ids:
                keyed.append(replace(h, user=prefix + str(legacy_ids[h.user]), owner=h.user))
            else:
                keyed.append(h)
        return keyed

    def own_holdings(self, holdings: list[Holding]) -> list[Holding]:
        """The holdings of this hub's users, for its ledger. A shared engine lists other hubs'
        servers too: their GPUs are taken (the pool counts them), but they are not this hub's
        to record. Without the hub's database (no ids to tell by), every holding counts."""
        if getattr(self.user, "db", None) is None:
            return holdings
        return of_scope(holdings, self.holder_scope)

    def refuse_unservable_names(self) -> None:
        """A user or server name the engines cannot carry is a 400 with the reason."""
        for what, name in (("user name", self.user.name), ("server name", self.server_name)):
            reason = unservable_reason(what, name)
            if reason is not None:
                raise SpawnRefused(reason, reason="name", status_code=400)

    def spawn_choice(self) -> SpawnChoice:
        """The choice ``apply_user_options`` made; made here when an admin replaced that hook."""
        if self.choice is None:
            self.choice = self.choose(self.user_options)
            self.image = self.choice.image.image
        return self.choice

    async def reserve_gpus(
        self, count: int, *, gpu_type: str = "", shared: bool = False
    ) -> tuple[Gpu, ...]:
        """Distinct GPUs for this server within the user's quota, or a SpawnRefused saying why.

        ``gpu_type``: only GPUs of that type; ``shared``: a slot of a shared GPU."""
        await self.sync_holdings()
        devices = self.requested_gpus(count) if self.engine_picks_devices else None
        request = GpuRequest(
            self.holder, self.server_name, count, self.user_quota, devices,
            gpu_type=gpu_type, shared=shared, owner=self.user.name,
            held_back=reserved.held_back_for(self, holder_key),
        )  # fmt: skip
        # at once, or after waiting in line (gpu_queue_timeout); a capacity refusal is made on
        # the engine's word, not on a view that may be a minute old (a server killed from
        # outside, OOM or docker kill, holds nothing any more)
        outcome = await queue.reserve(
            self, request, lambda: self.sync_holdings(max_age=self.refusal_max_age)
        )
        if not isinstance(outcome, Grant):
            raise SpawnRefused(
                outcome.message,
                reason="gpu-" + outcome.reason,
                status_code=REFUSAL_STATUS[outcome.reason],
            )
        self.held_gpus = outcome.gpus
        if outcome.gpus:
            self.emit_progress(10, self.reserved_message(outcome.gpus))
        return outcome.gpus

    async def confirm_gpus(self) -> None:
        """The server started: the engine records its GPUs; open their ledger intervals."""
        self.pool.confirm(self.holder, self.server_name, await self.placed_holding())
        holding = self.pool.holding(self.holder, self.server_name)
        self.held_gpus = holding.gpus if holding is not None else ()
        await self.accounting.opened(self.held_gpus)
        await self.publish_gpu_counts()

    async def release_gpus(self) -> None:
        """The server stopped, failed to start or died: its GPUs are free again."""
        released = self.pool.release(self.holder, self.server_name) or self.held_gpus
        self.held_gpus = ()
        queue.notify(self)  # the head of the line takes them
        if released:
            self.log.info(
                "Released %s (%s) from %s",
                plural(len(released)), ", ".join(g.uuid for g in released), self._log_name,
            )  # fmt: skip
            await self.accounting.closed(released)
            if self.accounting.user != self.user.name:
                # renamed while running: the ledger followed the rename at its last reconcile
                self.accounting.user = self.user.name
                await self.accounting.closed(released)
        await self.publish_gpu_counts()

    async def sync_holdings(self, max_age: float | None = None) -> None:
        """Load who holds which GPU from the engine (:meth:`engine_holdings`).

        Skipped when the last rebuild is younger than ``max_age`` seconds (default
        :attr:`holdings_max_age`); concurrent callers share one listing of the engine.
        """
        shared = self.shared
        max_age = self.holdings_max_age if max_age is None else max_age
        if self.pool.rebuilt and time.monotonic() - shared.rebuilt_at < max_age:
            return
        if shared.rebuilding is None or shared.rebuilding.done():
            shared.rebuilding = asyncio.ensure_future(self._rebuild_from_engine())
        await asyncio.shield(shared.rebuilding)

    async def _rebuild_from_engine(self) -> None:
        pool, shared = self.pool, self.shared
        in_flight = pool.in_flight()
        holdings = self.by_holder(await self.engine_holdings())
        pool.rebuild(holdings, in_flight)
        shared.rebuilt_at = time.monotonic()
        queue.notify(self)
        self.log.debug("GPU holdings rebuilt from the engine: %d servers", len(holdings))
        every = max(self.holdings_max_age, MIN_RECONCILE_SECONDS)
        if shared.reconciled_at is None or shared.rebuilt_at - shared.reconciled_at >= every:
            shared.reconciled_at = shared.rebuilt_at
            own = self.own_holdings(holdings)
            await self.accounting.reconciled([replace(h, user=h.owner or h.user) for h in own])
        await self.publish_gpu_counts()

    async def publish_gpu_counts(self) -> None:
        """The gpuspawner_gpus gauge: GPUs per type, allocated and free."""
        pool = self.pool
        lost = [gpu for gpu in pool.inventory or () if gpu.uuid in pool.lost]
        hub_metrics.set_gpu_counts(await self.gpu_totals(), pool.holdings, lost)

    def offered_gpu_types(self, totals: dict[str, int]) -> set[str]:
        """Of the GPU types in ``totals`` (:meth:`gpu_totals`), those this server would ask
        for, which the form counts (Kubernetes: its placement's resource and product).
        Default: all of them."""
        return set(totals)

    async def gpu_availability(self) -> Availability | None:
        """Free/total GPUs and the user's holdings, for the form; None when unknown."""
        await self.sync_holdings()
        mine = self.pool.held_by(self.holder)
        if self.engine_picks_devices:
            totals = await self.gpu_totals()
            if not totals:
                return None
            kinds = self.offered_gpu_types(totals)
            total = sum(n for kind, n in totals.items() if kind in kinds)
            allocated = sum(1 for h in self.pool.holdings for gpu in h.gpus if gpu.name in kinds)
            free = max(total - allocated, 0)
        else:
            total = sum(1 for gpu in self.pool.inventory if not gpu.is_shared)
            free = max(len(self.pool.free()) - reserved.kept_now(self, holder_key), 0)
        slots = free_slots(self.pool.usable() or (), self.pool.holdings)
        share = sum((h.share for h in mine), Fraction(0))
        return Availability(
            free=free,
            total=total,
            held=math.ceil(share),
            held_text=describe_holdings(mine),
            slots_free=sum(n for _, n in slots),
            slots_total=sum(gpu.shared_by for gpu, _ in slots),
            held_share=share,
        )

    def run_pre_spawn_hook(self):
        queue.extend_start_timeout(self)  # JupyterHub reads start_timeout next
        return super().run_pre_spawn_hook()

    async def stop(self, now=False):
        await super().stop(now=now)
        await self.release_gpus()

    async def poll(self):
        if queue.interrupted(self):  # waiting in line when the hub stopped: ended, with why
            return 0
        await self.sync_holdings()
        status = await self.poll_engine()
        if status is not None:
            await self.release_gpus()
        return status

    # --- saved state: what this server holds survives a hub restart ---

    def get_state(self):
        state = super().get_state()
        if self.held_gpus:
            state["held_gpus"] = [gpu_to_state(gpu) for gpu in self.held_gpus]
        state.update(queue.waiting_state(self))
        return state

    def load_state(self, state):
        super().load_state(state)
        self.restored_queue_entry = state.get(queue.STATE_KEY)
        if "held_gpus" in state:
            self.held_gpus = tuple(Gpu(**entry) for entry in state["held_gpus"])
        elif state.get("gpu_uuids"):  # written by the Docker backend before 0.x
            self.held_gpus = tuple(Gpu(uuid) for uuid in state["gpu_uuids"])
        elif state.get("gpus"):  # a count, written by the Kubernetes backend before 0.x
            self.held_gpus = self.requested_gpus(int(state["gpus"]))
        else:
            self.held_gpus = ()

    def clear_state(self):
        super().clear_state()
        self.held_gpus = ()
        self.choice = None

    # --- progress ---

    def emit_progress(self, progress: int, message: str) -> None:
        """Record a stage of the spawn for the hub's progress bar."""
        self.log.info("%s: %s", self._log_name, message)
        self._progress_log.append({"progress": progress, "message": message})
        self._progress_signal.set()

    def clear_progress(self) -> None:
        self._progress_log: list[dict] = []
        self._progress_signal = asyncio.Event()

    async def progress(self):
        """Yield the spawn's stages as they happen; the hub stops reading when ready."""
        sent = 0
        while True:
            while sent < len(self._progress_log):
                yield self._progress_log[sent]
                sent += 1
            self._progress_signal.clear()
            try:
                await asyncio.wait_for(self._progress_signal.wait(), timeout=1)
            except asyncio.TimeoutError:
                pass

    # --- the contract with the container ---

    def no_gpu_reason(self) -> str:
        if self.user_quota.count == 0:
            return "Your GPU quota is 0 (%s)." % self.user_quota.source
        return "No GPU was requested for this server."

    def get_env(self):
        env = super().get_env()
        groups = set(self.user_groups)
        for group, group_env in sorted(self.group_environment.items()):
            if group in groups:
                env.update(group_env)
        env.update(self.profile_env())  # the course profile's (lifecycle/profiles.py)
        env.update(self.user_environment.get(self.user.name, {}))
        env.update(secret_env(self))  # the user's own secrets (usage/secrets.py)
        env.update(
            gpu_env(
                self.held_gpus, self.no_gpu_reason(),
                engine_picks_devices=self.engine_picks_devices, share_mode=self.shared_gpu_mode,
            )  # fmt: skip
        )
        env.update(self.accounting.deadline_env(
            self.held_gpus, max_age=self.profile_max_age(), idle_timeout=self.profile_idle_timeout()
        ))  # fmt: skip
        return env


def of_scope(holdings: list[Holding], scope: str) -> list[Holding]:
    """The holdings keyed by a holder of ``scope`` (see :func:`holder_key`)."""
    prefix = holder_key(scope, "")
    return [h for h in holdings if h.user.startswith(prefix)]


def holder_key(scope: str, user_id) -> str:
    """The pool's key for a hub user: '<scope>#<user id>'."""
    return "%s#%s" % (scope, user_id)


def apply_gpu_options(spawner, user_options):
    """The ``apply_user_options`` hook: check the options and remember the choice.

    The GPU count is dropped from the options the hub stores for the next spawn,
    so a later spawn without options starts with no GPU instead of inheriting one; so is
    a profile holding a GPU (a profile without one is kept, and only it).
    """
    spawner.choice = spawner.choose(user_options)
    spawner.image = spawner.choice.image.image
    stored = spawner.orm_spawner.user_options or {}
    profile = spawner.choice.profile
    if profile is not None and isinstance(stored, dict):
        spawner.orm_spawner.user_options = {} if profile.holds_gpu else {"profile": profile.key}
    elif isinstance(stored, dict) and ("gpus" in stored or "shared" in stored):
        spawner.orm_spawner.user_options = {
            k: v for k, v in stored.items() if k not in ("gpus", "shared")
        }
