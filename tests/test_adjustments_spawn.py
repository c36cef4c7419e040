"""Admin adjustments take effect at once: in the spawn lifecycle's budget refusal, quota and
environment (Accounting), and in the admin service's enforcement pass (Watcher), against a
real sqlite ledger."""

import logging
from datetime import timedelta

from gpuspawner.policy.budget import period_bounds
from gpuspawner.policy.inventory import Gpu
from gpuspawner.policy.quota import GpuLimit
from gpuspawner.service import AdminSettings
from gpuspawner.service.engine import EngineView
from gpuspawner.service.service_metrics import ServiceMetrics
from gpuspawner.service.watcher import Watcher
from gpuspawner.usage.accounting import Accounting
from gpuspawner.usage.adjustments import adjustments_of
from gpuspawner.usage.ledger import Ledger, now_utc
from gpuspawner.usage.settings import UsageSettings

T4 = Gpu("GPU-t", "Tesla T4")


def used_ledger(tmp_path, hours: float) -> Ledger:
    """A ledger where ann used ``hours`` GPU-hours this period (a closed interval)."""
    ledger = Ledger("sqlite:///%s" % (tmp_path / "usage.sqlite"))
    now = now_utc()
    start, _ = period_bounds(now, UsageSettings().reset_schedule)
    begin = max(start, now - timedelta(hours=hours + 0.01))
    ledger.open("ann", "old", [T4], begin)
    ledger.close("ann", "old", ["GPU-t"], begin + timedelta(hours=hours))
    return ledger


async def test_a_top_up_or_budget_counts_at_the_next_spawn(tmp_path):
    ledger = used_ledger(tmp_path, 0.2)
    settings = UsageSettings(gpu_hour_budget_groups={"students": 0.1})
    store = adjustments_of(ledger)
    spawn = Accounting(settings, ledger, "ann", "", ("students",), logging.getLogger("test"))
    assert (await spawn.refusal(1)).startswith("Your GPU-hour budget is spent")
    start, _ = period_bounds(now_utc(), settings.reset_schedule)
    store.add("ann", "top-up", 5, "deadline", "boss", now_utc(), start)
    assert await spawn.refusal(1) is None
    env = spawn.deadline_env((T4,))
    assert float(env["GPUSPAWNER_BUDGET_HOURS"]) == 5.1
    assert 0.19 < float(env["GPUSPAWNER_BUDGET_USED_HOURS"]) < 0.21
    assert "5 GPU-hours top-up" in env["GPUSPAWNER_GPU_DEADLINE_REASON"]
    # an override of the budget itself replaces the groups' (the top-up still adds)
    store.add("ann", "budget", 0, "pause", "boss", now_utc() + timedelta(seconds=1))
    assert await spawn.refusal(1) is None
    assert spawn.budget.hours == 5 and spawn.budget.source == (
        "set for you by boss + 5 GPU-hours top-up"
    )
    assert await spawn.refusal(0) is None  # a CPU-only server always starts
    ledger.dispose()


async def test_a_quota_override_is_read_at_the_spawn(tmp_path):
    ledger = used_ledger(tmp_path, 0.01)
    spawn = Accounting(UsageSettings(), ledger, "ann", "", (), logging.getLogger("test"))
    groups = GpuLimit(1, "the default for every user")
    assert spawn.quota(groups) is groups  # nothing read yet
    adjustments_of(ledger).add("ann", "quota", 3, "thesis", "boss", now_utc())
    assert spawn.quota(groups) is groups  # read at the spawn, not in between
    await spawn.refusal(1)
    assert spawn.quota(groups) == GpuLimit(3, "set for you by boss")
    adjustments_of(ledger).add("ann", "quota", None, "done", "boss", now_utc() + timedelta(1))
    await spawn.refusal(1)
    assert spawn.quota(groups) is groups
    ledger.dispose()


class Hub:
    """ann's one ready server, as the watcher reads the hub; stops are recorded."""

    def __init__(self):
        self.stopped = []

    async def users(self):
        return [{"name": "ann", "groups": ["students"], "servers": {"": {"ready": True}}}]

    async def stop_server(self, user, server):
        self.stopped.append((user, server))


async def test_the_watcher_warns_again_after_a_new_budget_and_uses_a_top_up_at_once(
    tmp_path,
):
    ledger = used_ledger(tmp_path, 0.2)
    ledger.open("ann", "", [Gpu("GPU-u", "Tesla T4")], now_utc())  # running now
    (tmp_path / "util.json").write_text("{}")
    settings = AdminSettings(
        usage_db_url=ledger.url, gpu_hour_budget_groups={"students": 0.1},
        budget_grace_period=0, gpu_utilisation_source="file:%s" % (tmp_path / "util.json"),
    )  # fmt: skip
    hub = Hub()
    watcher = Watcher(settings, ledger, hub, ServiceMetrics(), EngineView(None))
    await watcher.check()
    assert [n["kind"] for n in ledger.notices()] == ["budget-warning"] and hub.stopped == []
    # a budget set later, still spent: the old warning was about the old budget, so the
    # service warns again rather than stop at once
    store = adjustments_of(ledger)
    store.add("ann", "budget", 0.15, "a bit more", "boss", now_utc())
    await watcher.check()
    assert [n["kind"] for n in ledger.notices()] == ["budget-warning", "budget-warning"]
    assert hub.stopped == []
    # a top-up: the budget is no longer spent, nothing stops (the grace is 0)
    start, _ = period_bounds(now_utc(), settings.reset_schedule)
    store.add("ann", "top-up", 5, "deadline", "boss", now_utc(), start)
    await watcher.check()
    await watcher.check()
    assert hub.stopped == []
    assert watcher.metrics.budget_limit.labels(group="students")._value.get() == 5.15
    ledger.dispose()


def test_the_servers_own_idle_timeout_reaches_its_environment():
    accounting = Accounting(UsageSettings(gpu_idle_timeout=3600, gpu_idle_warning=120), None,
                            "ann", "", (), logging.getLogger("test"))  # fmt: skip
    env = accounting.deadline_env((T4,), idle_timeout=900)
    assert env["GPUSPAWNER_GPU_IDLE_TIMEOUT"] == "900"
    assert env["GPUSPAWNER_GPU_IDLE_WARNING"] == "120"
    assert accounting.deadline_env((T4,))["GPUSPAWNER_GPU_IDLE_TIMEOUT"] == "3600"
    assert "GPUSPAWNER_GPU_IDLE_TIMEOUT" not in accounting.deadline_env(())  # no GPU: no cull
