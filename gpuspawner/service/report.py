"""What the dashboard and the JSON API show, computed from the ledger's intervals (pure).

Inputs are plain data: intervals, the hub's users and their groups, the settings and
``now``; outputs are dicts ready for JSON and for the HTML page.
"""

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

from ..usage.adjustments import InForce, adjusted_budget
from ..policy.budget import (
    Interval,
    period_bounds,
    usage_by_day,
    usage_hours,
)


def inventory_report(
    inventory: Sequence[Mapping] | None,
    open_intervals: Sequence[Interval],
    lost: Collection[str] = (),
    totals: Mapping[str, int] | None = None,
) -> list[dict]:
    """Per GPU: who holds it, on which server, since when (None when free), and whether NVML
    reports it lost (fallen off the bus).

    ``inventory``: the GPUs the hub hands out by UUID, one row each. None where the engine
    picks the devices (Kubernetes): a row per GPU held (from the ledger's open intervals),
    then a free row (no UUID) per GPU of each type in ``totals`` that no server holds.
    """
    if inventory is None:
        return _picked_report(open_intervals, totals or {})
    holder = {i.gpu_uuid: i for i in open_intervals}
    rows = []
    for gpu in inventory:
        held = holder.get(gpu["uuid"])
        rows.append(_row(gpu["uuid"], gpu["name"], held, gpu["uuid"] in lost))
    return rows


def _row(uuid: str | None, name: str, held: Interval | None, lost: bool = False) -> dict:
    return {
        "uuid": uuid,
        "name": name,
        "user": held.user if held else None,
        "server": held.server if held else None,
        "since": held.start.isoformat() if held else None,
        "lost": lost,
    }


def _picked_report(open_intervals: Sequence[Interval], totals: Mapping[str, int]) -> list[dict]:
    held = sorted(open_intervals, key=lambda i: (i.gpu_name, i.user, i.server, i.gpu_uuid))
    rows = [_row(i.gpu_uuid, i.gpu_name, i) for i in held]
    for gpu_type in sorted(totals):
        taken = sum(1 for i in held if i.gpu_name == gpu_type)
        rows.extend(_row(None, gpu_type, None) for _ in range(max(totals[gpu_type] - taken, 0)))
    return rows


def usage_report(
    settings,
    intervals: Sequence[Interval],
    user_groups: Mapping[str, list[str]],
    now: datetime,
    in_force: Mapping[str, InForce] | None = None,
) -> dict:
    """Per-user and per-group usage against budgets for the current period; ``in_force``:
    the admins' adjustments per user (budget overrides and this period's top-ups)."""
    in_force = in_force or {}
    start, end = period_bounds(now, settings.reset_schedule)
    by_user: dict[str, list[Interval]] = {}
    for interval in intervals:
        by_user.setdefault(interval.user, []).append(interval)
    users = []
    for name in sorted(set(by_user) | set(user_groups)):
        groups = user_groups.get(name, [])
        budget = adjusted_budget(settings.budget_of(groups), in_force.get(name, InForce()))
        used = usage_hours(by_user.get(name, []), start, end, now, settings.gpu_hour_weights)
        running = sorted({i.server for i in by_user.get(name, []) if i.end is None})
        users.append(
            {
                "user": name,
                "group": settings.usage_group_of(groups),
                "groups": groups,
                "used_hours": round(used, 4),
                "budget_hours": budget.hours,
                "budget_source": budget.source,
                "left_hours": None
                if budget.hours is None
                else round(max(budget.hours - used, 0.0), 4),
                "spent": budget.hours is not None and used >= budget.hours,
                "gpu_servers": running,
                "gpus_held": sum(1 for i in by_user.get(name, []) if i.end is None),
            }
        )
    groups: dict[str, dict] = {}
    for row in users:
        group = groups.setdefault(
            row["group"],
            {
                "group": row["group"],
                "users": 0,
                "used_hours": 0.0,
                "budget_hours": 0.0,
                "unlimited_users": 0,
            },
        )
        group["users"] += 1
        group["used_hours"] = round(group["used_hours"] + row["used_hours"], 4)
        if row["budget_hours"] is None:
            group["unlimited_users"] += 1
        else:
            group["budget_hours"] += row["budget_hours"]
    return {
        "period": {
            "kind": settings.budget_period,
            "start": start.isoformat(),
            "end": end.isoformat(),
        },
        "weights": settings.gpu_hour_weights,
        "users": users,
        "groups": sorted(groups.values(), key=lambda g: g["group"]),
    }


def daily_report(
    settings,
    intervals: Sequence[Interval],
    user_groups: Mapping[str, list[str]],
    now: datetime,
    days: int,
) -> dict:
    """Weighted GPU-hours per day and per group, the last ``days`` days (in the budget's zone)."""
    tz = settings.reset_schedule.tz
    today = datetime.combine(now.astimezone(tz).date(), datetime.min.time(), tz)
    starts = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    per_group: dict[str, list[Interval]] = {}
    for interval in intervals:
        group = settings.usage_group_of(user_groups.get(interval.user, []))
        per_group.setdefault(group, []).append(interval)
    return {
        "days": [day.date().isoformat() for day in starts],
        "groups": {
            group: [
                round(h, 4) for h in usage_by_day(items, starts, now, settings.gpu_hour_weights)
            ]
            for group, items in sorted(per_group.items())
        },
    }
