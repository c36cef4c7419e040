"""What the spawn lifecycle records and asks about GPU usage: one component per server.

:class:`Accounting` is called by the shared lifecycle (:mod:`gpuspawner.lifecycle.base`)
at fixed points, never by a backend: before GPUs are reserved (:meth:`refusal`, a spent
budget), when the server starts holding GPUs (:meth:`opened`), when it gives them back
(:meth:`closed`), and when the engine was listed (:meth:`reconciled`). It writes the usage
ledger and the hub's allocation counter, and tells the container its deadline
(:meth:`deadline_env`). It knows nothing of the backend: it is handed the GPUs.
"""

import asyncio
from urllib.parse import quote
from collections.abc import Sequence
from datetime import datetime, timezone

from ..policy.allocation import Holding
from ..policy.budget import (
    Budget,
    Deadline,
    exhausted,
    gpu_deadline,
    gpu_rate,
    left_text,
    period_bounds,
    refusal,
    usage_hours,
)
from ..policy.inventory import Gpu
from ..policy.quota import GpuLimit
from ..policy.reservations import deadline_reason, reserved_deadline
from . import hub_metrics
from .adjustments import InForce, adjusted_budget, adjusted_quota, adjustments_of
from .ledger import Ledger, now_utc
from .settings import UsageSettings


class Accounting:
    """The ledger and budget of one user's server, with the settings of its spawner."""

    def __init__(
        self,
        settings: UsageSettings,
        ledger: Ledger,
        user: str,
        server: str,
        user_groups: Sequence[str],
        log,
    ):
        self.settings = settings
        self.ledger = ledger
        self.user = user
        self.server = server
        self.user_groups = tuple(user_groups)
        self.log = log
        self.used_at_spawn: float | None = None  # what refusal() found, for the deadline
        self.in_force: InForce | None = None  # the admin's adjustments, read at each spawn
        self.period_end: datetime | None = None  # when the budget resets, found by refusal()

    async def load_adjustments(self, now: datetime | None = None) -> InForce:
        """Read the admin's adjustments of this user (quota, budget, this period's top-ups)."""
        start, _ = period_bounds(now or now_utc(), self.settings.reset_schedule)
        ledger, user = self.ledger, self.user
        self.in_force = await asyncio.to_thread(
            lambda: adjustments_of(ledger).in_force(user, start)
        )
        return self.in_force

    def quota(self, limit: GpuLimit) -> GpuLimit:
        """The groups' ``limit``, or the quota an admin set for this user."""
        if self.in_force is None:  # read by refusal() at each spawn asking for GPUs
            return limit
        return adjusted_quota(limit, self.in_force)

    @property
    def budget(self) -> Budget:
        """The groups' budget, with the admin's override and top-ups once read."""
        groups_budget = self.settings.budget_of(self.user_groups)
        return adjusted_budget(groups_budget, self.in_force or InForce())

    @property
    def group(self) -> str:
        return self.settings.usage_group_of(self.user_groups)

    async def hours_used(self, now: datetime | None = None) -> tuple[float, datetime]:
        """This user's weighted GPU-hours in the current period, and when the period ends."""
        now = now or now_utc()
        start, end = period_bounds(now, self.settings.reset_schedule)
        intervals = await asyncio.to_thread(self.ledger.intervals, start, end, self.user)
        return usage_hours(intervals, start, end, now, self.settings.gpu_hour_weights), end

    async def budget_status(self) -> tuple[str | None, bool]:
        """The spawn form's budget sentence and whether the budget is spent (None: no budgets)."""
        if not self.settings.any_budget:
            return None, False
        await self.load_adjustments()
        budget = self.budget
        used, resets_at = await self.hours_used()
        return left_text(used, budget, self.settings.budget_period, resets_at), exhausted(
            used, budget
        )

    async def refusal(self, gpus: int) -> str | None:
        """The sentence refusing a spawn of ``gpus`` GPUs on a spent budget, or None."""
        self.used_at_spawn = None
        if gpus == 0:
            return None
        await self.load_adjustments()  # the quota and budget an admin set count at once
        budget = self.budget
        if not budget.limited:
            return None
        used, resets_at = await self.hours_used()
        self.used_at_spawn = used
        self.period_end = resets_at
        sentence = refusal(used, budget, gpus, self.settings.budget_period, resets_at)
        if sentence is not None:
            self.log.info(
                "Refusing %s's server %r: GPU-hour budget spent (%.3f of %s)",
                self.user,
                self.server,
                used,
                budget.hours,
            )
        return sentence

    def deadline_env(
        self, gpus: Sequence[Gpu], max_age: float | None = None,
        idle_timeout: float | None = None,
    ) -> dict[str, str]:
        """GPUSPAWNER_GPU_DEADLINE(_REASON) for a server starting with ``gpus`` (empty: none),
        and :meth:`usage_env`.

        ``max_age``, ``idle_timeout``: the server's own (a course profile's), over
        gpu_max_age and gpu_idle_timeout."""
        if not gpus:
            return self.usage_env(gpus, now_utc())
        settings = self.settings
        budget = self.budget
        used = self.used_at_spawn
        if used is None:
            budget = Budget(None, budget.source)  # not checked at this spawn: the max age only
        now = now_utc()
        deadline = gpu_deadline(
            now=now,
            started=now,
            used=used or 0.0,
            budget=budget,
            rate=gpu_rate(gpus, settings.gpu_hour_weights),  # a slot: 1/N of the weight
            schedule=settings.reset_schedule,
            grace_seconds=settings.budget_grace_period,
            max_age_seconds=settings.gpu_max_age if max_age is None else max_age,
        )
        window = reserved_deadline(
            settings.reservations, self.user_groups, now, settings.gpu_reservation_lead
        ) if any(not gpu.is_shared for gpu in gpus) else None  # fmt: skip
        if window is not None and (deadline is None or window.start < deadline.at):
            deadline = Deadline(window.start, deadline_reason(window))  # a class reservation's
        env = self.usage_env(gpus, now, idle_timeout)
        if deadline is None:
            return env
        return {
            **env,
            "GPUSPAWNER_GPU_DEADLINE": deadline.at.astimezone(timezone.utc).isoformat(
                timespec="seconds"
            ),
            "GPUSPAWNER_GPU_DEADLINE_REASON": deadline.reason,
        }

    def usage_env(
        self, gpus: Sequence[Gpu], now: datetime, idle_timeout: float | None = None
    ) -> dict[str, str]:
        """What JupyterLab shows of the user's budget (as found at this spawn), where their
        usage page is, and the GPU-idle culling it warns about (GPUSPAWNER_GPU_IDLE_*)."""
        settings, env = self.settings, {}
        hub = getattr(settings, "hub", None)  # the spawner's: the hub's base URL
        if settings.usage_service and hub is not None:
            base = hub.base_url[: -len("hub/")] if hub.base_url.endswith("hub/") else "/"
            env["GPUSPAWNER_USAGE_URL"] = "%sservices/%s/users/%s" % (
                base, quote(settings.usage_service, safe=""), quote(self.user, safe=""),
            )  # fmt: skip
        budget = self.budget
        if budget.limited and self.used_at_spawn is not None and self.period_end is not None:
            env.update({
                "GPUSPAWNER_BUDGET_HOURS": "%.4f" % budget.hours,
                "GPUSPAWNER_BUDGET_USED_HOURS": "%.4f" % self.used_at_spawn,
                "GPUSPAWNER_BUDGET_PERIOD": settings.budget_period,
                "GPUSPAWNER_BUDGET_RESETS_AT": self.period_end.astimezone(timezone.utc).isoformat(
                    timespec="seconds"
                ),
                "GPUSPAWNER_BUDGET_READ_AT": now.isoformat(timespec="seconds"),
            })  # fmt: skip
        idle_timeout = settings.gpu_idle_timeout if idle_timeout is None else idle_timeout
        if gpus and idle_timeout:
            env.update({
                "GPUSPAWNER_GPU_IDLE_TIMEOUT": "%.0f" % idle_timeout,
                "GPUSPAWNER_GPU_IDLE_THRESHOLD": "%g" % settings.gpu_idle_threshold,
                "GPUSPAWNER_GPU_IDLE_WARNING": "%.0f" % settings.gpu_idle_warning,
            })  # fmt: skip
        return env

    async def opened(self, gpus: Sequence[Gpu]) -> None:
        """The server started holding ``gpus``: open an interval per GPU."""
        if not gpus:
            return
        opened = await self.ledger.open_async(self.user, self.server, gpus, now_utc())
        self.log.info(
            "Ledger: %d interval(s) opened for %s's server %r", opened, self.user, self.server
        )
        hub_metrics.count_allocation(self.group, len(gpus))

    async def closed(self, gpus: Sequence[Gpu]) -> None:
        """The server gave ``gpus`` back: close their intervals."""
        uuids = tuple(gpu.uuid for gpu in gpus)
        closed = await self.ledger.close_async(self.user, self.server, uuids, now_utc())
        self.log.info(
            "Ledger: %d interval(s) closed for %s's server %r", closed, self.user, self.server
        )

    async def reconciled(self, holdings: Sequence[Holding]) -> None:
        """The engine was listed: ``holdings`` are every server holding GPUs right now."""
        closed, opened = await asyncio.to_thread(self.ledger.reconcile, holdings, now_utc())
        if closed or opened:
            self.log.info(
                "Ledger reconciled with the engine: %d interval(s) closed, %d opened",
                closed,
                opened,
            )
