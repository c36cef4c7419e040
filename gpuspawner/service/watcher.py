"""The service's loop: budgets spent while running, maximum age, GPU-idle culling, metrics.

Every ``check_interval`` seconds it reads the ledger's open intervals (which servers
hold which GPUs, since when), the hub's users, and GPU utilisation, then stops through
the hub's REST API the GPU servers that must stop. Before stopping it records the
reason on the server's open intervals and a notice in the ledger, and logs it, so
an admin finds why a server went away. Workspaces are never touched: stopping a
server removes its container, not its volume.

Where the utilisation source is Prometheus, a pass also records, once, which device each
Kubernetes interval's GPU really is (the ledger's ``resolve_devices``), from the series the
pass sampled (:func:`gpuspawner.usage.prometheus.assign_devices`): no extra query.
"""

import asyncio
import json
import logging
from datetime import datetime, timedelta
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from ..policy.budget import exhausted, hours_text, period_bounds, usage_hours, when_text
from ..policy.reservations import reserved_deadline
from ..usage.adjustments import InForce, adjusted_budget, adjustments_of
from ..usage.culler import IdleTracker, utilisation_source
from ..usage.ledger import Ledger, now_utc
from ..usage.prometheus import PrometheusUtilisation
from .report import usage_report
from .engine import EngineView
from .service_metrics import ServiceMetrics

log = logging.getLogger("gpuspawner.service")


def age_text(seconds: float) -> str:
    """A length of time in words: "45 s", "12 min", "8.0 h"."""
    if seconds < 120:
        return "%.0f s" % seconds
    if seconds < 7200:
        return "%.0f min" % (seconds / 60)
    return "%.1f h" % (seconds / 3600)


class HubClient:
    """The few hub REST calls the service makes, with its own token."""

    def __init__(self, api_url: str, token: str):
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.http = AsyncHTTPClient()

    async def request(self, method: str, path: str, body=None):
        request = HTTPRequest(
            self.api_url + path,
            method=method,
            headers={"Authorization": "token " + self.token},
            body=None if body is None and method == "GET" else json.dumps(body or {}),
            allow_nonstandard_methods=True,
            request_timeout=60,
        )
        response = await self.http.fetch(request, raise_error=False)
        if response.code >= 400:
            raise RuntimeError(
                "hub API %s %s: %s %s" % (method, path, response.code, response.body[:300])
            )
        return json.loads(response.body) if response.body else None

    async def users(self) -> list[dict]:
        users, offset = [], 0
        while True:
            page = await self.request("GET", "/users?offset=%d&limit=200" % offset)
            users.extend(page)
            if len(page) < 200:
                return users
            offset += len(page)

    async def stop_server(self, user: str, server: str) -> None:
        path = "/users/%s/server" % quote(user, safe="")
        if server:
            path += "s/" + quote(server, safe="")
        await self.request("DELETE", path)


class Watcher:
    """One pass at a time: what to warn about and what to stop."""

    def __init__(
        self,
        settings,
        ledger: Ledger,
        hub: HubClient,
        metrics: ServiceMetrics,
        engine: EngineView,
        source=None,
    ):
        self.settings = settings
        self.engine = engine
        self.ledger = ledger
        self.hub = hub
        self.metrics = metrics
        self.source = source or utilisation_source(
            settings.gpu_utilisation_source, namespace=engine.namespace
        )
        self.idle = IdleTracker(
            settings.gpu_idle_threshold, timedelta(seconds=settings.gpu_idle_timeout)
        )
        self.user_groups: dict[str, list[str]] = {}
        self.server_profiles: dict[tuple[str, str], str] = {}  # a running server's profile
        self.ready_servers: set[tuple[str, str]] = set()
        self.utilisation: dict[str, float | None] = {}
        self.lost: set[str] = set()  # inventory GPUs the utilisation source found lost

    async def run_forever(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:
                log.exception(
                    "GPU watcher pass failed; trying again in %.0f s", self.settings.check_interval
                )
            await asyncio.sleep(self.settings.check_interval)

    async def refresh_users(self) -> dict[str, list[str]]:
        users = await self.hub.users()
        self.user_groups = {u["name"]: sorted(u.get("groups") or []) for u in users}
        self.ready_servers = {
            (u["name"], name)
            for u in users
            for name, model in (u.get("servers") or {}).items()
            if model.get("ready") and not model.get("pending")
        }
        self.server_profiles = {
            (u["name"], name): str((model.get("user_options") or {}).get("profile") or "")
            for u in users
            for name, model in (u.get("servers") or {}).items()
            if isinstance(model.get("user_options"), dict)
        }
        return self.user_groups

    def limit_of(self, key: tuple[str, str], name: str) -> float:
        """A server's gpu_max_age or gpu_idle_timeout: its course profile's, else the
        spawner's (0: none)."""
        profile = self.server_profiles.get(key, "")
        own = (getattr(self.settings, "profile_limits", None) or {}).get(profile, {})
        return float(own.get(name, getattr(self.settings, name)))

    async def check(self, now: datetime | None = None) -> None:
        now = now or now_utc()
        await self.refresh_users()
        open_intervals = await asyncio.to_thread(self.ledger.open_intervals)
        servers: dict[tuple[str, str], list] = {}
        for interval in open_intervals:
            servers.setdefault((interval.user, interval.server), []).append(interval)
        stopping: dict[tuple[str, str], tuple[str, str]] = {}
        await self._check_budgets(servers, now, stopping)
        self._check_max_age(servers, now, stopping)
        self._check_reservations(servers, now, stopping)
        await self._check_idle(servers, now, stopping)
        await self._resolve_devices()
        for (user, server), (reason, message) in sorted(stopping.items()):
            if (user, server) not in self.ready_servers:
                # still starting (or stopping): stopping it now would cut its spawn short; next pass
                log.debug(
                    "Not stopping %s's server %r yet (%s): it is not ready", user, server, reason
                )
                continue
            await self._stop(user, server, reason, message, now)
        await self._publish(now)

    async def in_force(self, now: datetime) -> dict[str, InForce]:
        """The admins' adjustments in force now, per user (read at every pass: at once)."""
        start, _ = period_bounds(now, self.settings.reset_schedule)
        store = await asyncio.to_thread(adjustments_of, self.ledger)
        return await asyncio.to_thread(store.in_force_by_user, None, start)

    async def _check_budgets(self, servers, now, stopping) -> None:
        start, end = period_bounds(now, self.settings.reset_schedule)
        adjusted = await self.in_force(now) if servers else {}
        for user in sorted({user for user, _ in servers}):
            budget = adjusted_budget(
                self.settings.budget_of(self.user_groups.get(user, [])),
                adjusted.get(user, InForce()),
            )
            if not budget.limited:
                continue
            intervals = await asyncio.to_thread(self.ledger.intervals, start, end, user)
            used = usage_hours(intervals, start, end, now, self.settings.gpu_hour_weights)
            if not exhausted(used, budget):
                continue
            warnings = await asyncio.to_thread(self.ledger.notices, start, "budget-warning")
            # a warning before the admin's latest top-up or override was about the old budget
            force = adjusted.get(user, InForce())
            changed = [a.at for a in (force.budget, *force.top_ups) if a is not None]
            since = max(changed, default=start)
            warned = [n for n in warnings if n["user"] == user and n["at"] >= since]
            if not warned:
                deadline = now + timedelta(seconds=self.settings.budget_grace_period)
                message = (
                    "%s's GPU-hour budget is spent (%s of %s, %s); their GPU servers stop at %s."
                    % (
                        user,
                        hours_text(used),
                        hours_text(budget.hours),
                        budget.source,
                        when_text(deadline),
                    )
                )
                log.warning("%s", message)
                await asyncio.to_thread(
                    self.ledger.add_notice, user, "", "budget-warning", message, now
                )
                continue
            if (now - warned[0]["at"]).total_seconds() >= self.settings.budget_grace_period:
                for key in servers:
                    if key[0] == user:
                        stopping[key] = (
                            "budget-spent",
                            "Stopped %s's server %r: GPU-hour budget spent (%s of %s)"
                            " and the grace of %.0f s is over; it resets on %s."
                            % (
                                user,
                                key[1],
                                hours_text(used),
                                hours_text(budget.hours),
                                self.settings.budget_grace_period,
                                when_text(end),
                            ),
                        )

    def _check_max_age(self, servers, now, stopping) -> None:
        for key, intervals in servers.items():
            max_age = self.limit_of(key, "gpu_max_age")
            if not max_age:
                continue
            age = (now - min(i.start for i in intervals)).total_seconds()
            if age >= max_age and key not in stopping:
                profile = self.server_profiles.get(key, "")
                stopping[key] = (
                    "max-age",
                    "Stopped %s's server %r: it held GPUs for %s, the maximum is %s (%s)."
                    % (key[0], key[1], age_text(age), age_text(max_age),
                       "gpu_max_age of profile %r" % profile
                       if profile in (self.settings.profile_limits or {}) else "gpu_max_age"),
                )  # fmt: skip

    def _check_reservations(self, servers, now, stopping) -> None:
        """A non-member's whole-GPU server started within gpu_reservation_lead before another
        group's window stops at the window's start (it was told so at spawn)."""
        for key, intervals in servers.items():
            whole = [i for i in intervals if i.shared_by <= 1]
            if not whole or key in stopping:
                continue
            window = reserved_deadline(
                self.settings.reservations, self.user_groups.get(key[0], []),
                min(i.start for i in whole), self.settings.gpu_reservation_lead,
            )  # fmt: skip
            if window is not None and now >= window.start:
                stopping[key] = (
                    "reservation",
                    "Stopped %s's server %r: its GPUs are reserved for group '%s' from %s"
                    " (gpu_reservations); it started within gpu_reservation_lead of the window."
                    % (key[0], key[1], window.reservation.group,
                       window.local(window.start).strftime("%H:%M %Z")),
                )  # fmt: skip

    async def _check_idle(self, servers, now, stopping) -> None:
        # every inventory GPU, held or not, so the dashboard also sees a free GPU that is lost
        uuids = sorted(
            {i.gpu_uuid for intervals in servers.values() for i in intervals}
            | {gpu.uuid for gpu in self.engine.named}
        )
        self.utilisation = await asyncio.to_thread(self.source.sample, uuids) if uuids else {}
        self.lost = set(self.source.lost)
        timeouts = {key: self.limit_of(key, "gpu_idle_timeout") for key in servers}
        if not any(timeouts.values()):
            return
        self.idle.keep_only(servers)
        for key, intervals in servers.items():
            self.idle.observe(
                key, {i.gpu_uuid: self.utilisation.get(i.gpu_uuid) for i in intervals}, now
            )
        for key, since in sorted(self.idle.idle_since.items(), key=lambda item: str(item[0])):
            timeout = timeouts.get(key, 0)  # a server's own: its profile's, else the spawner's
            if timeout and (now - since).total_seconds() >= timeout and key not in stopping:
                stopping[key] = (
                    "gpu-idle",
                    "Stopped %s's server %r: its GPUs were below %.0f%% utilisation"
                    " for %.0f s (gpu_idle_timeout)."
                    % (key[0], key[1], self.settings.gpu_idle_threshold, timeout),
                )

    async def _resolve_devices(self) -> None:
        """Record the device of each open interval named after its pod that the sampled
        Prometheus series name without doubt; the others stay as they are."""
        if not isinstance(self.source, PrometheusUtilisation) or self.source.last_series is None:
            return
        unresolved = await asyncio.to_thread(self.ledger.unresolved_open)
        found = self.source.devices(name for _, name in unresolved)
        devices = {
            interval_id: (found[name].uuid, found[name].gpu_type)
            for interval_id, name in unresolved
            if name in found
        }
        if not devices:
            return
        await asyncio.to_thread(self.ledger.resolve_devices, devices)
        for interval_id, name in unresolved:
            if name in found:
                device = found[name]
                log.info(
                    "Ledger: %s is GPU %s (%s), as Prometheus says",
                    name,
                    device.uuid,
                    device.gpu_type or "type not exported",
                )
                # this pass's reading, under the name the dashboard now shows
                self.utilisation.setdefault(device.uuid, self.utilisation.get(name))

    async def _stop(self, user, server, reason, message, now) -> None:
        log.warning("%s", message)
        await asyncio.to_thread(self.ledger.mark_pending_end, user, server, reason)
        await asyncio.to_thread(self.ledger.add_notice, user, server, reason, message, now)
        try:
            await self.hub.stop_server(user, server)
        except Exception as e:
            log.error("Could not stop %s's server %r: %s", user, server, e)
            return
        self.idle.idle_since.pop((user, server), None)
        self.metrics.culls.labels(reason=reason).inc()

    async def _publish(self, now) -> None:
        intervals = await asyncio.to_thread(
            self.ledger.intervals, *period_bounds(now, self.settings.reset_schedule)
        )
        report = usage_report(
            self.settings, intervals, self.user_groups, now, await self.in_force(now)
        )
        for group in report["groups"]:
            self.metrics.budget_used.labels(group=group["group"]).set(group["used_hours"])
            self.metrics.budget_limit.labels(group=group["group"]).set(group["budget_hours"])
        self.metrics.utilisation.clear()
        self.metrics.held.clear()
        names = {gpu.uuid: gpu.name for gpu in self.engine.named}
        held_by_type: dict[str, int] = {}
        for interval in (i for i in intervals if i.end is None):
            held_by_type[names.get(interval.gpu_uuid, interval.gpu_name)] = (
                held_by_type.get(names.get(interval.gpu_uuid, interval.gpu_name), 0) + 1
            )
            value = self.utilisation.get(interval.gpu_uuid)
            if value is not None:
                self.metrics.utilisation.labels(
                    interval.gpu_uuid, interval.user, interval.server
                ).set(value)
        for gpu_type, count in held_by_type.items():
            self.metrics.held.labels(gpu_type=gpu_type).set(count)
