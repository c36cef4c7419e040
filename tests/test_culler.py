"""GPU-idle culling policy (pure), the file and NVML utilisation sources, and what they log."""

import json
import logging
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
    prometheus = utilisation_source("prometheus:http://prometheus.monitoring:9090/", "jhub")
    assert (prometheus.url, prometheus.namespace) == ("http://prometheus.monitoring:9090", "jhub")
    for spec in ("prometheus", "file:", "dcgm"):
        with pytest.raises(ValueError, match="'nvml', 'file:/path' or 'prometheus:<url>'"):
            utilisation_source(spec)


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_gpu_without_a_reading_is_warned_about_once_then_at_debug(tmp_path, caplog):
    path = tmp_path / "u.json"
    path.write_text(json.dumps({"GPU-a": 50}))
    source = FileUtilisation(str(path))
    with caplog.at_level(logging.DEBUG, logger="gpuspawner.usage"):
        for _ in range(4):  # the service samples every 30 s
            assert source.sample(["GPU-a", "GPU-b"]) == {"GPU-a": 50.0, "GPU-b": None}
    assert warnings_of(caplog) == [
        "No GPU utilisation for GPU-b (not a number in %s): it counts as busy" % path
    ]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 3
    # known again, then lost again: that is news, said once more
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gpuspawner.usage"):
        path.write_text(json.dumps({"GPU-a": 50, "GPU-b": 1}))
        source.sample(["GPU-b"])
        path.write_text(json.dumps({"GPU-a": 50}))
        source.sample(["GPU-b"])
        source.sample(["GPU-b"])
    assert len(warnings_of(caplog)) == 1


def test_an_unreadable_file_is_warned_about_once_until_it_reads_again(tmp_path, caplog):
    path = tmp_path / "u.json"
    source = FileUtilisation(str(path))
    with caplog.at_level(logging.INFO, logger="gpuspawner.usage"):
        for _ in range(3):
            assert source.sample(["GPU-a"]) == {"GPU-a": None}
        path.write_text(json.dumps({"GPU-a": 3}))
        assert source.sample(["GPU-a"]) == {"GPU-a": 3.0}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("GPU utilisation file %s cannot be read (" % path)
    assert messages[0].endswith("no GPU counts as idle, none is culled")
    assert messages[1] == "GPU utilisation file %s answers again: GPU-idle culling resumes" % path


def test_nvml_warns_once_per_gpu_it_cannot_read(caplog):
    # a UUID no GPU of this host has (on a host without NVML: every GPU)
    source = NvmlUtilisation()
    with caplog.at_level(logging.DEBUG, logger="gpuspawner.usage"):
        for _ in range(3):
            assert source.sample(["GPU-foreign-hub"]) == {"GPU-foreign-hub": None}
    (warning,) = warnings_of(caplog)
    assert warning.startswith("No GPU utilisation for GPU-foreign-hub (")
    assert warning.endswith("): it counts as busy")


def test_a_bad_source_is_a_start_up_error():
    from traitlets import TraitError

    from gpuspawner.usage.settings import UsageSettings

    assert UsageSettings(gpu_utilisation_source="prometheus:http://prom:9090")
    with pytest.raises(TraitError, match="must be 'nvml', 'file:/path' or 'prometheus:<url>'"):
        UsageSettings(gpu_utilisation_source="dcgm")
