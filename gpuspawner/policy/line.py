"""The line of spawns waiting for a GPU: first come, first served, one place per user.

Pure (no I/O, no clock): :mod:`gpuspawner.lifecycle.queue` does the waiting and calls this.

Rules:

- A spawn that finds no GPU of the kind it asks for free joins the end of the line; a user
  has at most one place (:meth:`Line.join` refuses a second one, naming the first).
- Places *compete* when they could take the same GPU: the same GPU type, or one of them
  asks for any type. Only a place with no competing place ahead of it may take a GPU (it
  is at the head of its line): nobody behind takes a freed GPU first, and a newcomer
  waits behind competing places even when a GPU is free at that moment (no barging).
  Places that cannot compete (an A100 and a T4) do not hold each other up.
- A spawn's position is 1 + the competing places ahead of it.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .inventory import Gpu
from .wording import server_label


@dataclass(frozen=True)
class Place:
    """One waiting spawn: ``count`` GPUs (or a shared slot) of ``gpu_type`` for a server."""

    user: str  # the holder key (the pool's), one place per user
    server: str
    gpu_type: str = ""
    shared: bool = False
    count: int = 1

    @property
    def key(self) -> tuple[str, str]:
        return (self.user, self.server)


def competes(a: Place, b: Place) -> bool:
    """Whether ``a`` and ``b`` could take the same GPU (same type, or either takes any)."""
    first, second = a.gpu_type.strip().casefold(), b.gpu_type.strip().casefold()
    return not first or not second or first == second


class AlreadyWaiting(Exception):
    """A user's second place in line; the message says where the first one is."""


class Line:
    """The waiting spawns of one hub process's backend, oldest first."""

    def __init__(self, places: Iterable[Place] = ()):
        self._places: list[Place] = []
        for place in places:
            self.join(place)

    def __len__(self) -> int:
        return len(self._places)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return any(place.key == key for place in self._places)

    @property
    def places(self) -> tuple[Place, ...]:
        return tuple(self._places)

    def place_of(self, user: str) -> Place | None:
        """The user's place, if they are waiting."""
        return next((place for place in self._places if place.user == user), None)

    def join(self, place: Place) -> int:
        """Put ``place`` at the end (a place already in line keeps where it is); its position.

        A second place of the same user is refused with :class:`AlreadyWaiting`."""
        if place.key in self:
            return self.position(place.key)
        other = self.place_of(place.user)
        if other is not None:
            raise AlreadyWaiting(already_waiting_message(other, self.position(other.key)))
        self._places.append(place)
        return self.position(place.key)

    def leave(self, key: tuple[str, str]) -> bool:
        """Take the place out (it got its GPUs, gave up or was cancelled); False: not in line."""
        before = len(self._places)
        self._places = [place for place in self._places if place.key != key]
        return len(self._places) != before

    def ahead(self, key: tuple[str, str]) -> list[Place]:
        """The competing places ahead of ``key``'s place (KeyError when it is not in line)."""
        for index, place in enumerate(self._places):
            if place.key == key:
                return [other for other in self._places[:index] if competes(other, place)]
        raise KeyError(key)

    def position(self, key: tuple[str, str]) -> int:
        """1 for the head of its line, 2 for the next, ... (KeyError when not in line)."""
        return len(self.ahead(key)) + 1

    def may_take(self, key: tuple[str, str]) -> bool:
        """Whether ``key``'s place is at the head of its line (KeyError when not in line)."""
        return not self.ahead(key)

    def blocks(self, place: Place) -> bool:
        """Whether a spawn not in line must join it: a competing place is waiting."""
        return any(competes(other, place) for other in self._places if other.key != place.key)

    def heads(self) -> list[Place]:
        """The places that may take a GPU now, oldest first."""
        return [place for place in self._places if self.may_take(place.key)]


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 3 -> '3rd', 4 -> '4th', 11 -> '11th', 22 -> '22nd'."""
    if n < 0:
        raise ValueError("an ordinal of a negative number: %d" % n)
    if 10 <= n % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return "%d%s" % (n, suffix)


def duration_text(seconds: float) -> str:
    """45 -> '45 seconds', 600 -> '10 minutes', 5400 -> '1 hour 30 minutes'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return "%d second%s" % (seconds, "" if seconds == 1 else "s")
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if hours:
        parts.append("%d hour%s" % (hours, "" if hours == 1 else "s"))
    if minutes:
        parts.append("%d minute%s" % (minutes, "" if minutes == 1 else "s"))
    return " ".join(parts)


def waiting_message(position: int, wanted: str, holders: int, next_stop: str | None = None) -> str:
    """The progress line of a waiting spawn, e.g. '2nd in line for an A100; 8 servers hold
    them; one stops at the latest at 14:32 (maximum age)'.

    ``wanted``: what it asks for (:func:`gpuspawner.policy.allocation.describe_request`);
    ``holders``: servers holding GPUs of that kind; ``next_stop``: when the first of them
    reaches the maximum age (None: no maximum age, or unknown)."""
    if holders == 0:
        held = "no server holds one right now"
    else:
        held = "%d server%s hold%s them" % (holders, "" if holders == 1 else "s",
                                            "s" if holders == 1 else "")  # fmt: skip
    message = "%s in line for %s; %s" % (ordinal(position), wanted, held)
    if next_stop and holders:
        message += "; one stops at the latest at %s (maximum age)" % next_stop
    return message


def already_waiting_message(place: Place, position: int) -> str:
    """The refusal of a user's second waiting spawn."""
    return (
        "You are already waiting for a GPU for %s (%s in line): cancel that spawn or let it"
        " start before starting another GPU server." % (server_label(place.server),
                                                        ordinal(position))
    )  # fmt: skip


def timed_out_message(wanted: str, waited: float, position: int) -> str:
    """The refusal of a spawn that waited ``gpu_queue_timeout`` seconds in vain."""
    return (
        "No GPU came free for you in %s: you asked for %s and were %s in line."
        " Try again later, or start with fewer GPUs." % (duration_text(waited), wanted,
                                                          ordinal(position))
    )  # fmt: skip


def restart_message(server: str, position: int | None) -> str:
    """What ends a spawn that was waiting in line when the hub stopped."""
    where = " (%s in line)" % ordinal(position) if position else ""
    return (
        "The hub restarted while %s was waiting for a GPU%s; the line does not survive a"
        " restart: start the server again to wait anew." % (server_label(server), where)
    )


def engine_capacity_left(
    kinds: Iterable[str],
    totals: Mapping[str, int] | None,
    held: Iterable[Gpu],
    unplaced: Iterable[str] = (),
) -> tuple[int, int] | None:
    """Where the engine picks the devices: (free, total) GPUs of the types a server would
    ask for (``kinds``, keys of the engine's ``totals``): their totals minus the GPUs
    ``held`` of those types or named ``unplaced`` (the name of a GPU reserved before a node
    typed it). None when no total is known for them (the scheduler decides)."""
    kinds = set(kinds) & set(totals or ())
    if not kinds:
        return None
    total = sum(totals[kind] for kind in kinds)
    counted = kinds | set(unplaced)
    taken = sum(1 for gpu in held if gpu.name in counted)
    return max(total - taken, 0), total
