"""The admin dashboard: HTML page, JSON API, CSV export and metrics, behind the hub's OAuth.

Every handler requires a hub identity with access to this service (the admin role
has it); anyone else gets 403, an anonymous browser is sent to the hub's login.
"""

import asyncio
import html
import json
import os
from datetime import date, datetime, timedelta, timezone

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado import web

from ..policy.budget import hours_text
from ..policy.names import quote_input
from ..usage.ledger import now_utc
from .report import daily_report, inventory_report, usage_report

DAYS_PLOTTED = 14
COLOURS = ["#3b6ea8", "#d9822b", "#3a9e6f", "#a8445c", "#7a5fb0", "#8c7b3a", "#4f9fb5", "#777777"]


class BaseHandler(HubOAuthenticated, web.RequestHandler):
    @property
    def state(self):
        return self.settings["gpu_state"]

    def check_xsrf_cookie(self):
        pass  # read-only GET handlers only

    def write_error(self, status_code, **kwargs):
        """The sentence of a refusal (HTTPError's message), never a traceback."""
        error = (kwargs.get("exc_info") or (None, None, None))[1]
        said = isinstance(error, web.HTTPError) and error.log_message and status_code < 500
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("%d %s%s\n" % (status_code, self._reason, ": " + error.log_message if said else ""))

    async def data(self, now: datetime):
        state = self.state
        try:
            groups = await state.watcher.refresh_users()
        except Exception:
            groups = state.watcher.user_groups
        start, end = state.period(now)
        period = await asyncio.to_thread(state.ledger.intervals, start, end)
        open_ = await asyncio.to_thread(state.ledger.open_intervals)
        plotted_from = now - timedelta(days=DAYS_PLOTTED + 1)
        recent = await asyncio.to_thread(state.ledger.intervals, plotted_from, now)
        return {
            "inventory": inventory_report(state.settings.inventory, open_, state.watcher.lost),
            "usage": usage_report(state.settings, period, groups, now),
            "daily": daily_report(state.settings, recent, groups, now, DAYS_PLOTTED),
            "utilisation": state.watcher.utilisation,
        }

    def write_json(self, value) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(value, indent=1, default=str))


class InventoryAPI(BaseHandler):
    @web.authenticated
    async def get(self):
        self.write_json((await self.data(now_utc()))["inventory"])


class UsageAPI(BaseHandler):
    @web.authenticated
    async def get(self):
        self.write_json((await self.data(now_utc()))["usage"])


class DailyAPI(BaseHandler):
    @web.authenticated
    async def get(self):
        self.write_json((await self.data(now_utc()))["daily"])


class NoticesAPI(BaseHandler):
    @web.authenticated
    async def get(self):
        notices = await asyncio.to_thread(self.state.ledger.notices, now_utc() - timedelta(days=30))
        self.write_json(notices)


# the dates the ledger export takes (the end day is included, so the day after it must exist)
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9999, 12, 30)


def parse_day(text: str, name: str) -> datetime:
    try:
        day = date.fromisoformat(text)
    except (TypeError, ValueError):
        raise web.HTTPError(
            400, "%s must be a date such as 2026-11-23, not %s." % (name, quote_input(text))
        ) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise web.HTTPError(
            400, "%s must be a date from %s to %s, not %s."
            % (name, FIRST_DAY.isoformat(), LAST_DAY.isoformat(), day.isoformat()),
        )  # fmt: skip
    return datetime.combine(day, datetime.min.time(), timezone.utc)


class LedgerCSV(BaseHandler):
    @web.authenticated
    async def get(self):
        now = now_utc()
        today = now.date().isoformat()
        start = parse_day(self.get_argument("start", (now.date() - timedelta(days=30)).isoformat()), "start")
        end = parse_day(self.get_argument("end", today), "end") + timedelta(days=1)  # the end day is included
        if end <= start:
            raise web.HTTPError(400, "end must not be before start.")
        body = await asyncio.to_thread(self.state.ledger.csv, start, end, now)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", 'attachment; filename="gpu-ledger-%s-%s.csv"'
                        % (start.date().isoformat(), (end - timedelta(days=1)).date().isoformat()))
        self.write(body)


class Metrics(BaseHandler):
    @web.authenticated
    async def get(self):
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.write(generate_latest(self.state.metrics.registry))


class Dashboard(BaseHandler):
    @web.authenticated
    async def get(self):
        now = now_utc()
        data = await self.data(now)
        notices = await asyncio.to_thread(self.state.ledger.notices, now - timedelta(days=7))
        self.write(render_page(data, notices, self.state.settings, self.current_user["name"],
                               self.settings["prefix"], now))


def since_text(iso: str | None, now: datetime) -> str:
    if not iso:
        return ""
    moment = datetime.fromisoformat(iso)
    minutes = int((now - moment).total_seconds() // 60)
    ago = "%d min" % minutes if minutes < 120 else "%.1f h" % (minutes / 60)
    return "%s (%s ago)" % (moment.strftime("%d %b %H:%M UTC"), ago)


def holder_cell(gpu: dict) -> str:
    """Who holds an inventory GPU, 'free', or 'lost' (and who still holds it)."""
    holder = html.escape(gpu["user"]) if gpu["user"] else ""
    if gpu["lost"]:
        return ('<span class="lost">lost</span> ' + holder).strip()
    return holder or '<span class="free">free</span>'


def bar(fraction: float) -> str:
    width = max(0.0, min(fraction, 1.0)) * 100
    level = "over" if fraction >= 1 else "warn" if fraction >= 0.8 else "ok"
    return '<span class="bar" role="img" aria-label="%d%%"><span class="fill %s" style="width:%.0f%%"></span></span>' % (
        round(fraction * 100), level, width)


def chart_svg(daily: dict) -> str:
    """A stacked bar per day, one colour per group."""
    days, groups = daily["days"], daily["groups"]
    totals = [sum(values[i] for values in groups.values()) for i in range(len(days))]
    top = max(totals + [1.0])
    width, height, left, bottom = 720, 220, 44, 28
    step = (width - left - 10) / max(len(days), 1)
    parts = ['<svg viewBox="0 0 %d %d" role="img" aria-label="GPU-hours per day and group">' % (width, height)]
    for tick in range(5):
        value = top * tick / 4
        y = height - bottom - (height - bottom - 10) * tick / 4
        parts.append('<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="grid"/>' % (left, width - 10, y, y))
        parts.append('<text x="%d" y="%.1f" class="axis" text-anchor="end">%s</text>' % (left - 6, y + 4, fmt_hours(value)))
    for i, day in enumerate(days):
        x = left + i * step + step * 0.15
        y = height - bottom
        for n, (group, values) in enumerate(groups.items()):
            h = (height - bottom - 10) * values[i] / top
            if h > 0:
                parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s</title></rect>'
                             % (x, y - h, step * 0.7, h, COLOURS[n % len(COLOURS)], html.escape(group), day,
                                hours_text(values[i])))
                y -= h
        if i % 2 == len(days) % 2 or len(days) <= 8:
            parts.append('<text x="%.1f" y="%d" class="axis" text-anchor="middle">%s</text>'
                         % (x + step * 0.35, height - 8, day[5:]))
    parts.append("</svg>")
    legend = "".join('<span class="key"><span class="swatch" style="background:%s"></span>%s</span>'
                     % (COLOURS[n % len(COLOURS)], html.escape(group)) for n, group in enumerate(groups))
    return "".join(parts) + '<div class="legend">%s</div>' % (legend or "No GPU use in these days.")


def group_budget_text(group: dict) -> str:
    if group["unlimited_users"] == group["users"]:
        return "no limit"
    text = fmt_hours(group["budget_hours"])
    return text + (" + %d unlimited" % group["unlimited_users"] if group["unlimited_users"] else "")


def fmt_hours(value) -> str:
    return "no limit" if value is None else ("%.2f" % value).rstrip("0").rstrip(".")


def render_page(data, notices, settings, viewer: str, prefix: str, now: datetime) -> str:
    esc = html.escape
    usage, inventory = data["usage"], data["inventory"]
    period = usage["period"]
    start, end = datetime.fromisoformat(period["start"]), datetime.fromisoformat(period["end"])
    held = sum(1 for gpu in inventory if gpu["user"])
    gpu_rows = "".join(
        "<tr><td><code>%s</code></td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
            esc(gpu["uuid"]), esc(gpu["name"]),
            holder_cell(gpu),
            esc(gpu["server"] or "default") if gpu["user"] else "",
            since_text(gpu["since"], now),
            "" if data["utilisation"].get(gpu["uuid"]) is None else "%.0f%%" % data["utilisation"][gpu["uuid"]],
        ) for gpu in inventory) or '<tr><td colspan="6">No GPU in the inventory.</td></tr>'
    group_rows = "".join(
        "<tr><td>%s</td><td class=num>%d</td><td class=num>%s</td><td class=num>%s</td><td>%s</td></tr>" % (
            esc(g["group"]), g["users"], fmt_hours(g["used_hours"]),
            group_budget_text(g),
            bar(g["used_hours"] / g["budget_hours"]) if g["budget_hours"] else "",
        ) for g in usage["groups"]) or '<tr><td colspan="5">No users yet.</td></tr>'
    user_rows = "".join(
        "<tr%s><td>%s</td><td>%s</td><td class=num>%s</td><td class=num>%s</td><td>%s</td><td>%s</td></tr>" % (
            ' class="spent"' if u["spent"] else "", esc(u["user"]), esc(u["group"]),
            fmt_hours(u["used_hours"]), fmt_hours(u["budget_hours"]),
            bar(u["used_hours"] / u["budget_hours"]) if u["budget_hours"] else "",
            esc(", ".join("%s" % (s or "default") for s in u["gpu_servers"])) or "-",
        ) for u in usage["users"]) or '<tr><td colspan="6">No users yet.</td></tr>'
    notice_rows = "".join(
        "<li><time>%s</time> %s</li>" % (n["at"].strftime("%d %b %H:%M"), esc(n["message"]))
        for n in reversed(notices[-20:])) or "<li>None in the last 7 days.</li>"
    weights = ", ".join("%s x%s" % (esc(k), fmt_hours(v)) for k, v in sorted(settings.gpu_hour_weights.items()))
    api = esc(prefix)
    return PAGE % {
        "viewer": esc(viewer),
        "period": "%s – %s" % (start.strftime("%a %d %b %H:%M"), end.strftime("%a %d %b %H:%M %Z")),
        "held": held, "total": len(inventory),
        "gpu_rows": gpu_rows, "group_rows": group_rows, "user_rows": user_rows,
        "chart": chart_svg(data["daily"]), "days": DAYS_PLOTTED,
        "notices": notice_rows,
        "weights": ("Weights: " + weights + ".") if weights else "All GPU types cost 1 GPU-hour per hour.",
        "api": api, "today": now.date().isoformat(),
        "month_ago": (now.date() - timedelta(days=30)).isoformat(),
    }


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GPU usage</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f4f6f9}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;justify-content:space-between;align-items:baseline}
header h1{font-size:18px;margin:0} header span{opacity:.8}
main{max-width:1200px;margin:0 auto;padding:16px 24px;display:grid;grid-template-columns:1fr 1fr;gap:16px}
section{background:#fff;border:1px solid #dde2ea;border-radius:6px;padding:12px 16px;min-width:0}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px} p.note{color:#5b6475;margin:4px 0 8px}
table{border-collapse:collapse;width:100%%} th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef1f5;vertical-align:middle}
th{font-weight:600;color:#5b6475;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td.num{text-align:right;font-variant-numeric:tabular-nums} code{font-size:12px}
.free{color:#3a9e6f;font-weight:600} .lost{color:#c0392b;font-weight:600} tr.spent td{background:#fff1f0}
.bar{display:inline-block;width:120px;height:10px;background:#e6e9ef;border-radius:5px;overflow:hidden;vertical-align:middle}
.fill{display:block;height:100%%} .fill.ok{background:#3a9e6f} .fill.warn{background:#d9822b} .fill.over{background:#c0392b}
svg{width:100%%;height:auto} .grid{stroke:#eef1f5} .axis{font-size:11px;fill:#5b6475}
.legend{margin-top:4px}.key{margin-right:14px;white-space:nowrap}.swatch{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
form{display:flex;gap:8px;align-items:end;flex-wrap:wrap} label{display:flex;flex-direction:column;font-size:12px;color:#5b6475}
input,button{font:inherit;padding:4px 8px} button{background:#3b6ea8;color:#fff;border:0;border-radius:4px;padding:6px 14px}
ul{margin:0;padding-left:18px} time{color:#5b6475;margin-right:6px}
@media (max-width:900px){main{grid-template-columns:1fr}}
</style></head>
<body>
<header><h1>GPU usage</h1><span>Budget period %(period)s · signed in as %(viewer)s</span></header>
<main>
<section class="wide"><h2>GPU inventory: %(held)d of %(total)d held</h2>
<table><thead><tr><th>GPU</th><th>Type</th><th>Held by</th><th>Server</th><th>Since</th><th>Utilisation</th></tr></thead>
<tbody>%(gpu_rows)s</tbody></table></section>
<section><h2>Groups this period</h2><p class="note">GPU-hours used against the sum of the members' budgets. %(weights)s</p>
<table><thead><tr><th>Group</th><th class=num>Users</th><th class=num>Used</th><th class=num>Budget</th><th></th></tr></thead>
<tbody>%(group_rows)s</tbody></table></section>
<section><h2>GPU-hours per day, last %(days)d days</h2>%(chart)s</section>
<section class="wide"><h2>Users this period</h2>
<table><thead><tr><th>User</th><th>Group</th><th class=num>Used</th><th class=num>Budget</th><th></th><th>GPU servers running</th></tr></thead>
<tbody>%(user_rows)s</tbody></table></section>
<section><h2>Export the ledger</h2><p class="note">Every GPU interval overlapping the dates (UTC), as CSV.</p>
<form action="%(api)sapi/ledger.csv" method="get">
<label>From<input type="date" name="start" value="%(month_ago)s"></label>
<label>To<input type="date" name="end" value="%(today)s"></label>
<button type="submit">Download CSV</button></form>
<p class="note">JSON: <a href="%(api)sapi/inventory">inventory</a> · <a href="%(api)sapi/usage">usage</a> ·
<a href="%(api)sapi/daily">daily</a> · <a href="%(api)sapi/notices">notices</a> · <a href="%(api)smetrics">metrics</a></p></section>
<section><h2>Notices, last 7 days</h2><ul>%(notices)s</ul></section>
</main></body></html>
"""


def make_app(state) -> web.Application:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
    routes = [
        ("", Dashboard), ("api/inventory", InventoryAPI), ("api/usage", UsageAPI), ("api/daily", DailyAPI),
        ("api/notices", NoticesAPI), ("api/ledger.csv", LedgerCSV), ("metrics", Metrics),
        ("oauth_callback", HubOAuthCallbackHandler),
    ]
    return web.Application(
        [(url_path_join(prefix, path), handler) for path, handler in routes],
        cookie_secret=os.urandom(32), gpu_state=state, prefix=prefix,
    )
