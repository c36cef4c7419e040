"""GPU allocation: which GPUs a spawn gets, and whether it may have them.

:func:`decide` is the whole policy, pure: given the inventory, who holds what and a
request, it grants distinct free GPUs or refuses with a sentence. :class:`GpuPool` keeps
the holdings of one hub process between calls; it does no I/O either, so a backend
calls it without awaiting and two coroutines can never interleave inside it.

Where the engine picks the devices itself (Kubernetes: the scheduler and the device
plugin), the pool has no inventory: the quota is checked the same way, capacity is the
engine's to judge, and the request names the devices it will get (``GpuRequest.devices``).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from .inventory import Gpu
from .quota import GpuLimit, over_quota
from .wording import join_phrases, plural, server_label


@dataclass(frozen=True)
class Holding:
    """The GPUs one server holds, as the engine records them (container labels, pod labels).

    ``detail`` says where, for messages (a pod and its node); empty: the GPUs' UUIDs.
    """

    user: str  # who holds it: the spawner's holder key (survives renames), or a user name
    server: str
    gpus: tuple[Gpu, ...]
    detail: str = ""
    owner: str = ""  # the user's name, for the ledger and messages (empty: ``user``)

    @property
    def key(self) -> tuple[str, str]:
        return (self.user, self.server)

    @property
    def uuids(self) -> tuple[str, ...]:
        return tuple(gpu.uuid for gpu in self.gpus)

    def describe(self) -> str:
        """'2 GPUs on server 'train' (GPU-aa, GPU-bb)'."""
        where = self.detail or ", ".join(self.uuids)
        return "%s on %s (%s)" % (plural(len(self.gpus)), server_label(self.server), where)


@dataclass(frozen=True)
class GpuRequest:
    """A spawn asking for ``count`` GPUs for one of a user's servers.

    ``devices``: the GPUs it gets when the engine picks them (named by the backend, one
    per GPU); None: distinct free GPUs of the inventory. ``gpu_type``: only GPUs of that
    type (empty: any); ``shared``: a slot of a shared GPU instead of whole GPUs.
    """

    user: str
    server: str
    count: int
    limit: GpuLimit
    devices: tuple[Gpu, ...] | None = None
    gpu_type: str = ""
    shared: bool = False


@dataclass(frozen=True)
class Grant:
    gpus: tuple[Gpu, ...]

    @property
    def uuids(self) -> tuple[str, ...]:
        return tuple(gpu.uuid for gpu in self.gpus)


@dataclass(frozen=True)
class Refusal:
    reason: str  # "quota" or "capacity", a metrics label
    message: str


def free_gpus(inventory: Sequence[Gpu], holdings: Iterable[Holding]) -> list[Gpu]:
    """Inventory GPUs nobody holds, in inventory order."""
    held = {uuid for holding in holdings for uuid in holding.uuids}
    return [gpu for gpu in inventory if gpu.uuid not in held]


def held_by(
    user: str, holdings: Iterable[Holding], *, except_server: str | None = None
) -> list[Holding]:
    """The user's holdings with at least one GPU, other than ``except_server``'s."""
    return [
        holding
        for holding in holdings
        if holding.user == user and holding.gpus and holding.server != except_server
    ]


def describe_holding(holding: Holding) -> str:
    """'2 GPUs on server 'train' (GPU-aa, GPU-bb)'."""
    return holding.describe()


def describe_holdings(holdings: Sequence[Holding]) -> str:
    """'1 GPU on server 'train' (GPU-aa) and 2 GPUs on the default server (GPU-bb, GPU-cc)'."""
    ordered = sorted(holdings, key=lambda h: h.server)
    return join_phrases([h.describe() for h in ordered]) or "no GPU"


def decide(
    request: GpuRequest, inventory: Sequence[Gpu] | None, holdings: Sequence[Holding]
) -> Grant | Refusal:
    """Grant ``request.count`` distinct free GPUs, or refuse with the reason.

    ``inventory`` None: the engine picks the devices, so only the quota is checked and the
    grant is ``request.devices``.
    """
    if request.count == 0:
        return Grant(())
    others = [h for h in holdings if h.key != (request.user, request.server)]
    mine = sorted(held_by(request.user, others), key=lambda h: h.server)
    refusal = over_quota(request.count, request.limit, [(len(h.gpus), h.describe()) for h in mine])
    if refusal is not None:
        return Refusal("quota", refusal)
    if inventory is None:
        return Grant(tuple(request.devices or ()))
    free = free_gpus(inventory, others)
    if len(free) < request.count:
        return Refusal(
            "capacity",
            "Not enough GPUs are free: you asked for %s and %d of %d %s free right now."
            " Try again later, or start with fewer GPUs."
            % (
                plural(request.count),
                len(free),
                len(inventory),
                "is" if len(free) == 1 else "are",
            ),
        )
    return Grant(tuple(free[: request.count]))


@dataclass
class _Entry:
    holding: Holding
    in_flight: bool  # a spawn is between allocation and a confirmed start


@dataclass
class GpuPool:
    """The holdings of one hub process: rebuilt from the engine, updated by spawns.

    The engine's truth (labels of running containers, pods) is loaded with
    :meth:`rebuild`; spawns in flight are kept across a rebuild, since their
    container may not be running yet. ``inventory`` None: the engine picks the devices.
    ``lost``: UUIDs of inventory GPUs NVML reports lost (never handed out until back).
    """

    inventory: tuple[Gpu, ...] | None = ()
    _entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    rebuilt: bool = False
    lost: frozenset[str] = frozenset()

    def usable(self) -> tuple[Gpu, ...] | None:
        """The inventory without the lost GPUs (None: the engine picks the devices)."""
        if self.inventory is None:
            return None
        return tuple(gpu for gpu in self.inventory if gpu.uuid not in self.lost)

    @property
    def holdings(self) -> list[Holding]:
        return [entry.holding for entry in self._entries.values()]

    def holding(self, user: str, server: str) -> Holding | None:
        entry = self._entries.get((user, server))
        return entry.holding if entry else None

    def lookup(self, uuids: Iterable[str]) -> tuple[Gpu, ...]:
        """The inventory entries of ``uuids`` (a bare Gpu for one no longer in the inventory)."""
        by_uuid = {gpu.uuid: gpu for gpu in self.inventory or ()}
        return tuple(by_uuid.get(uuid, Gpu(uuid)) for uuid in uuids)

    def free(self) -> list[Gpu]:
        return free_gpus(self.usable() or (), self.holdings)

    def held_by(self, user: str) -> list[Holding]:
        return held_by(user, self.holdings)

    def allocate(self, request: GpuRequest) -> Grant | Refusal:
        """Decide, and on a grant record the GPUs as held by a spawn in flight."""
        outcome = decide(request, self.usable(), self.holdings)
        if isinstance(outcome, Grant):
            self._entries[(request.user, request.server)] = _Entry(
                Holding(request.user, request.server, outcome.gpus), in_flight=True
            )
        return outcome

    def confirm(self, user: str, server: str, holding: Holding | None = None) -> None:
        """The server started: its GPUs are now recorded by the engine too.

        ``holding``: what the engine says it holds now (e.g. named by the node it runs on).
        """
        entry = self._entries.get((user, server))
        if entry is not None:
            entry.in_flight = False
            if holding is not None:
                entry.holding = replace(holding, user=user, server=server)

    def release(self, user: str, server: str) -> tuple[Gpu, ...]:
        """The server stopped, failed or died: its GPUs are free again."""
        entry = self._entries.pop((user, server), None)
        return entry.holding.gpus if entry else ()

    def in_flight(self) -> set[tuple[str, str]]:
        return {key for key, entry in self._entries.items() if entry.in_flight}

    def rebuild(
        self, engine_holdings: Iterable[Holding], in_flight_before: set[tuple[str, str]]
    ) -> None:
        """Replace the holdings with the engine's, keeping spawns in flight.

        ``in_flight_before`` is :meth:`in_flight` taken before the engine was listed:
        such a spawn may have started after the listing, so it is kept as well.
        """
        kept = {
            key: entry
            for key, entry in self._entries.items()
            if entry.in_flight or key in in_flight_before
        }
        for holding in engine_holdings:
            if holding.key not in kept:
                kept[holding.key] = _Entry(holding, in_flight=False)
        self._entries = kept
        self.rebuilt = True
