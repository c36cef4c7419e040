"""GPU allocation: which GPUs a spawn gets, and whether it may have them.

:func:`decide` is the whole policy, pure: given the inventory, who holds what and a
request, it grants distinct free GPUs or refuses with a sentence. :class:`GpuPool` keeps
the holdings of one hub process between calls; it does no I/O either, so a backend
calls it without awaiting and two coroutines can never interleave inside it.

Where the engine picks the devices itself (Kubernetes: the scheduler and the device
plugin), the pool has no inventory: the quota is checked the same way, capacity is the
engine's to judge, and the request names the devices it will get (``GpuRequest.devices``).

The rules of a grant:

- a whole-GPU request gets distinct GPUs nobody holds, never a shared GPU (one with
  ``shared_by`` > 1); of two or more, the closest free ones (:func:`.topology.closest`);
- a ``shared`` request (always one GPU) gets a slot of a shared GPU holding fewer than
  ``shared_by`` servers: the least-held one, the first in inventory order among equals,
  so slots spread over the shared GPUs;
- ``gpu_type`` keeps only GPUs of that type (:func:`.inventory.matches_type`);
- the quota counts a slot as 1/N of a GPU (:mod:`.quota`);
- a whole-GPU request leaves the free GPUs other groups' open class reservations still
  need (``GpuRequest.held_back``, :mod:`.reservations`), else it is refused for capacity.

A refusal is "quota", "capacity" (it may work later: the fair queue waits on it) or
"options" (it never can on this hub: no GPU of that type, no shared GPU, a shared request
for more than one GPU).
"""

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

from .inventory import Gpu, matches_type
from .quota import GpuLimit, amount_text, fraction_text, gpu_share, over_quota
from .topology import closest
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

    @property
    def share(self) -> Fraction:
        """How much of the quota this holding takes (a slot of a GPU shared by N: 1/N)."""
        return gpu_share(self.gpus)

    def describe(self) -> str:
        """'2 GPUs on server 'train' (GPU-aa, GPU-bb)'; '1/4 GPU (a shared slot) on …'."""
        where = self.detail or ", ".join(self.uuids)
        return "%s on %s (%s)" % (amount_text(self.gpus), server_label(self.server), where)


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
    owner: str = ""  # the user's name, as the granted holding's owner (empty: ``user``)
    # free whole GPUs kept for other groups' class reservations, given the others' holdings:
    # a callable returning .count and .reason (policy/reservations.py); None: none kept
    held_back: Callable[[Sequence["Holding"]], object] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Grant:
    gpus: tuple[Gpu, ...]

    @property
    def uuids(self) -> tuple[str, ...]:
        return tuple(gpu.uuid for gpu in self.gpus)


@dataclass(frozen=True)
class Refusal:
    reason: str  # "quota", "capacity" or "options", a metrics label
    message: str


def free_gpus(inventory: Sequence[Gpu], holdings: Iterable[Holding]) -> list[Gpu]:
    """Inventory GPUs nobody holds, in inventory order (whole GPUs to hand out: shared GPUs
    are never among them, see :func:`free_slots`)."""
    held = {uuid for holding in holdings for uuid in holding.uuids}
    return [gpu for gpu in inventory if gpu.uuid not in held and not gpu.is_shared]


def slot_holders(holdings: Iterable[Holding]) -> Counter:
    """How many servers hold each UUID."""
    return Counter(uuid for holding in holdings for uuid in set(holding.uuids))


def free_slots(inventory: Sequence[Gpu], holdings: Iterable[Holding]) -> list[tuple[Gpu, int]]:
    """Each shared GPU of the inventory with its free slots (0 when full), inventory order."""
    holders = slot_holders(holdings)
    return [
        (gpu, max(gpu.shared_by - holders[gpu.uuid], 0)) for gpu in inventory if gpu.is_shared
    ]


def article(word: str) -> str:
    """'an A100', 'a T4', 'an H100', 'a Tesla', 'an RTX 4090': a model code is read letter by
    letter ('an H…', 'an L4'), a word as written."""
    head = word.split()[0] if word.split() else word
    if head[:1].isupper() and (head.isupper() or any(c.isdigit() for c in head)):
        return "an" if head[0] in "AEFHILMNORSX8" else "a"
    return "an" if head[:1].lower() in "aeio" else "a"


def describe_request(request: GpuRequest) -> str:
    """'1 GPU', '2 GPUs', 'an A100', '2 A100 GPUs', 'a shared GPU slot', 'a shared T4 slot'."""
    kind = request.gpu_type.strip()
    if request.shared:
        return "a shared %s slot" % (kind or "GPU")
    if not kind:
        return plural(request.count)
    if request.count == 1:
        return "%s %s" % (article(kind), kind)
    return "%d %s GPUs" % (request.count, kind)


def slot_note(shared_by: int, mode: str = "time-sliced") -> str:
    """What a shared slot means, for the form: 'shared with up to 3 others; memory is not
    isolated' (``mode`` "mps": each gets 1/N of the memory and compute)."""
    others = shared_by - 1
    who = "shared with up to %d other%s" % (others, "" if others == 1 else "s")
    if mode == "mps":
        return "%s; each server gets at most 1/%d of its memory and compute (CUDA MPS)" % (
            who, shared_by,
        )  # fmt: skip
    return "%s; memory is not isolated and compute is time-sliced" % who


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
    """Grant ``request.count`` distinct free GPUs, or a slot of a shared GPU, or refuse with
    the reason (see the module's rules).

    ``inventory`` None: the engine picks the devices, so only the quota is checked and the
    grant is ``request.devices``.
    """
    if request.count == 0:
        return Grant(())
    if request.shared and request.count != 1:
        return Refusal(
            "options",
            "A shared GPU slot is one GPU: you asked for %s shared. Ask for 1 GPU with a shared"
            " slot, or for whole GPUs." % plural(request.count),
        )
    others = [h for h in holdings if h.key != (request.user, request.server)]
    mine = sorted(held_by(request.user, others), key=lambda h: h.server)
    kind = request.gpu_type.strip()
    pool: list[Gpu] = []
    slot: Gpu | None = None
    if inventory is None:
        wanted = gpu_share(request.devices or ()) or Fraction(request.count)
    else:
        pool = [
            g for g in inventory if matches_type(g.name, kind) and g.is_shared == request.shared
        ]
        never = _none_offered(inventory, request) if not pool else None
        if never is not None:
            return Refusal("options", never)
        wanted = Fraction(request.count)
        if request.shared:
            holders = slot_holders(others)
            open_slots = [gpu for gpu in pool if holders[gpu.uuid] < gpu.shared_by]
            # the least-held shared GPU (spread), the first in inventory order among equals
            load = lambda g: Fraction(holders[g.uuid], g.shared_by)  # noqa: E731
            slot = min(open_slots, key=load, default=None)
            wanted = Fraction(1, (slot or min(pool, key=lambda g: g.shared_by)).shared_by)
    refusal = over_quota(
        wanted, request.limit, [(h.share, h.describe()) for h in mine],
        asked_text=_asked_text(request, wanted),
    )  # fmt: skip
    if refusal is not None:
        return Refusal("quota", refusal)
    if inventory is None:
        return Grant(tuple(request.devices or ()))
    if request.shared:
        if slot is not None:
            return Grant((slot,))
        slots = sum(gpu.shared_by for gpu in pool)
        return Refusal(
            "capacity",
            "No shared %s slot is free: all %d slots of the %s are taken right now."
            " Try again later, or start with a whole GPU."
            % (kind or "GPU", slots, plural(len(pool), "shared %s" % (kind or "GPU"))),
        )
    free = free_gpus(pool, others)
    kept = request.held_back(others) if request.held_back is not None else None
    if kept is not None and kept.count and len(free_gpus(inventory, others)) - kept.count < (
        request.count
    ):  # a class reservation: the free GPUs its group still needs are not this request's
        return Refusal(
            "capacity",
            "%s You asked for %s and %d of %d %s free; try again after the reservation."
            % (kept.reason, describe_request(request), len(free), len(pool),
               "is" if len(free) == 1 else "are"),
        )  # fmt: skip
    if len(free) < request.count:
        return Refusal(
            "capacity",
            "Not enough %sGPUs are free: you asked for %s and %d of %d %s free right now."
            " Try again later, or start with fewer GPUs."
            % (
                kind + " " if kind else "",
                describe_request(request),
                len(free),
                len(pool),
                "is" if len(free) == 1 else "are",
            ),
        )
    return Grant(closest(free, request.count))


def _asked_text(request: GpuRequest, wanted: Fraction) -> str | None:
    """'1/4 GPU (a shared slot)', '1/3 GPU (a shared T4 slot)', '1 GPU (an A100)'; None for
    whole GPUs of any type (the quota's own '2 GPUs')."""
    kind = request.gpu_type.strip()
    if request.shared:
        return "%s GPU (a shared %sslot)" % (fraction_text(wanted), kind + " " if kind else "")
    if kind:
        return "%s (%s)" % (plural(request.count), describe_request(request))
    return None


def _none_offered(inventory: Sequence[Gpu], request: GpuRequest) -> str | None:
    """Why this hub can never grant ``request`` (no GPU of its type, or of its kind); None
    for a plain request to a hub without (usable) GPUs, a capacity refusal as before."""
    kind = request.gpu_type.strip()
    names = sorted({gpu.name for gpu in inventory})
    has = " (it has %s)" % join_phrases(names) if names else ""
    if kind and not any(matches_type(gpu.name, kind) for gpu in inventory):
        return "This hub has no %s GPU%s: ask for another type, or for any GPU." % (kind, has)
    what = "%s GPU" % kind if kind else "GPU"
    if request.shared:
        return "This hub has no shared %s: ask for a whole GPU instead." % what
    if any(gpu.is_shared for gpu in inventory):
        return "Every %s of this hub is shared: ask for a shared slot (1 GPU) instead." % what
    return None


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
                Holding(request.user, request.server, outcome.gpus, owner=request.owner),
                in_flight=True,
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
                owner = holding.owner or entry.holding.owner
                entry.holding = replace(holding, user=user, server=server, owner=owner)

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
