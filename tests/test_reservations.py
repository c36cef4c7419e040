"""Class reservations: parsing, windows (DST), what is held back, deadlines, the allocator."""

from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from gpuspawner.errors import ConfigError
from gpuspawner.policy.allocation import GpuRequest, Grant, Holding, Refusal, decide
from gpuspawner.policy.inventory import Gpu
from gpuspawner.policy.quota import GpuLimit
from gpuspawner.policy.reservations import (
    HeldBack,
    deadline_reason,
    held_back,
    next_window,
    open_window,
    open_windows,
    parse_reservation,
    parse_reservations,
    reserved_deadline,
    upcoming,
)

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
CS = {"group": "cs231n", "gpus": 4, "days": ["tuesday", "thursday"], "start": "14:00",
      "end": "16:00", "timezone": "Europe/Berlin"}  # fmt: skip


def at(*args, tz=UTC):
    return datetime(*args, tzinfo=tz)


def test_parse_a_reservation():
    r = parse_reservation(CS)
    assert (r.group, r.gpus, r.days, r.start, r.end, r.zone) == (
        "cs231n", 4, (1, 3), time(14), time(16), "Europe/Berlin")  # fmt: skip
    assert r.describe() == "cs231n: 4 GPUs, Tuesday and Thursday 14:00–16:00 Europe/Berlin"
    assert parse_reservation(dict(CS, days="Monday", timezone="UTC")).days == (0,)
    assert parse_reservation(dict(CS, start="14:00:30")).start == time(14, 0, 30)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"days": ["tuesday", "funday"]}, "'funday' is not a weekday"),
        ({"days": []}, "days must list weekdays"),
        ({"start": "25:00"}, "start must be HH:MM"),
        ({"end": "4pm"}, "end must be HH:MM"),
        ({"start": "14:5"}, "start must be HH:MM"),
        ({"start": "14:05:7"}, "start must be HH:MM"),
        ({"start": "14"}, "start must be HH:MM"),
        ({"end": "14:00"}, "end 14:00 must be after start 14:00"),
        ({"end": "13:00"}, "end 13:00 must be after start 14:00"),
        ({"timezone": "Mars/Olympus"}, "'Mars/Olympus' is not a known IANA time zone"),
        ({"gpus": 0}, "gpus must be a whole number of at least 1, not 0"),
        ({"gpus": 1.5}, "gpus must be a whole number"),
        ({"gpus": True}, "gpus must be a whole number"),
        ({"group": ""}, "needs a group"),
        ({"room": "B1"}, "unknown key(s) 'room'"),
    ],
)
def test_bad_reservations_are_sentences(change, words):
    with pytest.raises(ConfigError) as e:
        parse_reservations([CS, dict(CS, **change)])
    assert words in str(e.value)
    assert str(e.value).startswith("gpu_reservations[1]")


def test_not_a_dict():
    with pytest.raises(ConfigError, match="must be a dict"):
        parse_reservations(["cs231n"])


def test_open_and_next_window_in_summer_and_winter():
    r = parse_reservation(CS)
    # Tuesday 2026-06-02, CEST (UTC+2): 14:00 Berlin is 12:00 UTC
    assert open_window(r, at(2026, 6, 2, 11, 59)) is None
    w = open_window(r, at(2026, 6, 2, 12, 0))
    assert (w.start, w.end) == (at(2026, 6, 2, 12), at(2026, 6, 2, 14))
    assert open_window(r, at(2026, 6, 2, 13, 59, 59)) is not None
    assert open_window(r, at(2026, 6, 2, 14, 0)) is None  # end excluded
    # after Tuesday's window: Thursday's
    assert next_window(r, at(2026, 6, 2, 14, 0)).start == at(2026, 6, 4, 12)
    # during the window: that window
    assert next_window(r, at(2026, 6, 2, 13)).start == at(2026, 6, 2, 12)
    # winter, CET (UTC+1): 13:00 UTC
    assert next_window(r, at(2026, 12, 1, 0)).start == at(2026, 12, 1, 13)
    # Friday: next Tuesday
    assert next_window(r, at(2026, 12, 4, 9)).start == at(2026, 12, 8, 13)


def test_windows_across_the_dst_changes():
    r = parse_reservation(dict(CS, days=["saturday", "sunday", "monday"], start="01:30",
                               end="03:30"))  # fmt: skip
    # 2026-03-29 (Sunday): Berlin jumps 02:00 CET -> 03:00 CEST
    before = next_window(r, at(2026, 3, 28, 12))
    assert (before.start, before.end) == (at(2026, 3, 29, 0, 30), at(2026, 3, 29, 1, 30))
    assert (before.end - before.start).total_seconds() == 3600  # an hour of wall clock lost
    monday = next_window(r, at(2026, 3, 29, 2))
    assert monday.start == at(2026, 3, 29, 23, 30)  # Monday 01:30 CEST
    # 2026-10-25 (Sunday): 03:00 CEST -> 02:00 CET, the window lasts three hours
    autumn = next_window(r, at(2026, 10, 24, 12))
    assert (autumn.start, autumn.end) == (at(2026, 10, 24, 23, 30), at(2026, 10, 25, 2, 30))
    assert (autumn.end - autumn.start).total_seconds() == 3 * 3600
    assert open_window(r, at(2026, 10, 25, 2, 15)) is not None


def test_a_start_in_the_spring_gap_opens_after_it():
    r = parse_reservation(dict(CS, days=["sunday"], start="02:30", end="04:00"))
    w = next_window(r, at(2026, 3, 29, 0))
    # 02:30 does not exist on 29 March in Berlin: zoneinfo reads it as 03:30 CEST (01:30 UTC)
    assert w.start == at(2026, 3, 29, 1, 30) and w.end == at(2026, 3, 29, 2)
    assert open_window(r, at(2026, 3, 29, 1, 45)) is not None


def test_new_york_dst():
    r = parse_reservation(dict(CS, days=["monday"], start="09:00", end="10:00",
                               timezone="America/New_York"))  # fmt: skip
    assert next_window(r, at(2026, 3, 2)).start == at(2026, 3, 2, 14)  # EST
    assert next_window(r, at(2026, 3, 9)).start == at(2026, 3, 9, 13)  # EDT from 8 March


def test_open_windows_and_upcoming_with_several_reservations():
    rs = parse_reservations([
        CS,
        {"group": "physics", "gpus": 2, "days": ["tuesday"], "start": "12:00", "end": "13:30",
         "timezone": "UTC"},
        {"group": "bio", "gpus": 1, "days": ["wednesday"], "start": "08:00", "end": "09:00"},
    ])  # fmt: skip
    now = at(2026, 6, 2, 12, 30)  # Tuesday: cs231n (12-14 UTC) and physics (12-13:30) open
    assert [w.reservation.group for w in open_windows(rs, now)] == ["cs231n", "physics"]
    coming = upcoming(rs, at(2026, 6, 2, 13, 45))
    assert [(w.reservation.group, w.start) for w in coming] == [
        ("cs231n", at(2026, 6, 2, 12)),  # still open
        ("bio", at(2026, 6, 3, 8)),
        ("physics", at(2026, 6, 9, 12)),
    ]
    with pytest.raises(ValueError):
        open_windows(rs, datetime(2026, 6, 2, 12))  # a naive time is a bug


def test_held_back_counts_what_the_group_still_needs():
    rs = parse_reservations([CS])
    during, outside = at(2026, 6, 2, 12, 30), at(2026, 6, 2, 14, 30)
    kept = held_back(rs, during, ["students"], {"cs231n": 0})
    assert kept.count == 4
    assert kept.reason == (
        "GPUs are reserved for a class right now: 4 for group 'cs231n' until 16:00"
        " (Europe/Berlin)."
    )
    assert held_back(rs, during, ["students"], {"cs231n": 3}).count == 1
    assert held_back(rs, during, ["students"], {"cs231n": 6}) == HeldBack(0)
    assert held_back(rs, during, ["cs231n", "students"], {}) == HeldBack(0)  # a member
    assert held_back(rs, outside, ["students"], {}) == HeldBack(0)


def test_held_back_adds_groups_and_windows():
    rs = parse_reservations([
        CS,
        dict(CS, gpus=1, start="13:00", end="17:00"),  # a second window of the same group
        {"group": "physics", "gpus": 2, "days": ["tuesday"], "start": "12:00", "end": "13:30"},
    ])  # fmt: skip
    kept = held_back(rs, at(2026, 6, 2, 12, 30), [], {"cs231n": 1, "physics": 0})
    assert kept.count == 4 + 1 - 1 + 2
    assert "4 for group 'cs231n' until 17:00 (Europe/Berlin); 2 for group 'physics'" in kept.reason
    assert held_back(rs, at(2026, 6, 2, 12, 30), ["physics"], {"cs231n": 0}).count == 5


def test_reserved_deadline_within_the_lead():
    rs = parse_reservations([CS])
    # Tuesday 11:30 UTC: the window opens at 12:00 UTC, within an hour
    w = reserved_deadline(rs, ["students"], at(2026, 6, 2, 11, 30), 3600)
    assert w.start == at(2026, 6, 2, 12)
    assert deadline_reason(w) == (
        "This GPU is reserved for group 'cs231n' from 14:00 (Europe/Berlin): the server stops"
        " then; your workspace is kept."
    )
    assert reserved_deadline(rs, ["students"], at(2026, 6, 2, 10, 59), 3600) is None  # earlier
    assert reserved_deadline(rs, ["students"], at(2026, 6, 2, 12, 0), 3600) is None  # open
    assert reserved_deadline(rs, ["cs231n"], at(2026, 6, 2, 11, 30), 3600) is None  # member
    assert reserved_deadline(rs, ["students"], at(2026, 6, 2, 11, 30), 0) is None  # off
    # a lead of two days from Sunday finds Tuesday's window
    assert reserved_deadline(rs, [], at(2026, 5, 31, 13), 2 * 86400).start == at(2026, 6, 2, 12)


GPUS = tuple(Gpu("GPU-%d" % i, "A100") for i in range(6))
LIMIT = GpuLimit(8, "test")


def test_decide_keeps_reserved_gpus_for_the_group():
    kept = HeldBack(4, "GPUs are reserved for a class right now: 4 for group 'cs231n'.")
    held = [Holding("#1", "", GPUS[:1])]
    ask = lambda n, back: GpuRequest("#2", "", n, LIMIT, held_back=back)  # noqa: E731
    # 5 free, 4 kept: one for a non-member
    assert isinstance(decide(ask(1, lambda others: kept), GPUS, held), Grant)
    refused = decide(ask(2, lambda others: kept), GPUS, held)
    assert isinstance(refused, Refusal) and refused.reason == "capacity"
    assert refused.message == (
        "GPUs are reserved for a class right now: 4 for group 'cs231n'. You asked for 2 GPUs"
        " and 5 of 6 are free; try again after the reservation."
    )
    # nothing kept (a member, or no window): all five
    assert isinstance(decide(ask(5, lambda others: HeldBack(0)), GPUS, held), Grant)
    assert isinstance(decide(ask(5, None), GPUS, held), Grant)
    # the callable sees the other servers' holdings, not the requester's own server
    seen = []
    decide(GpuRequest("#1", "", 1, LIMIT, held_back=lambda o: seen.append(o) or HeldBack(0)),
           GPUS, held)  # fmt: skip
    assert seen == [[]]


def test_decide_quota_before_reservation():
    back = lambda others: HeldBack(6, "reserved.")  # noqa: E731
    refused = decide(GpuRequest("#2", "", 2, GpuLimit(1, "test"), held_back=back), GPUS, [])
    assert refused.reason == "quota"


def test_shared_slots_are_not_kept():
    shared = (Gpu("GPU-s", "T4", shared_by=2),)
    back = lambda others: HeldBack(6, "reserved.")  # noqa: E731
    got = decide(GpuRequest("#2", "", 1, LIMIT, shared=True, held_back=back), shared, [])
    assert isinstance(got, Grant)


def test_settings_check_reservations():
    from traitlets import TraitError

    from gpuspawner.usage.settings import UsageSettings

    settings = UsageSettings(gpu_reservations=[CS])
    assert settings.reservations[0].group == "cs231n"
    settings.check_usage_config()
    with pytest.raises(TraitError, match="'funday' is not a weekday"):
        UsageSettings(gpu_reservations=[dict(CS, days=["funday"])])


def test_a_non_member_is_told_the_window_start(monkeypatch):
    import logging

    from gpuspawner.usage import accounting
    from gpuspawner.usage.settings import UsageSettings

    now = datetime.now(BERLIN).replace(second=0, microsecond=0)
    soon = (now.hour * 60 + now.minute + 30) % (24 * 60)
    if soon < 30:  # the window would cross midnight: move the clock instead
        pytest.skip("near midnight in Berlin")
    entry = dict(CS, days=[now.strftime("%A").lower()], start="%02d:%02d" % divmod(soon, 60),
                 end="23:59")  # fmt: skip
    settings = UsageSettings(gpu_reservations=[entry], gpu_reservation_lead=3600)
    gpu = (Gpu("GPU-1", "A100"),)
    student = accounting.Accounting(settings, None, "ann", "", ["students"], logging.getLogger())
    env = student.deadline_env(gpu)
    deadline = datetime.fromisoformat(env["GPUSPAWNER_GPU_DEADLINE"])
    assert abs((deadline - now).total_seconds() - 1800) < 120
    assert env["GPUSPAWNER_GPU_DEADLINE_REASON"].startswith(
        "This GPU is reserved for group 'cs231n' from %02d:%02d" % divmod(soon, 60))
    member = accounting.Accounting(settings, None, "bo", "", ["cs231n"], logging.getLogger())
    assert "GPUSPAWNER_GPU_DEADLINE" not in member.deadline_env(gpu)
    shared = (Gpu("GPU-s", "T4", shared_by=2),)
    assert "GPUSPAWNER_GPU_DEADLINE" not in student.deadline_env(shared)
    # an earlier maximum age wins
    settings.gpu_max_age = 600
    assert student.deadline_env(gpu)["GPUSPAWNER_GPU_DEADLINE_REASON"].startswith("GPU servers")


def test_dashboard_lists_reservations():
    from types import SimpleNamespace

    from gpuspawner.service.page import reservations_context

    settings = SimpleNamespace(reservations=parse_reservations([
        CS, {"group": "bio", "gpus": 1, "days": ["tuesday"], "start": "08:00", "end": "09:00"},
    ]))  # fmt: skip
    rows = reservations_context(settings, at(2026, 6, 2, 12, 30))
    assert rows == [
        {"group": "bio", "gpus": 1, "start": "Tue 09 Jun 08:00", "end": "09:00", "zone": "UTC",
         "open": False},
        {"group": "cs231n", "gpus": 4, "start": "Tue 02 Jun 14:00", "end": "16:00",
         "zone": "Europe/Berlin", "open": True},
    ][::-1]
    assert reservations_context(SimpleNamespace(), at(2026, 6, 2)) == []


def test_watcher_stops_a_non_members_server_at_the_window():
    from types import SimpleNamespace

    from gpuspawner.policy.budget import Interval
    from gpuspawner.service.watcher import Watcher

    watcher = Watcher.__new__(Watcher)  # only the pass's rule: no hub, ledger or engine
    watcher.settings = SimpleNamespace(reservations=parse_reservations([CS]),
                                       gpu_reservation_lead=3600)  # fmt: skip
    watcher.user_groups = {"ann": ["students"], "bo": ["cs231n"], "cy": ["students"]}
    early = at(2026, 6, 2, 11, 30)  # half an hour before Tuesday's window (12:00 UTC)
    servers = {
        ("ann", ""): [Interval("ann", "", "GPU-1", "A100", early)],
        ("bo", ""): [Interval("bo", "", "GPU-2", "A100", early)],  # a member
        ("cy", "slot"): [Interval("cy", "slot", "GPU-s", "T4", early, shared_by=2)],
        ("cy", ""): [Interval("cy", "", "GPU-3", "A100", at(2026, 6, 2, 10, 0))],  # too early
    }
    stopping = {}
    watcher._check_reservations(servers, at(2026, 6, 2, 11, 59), stopping)
    assert stopping == {}  # not yet
    watcher._check_reservations(servers, at(2026, 6, 2, 12, 0), stopping)
    assert list(stopping) == [("ann", "")]
    reason, message = stopping[("ann", "")]
    assert reason == "reservation"
    assert message == (
        "Stopped ann's server '': its GPUs are reserved for group 'cs231n' from 14:00 CEST"
        " (gpu_reservations); it started within gpu_reservation_lead of the window."
    )
