"""One user's usage page and its JSON: plain values from the ledger's data (pure).

:func:`user_report` is what ``api/users/<name>`` answers and the JupyterLab panel reads;
:func:`user_page_context` adds what ``user.html`` shows (texts, the chart). The page is a
list of sections (:class:`Section`): the usage ones here, others appended by features of
their own (each a template of ``gpuspawner/templates/`` and its values).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote

from ..policy.budget import (
    Budget,
    Interval,
    gpu_deadline,
    gpu_weight,
    left_text,
    period_word,
    usage_by_day,
    when_text,
)
from .page import chart, fmt_hours, meter, since_text

DAYS_SHOWN = 28


@dataclass
class Section:
    """One section of a user's page: ``template`` rendered with ``context`` (and the page's)."""

    id: str
    title: str
    template: str
    context: dict = field(default_factory=dict)


def daily_hours(
    intervals: Sequence[Interval], settings, now: datetime, days: int = DAYS_SHOWN
) -> dict:
    """Weighted GPU-hours per day (in the budget's zone), the last ``days`` days."""
    tz = settings.reset_schedule.tz
    today = datetime.combine(now.astimezone(tz).date(), datetime.min.time(), tz)
    starts = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    hours = usage_by_day(intervals, starts, now, settings.gpu_hour_weights)
    return {"days": [d.date().isoformat() for d in starts], "hours": [round(h, 4) for h in hours]}


def running_servers(
    open_intervals: Sequence[Interval],
    settings,
    used: float,
    budget: Budget,
    now: datetime,
    idle_since: Mapping[str, datetime] | None = None,
    limits: Mapping[str, Mapping[str, float]] | None = None,
) -> list[dict]:
    """The user's servers holding GPUs: which, since when, and when they stop at the latest
    (the budget spent at the rate of all of the user's GPUs, plus the grace; the maximum
    age), and since when their GPUs are idle with the time the idle cull stops them.
    ``limits``: per server, its own gpu_max_age / gpu_idle_timeout (a course profile's)."""
    idle_since, limits = idle_since or {}, limits or {}
    rate = sum(gpu_weight(i.gpu_name, settings.gpu_hour_weights) for i in open_intervals)
    by_server: dict[str, list[Interval]] = {}
    for interval in open_intervals:
        by_server.setdefault(interval.server, []).append(interval)
    servers = []
    for name in sorted(by_server):
        held = by_server[name]
        started = min(i.start for i in held)
        own = limits.get(name, {})
        max_age = own.get("gpu_max_age", settings.gpu_max_age)
        idle_timeout = own.get("gpu_idle_timeout", settings.gpu_idle_timeout)
        deadline = gpu_deadline(
            now=now, started=started, used=used, budget=budget, rate=rate,
            schedule=settings.reset_schedule, grace_seconds=settings.budget_grace_period,
            max_age_seconds=max_age,
        )  # fmt: skip
        idle = idle_since.get(name)
        culled_at = (
            idle + timedelta(seconds=idle_timeout)
            if idle is not None and idle_timeout
            else None
        )
        servers.append({
            "server": name,
            "gpus": [i.gpu_name for i in held],
            "gpu_uuids": [i.gpu_uuid for i in held],
            "since": started.isoformat(timespec="seconds"),
            "deadline": deadline.at.isoformat(timespec="seconds") if deadline else None,
            "deadline_reason": deadline.reason if deadline else None,
            "idle_since": idle.isoformat(timespec="seconds") if idle else None,
            "idle_stop_at": culled_at.isoformat(timespec="seconds") if culled_at else None,
        })  # fmt: skip
    return servers


def user_report(
    user: str,
    usage_row: Mapping,
    settings,
    period: tuple[datetime, datetime],
    open_intervals: Sequence[Interval],
    recent: Sequence[Interval],
    adjustments: Sequence,
    now: datetime,
    idle_since: Mapping[str, datetime] | None = None,
    limits: Mapping[str, Mapping[str, float]] | None = None,
) -> dict:
    """What one user may know of their usage: ``usage_row`` (their row of the usage report),
    their open intervals, the intervals of the last weeks and the admins' adjustments."""
    budget = Budget(usage_row["budget_hours"], usage_row["budget_source"])
    used = usage_row["used_hours"]
    start, end = period
    return {
        "user": user,
        "group": usage_row["group"],
        "period": {"kind": settings.budget_period, "start": start.isoformat(),
                   "end": end.isoformat()},  # fmt: skip
        "used_hours": used,
        "budget_hours": budget.hours,
        "budget_source": budget.source,
        "left_hours": usage_row["left_hours"],
        "spent": usage_row["spent"],
        "line": left_text(used, budget, settings.budget_period, end),
        "servers": running_servers(
            open_intervals, settings, used, budget, now, idle_since, limits
        ),
        "daily": daily_hours(recent, settings, now),
        "adjustments": [a.as_json() for a in adjustments],
        "gpu_idle_timeout": settings.gpu_idle_timeout,
        "gpu_idle_warning": settings.gpu_idle_warning,
    }


def _moment_text(iso: str | None, now: datetime) -> str:
    if not iso:
        return ""
    moment = datetime.fromisoformat(iso)
    left = (moment - now).total_seconds()
    if left <= 0:
        return when_text(moment) + " (due)"
    ahead = "%d min" % (left // 60) if left < 7200 else "%.1f h" % (left / 3600)
    return "%s (in %s)" % (when_text(moment), ahead)


def idle_text(server: dict, now: datetime) -> str:
    if not server["idle_stop_at"]:
        return ""
    return "GPU idle since %s: the idle cull stops it on %s" % (
        since_text(server["idle_since"], now), _moment_text(server["idle_stop_at"], now)
    )


def user_page_context(report: dict, viewer: str, prefix: str, now: datetime) -> dict:
    """The values of ``user.html`` for ``report`` (:func:`user_report`) seen by ``viewer``."""
    daily = report["daily"]
    plotted = chart({"days": daily["days"], "groups": {"GPU-hours": daily["hours"]}})
    end = datetime.fromisoformat(report["period"]["end"])
    return {
        "user": report["user"],
        "viewer": viewer,
        "own": viewer == report["user"],
        "line": report["line"],
        "used_text": fmt_hours(report["used_hours"]),
        "budget_text": fmt_hours(report["budget_hours"]),
        "left_text": fmt_hours(report["left_hours"]),
        "budget_source": report["budget_source"],
        "meter": meter(report["used_hours"], report["budget_hours"]),
        "period_word": period_word(report["period"]["kind"]),
        "resets_text": when_text(end),
        "servers": [
            dict(
                s,
                name=s["server"] or "default",
                gpus_text=", ".join(s["gpus"]),
                since_text=since_text(s["since"], now),
                deadline_text=_moment_text(s["deadline"], now) or "none",
                idle_text=idle_text(s, now),
            )  # fmt: skip
            for s in report["servers"]
        ],
        "chart": plotted,
        "days": len(daily["days"]),
        "adjustments": [
            {"at": datetime.fromisoformat(a["at"]).strftime("%d %b %Y %H:%M"), "by": a["by"],
             "what": a["text"], "reason": a["reason"]}
            for a in reversed(report["adjustments"])
        ],  # fmt: skip
        "csv_url": "%susers/%s/ledger.csv" % (prefix, quote(report["user"], safe="")),
        "json_url": "%sapi/users/%s" % (prefix, quote(report["user"], safe="")),
        "prefix": prefix,
    }
