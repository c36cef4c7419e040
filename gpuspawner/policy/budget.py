"""GPU-hour budgets: periods, weights, usage and the decision at spawn (pure, no I/O).

A budget is a number of GPU-hours per period (a day, a week or a month, starting at a
configurable reset time). Each GPU-hour may be weighted by the GPU's type, so an A100
hour can cost more than a T4 hour, like credits. Usage is the weighted sum of the
ledger's intervals clipped to the period; an interval still open counts up to now.
"""

import calendar
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ConfigError
from .groups import DEFAULT_SOURCE, group_source, most_generous
from .wording import hours_figure

PERIODS = ("day", "week", "month")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
NO_GROUP = "(no group)"


@dataclass(frozen=True)
class ResetSchedule:
    """When a budget period starts: every day at ``at``, every ``weekday`` or every month's
    ``day``."""

    period: str = "week"
    at: time = time(0, 0)
    weekday: int = 0  # Monday, for weekly periods
    day: int = 1  # of the month, for monthly periods (capped at the month's last day)
    tz: tzinfo = timezone.utc


@dataclass(frozen=True)
class Budget:
    """GPU-hours a user may spend per period (None: unlimited) and where it comes from."""

    hours: float | None
    source: str  # "the default for every user" or "group 'students'"

    @property
    def limited(self) -> bool:
        return self.hours is not None


@dataclass(frozen=True)
class Interval:
    """One GPU held by one server from ``start`` to ``end`` (None: still held)."""

    user: str
    server: str
    gpu_uuid: str
    gpu_name: str
    start: datetime
    end: datetime | None = None
    shared_by: int = 1  # a slot of a GPU shared by N servers is charged 1/N of its weight


def parse_reset_time(text: str) -> time:
    """'00:00', '06:30' -> time; anything else is a ConfigError."""
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except (ValueError, AttributeError):
        raise ConfigError(
            "budget_reset_time must be HH:MM (24-hour clock), not %r." % (text,)
        ) from None


@functools.lru_cache(maxsize=32)  # pure; read at every spawn
def reset_schedule(
    period: str, reset_time: str, weekday: str, day: int, timezone_name: str
) -> ResetSchedule:
    """The schedule from the settings' words ('week', '06:30', 'monday', 1, 'Europe/Berlin').

    The one place a schedule is built from settings: the spawner and the admin service
    both call it. A bad time, weekday or zone is a ConfigError naming the setting.
    """
    try:
        tz = ZoneInfo(timezone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("budget_timezone %r is not an IANA time zone." % timezone_name) from None
    if period not in PERIODS:
        raise ConfigError("budget_period must be one of %s, not %r." % (", ".join(PERIODS), period))
    if weekday not in WEEKDAYS:
        raise ConfigError(
            "budget_reset_weekday must be one of %s, not %r." % (", ".join(WEEKDAYS), weekday)
        )
    return ResetSchedule(
        period=period,
        at=parse_reset_time(reset_time),
        weekday=WEEKDAYS.index(weekday),
        day=day,
        tz=tz,
    )


def _month_start(year: int, month: int, schedule: ResetSchedule) -> datetime:
    day = min(schedule.day, calendar.monthrange(year, month)[1])
    return datetime.combine(datetime(year, month, day).date(), schedule.at, schedule.tz)


def _add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def period_bounds(now: datetime, schedule: ResetSchedule) -> tuple[datetime, datetime]:
    """The period containing ``now``: [start, end), both aware datetimes in the schedule's zone."""
    local = now.astimezone(schedule.tz)
    if schedule.period == "day":
        start = datetime.combine(local.date(), schedule.at, schedule.tz)
        if start > local:
            start -= timedelta(days=1)
        return start, start + timedelta(days=1)
    if schedule.period == "week":
        days_back = (local.weekday() - schedule.weekday) % 7
        start = datetime.combine(local.date() - timedelta(days=days_back), schedule.at, schedule.tz)
        if start > local:
            start -= timedelta(days=7)
        return start, start + timedelta(days=7)
    if schedule.period == "month":
        start = _month_start(local.year, local.month, schedule)
        if start > local:
            start = _month_start(*_add_months(local.year, local.month, -1), schedule)
        return start, _month_start(*_add_months(start.year, start.month, 1), schedule)
    raise ConfigError(
        "budget_period must be one of %s, not %r." % (", ".join(PERIODS), schedule.period)
    )


def period_word(period: str) -> str:
    return {"day": "today", "week": "this week", "month": "this month"}[period]


def budget_for(
    user_groups: Iterable[str], default: float | None, group_budgets: Mapping[str, float | None]
) -> Budget:
    """The budget of a member of ``user_groups``: the most generous of their groups' budgets.

    None means unlimited and beats any number, like the quota's most generous group.
    """
    best = most_generous(user_groups, group_budgets, rank=lambda h: math.inf if h is None else h)
    if best is None:
        return Budget(default, DEFAULT_SOURCE)
    return Budget(best[0], group_source(best[1]))


def accounting_group(user_groups: Iterable[str], *group_settings: Mapping) -> str:
    """The group a user's usage is reported under: the first of their groups with a setting.

    Settings are searched in order (budgets, then quotas); a user in none is NO_GROUP.
    """
    groups = sorted(set(user_groups))
    for settings in group_settings:
        for group in groups:
            if group in settings:
                return group
    return NO_GROUP


def gpu_weight(gpu_name: str, weights: Mapping[str, float]) -> float:
    """The cost of one hour of this GPU: the weight of the longest key found in its name, else 1."""
    matches = [key for key in weights if key and key.lower() in gpu_name.lower()]
    if not matches:
        return 1.0
    return float(weights[max(matches, key=lambda key: (len(key), key))])


def gpu_rate(gpus: Iterable, weights: Mapping[str, float]) -> float:
    """Weighted GPU-hours per hour of holding ``gpus`` (inventory Gpus): a slot of a GPU
    shared by N costs 1/N of the GPU's weight."""
    return sum(gpu_weight(gpu.name, weights) / max(gpu.shared_by, 1) for gpu in gpus)


def check_weights(weights: Mapping) -> None:
    for key, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ConfigError(
                "gpu_hour_weights[%r] must be a number, 0 or more, not %r." % (key, weight)
            )


def check_budgets(default, group_budgets: Mapping) -> None:
    for where, hours in [("gpu_hour_budget", default)] + [
        ("gpu_hour_budget_groups[%r]" % group, hours) for group, hours in group_budgets.items()
    ]:
        if hours is None:
            continue
        if isinstance(hours, bool) or not isinstance(hours, (int, float)) or not hours >= 0:
            raise ConfigError(
                "%s must be a number of GPU-hours (0 or more) or None, not %r." % (where, hours)
            )


def overlap_hours(
    start: datetime, end: datetime, window_start: datetime, window_end: datetime
) -> float:
    """Hours of [start, end) inside [window_start, window_end); never negative."""
    seconds = (min(end, window_end) - max(start, window_start)).total_seconds()
    return max(seconds, 0.0) / 3600.0


def usage_hours(
    intervals: Iterable[Interval],
    window_start: datetime,
    window_end: datetime,
    now: datetime,
    weights: Mapping[str, float],
) -> float:
    """Weighted GPU-hours of ``intervals`` inside the window; open intervals count up to ``now``."""
    total = 0.0
    for interval in intervals:
        end = interval.end if interval.end is not None else now
        if end < interval.start:
            continue  # a clock step backwards: count nothing rather than a negative
        total += overlap_hours(interval.start, end, window_start, window_end) * gpu_weight(
            interval.gpu_name, weights
        ) / max(interval.shared_by, 1)
    return total


def usage_by_day(
    intervals: Iterable[Interval],
    days: Sequence[datetime],
    now: datetime,
    weights: Mapping[str, float],
) -> list[float]:
    """Weighted GPU-hours per day starting at each of ``days`` (for the usage plot)."""
    intervals = list(intervals)
    return [usage_hours(intervals, day, day + timedelta(days=1), now, weights) for day in days]


def hours_text(hours: float) -> str:
    """'0.5 GPU-hours', '10 GPU-hours', '1 GPU-hour' (one decimal, trailing .0 dropped)."""
    text = ("%.1f" % hours).rstrip("0").rstrip(".")
    return "%s GPU-hour%s" % (text, "" if text == "1" else "s")


def when_text(moment: datetime) -> str:
    """'Monday 24 November 2026 at 00:00 UTC'."""
    return "%s %d %s at %s" % (
        moment.strftime("%A"),
        moment.day,
        moment.strftime("%B %Y"),
        moment.strftime("%H:%M %Z").strip(),
    )


def refusal(
    used: float, budget: Budget, requested_gpus: int, period: str, resets_at: datetime
) -> str | None:
    """The sentence refusing a spawn of ``requested_gpus`` GPUs, or None when it may start.

    A server with no GPU is never refused; one with GPUs is refused once the budget
    is spent (used >= limit), so no spawn starts on a spent budget.
    """
    if requested_gpus == 0 or budget.hours is None or used < budget.hours:
        return None
    return (
        "Your GPU-hour budget is spent: you have used %s of %s %s (%s)."
        " It resets on %s. Until then, start servers with 0 GPUs."
        % (
            hours_text(used),
            hours_text(budget.hours),
            period_word(period),
            budget.source,
            when_text(resets_at),
        )
    )


def left_text(used: float, budget: Budget, period: str, resets_at: datetime) -> str:
    """What the spawn form says about the budget."""
    if budget.hours is None:
        return "GPU-hours: no budget limit (%s)." % budget.source
    left = max(budget.hours - used, 0.0)
    return "GPU-hours left %s: %s of %s (%s); resets on %s." % (
        period_word(period),
        hours_figure(left),  # to the dashboard's two decimals: 9.97 left, 0.03 used
        hours_text(budget.hours),
        budget.source,
        when_text(resets_at),
    )


def exhausted(used: float, budget: Budget) -> bool:
    return budget.hours is not None and used >= budget.hours


# --- the deadline a GPU server is told at spawn ---


@dataclass(frozen=True)
class Deadline:
    """When a GPU server will be stopped at the latest, and the sentence saying why."""

    at: datetime
    reason: str


def duration_text(seconds: float) -> str:
    """'8 h', '1.5 h', '45 min' (for the maximum age)."""
    if seconds >= 3600:
        return "%s h" % ("%.1f" % (seconds / 3600)).rstrip("0").rstrip(".")
    return "%d min" % max(round(seconds / 60), 1)


def budget_exhausted_at(
    now: datetime,
    used: float,
    hours: float,
    rate: float,
    schedule: ResetSchedule,
    max_periods: int = 12,
) -> datetime | None:
    """When a budget of ``hours`` is spent if ``rate`` GPU-hours are used per hour from ``now`` on.

    ``used`` is the usage of the period containing ``now``. A period that ends before
    the budget is spent starts the next one at zero usage. None: never (rate 0, or a
    budget larger than a whole period at this rate), within ``max_periods`` periods.
    """
    if rate <= 0:
        return None
    if used >= hours:
        return now
    moment, spent = now, used
    for _ in range(max_periods):
        _, period_end = period_bounds(moment, schedule)
        seconds = (
            (hours - spent) / rate * 3600
        )  # may be huge for a tiny rate: compare before adding
        if seconds < (period_end - moment).total_seconds():
            return moment + timedelta(seconds=seconds)
        moment, spent = period_end, 0.0
    return None


def gpu_deadline(
    now: datetime,
    started: datetime,
    used: float,
    budget: Budget,
    rate: float,
    schedule: ResetSchedule,
    grace_seconds: float,
    max_age_seconds: float,
) -> Deadline | None:
    """When a server holding GPUs worth ``rate`` GPU-hours per hour is stopped at the latest.

    The earlier of: its user's budget spent (``used`` of the current period, counting
    only this server from ``now`` on) plus the grace, and ``started`` plus the maximum
    age (0: none). Another server of the same user spending budget makes the real stop
    earlier. None when neither limit applies.
    """
    candidates: list[Deadline] = []
    if max_age_seconds > 0:
        candidates.append(
            Deadline(
                started + timedelta(seconds=max_age_seconds),
                "GPU servers stop after %s." % duration_text(max_age_seconds),
            )
        )
    if budget.hours is not None:
        exhausted_at = budget_exhausted_at(now, used, budget.hours, rate, schedule)
        if exhausted_at is not None:
            _, resets_at = period_bounds(now, schedule)
            left = max(budget.hours - used, 0.0)
            candidates.append(
                Deadline(
                    exhausted_at + timedelta(seconds=grace_seconds),
                    "GPU-hour budget: %s of %s left %s (%s); it resets on %s."
                    % (
                        ("%.1f" % left).rstrip("0").rstrip("."),
                        hours_text(budget.hours),
                        period_word(schedule.period),
                        budget.source,
                        when_text(resets_at),
                    ),
                )
            )
    if not candidates:
        return None
    return min(candidates, key=lambda deadline: deadline.at)
