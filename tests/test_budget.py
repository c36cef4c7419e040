"""GPU-hour budget policy (pure): periods and resets, budget resolution, weighting, usage,
refusals."""

import logging
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuspawner.errors import ConfigError
from gpuspawner.policy.budget import (
    NO_GROUP,
    Budget,
    Deadline,
    Interval,
    ResetSchedule,
    accounting_group,
    budget_exhausted_at,
    budget_for,
    check_budgets,
    check_weights,
    duration_text,
    exhausted,
    gpu_deadline,
    gpu_weight,
    hours_text,
    left_text,
    parse_reset_time,
    period_bounds,
    refusal,
    usage_by_day,
    usage_hours,
)
from gpuspawner.policy.inventory import Gpu

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def at(*args, tz=UTC):
    return datetime(*args, tzinfo=tz)


# --- periods ---

PERIOD_CASES = [
    # (schedule, now, expected start, expected end)
    (ResetSchedule("day"), at(2026, 11, 24, 13, 5), at(2026, 11, 24), at(2026, 11, 25)),
    (
        ResetSchedule("day", at=time(6, 0)),
        at(2026, 11, 24, 5, 59),
        at(2026, 11, 23, 6),
        at(2026, 11, 24, 6),
    ),
    (
        ResetSchedule("day", at=time(6, 0)),
        at(2026, 11, 24, 6, 0),
        at(2026, 11, 24, 6),
        at(2026, 11, 25, 6),
    ),
    # 24 Nov 2026 is a Tuesday: the week started on Monday the 23rd
    (ResetSchedule("week"), at(2026, 11, 24, 12), at(2026, 11, 23), at(2026, 11, 30)),
    (ResetSchedule("week"), at(2026, 11, 23, 0, 0), at(2026, 11, 23), at(2026, 11, 30)),
    (ResetSchedule("week"), at(2026, 11, 22, 23, 59), at(2026, 11, 16), at(2026, 11, 23)),
    (
        ResetSchedule("week", weekday=4, at=time(18, 0)),
        at(2026, 11, 27, 17),
        at(2026, 11, 20, 18),
        at(2026, 11, 27, 18),
    ),
    (ResetSchedule("month"), at(2026, 11, 24), at(2026, 11, 1), at(2026, 12, 1)),
    (ResetSchedule("month"), at(2026, 12, 31, 23), at(2026, 12, 1), at(2027, 1, 1)),
    (ResetSchedule("month", day=15), at(2026, 1, 10), at(2025, 12, 15), at(2026, 1, 15)),
    # day 31 is capped at the month's last day
    (ResetSchedule("month", day=31), at(2026, 2, 28, 1), at(2026, 2, 28), at(2026, 3, 31)),
    (ResetSchedule("month", day=31), at(2026, 2, 27), at(2026, 1, 31), at(2026, 2, 28)),
    # a zone with daylight saving: bounds are local midnights
    (
        ResetSchedule("week", tz=BERLIN),
        at(2026, 10, 28, 12),
        at(2026, 10, 26, tz=BERLIN),
        at(2026, 11, 2, tz=BERLIN),
    ),
    (
        ResetSchedule("week", tz=BERLIN),
        at(2026, 11, 22, 23, 30),
        at(2026, 11, 23, tz=BERLIN),
        at(2026, 11, 30, tz=BERLIN),
    ),
]


@pytest.mark.parametrize("schedule,now,start,end", PERIOD_CASES)
def test_period_bounds(schedule, now, start, end):
    assert period_bounds(now, schedule) == (start, end)


@given(
    now=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    period=st.sampled_from(["day", "week", "month"]),
    hour=st.integers(0, 23),
    weekday=st.integers(0, 6),
    day=st.integers(1, 31),
    tz=st.sampled_from([UTC, BERLIN, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata")]),
)
@settings(max_examples=300, deadline=None)
def test_a_period_always_contains_now_and_the_next_one_follows_it(
    now, period, hour, weekday, day, tz
):
    schedule = ResetSchedule(period, at=time(hour, 0), weekday=weekday, day=day, tz=tz)
    start, end = period_bounds(now, schedule)
    assert start <= now < end
    assert timedelta(hours=20) <= end - start <= timedelta(days=32)
    assert period_bounds(end, schedule)[0] == end  # periods tile time: no gap, no overlap


def test_reset_time_parsing():
    assert parse_reset_time("06:30") == time(6, 30)
    for bad in ("6", "25:00", "noon", None):
        with pytest.raises(ConfigError, match="budget_reset_time must be HH:MM"):
            parse_reset_time(bad)


# --- which budget applies ---

BUDGET_CASES = [
    ([], 10, {}, Budget(10, "the default for every user")),
    ([], None, {"students": 10}, Budget(None, "the default for every user")),
    (["students"], None, {"students": 10}, Budget(10, "group 'students'")),
    (["students", "ta"], 10, {"students": 10, "ta": 20}, Budget(20, "group 'ta'")),
    (["staff", "students"], 10, {"students": 10, "staff": None}, Budget(None, "group 'staff'")),
    (
        ["probation"],
        10,
        {"probation": 0},
        Budget(0, "group 'probation'"),
    ),  # lower than the default still applies
    (["other"], 5, {"students": 10}, Budget(5, "the default for every user")),
]


@pytest.mark.parametrize("groups,default,group_budgets,expected", BUDGET_CASES)
def test_budget_for(groups, default, group_budgets, expected):
    assert budget_for(groups, default, group_budgets) == expected


def test_accounting_group_prefers_budget_groups_then_quota_groups():
    assert accounting_group(["b", "students"], {"students": 10}, {"b": 2}) == "students"
    assert accounting_group(["b", "z"], {"students": 10}, {"b": 2}) == "b"
    assert accounting_group(["x"], {"students": 10}, {"b": 2}) == NO_GROUP


def test_budget_and_weight_settings_are_checked():
    check_budgets(None, {"a": 1.5, "b": None, "c": 0})
    for default, groups in [(-1, {}), (True, {}), (None, {"a": "10"}), (None, {"a": float("nan")})]:
        with pytest.raises(ConfigError, match="number of GPU-hours"):
            check_budgets(default, groups)
    check_weights({"A100": 2, "T4": 0.5})
    with pytest.raises(ConfigError, match=r"gpu_hour_weights\['A100'\]"):
        check_weights({"A100": -2})


# --- weighting and usage ---

WEIGHTS = {"A100": 2.0, "A100-SXM4-80GB": 3.0, "T4": 0.5}


@pytest.mark.parametrize(
    "name,weight",
    [
        ("NVIDIA A100-SXM4-80GB", 3.0),  # the longest matching key wins
        ("NVIDIA A100-PCIE-40GB", 2.0),
        ("Tesla T4", 0.5),
        ("tesla t4", 0.5),
        ("NVIDIA H100 80GB HBM3", 1.0),
        ("GPU", 1.0),
    ],
)
def test_gpu_weight(name, weight):
    assert gpu_weight(name, WEIGHTS) == weight


def iv(start, end, name="NVIDIA A100-PCIE-40GB", user="ann"):
    return Interval(user, "", "GPU-1", name, start, end)


def test_usage_is_clipped_to_the_period_and_weighted():
    start, end = at(2026, 11, 23), at(2026, 11, 30)
    now = at(2026, 11, 25, 12)
    intervals = [
        iv(at(2026, 11, 22, 22), at(2026, 11, 23, 2)),  # 2 h in the period (2 before), A100: x2
        iv(at(2026, 11, 24, 10), at(2026, 11, 24, 11), "Tesla T4"),  # 1 h x 0.5
        iv(at(2026, 11, 25, 11), None, "NVIDIA H100"),  # open: 1 h up to now
        iv(at(2026, 11, 10), at(2026, 11, 11)),  # before the period
    ]
    assert usage_hours(intervals, start, end, now, WEIGHTS) == pytest.approx(4 + 0.5 + 1)
    assert usage_hours(intervals, start, end, now, {}) == pytest.approx(2 + 1 + 1)


def test_usage_by_day_for_the_plot():
    days = [at(2026, 11, 23), at(2026, 11, 24)]
    intervals = [iv(at(2026, 11, 23, 23), at(2026, 11, 24, 1), "GPU")]
    assert usage_by_day(intervals, days, at(2026, 11, 25), {}) == [
        pytest.approx(1),
        pytest.approx(1),
    ]


intervals_strategy = st.lists(
    st.tuples(
        st.datetimes(
            min_value=datetime(2026, 1, 1), max_value=datetime(2026, 3, 1), timezones=st.just(UTC)
        ),
        st.one_of(
            st.none(), st.timedeltas(min_value=timedelta(hours=-2), max_value=timedelta(days=9))
        ),
        st.sampled_from(["NVIDIA A100-SXM4-80GB", "Tesla T4", "GPU"]),
    ),
    max_size=12,
)


@given(raw=intervals_strategy, window_days=st.integers(0, 40))
@settings(max_examples=300, deadline=None)
def test_usage_is_never_negative_and_never_more_than_the_weighted_time_held(raw, window_days):
    now = at(2026, 3, 10)
    intervals = [
        iv(start, None if length is None else start + length, name) for start, length, name in raw
    ]
    window_start = at(2026, 1, 15)
    window_end = window_start + timedelta(days=window_days)
    used = usage_hours(intervals, window_start, window_end, now, WEIGHTS)
    assert used >= 0
    ceiling = sum(
        max(((i.end or now) - i.start).total_seconds(), 0) / 3600 * gpu_weight(i.gpu_name, WEIGHTS)
        for i in intervals
    )
    assert used <= ceiling + 1e-9


# --- refusing at spawn ---

RESET = at(2026, 11, 30)


def test_a_spent_budget_refuses_with_used_limit_and_reset():
    sentence = refusal(10.25, Budget(10, "group 'students'"), 1, "week", RESET)
    assert sentence == (
        "Your GPU-hour budget is spent: you have used 10.2 GPU-hours of 10 GPU-hours this week"
        " (group 'students'). It resets on Monday 30 November 2026 at 00:00 UTC."
        " Until then, start servers with 0 GPUs."
    )


def test_a_server_without_gpu_is_never_refused_and_no_budget_never_refuses():
    assert refusal(99, Budget(10, "x"), 0, "week", RESET) is None
    assert refusal(99, Budget(None, "group 'staff'"), 4, "week", RESET) is None
    assert refusal(9.99, Budget(10, "x"), 4, "day", RESET) is None
    assert refusal(0, Budget(0, "group 'probation'"), 1, "day", RESET) is not None


def test_form_text():
    assert left_text(2.5, Budget(10, "group 'students'"), "week", RESET) == (
        "GPU-hours left this week: 7.5 of 10 GPU-hours (group 'students'); resets on Monday 30"
        " November 2026 at 00:00 UTC."
    )
    assert left_text(12, Budget(10, "x"), "day", RESET).startswith(
        "GPU-hours left today: 0 of 10 GPU-hours"
    )
    assert (
        left_text(12, Budget(None, "group 'staff'"), "day", RESET)
        == "GPU-hours: no budget limit (group 'staff')."
    )
    assert (
        hours_text(1) == "1 GPU-hour"
        and hours_text(0.04) == "0 GPU-hours"
        and hours_text(2.06) == "2.1 GPU-hours"
    )


@given(
    budget=st.one_of(st.none(), st.floats(0, 50)),
    spawns=st.lists(st.tuples(st.integers(0, 4), st.floats(0, 20)), max_size=30),
)
@settings(max_examples=300, deadline=None)
def test_no_gpu_spawn_is_allowed_once_the_budget_is_spent(budget, spawns):
    """A sequence of spawns, each running some hours: a GPU spawn starts only while used < limit."""
    used = 0.0
    limit = Budget(budget, "the default for every user")
    for gpus, hours in spawns:
        sentence = refusal(used, limit, gpus, "week", RESET)
        if gpus and budget is not None and used >= budget:
            assert sentence is not None and "budget is spent" in sentence
            continue
        assert sentence is None
        if gpus and budget is not None:
            assert used < budget  # every GPU spawn that starts, starts within budget
        used += gpus * hours
        assert used >= 0
        assert exhausted(used, limit) == (budget is not None and used >= budget)


# --- the deadline a GPU server is told at spawn ---

WEEK = ResetSchedule(period="week")  # Mondays 00:00 UTC
STUDENTS = Budget(10.0, "group 'students'")
NOON = at(2026, 11, 25, 12, 0)  # a Wednesday


def test_deadline_from_the_budget_and_the_grace():
    deadline = gpu_deadline(
        NOON,
        NOON,
        used=6.8,
        budget=STUDENTS,
        rate=1.0,
        schedule=WEEK,
        grace_seconds=600,
        max_age_seconds=0,
    )
    assert deadline.at == NOON + timedelta(hours=3.2, minutes=10)
    assert deadline.reason == (
        "GPU-hour budget: 3.2 of 10 GPU-hours left this week (group 'students');"
        " it resets on Monday 30 November 2026 at 00:00 UTC."
    )


def test_weighted_gpus_spend_faster():
    deadline = gpu_deadline(
        NOON,
        NOON,
        used=6.0,
        budget=STUDENTS,
        rate=4.0,
        schedule=WEEK,
        grace_seconds=0,
        max_age_seconds=0,
    )
    assert deadline.at == NOON + timedelta(hours=1)


def test_max_age_when_it_comes_first():
    deadline = gpu_deadline(
        NOON,
        NOON,
        used=0.0,
        budget=STUDENTS,
        rate=1.0,
        schedule=WEEK,
        grace_seconds=600,
        max_age_seconds=8 * 3600,
    )
    assert deadline == Deadline(NOON + timedelta(hours=8), "GPU servers stop after 8 h.")


def test_no_limit_no_deadline():
    unlimited = Budget(None, "group 'staff'")
    assert gpu_deadline(NOON, NOON, 3.0, unlimited, 1.0, WEEK, 600, 0) is None
    assert gpu_deadline(NOON, NOON, 3.0, STUDENTS, 0.0, WEEK, 600, 0) is None  # weight 0: free


def test_a_budget_outlasting_the_period_goes_on_in_the_next():
    sunday_night = at(2026, 11, 29, 23, 0)
    assert budget_exhausted_at(sunday_night, 9.0, 10.0, 1.0, WEEK) == at(
        2026, 11, 30, 0, 0
    ) + timedelta(hours=10)
    # a budget the server cannot spend within a period at this rate: never
    assert budget_exhausted_at(NOON, 0.0, 500.0, 1.0, WEEK) is None


@pytest.mark.parametrize(
    ("seconds", "text"), [(8 * 3600, "8 h"), (5400, "1.5 h"), (2700, "45 min")]
)
def test_duration_text(seconds, text):
    assert duration_text(seconds) == text


@settings(max_examples=300, deadline=None)
@given(
    now_offset=st.floats(min_value=0, max_value=60 * 24 * 3600),
    age=st.floats(min_value=0, max_value=48 * 3600),
    used=st.floats(min_value=0, max_value=50),
    hours=st.floats(min_value=0, max_value=40),
    rate=st.floats(min_value=0, max_value=16),
    grace=st.floats(min_value=0, max_value=3600),
    max_age=st.sampled_from([0, 600, 8 * 3600, 48 * 3600]),
    period=st.sampled_from(["day", "week", "month"]),
)
def test_deadline_properties(now_offset, age, used, hours, rate, grace, max_age, period):
    now = at(2026, 1, 1) + timedelta(seconds=now_offset)
    started = now - timedelta(seconds=age)
    schedule = ResetSchedule(period=period, tz=BERLIN)
    budget = Budget(hours, "group 'students'")
    deadline = gpu_deadline(now, started, used, budget, rate, schedule, grace, max_age)
    by_age = started + timedelta(seconds=max_age) if max_age else None
    if by_age is not None:
        assert deadline is not None and deadline.at <= by_age
    if used >= hours and rate > 0:
        expected = now + timedelta(seconds=grace)
        assert deadline.at == (min(expected, by_age) if by_age else expected)
    elif deadline is not None and (by_age is None or by_age >= now):
        assert deadline.at >= now  # budget left: never in the past


A100 = Gpu("GPU-a", "NVIDIA A100-SXM4-80GB")


def _accounting(**config):
    """The lifecycle's usage component for ann (group students), with these spawner settings."""
    from gpuspawner.usage.accounting import Accounting
    from gpuspawner.usage.settings import UsageSettings

    settings = UsageSettings(**config)
    return Accounting(settings, None, "ann", "", ("students",), logging.getLogger("test"))


def test_a_gpu_server_is_told_its_deadline():
    accounting = _accounting(
        gpu_hour_budget_groups={"students": 10},
        gpu_hour_weights={"A100": 2.0},
        budget_grace_period=600,
    )
    accounting.used_at_spawn = 6.0  # what refusal() found at the spawn
    before = datetime.now(UTC)
    env = accounting.deadline_env((A100,))
    deadline = datetime.fromisoformat(env["GPUSPAWNER_GPU_DEADLINE"])
    assert deadline.utcoffset() == timedelta(0)
    expected = before + timedelta(
        hours=2, minutes=10
    )  # 4 GPU-hours left at 2 per hour, then the grace
    assert expected - timedelta(seconds=2) <= deadline <= expected + timedelta(seconds=2)
    assert env["GPUSPAWNER_GPU_DEADLINE_REASON"].startswith(
        "GPU-hour budget: 4 of 10 GPU-hours left this week (group 'students')"
    )


def test_without_gpus_or_limits_the_server_is_told_no_deadline():
    accounting = _accounting(gpu_hour_budget_groups={"students": 10})
    accounting.used_at_spawn = 1.0
    assert accounting.deadline_env(()) == {}
    assert _accounting().deadline_env((A100,)) == {}  # no budget, no maximum age
    env = _accounting(gpu_max_age=8 * 3600).deadline_env((A100,))
    assert env["GPUSPAWNER_GPU_DEADLINE_REASON"] == "GPU servers stop after 8 h."
