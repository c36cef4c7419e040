"""The usage settings of every backend's spawner: ledger, GPU-hour budgets, culling.

:class:`UsageSettings` is part of ``GPUSpawnerMixin``, so an admin configures everything
once, on the spawner (``c.GPUDockerSpawner.gpu_hour_budget = 10``). The lifecycle records
and asks through :class:`gpuspawner.usage.accounting.Accounting`; the admin service
(:mod:`gpuspawner.service`) reads the settings enforced while servers run (grace after a
spent budget, maximum age, GPU-idle culling) from the same traits.
"""

from traitlets import Dict, Enum, Float, Int, List, TraitError, Unicode, Union, validate
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
    reset_schedule,
)
from ..policy.reservations import Reservation, parse_reservations


class UsageSettings(LoggingConfigurable):
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
        help="Day of the month a monthly budget period starts"
        " (1-31, capped at the month's last day).",
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

    gpu_idle_warning = Float(
        300,
        help="""Seconds before a GPU-idle cull (gpu_idle_timeout) at which JupyterLab warns
        the user that the server will stop unless the GPU is used (e.g. 300: 5 minutes).
        0: no warning. Servers learn it, with the timeout and threshold, from their
        environment (GPUSPAWNER_GPU_IDLE_*).""",
    ).tag(config=True)

    usage_service = Unicode(
        "",
        help="""Name of the hub service with each user's usage page (set by
        ``add_admin_service``). Servers then get GPUSPAWNER_USAGE_URL, the path of their
        user's page, which the JupyterLab GPU panel links to. Empty: no usage page.""",
    ).tag(config=True)

    gpu_utilisation_source = Unicode(
        "nvml",
        help="""Where the admin service reads GPU utilisation for culling:
        "nvml" (the GPUs of the host it runs on: run it on the Docker host),
        "file:/path/to/utilisation.json" (a JSON object {"GPU-…": percent}, written by
        an exporter you run) or "prometheus:http://prometheus.monitoring:9090" (DCGM
        exporter's DCGM_FI_DEV_GPU_UTIL from that Prometheus server, matched to servers by
        GPU UUID, or by pod and namespace on Kubernetes). A GPU whose utilisation is
        unknown counts as busy.
        """,
    ).tag(config=True)

    gpu_reservations = List(
        Dict(),
        help="""Class reservations: whole GPUs kept for one group in weekly windows, e.g.
        ``[{"group": "cs231n", "gpus": 4, "days": ["tuesday", "thursday"],
        "start": "14:00", "end": "16:00", "timezone": "Europe/Berlin"}]``.

        While a window is open, a user outside the group is refused (for capacity: the
        fair queue waits) when the grant would leave fewer free GPUs than the group still
        needs (``gpus`` less what its members hold). Members still count against their own
        quota and budget. Outside the windows these are ordinary GPUs. Where the engine
        picks the devices (Kubernetes) reservations are not enforced. See
        ``gpu_reservation_lead`` for servers running when a window opens.
        """,
    ).tag(config=True)

    gpu_reservation_lead = Float(
        3600,
        help="""Seconds before a class reservation's window in which a whole-GPU server of
        a user outside the group is told the window's start as its deadline (JupyterLab's
        banner) and stopped then by the admin service; its workspace is kept. Servers
        started earlier run on. 0: never stop for a reservation.""",
    ).tag(config=True)

    @validate("gpu_reservations")
    def _validate_reservations(self, proposal):
        try:
            parse_reservations(proposal.value)
        except ConfigError as e:
            raise TraitError(str(e)) from None
        return proposal.value

    @property
    def reservations(self) -> tuple[Reservation, ...]:
        """The parsed ``gpu_reservations``."""
        return parse_reservations(self.gpu_reservations)

    @validate("gpu_utilisation_source")
    def _validate_utilisation_source(self, proposal):
        from .culler import check_utilisation_source

        try:
            check_utilisation_source(proposal.value)
        except ValueError as e:
            raise TraitError(str(e)) from None
        return proposal.value

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

    def check_usage_config(self) -> None:
        """Raise ConfigError for budgets or a reset schedule the hub cannot use."""
        check_budgets(self.gpu_hour_budget, self.gpu_hour_budget_groups)
        self.reset_schedule  # noqa: B018 (raises ConfigError on a bad time or zone)
        parse_reservations(self.gpu_reservations)

    @property
    def reset_schedule(self) -> ResetSchedule:
        return reset_schedule(
            self.budget_period,
            self.budget_reset_time,
            self.budget_reset_weekday,
            self.budget_reset_day,
            self.budget_timezone,
        )

    def budget_of(self, user_groups) -> Budget:
        """The GPU-hour budget of a member of ``user_groups``."""
        return budget_for(user_groups, self.gpu_hour_budget, self.gpu_hour_budget_groups)

    def usage_group_of(self, user_groups) -> str:
        """The group a member of ``user_groups`` is reported under."""
        return accounting_group(user_groups, self.gpu_hour_budget_groups, self.gpu_quota_groups)

    @property
    def any_budget(self) -> bool:
        """Whether any user has a GPU-hour budget (else the form says nothing about budgets)."""
        return self.gpu_hour_budget is not None or bool(self.gpu_hour_budget_groups)
