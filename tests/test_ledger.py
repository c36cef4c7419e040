"""The usage ledger on sqlite and on a real PostgreSQL: intervals, reconciliation, migrations,
CSV, the group commit of concurrent writes, and an interval that survives a hub SIGKILL."""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, text

from gpuspawner.policy.allocation import Holding
from gpuspawner.policy.budget import ResetSchedule, period_bounds, usage_hours
from gpuspawner.policy.inventory import Gpu
from gpuspawner.usage.ledger import SCHEMA_VERSION, Ledger, _v1

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
A100 = Gpu("GPU-a", "NVIDIA A100-SXM4-80GB")
T4 = Gpu("GPU-t", "Tesla T4")
HOUR = timedelta(hours=1)


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


def test_a_pods_gpu_resolved_to_its_device_once_keeps_the_hubs_name(ledger):
    """A Kubernetes GPU named after its pod: its device recorded once; the hub still closes
    and reconciles it by its own name; budgets, reports and the CSV see the device."""
    placeholder = Gpu("jupyter-ann/nvidia.com/gpu#0", "nvidia.com/gpu", resource="nvidia.com/gpu")
    other = Gpu("jupyter-ann/nvidia.com/gpu#1", "nvidia.com/gpu", resource="nvidia.com/gpu")
    ledger.open("ann", "", [placeholder, other], T0)
    first, second = ledger.unresolved_open()
    assert [name for _, name in (first, second)] == [placeholder.uuid, other.uuid]
    weights = {"A100": 4.0}
    assert usage_hours(ledger.intervals(), T0, T0 + HOUR, T0 + HOUR, weights) == 2.0
    assert ledger.resolve_device(first[0], "GPU-real", "NVIDIA-A100-SXM4-80GB")
    assert not ledger.resolve_device(first[0], "GPU-else", "Tesla-T4")  # once
    assert ledger.resolve_devices({second[0]: ("GPU-two", None)}) == 1  # no type: the hub's
    assert ledger.unresolved_open() == []
    a, b = ledger.open_intervals()
    assert (a.gpu_uuid, a.gpu_name) == ("GPU-real", "NVIDIA-A100-SXM4-80GB")
    assert (b.gpu_uuid, b.gpu_name) == ("GPU-two", "nvidia.com/gpu")
    # the whole interval at the device's weight: the pod had that device from its start
    assert usage_hours(ledger.intervals(), T0, T0 + HOUR, T0 + HOUR, weights) == 5.0
    row = ledger.rows()[0]
    assert (row.gpu_uuid, row.gpu_name) == (placeholder.uuid, "nvidia.com/gpu")  # kept
    lines = ledger.csv(T0, T0 + HOUR, T0 + HOUR).splitlines()
    assert lines[1] == "ann,,GPU-real,NVIDIA-A100-SXM4-80GB,2026-11-24T09:00:00+00:00,,1.0000,"
    # the hub's own name still opens nothing twice, reconciles and closes
    assert ledger.open("ann", "", [placeholder], T0 + HOUR) == 0
    holding = Holding(user="ann", server="", gpus=(placeholder, other))
    assert ledger.reconcile([holding], T0 + HOUR) == (0, 0)
    assert ledger.close("ann", "", [placeholder.uuid, other.uuid], T0 + HOUR) == 2
    assert [i.end for i in ledger.intervals()] == [T0 + HOUR] * 2
    assert ledger.unresolved_open() == []


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
        assert ledger.schema_version() == SCHEMA_VERSION == 4
        (row,) = ledger.rows()
        assert (row.user, row.end_reason) == ("ann", "stopped")
        assert (row.device_uuid, row.device_type) == (None, None)  # the columns schema 3 added
        assert row.shared_by is None and ledger.intervals()[0].shared_by == 1  # schema 4's
        assert ledger.intervals()[0].gpu_uuid == "GPU-a"
        ledger.add_notice("ann", "", "budget-warning", "spent", T0)  # the table schema 2 added
        assert Ledger(db_url).schema_version() == 4  # opening again is a no-op
    finally:
        ledger.dispose()


def test_a_newer_schema_is_refused(db_url):
    Ledger(db_url).dispose()
    engine = create_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE gpuspawner_schema SET version = 99"))
    engine.dispose()
    with pytest.raises(RuntimeError, match="schema 99, newer than this gpuspawner's 4"):
        Ledger(db_url)


def test_concurrent_writes_are_group_committed_each_with_its_own_result(ledger):
    """Fifty servers starting at once (each in a worker thread, as the hub calls it) and then
    stopping: every write gets its own count, and writes share transactions."""
    gpus = {i: Gpu("pod-%d/nvidia.com/gpu#0" % i, "A100") for i in range(50)}
    with ThreadPoolExecutor(16) as pool:
        opened = list(pool.map(lambda i: ledger.open("u%d" % i, "", [gpus[i]], T0), gpus))
        again = list(pool.map(lambda i: ledger.open("u%d" % i, "", [gpus[i]], T0), gpus))
    assert opened == [1] * 50 and again == [0] * 50  # never twice, even within one group
    assert len(ledger.open_intervals()) == 50
    before = ledger.transactions
    with ThreadPoolExecutor(16) as pool:
        closed = list(
            pool.map(lambda i: ledger.close("u%d" % i, "", [gpus[i].uuid], T0 + HOUR), gpus)
        )
    assert closed == [1] * 50 and ledger.open_intervals() == []
    assert ledger.transactions - before < 50
    assert {i.end for i in ledger.intervals()} == {T0 + HOUR}


async def test_coroutines_writes_share_transactions_without_a_thread_each(ledger):
    """Fifty spawns confirming at once on the hub's event loop: one committer thread, a few
    transactions, each coroutine its own count; a failing write fails only its coroutine."""
    gpus = {i: Gpu("pod-%d/nvidia.com/gpu#0" % i, "A100") for i in range(50)}
    before = ledger.transactions
    opened = await asyncio.gather(*(ledger.open_async("u%d" % i, "", [gpus[i]], T0) for i in gpus))
    assert opened == [1] * 50 and len(ledger.open_intervals()) == 50
    assert ledger.transactions - before <= 2  # the first write's group, then all the others
    results = await asyncio.gather(
        ledger.close_async("u1", "", [gpus[1].uuid], T0 + HOUR),
        ledger.open_async("bad", "", [Gpu("GPU-x", None)], T0),  # NOT NULL: IntegrityError
        ledger.close_async("u2", "", [gpus[2].uuid], T0 + HOUR),
        ledger.close_async("u2", "", [gpus[2].uuid], T0 + 2 * HOUR),  # closed already
        return_exceptions=True,
    )
    assert [type(r).__name__ if isinstance(r, Exception) else r for r in results] == [
        1, "IntegrityError", 1, 0,
    ]  # fmt: skip
    assert len(ledger.open_intervals()) == 48
    assert await ledger.close_async("u3", "", [], T0) == 0


def test_a_failing_write_fails_only_its_caller_and_not_its_group(ledger):
    # hold the transaction lock so that the next writes queue up into one group
    results = {}

    def write(name, gpus):
        try:
            results[name] = ledger.open(name, "", gpus, T0)
        except Exception as e:  # noqa: BLE001 (what the caller would see)
            results[name] = type(e).__name__

    with ledger._write_lock:
        first = threading.Thread(target=write, args=("first", [A100]))
        first.start()
        wait_until(lambda: ledger._committing)  # it took its group and waits for the lock
        others = [
            threading.Thread(target=write, args=("ann", [T4])),
            threading.Thread(target=write, args=("bad", [Gpu("GPU-x", None)])),  # NOT NULL
            threading.Thread(target=write, args=("cy", [A100])),
        ]
        for thread in others:
            thread.start()
        wait_until(lambda: len(ledger._queued) == 3)
        before = ledger.transactions
    for thread in [first, *others]:
        thread.join(30)
    assert results == {"first": 1, "ann": 1, "bad": "IntegrityError", "cy": 1}
    # the group of three failed as a whole, then each was committed alone
    assert ledger.transactions - before == 1 + 2
    assert sorted(i.user for i in ledger.open_intervals()) == ["ann", "cy", "first"]


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.docker
def test_an_interval_is_committed_before_the_spawn_is_reported(hub_factory, tmp_path):
    """The hub killed (SIGKILL) the moment it logged the opened interval, before the server
    was even reported ready: the interval is in the ledger with its start, and after the
    restart it is the one interval of that server, still open."""
    url = "sqlite:///%s" % (tmp_path / "usage.sqlite")
    hub = hub_factory(gpu_mode="runtime-env", usage_db_url=url, gpu_resync_interval=1)
    hub.create_user("kit")
    asked = datetime.now(timezone.utc)
    assert hub.spawn("kit", options={"gpus": 1}).status_code in (201, 202)
    wait_until(lambda: "interval(s) opened for kit's server" in hub.log_path.read_text(), 90)
    hub.kill9()
    killed = datetime.now(timezone.utc)
    ledger = Ledger(url)
    try:
        (row,) = ledger.rows(user="kit")
        started = row.started.replace(tzinfo=timezone.utc)
        assert asked <= started <= killed and row.ended is None
        hub.start()
        hub.wait_ready("kit")
        hub.spawn_form(hub.login("kit"), "kit", "another")  # lists the engine: reconciles
        (after,) = ledger.rows(user="kit")
        assert (after.id, after.started, after.ended) == (row.id, row.started, None)
    finally:
        ledger.dispose()
