"""The usage ledger on sqlite and on a real PostgreSQL: intervals, reconciliation, migrations,
CSV."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from gpuspawner.policy.allocation import Holding
from gpuspawner.policy.budget import ResetSchedule, period_bounds, usage_hours
from gpuspawner.policy.inventory import Gpu
from gpuspawner.testing.databases import fresh_postgres_database
from gpuspawner.usage.ledger import SCHEMA_VERSION, Ledger, _v1

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
A100 = Gpu("GPU-a", "NVIDIA A100-SXM4-80GB")
T4 = Gpu("GPU-t", "Tesla T4")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield "sqlite:///%s" % (tmp_path / "usage.sqlite")
        return
    url, drop = fresh_postgres_database()
    yield url
    drop()


@pytest.fixture
def ledger(db_url):
    ledger = Ledger(db_url)
    yield ledger
    ledger.dispose()


def test_open_and_close_record_one_interval_per_gpu(ledger):
    assert ledger.open("ann", "train", [A100, T4], T0) == 2
    assert (
        ledger.open("ann", "train", [A100], T0 + timedelta(minutes=5)) == 0
    )  # already open: not twice
    assert [(i.gpu_uuid, i.end) for i in ledger.open_intervals()] == [
        ("GPU-a", None),
        ("GPU-t", None),
    ]
    assert ledger.close("ann", "train", ["GPU-a", "GPU-t"], T0 + timedelta(hours=2)) == 2
    assert (
        ledger.close("ann", "train", ["GPU-a"], T0 + timedelta(hours=3)) == 0
    )  # closing again changes nothing
    intervals = ledger.intervals()
    assert [(i.user, i.server, i.gpu_name, i.start, i.end) for i in intervals] == [
        ("ann", "train", "NVIDIA A100-SXM4-80GB", T0, T0 + timedelta(hours=2)),
        ("ann", "train", "Tesla T4", T0, T0 + timedelta(hours=2)),
    ]
    assert [r.end_reason for r in ledger.rows()] == ["stopped", "stopped"]


def test_usage_in_a_period_is_weighted_and_clipped(ledger):
    schedule = ResetSchedule("day")
    ledger.open("ann", "", [A100], T0 - timedelta(hours=10))  # from yesterday 23:00
    ledger.close("ann", "", ["GPU-a"], T0 - timedelta(hours=7))  # 1 h yesterday, 2 h today
    ledger.open("ann", "", [T4], T0)  # still open
    ledger.open("bob", "", [A100], T0)
    now = T0 + timedelta(hours=4)
    start, end = period_bounds(now, schedule)
    intervals = ledger.intervals(start, end, user="ann")
    assert len(intervals) == 2
    assert usage_hours(intervals, start, end, now, {"A100": 2, "T4": 0.5}) == pytest.approx(
        2 * 2 + 4 * 0.5
    )
    assert (
        ledger.intervals(now + timedelta(days=1), now + timedelta(days=2), user="ann")[0].gpu_name
        == "Tesla T4"
    )


def test_reconcile_closes_what_the_engine_lost_at_its_last_sighting(ledger):
    ledger.open("ann", "", [A100], T0)
    ledger.open("bob", "x", [T4], T0)
    seen = T0 + timedelta(minutes=30)
    assert ledger.reconcile([Holding("ann", "", (A100,)), Holding("bob", "x", (T4,))], seen) == (
        0,
        0,
    )
    # the hub was killed; bob's container died while no hub watched; a new hub lists the engine
    later = T0 + timedelta(hours=3)
    assert ledger.reconcile([Holding("ann", "", (A100,))], later) == (1, 0)
    rows = {r.user: r for r in ledger.rows()}
    assert rows["bob"].end_reason == "gone"
    assert rows["bob"].ended.replace(tzinfo=timezone.utc) == seen  # not a minute of guessed usage
    assert rows["ann"].ended is None and rows["ann"].last_seen.replace(tzinfo=timezone.utc) == later
    # a holding the ledger never heard of (started while the ledger was unreachable) is opened,
    # named as the engine's holding names its GPU, so GPU-type weights apply
    cy = Holding("cy", "", (Gpu("GPU-b", "Tesla T4"),))
    assert ledger.reconcile([Holding("ann", "", (A100,)), cy], later) == (0, 1)
    assert [(i.user, i.gpu_name, i.start) for i in ledger.open_intervals()][-1] == (
        "cy",
        "Tesla T4",
        later,
    )
    # reconciling twice, and a listing racing a start, never closes a young interval
    ledger.open("dee", "", [T4], later)
    assert ledger.reconcile([Holding("ann", "", (A100,)), cy], later + timedelta(seconds=5)) == (
        0,
        0,
    )


def test_a_pending_reason_marks_why_the_interval_ended_and_notices_are_kept(ledger):
    ledger.open("ann", "", [A100], T0)
    ledger.mark_pending_end("ann", "", "gpu-idle")
    ledger.close("ann", "", ["GPU-a"], T0 + timedelta(hours=1))
    assert ledger.rows()[0].end_reason == "gpu-idle"
    ledger.add_notice(
        "ann", "", "gpu-idle", "Stopped: GPUs idle for 30 minutes.", T0 + timedelta(hours=1)
    )
    (notice,) = ledger.notices(since=T0)
    assert notice["kind"] == "gpu-idle" and notice["at"] == T0 + timedelta(hours=1)
    assert ledger.notices(since=T0 + timedelta(hours=2)) == []


def test_csv_of_a_date_range(ledger):
    ledger.open("ann", "train", [A100], T0)
    ledger.close("ann", "train", ["GPU-a"], T0 + timedelta(hours=30))
    ledger.open('émilie, "x"', "", [T4], T0 + timedelta(days=5))
    text_ = ledger.csv(T0 + timedelta(hours=15), T0 + timedelta(days=2), now=T0 + timedelta(days=6))
    lines = text_.splitlines()
    assert lines[0] == "user,server,gpu_uuid,gpu_name,start,end,hours_in_range,end_reason"
    assert lines[1:] == [
        "ann,train,GPU-a,NVIDIA"
        " A100-SXM4-80GB,2026-11-24T09:00:00+00:00,2026-11-25T15:00:00+00:00,15.0000,stopped"
    ]
    everything = ledger.csv(T0, T0 + timedelta(days=7), now=T0 + timedelta(days=6)).splitlines()
    assert everything[2].startswith(
        '"émilie, ""x""",,GPU-t,Tesla T4,2026-11-29T09:00:00+00:00,,24.0000,'
    )


def test_a_schema_1_ledger_is_upgraded_and_keeps_its_rows(db_url):
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE gpuspawner_schema (version INTEGER NOT NULL)"))
        connection.execute(text("INSERT INTO gpuspawner_schema (version) VALUES (1)"))
        _v1(connection)
        connection.execute(
            text(
                'INSERT INTO gpu_intervals ("user", server, gpu_uuid, gpu_name, started, ended,'
                " last_seen)"
                " VALUES ('ann', '', 'GPU-a', 'A100', :s, :e, :e)"
            ),
            {"s": T0.replace(tzinfo=None), "e": (T0 + timedelta(hours=1)).replace(tzinfo=None)},
        )
    engine.dispose()
    ledger = Ledger(db_url)
    try:
        assert ledger.schema_version() == SCHEMA_VERSION == 2
        (row,) = ledger.rows()
        assert (row.user, row.end_reason) == ("ann", "stopped")
        ledger.add_notice("ann", "", "budget-warning", "spent", T0)  # the table schema 2 added
        assert Ledger(db_url).schema_version() == 2  # opening again is a no-op
    finally:
        ledger.dispose()


def test_a_newer_schema_is_refused(db_url):
    Ledger(db_url).dispose()
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE gpuspawner_schema SET version = 99"))
    engine.dispose()
    with pytest.raises(RuntimeError, match="schema 99, newer than this gpuspawner's 2"):
        Ledger(db_url)
