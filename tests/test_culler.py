"""GPU-idle culling policy (pure) and the file utilisation source."""

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuspawner.usage.culler import (
    FileUtilisation,
    IdleTracker,
    NvmlUtilisation,
    utilisation_source,
)

T0 = datetime(2026, 11, 24, 9, tzinfo=timezone.utc)
MINUTE = timedelta(minutes=1)


def tracker():
    return IdleTracker(threshold=5.0, timeout=30 * MINUTE)


def test_idle_for_the_timeout_is_due_and_not_before():
    t = tracker()
    t.observe(("ann", ""), {"GPU-a": 0.0}, T0)
    t.observe(("ann", ""), {"GPU-a": 4.9}, T0 + 29 * MINUTE)
    assert t.due(T0 + 29 * MINUTE) == []
    assert t.due(T0 + 30 * MINUTE) == [("ann", "")]


@pytest.mark.parametrize(
    "readings",
    [
        {"GPU-a": 90.0},  # a training run with its browser tab closed
        {"GPU-a": 0.0, "GPU-b": 60.0},  # one busy GPU keeps the server
        {"GPU-a": None},  # unknown (MIG, NVML error): counts as busy
        {"GPU-a": 5.0},  # the threshold itself is busy
        {},  # no GPU: the normal idle culler's business
    ],
)
def test_busy_or_unknown_resets_the_clock(readings):
    t = tracker()
    t.observe("s", {"GPU-a": 0.0}, T0)
    t.observe("s", readings, T0 + 20 * MINUTE)
    t.observe("s", {"GPU-a": 0.0}, T0 + 25 * MINUTE)
    assert t.due(T0 + 50 * MINUTE) == []
    assert t.due(T0 + 55 * MINUTE) == ["s"]


def test_servers_that_stopped_are_forgotten():
    t = tracker()
    t.observe("a", {"GPU-a": 0.0}, T0)
    t.observe("b", {"GPU-b": 0.0}, T0)
    t.keep_only({"b"})
    assert t.due(T0 + 60 * MINUTE) == ["b"]


@given(
    st.lists(st.tuples(st.integers(0, 120), st.one_of(st.none(), st.floats(0, 100))), max_size=40)
)
@settings(max_examples=200, deadline=None)
def test_a_server_is_never_due_within_the_timeout_of_a_busy_or_unknown_sample(samples):
    t = tracker()
    last_busy = None
    now = T0
    for minutes, value in sorted(samples, key=lambda pair: pair[0]):
        now = T0 + minutes * MINUTE
        t.observe("s", {"GPU-a": value}, now)
        if value is None or value >= 5.0:
            last_busy = now
        if "s" in t.due(now) and last_busy is not None:
            assert now - last_busy >= 30 * MINUTE


def test_file_source(tmp_path):
    path = tmp_path / "u.json"
    path.write_text(json.dumps({"GPU-a": 12, "GPU-b": "high", "GPU-c": True}))
    assert FileUtilisation(str(path)).sample(["GPU-a", "GPU-b", "GPU-c", "GPU-d"]) == {
        "GPU-a": 12.0,
        "GPU-b": None,
        "GPU-c": None,
        "GPU-d": None,
    }
    path.write_text("not json")
    assert FileUtilisation(str(path)).sample(["GPU-a"]) == {"GPU-a": None}
    assert FileUtilisation(str(tmp_path / "missing.json")).sample(["GPU-a"]) == {"GPU-a": None}


def test_source_spec():
    assert isinstance(utilisation_source("nvml"), NvmlUtilisation)
    assert utilisation_source("file:/tmp/x.json").path.name == "x.json"
    with pytest.raises(ValueError, match="'nvml' or 'file:/path'"):
        utilisation_source("prometheus")
