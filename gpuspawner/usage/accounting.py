"""What the spawn lifecycle records and asks about GPU usage: one component per server.

:class:`Accounting` is called by the shared lifecycle (:mod:`gpuspawner.lifecycle.base`)
at fixed points, never by a backend: before GPUs are reserved (:meth:`refusal`, a spent
budget), when the server starts holding GPUs (:meth:`opened`), when it gives them back
(:meth:`closed`), and when the engine was listed (:meth:`reconciled`). It writes the usage
ledger and the hub's allocation counter, and tells the container its deadline
(:meth:`deadline_env`). It knows nothing of the backend: it is handed the GPUs.
"""

import asyncio
from collections.abc import Sequence
from datetime import datetime, timezone

from ..policy.allocation import Holding
from ..policy.budget import (
    Budget,
    exhausted,
    gpu_deadline,
    gpu_rate,
    left_text,
    period_bounds,
    refusal,
    usage_hours,
)
from ..policy.inventory import Gpu
from . import hub_metrics
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

    @property
    def budget(self) -> Budget:
        return self.settings.budget_of(self.user_groups)

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
        budget = self.budget
        used, resets_at = await self.hours_used()
        return left_text(used, budget, self.settings.budget_period, resets_at), exhausted(
            used, budget
        )

    async def refusal(self, gpus: int) -> str | None:
        """The sentence refusing a spawn of ``gpus`` GPUs on a spent budget, or None."""
        self.used_at_spawn = None
        budget = self.budget
        if gpus == 0 or not budget.limited:
            return None
        used, resets_at = await self.hours_used()
        self.used_at_spawn = used
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

    def deadline_env(self, gpus: Sequence[Gpu]) -> dict[str, str]:
        """GPUSPAWNER_GPU_DEADLINE(_REASON) for a server starting with ``gpus`` (empty: none)."""
        if not gpus:
            return {}
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
            max_age_seconds=settings.gpu_max_age,
        )
        if deadline is None:
            return {}
        return {
            "GPUSPAWNER_GPU_DEADLINE": deadline.at.astimezone(timezone.utc).isoformat(
                timespec="seconds"
            ),
            "GPUSPAWNER_GPU_DEADLINE_REASON": deadline.reason,
        }

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
