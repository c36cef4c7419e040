"""The line of spawns waiting for a GPU (gpuspawner.policy.line): pure, no I/O."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuspawner.policy.inventory import Gpu
from gpuspawner.policy.line import (
    AlreadyWaiting,
    Line,
    Place,
    competes,
    duration_text,
    engine_capacity_left,
    ordinal,
    restart_message,
    timed_out_message,
    waiting_message,
)


@pytest.mark.parametrize(
    "n, text",
    [(0, "0th"), (1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (9, "9th"), (10, "10th"),
     (11, "11th"), (12, "12th"), (13, "13th"), (14, "14th"), (20, "20th"), (21, "21st"),
     (22, "22nd"), (23, "23rd"), (100, "100th"), (101, "101st"), (111, "111th"),
     (112, "112th"), (113, "113th"), (121, "121st"), (1002, "1002nd")],
)  # fmt: skip
def test_ordinals(n, text):
    assert ordinal(n) == text


def test_no_ordinal_of_a_negative_number():
    with pytest.raises(ValueError):
        ordinal(-1)


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0 seconds"), (1, "1 second"), (45, "45 seconds"), (60, "1 minute"),
     (600, "10 minutes"), (3600, "1 hour"), (5400, "1 hour 30 minutes"),
     (7260, "2 hours 1 minute"), (-3, "0 seconds")],
)  # fmt: skip
def test_durations(seconds, text):
    assert duration_text(seconds) == text


def test_first_come_first_served():
    line = Line()
    for i, user in enumerate(["a", "b", "c"]):
        assert line.join(Place(user, "")) == i + 1
    assert [p.user for p in line.heads()] == ["a"]
    assert line.may_take(("a", "")) and not line.may_take(("b", ""))
    assert line.position(("c", "")) == 3
    assert line.leave(("a", ""))
    assert line.position(("b", "")) == 1 and line.position(("c", "")) == 2
    assert not line.leave(("a", ""))  # gone already
    assert len(line) == 2


def test_leaving_from_the_middle_moves_only_those_behind():
    line = Line([Place(u, "") for u in "abcd"])
    line.leave(("b", ""))
    assert [line.position((u, "")) for u in "acd"] == [1, 2, 3]


def test_one_place_per_user_and_the_refusal_names_the_first():
    line = Line([Place("x", ""), Place("a", "train")])
    with pytest.raises(AlreadyWaiting) as refused:
        line.join(Place("a", "eval"))
    assert str(refused.value) == (
        "You are already waiting for a GPU for server 'train' (2nd in line): cancel that spawn"
        " or let it start before starting another GPU server."
    )
    assert line.join(Place("a", "train")) == 2  # the same spawn again keeps its place
    assert len(line) == 2


def test_the_default_server_is_named_so():
    line = Line([Place("a", "")])
    with pytest.raises(AlreadyWaiting, match=r"for the default server \(1st in line\)"):
        line.join(Place("a", "other"))


@pytest.mark.parametrize(
    "a, b, expected",
    [("", "", True), ("", "A100", True), ("A100", "", True), ("A100", "A100", True),
     ("a100", "A100 ", True), ("A100", "T4", False)],
)  # fmt: skip
def test_which_places_compete(a, b, expected):
    assert competes(Place("u", "", a), Place("v", "", b)) is expected


def test_other_types_do_not_hold_each_other_up_but_any_type_waits_for_all():
    line = Line([Place("a", "", "A100"), Place("t", "", "T4"), Place("any", ""),
                 Place("b", "", "A100")])  # fmt: skip
    assert [p.user for p in line.heads()] == ["a", "t"]
    assert line.position(("any", "")) == 3  # behind both
    assert line.position(("b", "")) == 3  # behind a and any
    assert line.blocks(Place("new", "", "T4"))  # a T4 waiter and "any" are ahead
    assert not Line([Place("a", "", "A100")]).blocks(Place("new", "", "T4"))
    assert Line([Place("a", "", "A100")]).blocks(Place("new", ""))


def test_a_newcomer_is_blocked_by_any_competing_place():
    assert not Line().blocks(Place("a", ""))
    line = Line([Place("a", "")])
    assert line.blocks(Place("b", "")) and not line.blocks(Place("a", ""))


def test_positions_of_a_place_not_in_line_are_an_error():
    with pytest.raises(KeyError):
        Line().position(("a", ""))


def test_waiting_messages():
    assert waiting_message(2, "an A100", 8, "14:32") == (
        "2nd in line for an A100; 8 servers hold them; one stops at the latest at 14:32"
        " (maximum age)"
    )
    assert waiting_message(1, "1 GPU", 1) == "1st in line for 1 GPU; 1 server holds them"
    assert waiting_message(3, "2 GPUs", 0, "14:32") == (
        "3rd in line for 2 GPUs; no server holds one right now"
    )


def test_refusal_sentences():
    assert timed_out_message("an A100", 600, 2) == (
        "No GPU came free for you in 10 minutes: you asked for an A100 and were 2nd in line."
        " Try again later, or start with fewer GPUs."
    )
    assert restart_message("", 3) == (
        "The hub restarted while the default server was waiting for a GPU (3rd in line); the"
        " line does not survive a restart: start the server again to wait anew."
    )
    assert restart_message("x", None).startswith("The hub restarted while server 'x' was")


def test_engine_capacity_of_the_types_a_server_would_ask_for():
    held = [Gpu("p1", "A100"), Gpu("p2", "A100"), Gpu("p3", "T4"), Gpu("p4", "nvidia.com/gpu")]
    totals = {"A100": 3, "T4": 1, "A100 MIG 1g.10gb": 7}
    assert engine_capacity_left({"A100"}, totals, held) == (1, 3)
    # a GPU reserved before a node typed it (named by its resource) counts as taken too
    assert engine_capacity_left({"A100"}, totals, held, {"nvidia.com/gpu"}) == (0, 3)
    assert engine_capacity_left({"A100", "T4"}, totals, held) == (1, 4)
    assert engine_capacity_left({"A100"}, {"A100": 1}, held) == (0, 1)  # never below 0
    assert engine_capacity_left({"H100"}, totals, held) is None  # no total: the scheduler
    assert engine_capacity_left({"A100"}, None, held) is None
    assert engine_capacity_left(set(), totals, held) is None


# --- properties: whatever joins and leaves, the line stays first come, first served ---

ops = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave"]), st.integers(0, 7), st.sampled_from(["", "A", "B"])
    ),
    max_size=60,
)


@given(ops)
def test_the_line_keeps_arrival_order_and_one_place_per_user(operations):
    line = Line()
    model: list[tuple[str, str]] = []  # (user, type) in arrival order
    for op, n, kind in operations:
        user = "u%d" % n
        if op == "join":
            if any(u == user for u, _ in model):
                with pytest.raises(AlreadyWaiting):
                    line.join(Place(user, "s2", kind))
                continue
            line.join(Place(user, "", kind))
            model.append((user, kind))
        else:
            assert line.leave((user, "")) == any(u == user for u, _ in model)
            model = [(u, k) for u, k in model if u != user]
        assert [p.user for p in line.places] == [u for u, _ in model]
        for i, (u, k) in enumerate(model):
            ahead = [v for v, j in model[:i] if not k or not j or j == k]
            assert line.position((u, "")) == len(ahead) + 1
            assert line.may_take((u, "")) == (not ahead)
        # exactly one head per type that anyone waits for, and the oldest waiter is a head
        if model:
            assert line.heads()[0].user == model[0][0]
