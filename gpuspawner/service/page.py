"""The admin dashboard's page: plain values for the ``admin.html`` template (pure).

:func:`page_context` turns the reports (:mod:`.report`) into what the template shows;
:func:`chart` lays out the stacked bars of GPU-hours per day. The markup and the CSS are in
``gpuspawner/templates/admin.html``, which an admin may override (``template_paths``).
"""

from datetime import datetime, timedelta

from ..policy.budget import hours_text
from ..policy.reservations import upcoming
from ..templating import render

DAYS_PLOTTED = 14
COLOURS = ["#3b6ea8", "#d9822b", "#3a9e6f", "#a8445c", "#7a5fb0", "#8c7b3a", "#4f9fb5", "#777777"]
WIDTH, HEIGHT, LEFT, BOTTOM = 720, 220, 44, 28


def since_text(iso: str | None, now: datetime) -> str:
    if not iso:
        return ""
    moment = datetime.fromisoformat(iso)
    minutes = int((now - moment).total_seconds() // 60)
    ago = "%d min" % minutes if minutes < 120 else "%.1f h" % (minutes / 60)
    return "%s (%s ago)" % (moment.strftime("%d %b %H:%M UTC"), ago)


def fmt_hours(value) -> str:
    return "no limit" if value is None else ("%.2f" % value).rstrip("0").rstrip(".")


def group_budget_text(group: dict) -> str:
    if group["unlimited_users"] == group["users"]:
        return "no limit"
    text = fmt_hours(group["budget_hours"])
    return text + (" + %d unlimited" % group["unlimited_users"] if group["unlimited_users"] else "")


def meter(used: float, budget: float | None) -> dict | None:
    """A budget bar: percent used, its width and level (ok, warn, over); None without a budget."""
    if not budget:
        return None
    fraction = used / budget
    level = "over" if fraction >= 1 else "warn" if fraction >= 0.8 else "ok"
    return {"percent": round(fraction * 100), "width": max(0.0, min(fraction, 1.0)) * 100,
            "level": level}  # fmt: skip


def chart(daily: dict) -> dict:
    """A stacked bar per day, one colour per group: grid lines, a column of bars and a label
    per day (every other day's label when there are many), the legend."""
    days, groups = daily["days"], daily["groups"]
    totals = [sum(values[i] for values in groups.values()) for i in range(len(days))]
    top = max(totals + [1.0])
    plot = HEIGHT - BOTTOM - 10
    step = (WIDTH - LEFT - 10) / max(len(days), 1)
    ticks = [
        {"y": HEIGHT - BOTTOM - plot * tick / 4, "label": fmt_hours(top * tick / 4)}
        for tick in range(5)
    ]
    columns = []
    for i, day in enumerate(days):
        x = LEFT + i * step + step * 0.15
        y = HEIGHT - BOTTOM
        bars = []
        for n, (group, values) in enumerate(groups.items()):
            h = plot * values[i] / top
            if h > 0:
                bars.append({
                    "x": x, "y": y - h, "width": step * 0.7, "height": h,
                    "colour": COLOURS[n % len(COLOURS)],
                    "title": "%s %s: %s" % (group, day, hours_text(values[i])),
                })  # fmt: skip
                y -= h
        shown = i % 2 == len(days) % 2 or len(days) <= 8
        label = {"x": x + step * 0.35, "text": day[5:]} if shown else None
        columns.append({"bars": bars, "label": label})
    legend = [{"colour": COLOURS[n % len(COLOURS)], "group": g} for n, g in enumerate(groups)]
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "label_y": HEIGHT - 8,
            "ticks": ticks, "columns": columns, "legend": legend}  # fmt: skip


def reservations_context(settings, now: datetime) -> list[dict]:
    """Each class reservation's open or next window, in its own zone, the soonest first."""
    rows = []
    for window in upcoming(getattr(settings, "reservations", ()), now):
        start, end = window.local(window.start), window.local(window.end)
        rows.append({
            "group": window.reservation.group, "gpus": window.reservation.gpus,
            "start": start.strftime("%a %d %b %H:%M"), "end": end.strftime("%H:%M"),
            "zone": window.reservation.zone, "open": window.start <= now < window.end,
        })  # fmt: skip
    return rows


def page_context(data, notices, settings, viewer: str, prefix: str, now: datetime) -> dict:
    usage, inventory = data["usage"], data["inventory"]
    period = usage["period"]
    start, end = datetime.fromisoformat(period["start"]), datetime.fromisoformat(period["end"])
    utilisation = data["utilisation"]
    weights = ", ".join(
        "%s x%s" % (key, fmt_hours(value))
        for key, value in sorted(settings.gpu_hour_weights.items())
    )
    return {
        "viewer": viewer,
        "period": "%s – %s" % (start.strftime("%a %d %b %H:%M"), end.strftime("%a %d %b %H:%M %Z")),
        "held": sum(1 for gpu in inventory if gpu["user"]),
        "gpus": [
            dict(
                gpu,
                uuid=gpu["uuid"] or "",  # a free GPU the engine has not named (Kubernetes)
                since_text=since_text(gpu["since"], now),
                utilisation_text=""
                if utilisation.get(gpu["uuid"]) is None
                else "%.0f%%" % utilisation[gpu["uuid"]],
            )
            for gpu in inventory
        ],  # fmt: skip
        "groups": [
            dict(
                g,
                used_text=fmt_hours(g["used_hours"]),
                budget_text=group_budget_text(g),
                meter=meter(g["used_hours"], g["budget_hours"]),
            )
            for g in usage["groups"]
        ],  # fmt: skip
        "users": [
            dict(
                u,
                used_text=fmt_hours(u["used_hours"]),
                budget_text=fmt_hours(u["budget_hours"]),
                meter=meter(u["used_hours"], u["budget_hours"]),
                servers_text=", ".join(s or "default" for s in u["gpu_servers"]) or "-",
            )
            for u in usage["users"]
        ],  # fmt: skip
        "chart": chart(data["daily"]),
        "days": DAYS_PLOTTED,
        "notices": [
            {"at": n["at"].strftime("%d %b %H:%M"), "message": n["message"]}
            for n in reversed(notices[-20:])
        ],
        "weights": ("Weights: " + weights + ".")
        if weights
        else "All GPU types cost 1 GPU-hour per hour.",
        "adjustments": [
            {"at": a.at.strftime("%d %b %Y %H:%M"), "user": a.user, "what": a.text,
             "reason": a.reason, "by": a.by}
            for a in reversed(data.get("adjustments", [])[-30:])
        ],  # fmt: skip
        "reservations": reservations_context(settings, now),
        "xsrf": data.get("xsrf", ""),
        "api": prefix,
        "today": now.date().isoformat(),
        "month_ago": (now.date() - timedelta(days=30)).isoformat(),
    }


def render_page(data, notices, settings, viewer: str, prefix: str, now: datetime) -> str:
    context = page_context(data, notices, settings, viewer, prefix, now)
    return render("admin.html", settings.template_paths, **context)
