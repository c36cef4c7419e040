"""The usage ledger and GPU-hour budgets on every backend's spawner.

:class:`UsageMixin` is part of ``GPUSpawnerMixin``: it overrides the shared base's
hooks to record GPU intervals in the ledger, to refuse a GPU spawn on a spent budget,
to show the budget left in the spawn form, and to publish the hub's GPU metrics. The
settings enforced while servers run (grace after a spent budget, maximum age, GPU-idle
culling) live here too, so an admin configures them in one place; the admin service
(:mod:`gpuspawner.service`) reads them from the spawner and acts on them.
"""

import asyncio
from datetime import datetime, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from traitlets import Dict, Enum, Float, Int, TraitError, Unicode, Union, validate
from traitlets.config import LoggingConfigurable

from ..errors import ConfigError
from ..policy.budget import (
    PERIODS,
    WEEKDAYS,
    Budget,
    ResetSchedule,
    accounting_group,
    budget_for,
    check_budgets,
    check_weights,
    exhausted,
    gpu_deadline,
    gpu_weight,
    left_text,
    parse_reset_time,
    period_bounds,
    refusal,
    usage_hours,
)
from . import hub_metrics as metrics
from .ledger import Ledger, now_utc


class UsageMixin(LoggingConfigurable):
    """GPU-hour budgets, the usage ledger and the knobs the admin service enforces."""

    usage_db_url = Unicode(
        "sqlite:///gpuspawner-usage.sqlite",
        help="""SQLAlchemy URL of the usage ledger (every interval a server held a GPU).

        sqlite (a file next to the hub's database, relative to its working directory)
        by default; use PostgreSQL in production, e.g.
        ``postgresql://gpuspawner:secret@db/gpuspawner``. The schema is created and
        upgraded on start. The admin service must be able to reach the same database.
        """,
    ).tag(config=True)

    gpu_hour_budget = Float(
        None,
        allow_none=True,
        help="""GPU-hours a user may use per budget period (None: no budget).

        Overridden per group by ``gpu_hour_budget_groups``. A spawn asking for GPUs is
        refused once the budget is spent; a server with 0 GPUs never is.
        """,
    ).tag(config=True)

    gpu_hour_budget_groups = Dict(
        key_trait=Unicode(),
        value_trait=Union([Float(), Int()], allow_none=True),
        help="""Per-group GPU-hour budgets, e.g. {"students": 10, "staff": None}.

        A user in several listed groups gets the most generous (None, no budget, beats
        any number); a user in none gets ``gpu_hour_budget``.
        """,
    ).tag(config=True)

    budget_period = Enum(
        PERIODS,
        "week",
        help="The budget period: 'day', 'week' or 'month'. Usage counts from the period's start.",
    ).tag(config=True)

    budget_reset_time = Unicode(
        "00:00",
        help="Time of day (HH:MM, in budget_timezone) at which a new budget period starts.",
    ).tag(config=True)

    budget_reset_weekday = Enum(
        WEEKDAYS,
        "monday",
        help="Day a weekly budget period starts (budget_period = 'week').",
    ).tag(config=True)

    budget_reset_day = Int(
        1,
        help="Day of the month a monthly budget period starts (1-31, capped at the month's last day).",
    ).tag(config=True)

    budget_timezone = Unicode(
        "UTC",
        help="IANA time zone of budget_reset_time, e.g. 'Europe/Berlin'.",
    ).tag(config=True)

    gpu_hour_weights = Dict(
        key_trait=Unicode(),
        value_trait=Float(),
        help="""Cost of one hour of a GPU type, matched in the GPU's name, e.g.
        {"A100": 2.0, "T4": 0.5}: an hour on an A100 uses 2 GPU-hours of a budget.
        The longest matching key wins; a GPU matching none costs 1.
        """,
    ).tag(config=True)

    budget_grace_period = Float(
        600,
        help="""Seconds a running GPU server may go on after its user's budget is spent.

        The admin service warns (hub log, ledger notice, dashboard) when the budget is
        spent and stops the user's GPU servers after this grace; workspaces are untouched.
        """,
    ).tag(config=True)

    gpu_max_age = Float(
        0,
        help="""Seconds after which the admin service stops a server holding GPUs,
        however busy (e.g. 8 * 3600). 0: no maximum age.""",
    ).tag(config=True)

    gpu_idle_timeout = Float(
        0,
        help="""Seconds a server's GPUs may stay idle (utilisation below
        gpu_idle_threshold on every GPU it holds) before the admin service stops it.
        0: no GPU-idle culling. Servers without GPUs are left to the normal idle culler;
        a server whose GPU is busy is never culled, even with its browser tab closed.
        """,
    ).tag(config=True)

    gpu_idle_threshold = Float(
        5.0,
        help="GPU utilisation (percent) below which a GPU counts as idle.",
    ).tag(config=True)

    gpu_utilisation_source = Unicode(
        "nvml",
        help="""Where the admin service reads GPU utilisation for culling:
        "nvml" (the GPUs of the host it runs on: run it on the Docker host) or
        "file:/path/to/utilisation.json" (a JSON object {"GPU-…": percent}, written by
        an exporter you run). A GPU whose utilisation is unknown counts as busy.
        """,
    ).tag(config=True)

    @validate("gpu_hour_weights")
    def _validate_weights(self, proposal):
        try:
            check_weights(proposal.value)
        except ConfigError as e:
            raise TraitError(str(e)) from None
        return proposal.value

    @validate("budget_reset_day")
    def _validate_reset_day(self, proposal):
        if not 1 <= proposal.value <= 31:
            raise TraitError("budget_reset_day must be from 1 to 31, not %d." % proposal.value)
        return proposal.value

    def check_config(self) -> None:
        super().check_config()
        check_budgets(self.gpu_hour_budget, self.gpu_hour_budget_groups)
        self.reset_schedule  # noqa: B018 (raises ConfigError on a bad time or zone)

    # --- policy inputs ---

    @property
    def reset_schedule(self) -> ResetSchedule:
        try:
            tz = ZoneInfo(self.budget_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError("budget_timezone %r is not an IANA time zone." % self.budget_timezone) from None
        return ResetSchedule(
            period=self.budget_period,
            at=parse_reset_time(self.budget_reset_time),
            weekday=WEEKDAYS.index(self.budget_reset_weekday),
            day=self.budget_reset_day,
            tz=tz,
        )

    @property
    def gpu_budget(self) -> Budget:
        return budget_for(self.user_groups, self.gpu_hour_budget, self.gpu_hour_budget_groups)

    @property
    def usage_group(self) -> str:
        return accounting_group(self.user_groups, self.gpu_hour_budget_groups, self.gpu_quota_groups)

    # --- the ledger, shared by every spawner of this hub process ---

    _ledgers: dict[str, Ledger] = {}

    @property
    def ledger(self) -> Ledger:
        ledgers = UsageMixin._ledgers
        if self.usage_db_url not in ledgers:
            ledgers[self.usage_db_url] = Ledger(self.usage_db_url)
        return ledgers[self.usage_db_url]

    async def gpu_hours_used(self, now: datetime | None = None) -> tuple[float, datetime]:
        """This user's weighted GPU-hours in the current period, and when the period ends."""
        now = now or now_utc()
        start, end = period_bounds(now, self.reset_schedule)
        intervals = await asyncio.to_thread(self.ledger.intervals, start, end, self.user.name)
        return usage_hours(intervals, start, end, now, self.gpu_hour_weights), end

    async def gpu_budget_status(self) -> tuple[str | None, bool]:
        """The spawn form's budget sentence and whether the budget is spent (None: no budget at all)."""
        budget = self.gpu_budget
        if not budget.limited and self.gpu_hour_budget is None and not self.gpu_hour_budget_groups:
            return None, False
        used, resets_at = await self.gpu_hours_used()
        return left_text(used, budget, self.budget_period, resets_at), exhausted(used, budget)

    # --- the shared base's hooks ---

    async def check_spawn_allowed(self, choice) -> None:
        await super().check_spawn_allowed(choice)
        self._budget_used_at_spawn = None
        budget = self.gpu_budget
        if choice.gpus == 0 or not budget.limited:
            return
        used, resets_at = await self.gpu_hours_used()
        self._budget_used_at_spawn = used
        sentence = refusal(used, budget, choice.gpus, self.budget_period, resets_at)
        if sentence is not None:
            from ..lifecycle.refusal import SpawnRefused

            self.log.info("Refusing %s: GPU-hour budget spent (%.3f of %s)", self._log_name, used, budget.hours)
            raise SpawnRefused(sentence, reason="budget", status_code=403)

    # --- what the container is told about its deadline ---

    _budget_used_at_spawn: float | None = None

    def _gpus_for_env(self):
        """The GPUs this server is being started with (names give their weights)."""
        held = getattr(self, "held_gpus", None)  # a backend that knows them itself (Kubernetes)
        if callable(held):
            return held()
        pool = getattr(self, "pool", None)
        uuids = getattr(self, "gpu_uuids", ())
        return pool.gpus(uuids) if pool is not None else ()

    def get_env(self):
        env = super().get_env()
        gpus = self._gpus_for_env()
        if not gpus:
            return env
        budget = self.gpu_budget
        used = self._budget_used_at_spawn
        if used is None:
            budget = Budget(None, budget.source)  # not checked at this spawn: the max age only
        now = now_utc()
        deadline = gpu_deadline(
            now=now,
            started=now,
            used=used or 0.0,
            budget=budget,
            rate=sum(gpu_weight(gpu.name, self.gpu_hour_weights) for gpu in gpus),
            schedule=self.reset_schedule,
            grace_seconds=self.budget_grace_period,
            max_age_seconds=self.gpu_max_age,
        )
        if deadline is not None:
            env["GPUSPAWNER_GPU_DEADLINE"] = deadline.at.astimezone(timezone.utc).isoformat(timespec="seconds")
            env["GPUSPAWNER_GPU_DEADLINE_REASON"] = deadline.reason
        return env

    async def on_gpus_held(self, gpus) -> None:
        await super().on_gpus_held(gpus)
        if not gpus:
            return
        opened = await asyncio.to_thread(self.ledger.open, self.user.name, self.server_name, gpus, now_utc())
        self.log.info("Ledger: %d interval(s) opened for %s", opened, self._log_name)
        metrics.count_allocation(self.usage_group, len(gpus))
        self._publish_gpu_counts()

    async def on_gpus_released(self, uuids) -> None:
        await super().on_gpus_released(uuids)
        closed = await asyncio.to_thread(self.ledger.close, self.user.name, self.server_name, uuids, now_utc())
        self.log.info("Ledger: %d interval(s) closed for %s", closed, self._log_name)
        self._publish_gpu_counts()

    async def on_holdings_rebuilt(self, holdings) -> None:
        await super().on_holdings_rebuilt(holdings)
        names = {gpu.uuid: gpu.name for gpu in self._usage_inventory()}
        closed, opened = await asyncio.to_thread(self.ledger.reconcile, holdings, now_utc(), names)
        if closed or opened:
            self.log.info("Ledger reconciled with the engine: %d interval(s) closed, %d opened", closed, opened)
        metrics.set_gpu_counts(self._usage_inventory(), holdings)

    def _usage_inventory(self):
        pool = getattr(self, "pool", None)
        return pool.inventory if pool is not None else ()

    def _publish_gpu_counts(self) -> None:
        pool = getattr(self, "pool", None)
        if pool is not None:
            metrics.set_gpu_counts(pool.inventory, pool.holdings)
