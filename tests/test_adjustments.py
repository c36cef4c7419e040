"""Admin adjustments (quota and budget overrides, top-ups): the pure rules, and the table on
sqlite and on a real PostgreSQL, created next to the ledger and upgraded once."""

import threading
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, inspect, text

from gpuspawner.policy.budget import Budget
from gpuspawner.policy.quota import GpuLimit
from gpuspawner.usage.adjustments import (
    Adjustment,
    Adjustments,
    InForce,
    adjusted_budget,
    adjusted_quota,
    adjustments_of,
    check_adjustment,
    in_force,
)
from gpuspawner.usage.ledger import Ledger

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
WEEK = datetime(2026, 11, 23, tzinfo=timezone.utc)
LAST_WEEK = WEEK - timedelta(days=7)


def made(kind, value, minutes=0, period=WEEK, by="boss"):
    return Adjustment("ann", kind, value, "why", by, T0 + timedelta(minutes=minutes),
                      period if kind == "top-up" else None)  # fmt: skip


def test_the_latest_override_wins_and_an_empty_one_ends_it():
    force = in_force([made("quota", 3, 1), made("quota", 2, 5), made("budget", 20, 2)], WEEK)
    assert (force.quota.value, force.budget.value) == (2, 20)
    ended = in_force([made("quota", 3, 1), made("quota", None, 5)], WEEK)
    assert ended.quota is None
    # order is by time, not by the order given
    assert in_force([made("quota", 2, 5), made("quota", 3, 1)], WEEK).quota.value == 2


def test_top_ups_count_in_their_period_only():
    force = in_force([made("top-up", 5), made("top-up", 2.5, 3), made("top-up", 9, 4, LAST_WEEK)],
                     WEEK)  # fmt: skip
    assert force.top_up_hours == 7.5 and len(force.top_ups) == 2


def test_adjusted_budget_override_then_top_ups():
    groups = Budget(10, "group 'students'")
    assert adjusted_budget(groups, InForce()) == groups
    topped = adjusted_budget(groups, in_force([made("top-up", 5)], WEEK))
    assert topped == Budget(15, "group 'students' + 5 GPU-hours top-up")
    both = adjusted_budget(groups, in_force([made("budget", 20), made("top-up", 5, 1)], WEEK))
    assert both == Budget(25, "set for you by boss + 5 GPU-hours top-up")
    # no budget (unlimited) stays unlimited with a top-up; an override limits it
    assert adjusted_budget(Budget(None, "group 'staff'"), in_force([made("top-up", 5)], WEEK)
                           ).hours is None  # fmt: skip
    assert adjusted_budget(Budget(None, "x"), in_force([made("budget", 3)], WEEK)).hours == 3


def test_adjusted_quota():
    groups = GpuLimit(1, "group 'students'")
    assert adjusted_quota(groups, InForce()) is groups
    assert adjusted_quota(groups, in_force([made("quota", 4)], WEEK)) == GpuLimit(
        4, "set for you by boss"
    )
    assert adjusted_quota(groups, in_force([made("quota", 0)], WEEK)).count == 0


@pytest.mark.parametrize(
    "kind, value, reason, sentence",
    [
        ("bonus", 5, "x", "kind must be one of quota, budget, top-up, not 'bonus'."),
        ("top-up", 5, "  ", "Give a reason: it is shown to the user and kept in the ledger."),
        ("top-up", 5, None, "Give a reason: it is shown to the user and kept in the ledger."),
        ("top-up", None, "x", "A top-up needs a number of GPU-hours, such as 5."),
        ("top-up", "", "x", "A top-up needs a number of GPU-hours, such as 5."),
        ("top-up", 0, "x", "A top-up must be more than 0 and at most 100000 GPU-hours, not 0."),
        ("top-up", "five", "x", "The value must be a number, not 'five'."),
        ("top-up", "nan", "x", "The value must be a finite number, not 'nan'."),
        ("top-up", True, "x", "The value must be a number, not True."),
        ("quota", 1.5, "x", "A quota is a whole number of GPUs from 0 to 1024, not 1.5."),
        ("quota", -1, "x", "A quota is a whole number of GPUs from 0 to 1024, not -1."),
        ("budget", -2, "x", "A budget must be from 0 to 100000 GPU-hours, not -2."),
        ("budget", 5, "r" * 501, "The reason must be at most 500 characters, not 501."),
    ],
)
def test_bad_input_is_refused_with_a_sentence(kind, value, reason, sentence):
    with pytest.raises(ValueError) as refused:
        check_adjustment(kind, value, reason)
    assert str(refused.value) == sentence


def test_good_input_is_cleaned():
    assert check_adjustment("quota", "2", " thesis ") == ("quota", 2.0, "thesis")
    assert check_adjustment("budget", "", "back to normal") == ("budget", None, "back to normal")
    assert check_adjustment("top-up", "2.5", "x") == ("top-up", 2.5, "x")


@given(st.lists(st.tuples(st.sampled_from(["quota", "budget", "top-up"]),
                          st.one_of(st.none(), st.integers(0, 50)),
                          st.integers(0, 10_000)), max_size=12))  # fmt: skip
def test_in_force_is_the_last_word_of_each_kind(rows):
    items = [made(kind, value if kind != "top-up" else (value or 1), minute)
             for kind, value, minute in rows]  # fmt: skip
    force = in_force(items, WEEK)
    for kind in ("quota", "budget"):
        last = sorted((a for a in items if a.kind == kind), key=lambda a: a.at)
        expected = last[-1].value if last else None
        assert (getattr(force, kind).value if getattr(force, kind) else None) == expected
    assert force.top_up_hours == sum(a.value for a in items if a.kind == "top-up")


def test_store_records_who_when_why_and_reads_what_is_in_force(db_url):
    ledger = Ledger(db_url)
    try:
        store = adjustments_of(ledger)
        assert adjustments_of(ledger) is store  # one per ledger
        assert store.schema_version() == 1
        store.add("ann", "quota", 2, "thesis runs", "boss", T0)
        store.add("ann", "top-up", 5, "deadline", "boss", T0 + timedelta(minutes=1), WEEK)
        store.add("ann", "top-up", 9, "old", "boss", T0 - timedelta(days=7), LAST_WEEK)
        store.add("bob", "budget", 1, "abuse", "root", T0)
        with pytest.raises(ValueError, match="A top-up needs the start"):
            store.add("ann", "top-up", 1, "x", "boss", T0)
        history = store.history("ann")
        assert [(a.kind, a.value, a.by, a.reason) for a in history] == [
            ("top-up", 9, "boss", "old"),
            ("quota", 2, "boss", "thesis runs"),
            ("top-up", 5, "boss", "deadline"),
        ]
        assert history[1].at == T0 and history[2].period_start == WEEK
        force = store.in_force("ann", WEEK)
        assert force.quota.value == 2 and force.top_up_hours == 5
        everyone = store.in_force_by_user(None, WEEK)
        assert set(everyone) == {"ann", "bob"} and everyone["bob"].budget.value == 1
        assert history[2].as_json()["text"] == "+5 GPU-hours this period"
    finally:
        ledger.dispose()


def test_the_table_is_created_once_next_to_an_existing_ledger(db_url):
    """A ledger made before adjustments existed gets the table on open, from several
    processes at once (here threads with engines of their own), and keeps its data."""
    old = Ledger(db_url)
    old.add_notice("ann", "", "budget-warning", "spent", T0)
    old.dispose()
    engines = [create_engine(db_url) for _ in range(3)]
    errors = []

    def open_store(engine):
        try:
            Adjustments(engine)
        except Exception as e:  # pragma: no cover - the failure being tested for
            errors.append(e)

    threads = [threading.Thread(target=open_store, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with engines[0].connect() as connection:
        assert inspect(connection).has_table("gpu_adjustments")
        assert (
            connection.execute(
                text("SELECT version FROM gpuspawner_adjustments_schema")
            ).scalar_one()
            == 1
        )
        assert connection.execute(text("SELECT COUNT(*) FROM gpu_notices")).scalar_one() == 1
    store = Adjustments(engines[0])
    assert store.upgrade() == 1
    for engine in engines:
        engine.dispose()


def test_a_newer_schema_is_refused(db_url):
    engine = create_engine(db_url)
    Adjustments(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE gpuspawner_adjustments_schema SET version = 7"))
    with pytest.raises(RuntimeError, match="schema 7, newer than this gpuspawner's 1"):
        Adjustments(engine)
    engine.dispose()
