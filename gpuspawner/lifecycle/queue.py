"""Waiting in line for a GPU instead of an immediate 503.

With ``gpu_queue_timeout`` > 0, a spawn the pool refuses for capacity joins the hub's line
(:class:`gpuspawner.policy.line.Line`, one per backend and hub process, in
:class:`~gpuspawner.lifecycle.shared.SharedState`) and waits up to that many seconds. The
lifecycle wakes the line (:meth:`GpuQueue.notify`) whenever GPUs may have come free: a
server stopped or failed (``release_gpus``, also from a poll that found it dead) or the
engine was listed again; the head of the line also lists the engine itself every
:data:`HEAD_RECHECK_SECONDS`. Only the head of a line allocates, so nobody behind takes a
freed GPU first, and a newcomer joins the end while competing places wait.

Quota refusals still fail at once. Cancelling the spawn (the hub cancels ``start()``)
leaves the line at once. The line lives in memory: a spawn waiting when the hub stopped is
marked in its saved state and ends, after the restart, with a sentence (:func:`interrupted`).

Where the engine picks the devices (Kubernetes), the pool grants whatever the quota allows;
with a queue, capacity is the engine's GPU totals of the requested type minus what the pool
holds, so GPU pods are created only when they can run.
"""

import asyncio
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import sqlalchemy
from traitlets import Float, TraitError, validate
from traitlets.config import LoggingConfigurable

from ..policy.allocation import GpuRequest, Grant, Refusal, decide, describe_request
from ..policy.inventory import matches_type
from ..policy.line import (
    AlreadyWaiting,
    Line,
    Place,
    engine_capacity_left,
    restart_message,
    timed_out_message,
    waiting_message,
)
from .refusal import SpawnRefused

HEAD_RECHECK_SECONDS = 5.0  # the head of a line lists the engine at least this often
SITUATION_SECONDS = 5.0  # how long the holders' start times read from the ledger are kept
STATE_KEY = "gpu_queue"  # in a waiting server's saved state


class QueueSettings(LoggingConfigurable):
    """The fair queue's setting, part of ``GPUSpawnerMixin``."""

    gpu_queue_timeout = Float(
        0,
        help="""Seconds a spawn waits in line for a GPU when none of the kind it asks for is
        free, instead of failing at once (e.g. 600). First come, first served, one place per
        user; the progress page shows the position. Quota refusals still fail at once.

        The hub's start timeout is extended by this much for spawns asking for GPUs, so the
        wait never counts against ``start_timeout``. 0 (the default): refuse at once with
        "Not enough GPUs are free". On Kubernetes a value > 0 also makes the hub count the
        nodes' GPUs, so that GPU pods are created only when they can run.""",
    ).tag(config=True)

    @validate("gpu_queue_timeout")
    def _validate_queue_timeout(self, proposal):
        if proposal.value < 0:
            raise TraitError("gpu_queue_timeout must be 0 or more, not %s." % proposal.value)
        return proposal.value


def place_of(request: GpuRequest) -> Place:
    return Place(request.user, request.server, request.gpu_type, request.shared, request.count)


class GpuQueue:
    """The line of one backend in one hub process, and the waiters' wake-up events."""

    def __init__(self):
        self.line = Line()
        self._events: dict[tuple[str, str], asyncio.Event] = {}
        self._starts: tuple[float, dict] | None = None  # (monotonic, (user, server) -> start)
        self._reading: asyncio.Future | None = None  # the ledger read in progress

    def notify(self) -> None:
        """GPUs may have come free, or the line moved: every waiter looks again."""
        for event in self._events.values():
            event.set()

    def __len__(self) -> int:
        return len(self.line)

    async def allocate(self, spawner, request: GpuRequest) -> Grant | Refusal:
        """The pool's answer, behind the line: capacity while a competing place waits ahead
        (or, for a newcomer, anywhere in line); the engine's capacity where it picks devices."""
        totals = None
        if spawner.engine_picks_devices and request.count:
            totals = await spawner.gpu_totals()
        # no await from here on: the decision and the reservation are one step
        pool, place = spawner.pool, place_of(request)
        in_line = place.key in self.line
        blocked = not self.line.may_take(place.key) if in_line else self.line.blocks(place)
        dry = decide(request, pool.usable(), pool.holdings)
        if not isinstance(dry, Grant) or request.count == 0:
            return dry if not isinstance(dry, Grant) else pool.allocate(request)
        if blocked:
            return Refusal(
                "capacity", "Others are waiting in line for %s." % describe_request(request)
            )
        if totals is not None:
            held = [g for h in pool.holdings if h.key != place.key for g in h.gpus]
            kinds = spawner.offered_gpu_types(totals)
            unplaced = {gpu.name for gpu in request.devices or ()}
            left = engine_capacity_left(kinds, totals, held, unplaced)
            if left is not None and left[0] < request.count:
                return Refusal(
                    "capacity",
                    "Not enough GPUs are free: you asked for %s and %d of %d %s free right now."
                    " Try again later, or start with fewer GPUs."
                    % (describe_request(request), left[0], left[1],
                       "is" if left[0] == 1 else "are"),
                )  # fmt: skip
        return pool.allocate(request)

    async def wait(self, spawner, request: GpuRequest, timeout: float) -> Grant | Refusal:
        """Wait in line until the pool grants ``request``, a quota refusal, or ``timeout``
        seconds (a capacity refusal saying so). A second place of the same user is refused."""
        place = place_of(request)
        try:
            self.line.join(place)
        except AlreadyWaiting as e:
            raise SpawnRefused(str(e), reason="gpu-queue", status_code=409) from None
        event = self._events[place.key] = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        joined = time.monotonic()
        wanted = describe_request(request)
        shown, position = None, self.line.position(place.key)
        spawner.log.info(
            "%s waits in line for %s (%d waiting)", spawner._log_name, wanted, len(self)
        )
        try:
            while True:
                event.clear()  # a wake-up from here on is not lost
                outcome = await self.allocate(spawner, request)
                if isinstance(outcome, Grant) or outcome.reason != "capacity":
                    return outcome
                position = self.line.position(place.key)
                message = await self.situation(spawner, request, position, wanted)
                if message != shown:
                    spawner.emit_progress(5, message)
                    shown = message
                    save_waiting(spawner, position)
                remaining = deadline - loop.time()
                if remaining <= 0:
                    spawner.log.info("%s gave up waiting for %s", spawner._log_name, wanted)
                    return Refusal(
                        "capacity", timed_out_message(wanted, time.monotonic() - joined, position)
                    )
                try:
                    await asyncio.wait_for(event.wait(), min(remaining, HEAD_RECHECK_SECONDS))
                except asyncio.TimeoutError:
                    if position == 1:  # the head looks at the engine (a server killed outside)
                        await spawner.sync_holdings(max_age=HEAD_RECHECK_SECONDS)
        finally:
            self.line.leave(place.key)
            self._events.pop(place.key, None)
            self.notify()  # the places behind moved up
            if getattr(spawner, "gpu_queue_position", None):
                save_waiting(spawner, None)  # no longer waiting, whatever happens next

    async def situation(self, spawner, request: GpuRequest, position: int, wanted: str) -> str:
        """'2nd in line for an A100; 8 servers hold them; one stops at the latest at 14:32
        (maximum age)'."""
        own, pool = (request.user, request.server), spawner.pool
        kinds = set()
        if request.devices:
            kinds = spawner.offered_gpu_types(await spawner.gpu_totals() or {})
        holders = [h for h in pool.holdings if h.key != own and any(
            _of_kind(g, request, pool, kinds) for g in h.gpus)]  # fmt: skip
        next_stop = None
        if spawner.gpu_max_age and holders:
            starts = await self._start_times(spawner)
            known = [
                starts[k] for k in ((h.owner or h.user, h.server) for h in holders) if k in starts
            ]
            if known:
                at = min(known) + timedelta(seconds=spawner.gpu_max_age)
                next_stop = clock_text(at, spawner.budget_timezone)
        return waiting_message(position, wanted, len(holders), next_stop)

    async def _start_times(self, spawner) -> dict:
        """(user name, server) -> when its oldest open ledger interval started (cached; the
        waiters share one read of the ledger)."""
        now = time.monotonic()
        if self._starts is None or now - self._starts[0] > SITUATION_SECONDS:
            if self._reading is None or self._reading.done():
                self._reading = asyncio.ensure_future(self._read_starts(spawner))
            await asyncio.shield(self._reading)
        return self._starts[1] if self._starts else {}

    async def _read_starts(self, spawner) -> None:
        try:
            intervals = await asyncio.to_thread(spawner.accounting.ledger.open_intervals)
        except Exception:  # the ledger is down: the line works without start times
            spawner.log.warning("Ledger unreadable for the line's start times", exc_info=True)
            intervals = []
        starts: dict = {}
        for interval in intervals:
            key = (interval.user, interval.server)
            if key not in starts or interval.start < starts[key]:
                starts[key] = interval.start
        self._starts = (time.monotonic(), starts)


def _of_kind(gpu, request: GpuRequest, pool, kinds=frozenset()) -> bool:
    """Whether a held GPU is one ``request`` waits for (another hub's GPUs on a shared engine
    are not)."""
    if request.devices:  # the engine picks: GPUs of the types this server would get
        return gpu.name in kinds or gpu.name in {d.name for d in request.devices}
    ours = next((g for g in pool.usable() or () if g.uuid == gpu.uuid), None)
    return (
        ours is not None
        and matches_type(ours.name, request.gpu_type.strip())
        and ours.is_shared == request.shared
    )


def clock_text(at: datetime, zone: str) -> str:
    """'14:32' in the hub's zone (budget_timezone); 'Thu 14:32' when not today there."""
    tz = ZoneInfo(zone or "UTC")
    local, today = at.astimezone(tz), datetime.now(timezone.utc).astimezone(tz)
    return local.strftime("%H:%M" if local.date() == today.date() else "%a %H:%M")


def queue_of(spawner) -> GpuQueue:
    """The line of the spawner's backend in this hub process."""
    shared = spawner.shared
    if shared.queue is None:
        shared.queue = GpuQueue()
    return shared.queue


def notify(spawner) -> None:
    """GPUs may have come free (a release, a rebuild from the engine)."""
    queue = spawner.shared.queue
    if queue is not None and len(queue):
        queue.notify()


async def reserve(spawner, request: GpuRequest, resync) -> Grant | Refusal:
    """The pool's answer for ``request``: at once, or after waiting in line when
    ``gpu_queue_timeout`` > 0 and no GPU of the kind is free. ``resync()``: list the engine
    again before a capacity refusal is believed."""
    timeout = spawner.gpu_queue_timeout if request.count else 0
    if not timeout:
        outcome = spawner.pool.allocate(request)
        if isinstance(outcome, Refusal):
            await resync()
            outcome = spawner.pool.allocate(request)
        return outcome
    queue = queue_of(spawner)
    outcome = await queue.allocate(spawner, request)
    if isinstance(outcome, Refusal) and (outcome.reason != "capacity" or not len(queue)):
        await resync()
        outcome = await queue.allocate(spawner, request)
    if isinstance(outcome, Refusal) and outcome.reason == "capacity":
        outcome = await queue.wait(spawner, request, timeout)
    return outcome


def effective_start_timeout(start_timeout: int, queue_timeout: float, gpu_count: int) -> int:
    """JupyterHub's start timeout for a spawn that may wait in line as well."""
    if not queue_timeout or not gpu_count:
        return start_timeout
    return int(start_timeout + queue_timeout + 1)


# --- a spawn waiting when the hub stopped ---


def save_waiting(spawner, position: int | None) -> None:
    """Mark the server as waiting in the hub's database (its saved state), so that the hub,
    if it stops now, ends the spawn with a sentence after its restart."""
    spawner.gpu_queue_position = position
    orm_spawner = getattr(spawner, "orm_spawner", None)
    try:
        db = sqlalchemy.inspect(orm_spawner).session  # the hub's session (Spawner.db is deprecated)
    except sqlalchemy.exc.NoInspectionAvailable:
        db = None  # not the hub's database row (a spawner made outside a hub)
    if db is None:
        return
    try:
        orm_spawner.state = spawner.get_state()
        db.commit()
    except Exception:
        spawner.log.warning("Could not save %s's place in line", spawner._log_name, exc_info=True)


def waiting_state(spawner) -> dict:
    """The saved-state entry of a waiting server (empty when it is not waiting)."""
    position = getattr(spawner, "gpu_queue_position", None)
    return {STATE_KEY: {"position": position}} if position else {}


def interrupted(spawner) -> bool:
    """After a restart: whether the server was waiting in line when the hub stopped. Then
    its spawn ends as failed, with the sentence, on the hub's spawn page and progress."""
    entry = getattr(spawner, "restored_queue_entry", None)
    if entry is None:
        return False
    spawner.restored_queue_entry = None
    message = restart_message(spawner.server_name, entry.get("position"))
    spawner.log.warning("%s: %s", spawner._log_name, message)
    refused = SpawnRefused(message, reason="gpu-queue", status_code=503)
    failed = asyncio.get_running_loop().create_future()
    failed.set_exception(refused)
    failed.exception()  # retrieved: JupyterHub reads it from its pages
    spawner._spawn_future = failed  # what JupyterHub's spawn page and progress show
    return True


def extend_start_timeout(spawner) -> None:
    """Before ``start()``: JupyterHub gives up on a start after ``start_timeout`` seconds
    (read just after the pre-spawn hook), so a spawn that may wait in line gets
    ``gpu_queue_timeout`` more; the configured value is kept for the next spawn."""
    base = getattr(spawner, "configured_start_timeout", None)
    if base is None:
        base = spawner.configured_start_timeout = spawner.start_timeout
    choice = spawner.choice
    count = choice.gpu_count if choice is not None else 1
    spawner.start_timeout = effective_start_timeout(base, spawner.gpu_queue_timeout, count)
