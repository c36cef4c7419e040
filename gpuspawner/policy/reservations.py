"""Class reservations: GPUs kept for one group in weekly windows (pure, no I/O).

A reservation is "group G gets N whole GPUs on these weekdays from start to end, in this
time zone" (``gpu_reservations``). While a window is open, a request of a user outside G
is refused for capacity when granting it would leave fewer free GPUs than G still needs:
N less the whole GPUs G's members already hold (:func:`held_back`). Members still count
against their own quota and budget; outside the windows the GPUs are ordinary ones.

A non-member's whole-GPU server started less than ``lead`` before a window of another
group opens is told that window's start as its deadline and stopped then
(:func:`reserved_deadline`); one started earlier, or during the window (when enough GPUs
were free), runs on. Windows are wall-clock times of their zone: a window at 14:00
Europe/Berlin opens at 12:00 UTC in summer and 13:00 UTC in winter. A window whose start
falls in a spring-forward gap opens at the first moment after it (zoneinfo's reading).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
KEYS = {"group", "gpus", "days", "start", "end", "timezone"}


@dataclass(frozen=True)
class Reservation:
    """``gpus`` whole GPUs for ``group`` on ``days`` (0 = Monday) from ``start`` to ``end``."""

    group: str
    gpus: int
    days: tuple[int, ...]
    start: time
    end: time
    zone: str = "UTC"

    @property
    def tz(self):
        return ZoneInfo(self.zone)

    def describe(self) -> str:
        """'cs231n: 4 GPUs, Tuesday and Thursday 14:00–16:00 Europe/Berlin'."""
        days = [WEEKDAYS[d].capitalize() for d in self.days]
        day_text = days[0] if len(days) == 1 else ", ".join(days[:-1]) + " and " + days[-1]
        return "%s: %d GPU%s, %s %s–%s %s" % (
            self.group, self.gpus, "" if self.gpus == 1 else "s", day_text,
            self.start.strftime("%H:%M"), self.end.strftime("%H:%M"), self.zone,
        )  # fmt: skip


@dataclass(frozen=True)
class Window:
    """One opening of a reservation, from ``start`` to ``end`` (UTC)."""

    reservation: Reservation
    start: datetime
    end: datetime

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.reservation.tz)


def _clock(text, what: str) -> time:
    """'14:00' (or '14:00:30', to the second) -> time."""
    try:
        parts = str(text).split(":")
        if len(parts) not in (2, 3) or any(len(p) != 2 for p in parts[1:]):
            raise ValueError
        return time(*(int(p) for p in parts))
    except ValueError:
        raise ConfigError("%s must be HH:MM (24-hour clock), not %r." % (what, text)) from None


def parse_reservation(entry, index: int = 0) -> Reservation:
    """One entry of ``gpu_reservations``; a ConfigError sentence for anything unusable."""
    where = "gpu_reservations[%d]" % index
    if not isinstance(entry, Mapping):
        raise ConfigError("%s must be a dict with group, gpus, days, start, end and timezone,"
                          " not %r." % (where, entry))  # fmt: skip
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        raise ConfigError("%s has unknown key(s) %s: use %s." % (
            where, ", ".join(map(repr, unknown)), ", ".join(sorted(KEYS))))  # fmt: skip
    group = entry.get("group")
    if not isinstance(group, str) or not group.strip():
        raise ConfigError("%s needs a group (the name of a hub group), not %r." % (where, group))
    gpus = entry.get("gpus")
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ConfigError("%s (group %r): gpus must be a whole number of at least 1, not %r."
                          % (where, group, gpus))  # fmt: skip
    days = entry.get("days")
    if isinstance(days, str):
        days = [days]
    if not days or not isinstance(days, (list, tuple)):
        raise ConfigError("%s (group %r): days must list weekdays, e.g. [\"tuesday\"], not %r."
                          % (where, group, days))  # fmt: skip
    numbers = []
    for day in days:
        name = str(day).strip().lower()
        if name not in WEEKDAYS:
            raise ConfigError("%s (group %r): %r is not a weekday (use %s)."
                              % (where, group, day, ", ".join(WEEKDAYS)))  # fmt: skip
        numbers.append(WEEKDAYS.index(name))
    start = _clock(entry.get("start"), "%s (group %r) start" % (where, group))
    end = _clock(entry.get("end"), "%s (group %r) end" % (where, group))
    if end <= start:
        raise ConfigError(
            "%s (group %r): end %s must be after start %s on the same day (a window never"
            " crosses midnight: use two)." % (where, group, end.strftime("%H:%M"),
                                               start.strftime("%H:%M"))
        )  # fmt: skip
    zone = entry.get("timezone", "UTC")
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("%s (group %r): %r is not a known IANA time zone (e.g. 'Europe/Berlin')."
                          % (where, group, zone)) from None  # fmt: skip
    return Reservation(group.strip(), gpus, tuple(sorted(set(numbers))), start, end, str(zone))


def parse_reservations(entries: Iterable) -> tuple[Reservation, ...]:
    return tuple(parse_reservation(entry, i) for i, entry in enumerate(entries or ()))


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("an aware datetime is needed")
    return moment.astimezone(timezone.utc)


def _window_on(reservation: Reservation, day) -> Window:
    tz = reservation.tz
    start = datetime.combine(day, reservation.start, tzinfo=tz)
    end = datetime.combine(day, reservation.end, tzinfo=tz)
    return Window(reservation, _utc(start), _utc(end))


def windows_from(reservation: Reservation, now: datetime, days: int = 8) -> list[Window]:
    """The reservation's windows that end after ``now``, earliest first, over ``days`` days."""
    now = _utc(now)
    today = now.astimezone(reservation.tz).date()
    found = []
    for offset in range(-1, days):
        day = today + timedelta(days=offset)
        if day.weekday() in reservation.days:
            window = _window_on(reservation, day)
            if window.end > now and window.start < window.end:
                found.append(window)
    return sorted(found, key=lambda w: w.start)


def open_window(reservation: Reservation, now: datetime) -> Window | None:
    """The reservation's window open at ``now`` (start included, end excluded), or None."""
    now = _utc(now)
    for window in windows_from(reservation, now, days=1):
        if window.start <= now < window.end:
            return window
    return None


def next_window(reservation: Reservation, now: datetime) -> Window:
    """The window open at ``now``, else the next one to open."""
    return windows_from(reservation, now)[0]


def open_windows(reservations: Sequence[Reservation], now: datetime) -> list[Window]:
    return [w for w in (open_window(r, now) for r in reservations) if w is not None]


def upcoming(reservations: Sequence[Reservation], now: datetime) -> list[Window]:
    """Each reservation's open or next window, the soonest first (for the dashboard)."""
    return sorted((next_window(r, now) for r in reservations), key=lambda w: w.start)


@dataclass(frozen=True)
class HeldBack:
    """Free whole GPUs a request may not take, and the sentence saying for whom."""

    count: int
    reason: str = ""


def held_back(
    reservations: Sequence[Reservation],
    now: datetime,
    requester_groups: Iterable[str],
    members_holding: Mapping[str, int],
) -> HeldBack:
    """How many free whole GPUs are kept for other groups' open windows at ``now``.

    ``members_holding``: whole GPUs each reserving group's members hold now (a member's
    servers count towards their group's reservation). Windows of the requester's own groups
    keep nothing from them; several open windows of one group add up.
    """
    mine = set(requester_groups)
    needs: dict[str, tuple[int, datetime, str]] = {}
    for window in open_windows(reservations, now):
        group = window.reservation.group
        if group in mine:
            continue
        gpus, until, zone = needs.get(group, (0, window.end, window.reservation.zone))
        if window.end > until:
            until, zone = window.end, window.reservation.zone
        needs[group] = (gpus + window.reservation.gpus, until, zone)
    count, parts = 0, []
    for group, (gpus, until, zone) in sorted(needs.items()):
        short = max(gpus - members_holding.get(group, 0), 0)
        if short:
            count += short
            local = until.astimezone(ZoneInfo(zone)).strftime("%H:%M")
            parts.append("%d for group '%s' until %s (%s)" % (short, group, local, zone))
    if not count:
        return HeldBack(0)
    return HeldBack(count, "GPUs are reserved for a class right now: %s." % "; ".join(parts))


def reserved_deadline(
    reservations: Sequence[Reservation],
    user_groups: Iterable[str],
    started: datetime,
    lead: float,
) -> Window | None:
    """The window a non-member's whole-GPU server started at ``started`` must stop for: the
    first window of another group opening within ``lead`` seconds after ``started`` (None:
    none, or ``lead`` 0)."""
    if lead <= 0:
        return None
    started = _utc(started)
    mine = set(user_groups)
    soon = [
        w
        for r in reservations
        if r.group not in mine
        for w in windows_from(r, started, days=int(lead // 86400) + 2)
        if started < w.start <= started + timedelta(seconds=lead)
    ]
    return min(soon, key=lambda w: w.start, default=None)


def deadline_reason(window: Window) -> str:
    """'This GPU is reserved for group 'cs231n' from 14:00 (Europe/Berlin): …'."""
    local = window.local(window.start)
    return (
        "This GPU is reserved for group '%s' from %s (%s): the server stops then; your"
        " workspace is kept." % (window.reservation.group, local.strftime("%H:%M"),
                                 window.reservation.zone)
    )  # fmt: skip
