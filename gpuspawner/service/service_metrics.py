"""The admin service's Prometheus metrics, on a registry of its own.

Served at ``/services/<name>/metrics``: GPU-hours used and budgeted per group, the
utilisation of held GPUs, GPUs held by type and the servers the service stopped. The hub
process's own metrics are in :mod:`gpuspawner.usage.hub_metrics`.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge


class ServiceMetrics:
    """The admin service's gauges, on a registry of its own."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.budget_used = Gauge(
            "gpuspawner_budget_used_gpu_hours",
            "Weighted GPU-hours used in the current budget period, by accounting group",
            ["group"],
            registry=self.registry,
        )
        self.budget_limit = Gauge(
            "gpuspawner_budget_limit_gpu_hours",
            "Sum of the GPU-hour budgets of the group's users who have used GPUs this period",
            ["group"],
            registry=self.registry,
        )
        self.utilisation = Gauge(
            "gpuspawner_gpu_utilisation_percent",
            "GPU utilisation of held GPUs, as last sampled",
            ["gpu_uuid", "user", "server"],
            registry=self.registry,
        )
        self.held = Gauge(
            "gpuspawner_gpus_held",
            "GPUs held by running servers, by GPU type",
            ["gpu_type"],
            registry=self.registry,
        )
        self.culls = Counter(
            "gpuspawner_servers_stopped",
            "GPU servers the service stopped, by reason (gpu-idle, budget-spent, max-age)",
            ["reason"],
            registry=self.registry,
        )
