"""What JupyterLab learns about the user's budget and the hub's GPU-idle cull from the
environment (the hub's only contract with the server), and what the snapshot says (pure)."""

from datetime import datetime, timezone

from gpuspawner.lab.sampler import GpuSampler
from gpuspawner.lab.visible import GpuEnvironment, budget_text, idle_state

BUDGET_ENV = {
    "GPUSPAWNER_BUDGET_HOURS": "10.0000",
    "GPUSPAWNER_BUDGET_USED_HOURS": "2.5000",
    "GPUSPAWNER_BUDGET_PERIOD": "week",
    "GPUSPAWNER_BUDGET_RESETS_AT": "2026-11-30T00:00:00+00:00",
    "GPUSPAWNER_BUDGET_READ_AT": "2026-11-26T12:00:00+00:00",
    "GPUSPAWNER_USAGE_URL": "/services/gpu-admin/users/ann",
}
IDLE_ENV = {
    "GPUSPAWNER_GPU_IDLE_TIMEOUT": "1800",
    "GPUSPAWNER_GPU_IDLE_THRESHOLD": "5",
    "GPUSPAWNER_GPU_IDLE_WARNING": "300",
}


def test_budget_at_start_and_the_usage_page():
    env = GpuEnvironment.from_environ(BUDGET_ENV)
    assert env.usage_url == "/services/gpu-admin/users/ann"
    assert env.budget_resets_at == datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert env.budget_json() == {
        "hours": 10.0, "used_hours": 2.5, "left_hours": 7.5, "period": "week",
        "resets_at": "2026-11-30T00:00:00+00:00", "read_at": "2026-11-26T12:00:00+00:00",
        "text": "7.5 of 10 GPU-hours left this week (at start)",
    }  # fmt: skip


def test_no_or_unreadable_budget_is_none():
    assert GpuEnvironment.from_environ({}).budget_json() is None
    bad = dict(BUDGET_ENV, GPUSPAWNER_BUDGET_HOURS="lots")
    assert GpuEnvironment.from_environ(bad).budget_json() is None
    assert GpuEnvironment.from_environ(dict(BUDGET_ENV, GPUSPAWNER_BUDGET_USED_HOURS="nan")
                                       ).budget_json() is None  # fmt: skip


def test_budget_text():
    assert budget_text(0, 10, "day") == "0 of 10 GPU-hours left today (at start)"
    assert budget_text(1.25, 2, "month") == "1.2 of 2 GPU-hours left this month (at start)"


def test_idle_state_warns_within_the_lead_time():
    env = GpuEnvironment.from_environ(IDLE_ENV)
    assert idle_state(env, None, 1000.0) is None  # in use
    early = idle_state(env, 1000.0, 1000.0 + 1400)
    assert early["stops_at"] == 2800.0 and early["near"] is False
    late = idle_state(env, 1000.0, 1000.0 + 1500)
    assert late["near"] is True and late["warning_s"] == 300 and late["threshold"] == 5
    assert idle_state(GpuEnvironment.from_environ({}), 1000.0, 5000.0) is None  # no culling
    never = GpuEnvironment.from_environ(dict(IDLE_ENV, GPUSPAWNER_GPU_IDLE_WARNING="0"))
    assert idle_state(never, 1000.0, 2799.0)["near"] is False


def snapshot(*utilisations):
    return {"timestamp": 0.0, "gpus": [{"utilization": None if u is None else {"gpu": u}}
                                       for u in utilisations]}  # fmt: skip


def test_idle_counts_from_when_the_gpus_were_last_used():
    sampler = GpuSampler(environ=IDLE_ENV)
    sampler._last_busy = 100.0  # the server started
    first = dict(snapshot(0, 3), timestamp=200.0)
    assert sampler._idle(first)["since"] == 100.0  # idle since the start, as far as we know
    assert sampler._idle(dict(snapshot(0, 40), timestamp=300.0)) is None  # one GPU busy
    assert sampler._idle(dict(snapshot(0, 0), timestamp=400.0))["since"] == 300.0
    # a utilisation NVML cannot give (MIG) counts as busy, as the hub's cull counts it
    assert sampler._idle(dict(snapshot(None), timestamp=500.0)) is None
    assert GpuSampler(environ={})._idle(first) is None
