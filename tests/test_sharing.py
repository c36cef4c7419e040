"""Shared GPUs, GPU types and their sentences (pure): slots, spreading, quota in 1/N, the
environment of a slot, and a state machine over spawns of whole GPUs and slots."""

from collections import Counter
from dataclasses import replace
from fractions import Fraction

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gpuspawner.lifecycle.env import gpu_env
from gpuspawner.policy.allocation import (
    GpuPool,
    GpuRequest,
    Grant,
    Holding,
    Refusal,
    article,
    decide,
    describe_request,
    free_gpus,
    free_slots,
    slot_note,
)
from gpuspawner.policy.inventory import Gpu
from gpuspawner.policy.quota import GpuLimit, amount_text, fraction_text, gpu_share

ONE = GpuLimit(1, "the default for every user")
TWO = GpuLimit(2, "group 'staff'")
T4S = tuple(Gpu("GPU-t%d" % i, "Tesla T4", 15360, shared_by=3) for i in range(2))
A100S = tuple(Gpu("GPU-a%d" % i, "NVIDIA A100-SXM4-80GB", 81920) for i in range(2))
MIXED = A100S + T4S


def slot(user, server, gpu):
    return Holding(user, server, (gpu,))


def test_a_shared_request_gets_the_least_held_shared_gpu():
    held = [slot("u1", "", T4S[0])]
    assert decide(GpuRequest("ann", "", 1, ONE, shared=True), MIXED, held) == Grant((T4S[1],))
    held.append(slot("u2", "", T4S[1]))
    # equally held: the first in inventory order
    assert decide(GpuRequest("ann", "", 1, ONE, shared=True), MIXED, held) == Grant((T4S[0],))


def test_a_shared_gpu_holds_at_most_n_servers():
    held = [slot("u%d" % i, "", T4S[i % 2]) for i in range(6)]
    outcome = decide(GpuRequest("ann", "", 1, ONE, shared=True), MIXED, held)
    assert outcome == Refusal(
        "capacity",
        "No shared GPU slot is free: all 6 slots of the 2 shared GPUs are taken right now."
        " Try again later, or start with a whole GPU.",
    )
    typed = decide(GpuRequest("ann", "", 1, ONE, gpu_type="T4", shared=True), MIXED, held)
    assert typed.message.startswith(
        "No shared T4 slot is free: all 6 slots of the 2 shared T4s are taken"
    )


def test_a_whole_gpu_request_never_gets_a_shared_gpu():
    # nobody holds the T4s, the A100s are taken: a whole GPU is not free
    held = [Holding("u1", "", (A100S[0],)), Holding("u2", "", (A100S[1],))]
    outcome = decide(GpuRequest("ann", "", 1, ONE), MIXED, held)
    assert outcome == Refusal(
        "capacity",
        "Not enough GPUs are free: you asked for 1 GPU and 0 of 2 are free right now."
        " Try again later, or start with fewer GPUs.",
    )
    assert free_gpus(MIXED, held) == []
    assert free_slots(MIXED, held) == [(T4S[0], 3), (T4S[1], 3)]


def test_only_shared_gpus_or_none_shared_refuse_as_options():
    only_shared = decide(GpuRequest("ann", "", 1, ONE), T4S, [])
    assert only_shared == Refusal(
        "options", "Every GPU of this hub is shared: ask for a shared slot (1 GPU) instead."
    )
    none_shared = decide(GpuRequest("ann", "", 1, ONE, shared=True), A100S, [])
    assert none_shared == Refusal(
        "options", "This hub has no shared GPU: ask for a whole GPU instead."
    )
    two_slots = decide(GpuRequest("ann", "", 2, TWO, shared=True), T4S, [])
    assert two_slots == Refusal(
        "options",
        "A shared GPU slot is one GPU: you asked for 2 GPUs shared. Ask for 1 GPU with a shared"
        " slot, or for whole GPUs.",
    )


def test_a_slot_counts_one_nth_of_the_quota():
    three = [Gpu("GPU-s%d" % i, "Tesla T4", shared_by=3) for i in range(3)]
    held = []
    for server in ("a", "b", "c"):  # quota 1: three slots of GPUs shared by 3
        outcome = decide(GpuRequest("ann", server, 1, ONE, shared=True), three, held)
        assert isinstance(outcome, Grant), outcome
        held.append(Holding("ann", server, outcome.gpus))
    assert sorted(h.uuids[0] for h in held) == ["GPU-s0", "GPU-s1", "GPU-s2"]  # spread
    fourth = decide(GpuRequest("ann", "d", 1, ONE, shared=True), three, held)
    assert fourth == Refusal(
        "quota",
        "You asked for 1/3 GPU (a shared slot), but your limit is 1 GPU at once (the default"
        " for every user) and you already hold 1/3 GPU (a shared slot) on server 'a' (GPU-s0),"
        " 1/3 GPU (a shared slot) on server 'b' (GPU-s1) and 1/3 GPU (a shared slot) on"
        " server 'c' (GPU-s2). Stop a server holding GPUs, or ask for at most 0.",
    )


def test_a_whole_gpu_after_a_slot_breaks_a_quota_of_one():
    held = [slot("ann", "a", T4S[0])]
    outcome = decide(GpuRequest("ann", "b", 1, ONE), MIXED, held)
    assert outcome.reason == "quota"
    assert "you already hold 1/3 GPU (a shared slot) on server 'a' (GPU-t0)" in outcome.message
    assert outcome.message.endswith("ask for at most 0.")
    # with a quota of 2 there is room for one more whole GPU
    assert decide(GpuRequest("ann", "b", 1, TWO), MIXED, held) == Grant((A100S[0],))


def test_quota_zero_refuses_a_slot_too():
    outcome = decide(GpuRequest("ann", "", 1, GpuLimit(0, "group 'cpu'"), shared=True), T4S, [])
    assert outcome == Refusal(
        "quota",
        "You asked for 1/3 GPU (a shared slot), but your limit is 0 GPUs at once"
        " (group 'cpu'). Ask for at most 0.",
    )


def test_gpu_type_keeps_only_gpus_of_that_type():
    assert decide(GpuRequest("ann", "", 1, ONE, gpu_type="a100"), MIXED, []) == Grant(
        (A100S[0],)
    )
    held = [Holding("u1", "", (A100S[0],)), Holding("u2", "", (A100S[1],))]
    outcome = decide(GpuRequest("ann", "", 1, ONE, gpu_type="A100"), MIXED, held)
    assert outcome == Refusal(
        "capacity",
        "Not enough A100 GPUs are free: you asked for an A100 and 0 of 2 are free right now."
        " Try again later, or start with fewer GPUs.",
    )
    none = decide(GpuRequest("ann", "", 1, ONE, gpu_type="H100"), MIXED, [])
    assert none == Refusal(
        "options",
        "This hub has no H100 GPU (it has NVIDIA A100-SXM4-80GB and Tesla T4): ask for another"
        " type, or for any GPU.",
    )
    t40 = (Gpu("GPU-x", "Tesla T40"),)
    assert decide(GpuRequest("ann", "", 1, ONE, gpu_type="T4"), t40, []).reason == "options"


def test_typed_quota_sentence_names_the_request():
    outcome = decide(GpuRequest("ann", "", 2, ONE, gpu_type="A100"), MIXED, [])
    assert outcome.message == (
        "You asked for 2 GPUs (2 A100 GPUs), but your limit is 1 GPU at once (the default for"
        " every user). Ask for at most 1."
    )


@pytest.mark.parametrize(
    "request_, text",
    [
        (GpuRequest("a", "", 1, ONE), "1 GPU"),
        (GpuRequest("a", "", 2, ONE), "2 GPUs"),
        (GpuRequest("a", "", 1, ONE, gpu_type="A100"), "an A100"),
        (GpuRequest("a", "", 1, ONE, gpu_type="T4"), "a T4"),
        (GpuRequest("a", "", 1, ONE, gpu_type="H100"), "an H100"),
        (GpuRequest("a", "", 1, ONE, gpu_type="RTX 4090"), "an RTX 4090"),
        (GpuRequest("a", "", 1, ONE, gpu_type="Tesla"), "a Tesla"),
        (GpuRequest("a", "", 3, ONE, gpu_type="A100"), "3 A100 GPUs"),
        (GpuRequest("a", "", 1, ONE, shared=True), "a shared GPU slot"),
        (GpuRequest("a", "", 1, ONE, gpu_type="T4", shared=True), "a shared T4 slot"),
    ],
)
def test_describe_request(request_, text):
    assert describe_request(request_) == text


def test_article_reads_model_codes_letter_by_letter():
    assert [article(w) for w in ("A100", "L4", "V100", "Ampere", "Hopper", "U2")] == [
        "an", "an", "a", "an", "a", "a",
    ]  # fmt: skip


def test_amounts_and_slot_notes():
    assert fraction_text(Fraction(1, 4)) == "1/4" and fraction_text(Fraction(5, 4)) == "1 1/4"
    assert fraction_text(Fraction(2)) == "2"
    assert amount_text(A100S) == "2 GPUs"
    assert amount_text((T4S[0],)) == "1/3 GPU (a shared slot)"
    assert gpu_share(A100S + T4S) == Fraction(8, 3)
    assert slot_note(4) == "shared with up to 3 others; memory is not isolated and compute is"\
        " time-sliced"
    assert slot_note(2, "mps") == (
        "shared with up to 1 other; each server gets at most 1/2 of its memory and compute"
        " (CUDA MPS)"
    )


def test_a_slot_sees_its_gpu_and_says_it_is_shared():
    env = gpu_env((T4S[0],), "")
    assert env["NVIDIA_VISIBLE_DEVICES"] == "GPU-t0" == env["GPUSPAWNER_GPU_UUIDS"]
    assert env["GPU_LIMIT"] == "1" and env["GPUSPAWNER_GPU_SHARED_BY"] == "3"
    assert env["GPUSPAWNER_GPU_SHARE_MODE"] == "time-sliced"
    assert not any(key.startswith("CUDA_MPS") for key in env)
    mps = gpu_env((T4S[0],), "", share_mode="mps")
    assert mps["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "33"
    assert mps["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=5120M"
    unknown_memory = gpu_env((Gpu("GPU-m", "T4", shared_by=4),), "", share_mode="mps")
    assert "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT" not in unknown_memory
    assert unknown_memory["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "25"
    whole = gpu_env(A100S, "", share_mode="mps")
    assert not {k for k in whole if "SHARE" in k or k.startswith("CUDA_MPS")}


def test_a_slot_survives_a_rebuild_and_its_share_comes_from_the_holding():
    pool = GpuPool(MIXED)
    assert pool.allocate(GpuRequest("ann", "", 1, ONE, shared=True)).gpus == (T4S[0],)
    pool.confirm("ann", "")
    fresh = GpuPool(MIXED)
    fresh.rebuild(pool.holdings, set())
    assert fresh.holding("ann", "").share == Fraction(1, 3)
    assert [n for _, n in free_slots(MIXED, fresh.holdings)] == [2, 3]


# --- any sequence of spawns of whole GPUs and slots keeps the rules ---

USERS = ["ann", "ben", "cat"]
SERVERS = ["", "a", "b", "c"]
LIMITS = {"ann": GpuLimit(1, "d"), "ben": GpuLimit(2, "g"), "cat": GpuLimit(0, "g")}
INVENTORY = (
    Gpu("GPU-w0", "NVIDIA A100"),
    Gpu("GPU-w1", "NVIDIA A100"),
    Gpu("GPU-w2", "Tesla T4"),
    Gpu("GPU-s0", "Tesla T4", shared_by=2),
    Gpu("GPU-s1", "NVIDIA A100", shared_by=3),
)
BY_UUID = {gpu.uuid: gpu for gpu in INVENTORY}


class SharingMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.pool = GpuPool(INVENTORY)
        self.running: dict[tuple[str, str], tuple[str, ...]] = {}

    @rule(
        user=st.sampled_from(USERS),
        server=st.sampled_from(SERVERS),
        count=st.integers(0, 3),
        shared=st.booleans(),
        gpu_type=st.sampled_from(["", "A100", "T4"]),
    )
    def spawn(self, user, server, count, shared, gpu_type):
        request = GpuRequest(user, server, count, LIMITS[user], gpu_type=gpu_type, shared=shared)
        outcome = self.pool.allocate(request)
        if isinstance(outcome, Grant):
            assert len(outcome.gpus) == count
            assert all(g.is_shared == shared for g in outcome.gpus)
            assert all(gpu_type.lower() in g.name.lower() for g in outcome.gpus)
            self.pool.confirm(user, server)
            if count:
                self.running[(user, server)] = outcome.uuids
            else:
                self.pool.release(user, server)
        else:
            assert outcome.reason in ("quota", "capacity", "options")
            self.running.pop((user, server), None)
            self.pool.release(user, server)  # a refused restart holds nothing

    @rule(data=st.data())
    @precondition(lambda self: self.running)
    def stop(self, data):
        key = data.draw(st.sampled_from(sorted(self.running)))
        del self.running[key]
        self.pool.release(*key)

    @rule()
    def hub_restart(self):
        fresh = GpuPool(INVENTORY)
        fresh.rebuild(
            [
                Holding(u, s, tuple(BY_UUID[uuid] for uuid in uuids))
                for (u, s), uuids in self.running.items()
            ],
            set(),
        )
        self.pool = fresh

    @invariant()
    def never_more_holders_than_slots(self):
        holders = Counter(uuid for h in self.pool.holdings for uuid in h.uuids)
        for uuid, n in holders.items():
            assert n <= BY_UUID[uuid].shared_by, (uuid, n)

    @invariant()
    def nobody_over_quota(self):
        for user in USERS:
            assert sum(h.share for h in self.pool.held_by(user)) <= LIMITS[user].count


SharingMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
test_sharing_state_machine = SharingMachine.TestCase


# --- budgets charge a slot 1/N of the GPU's weight ---


def test_a_slot_is_charged_one_nth_of_its_weight_in_the_ledger(tmp_path):
    from datetime import datetime, timedelta, timezone

    from gpuspawner.policy.budget import gpu_rate, usage_hours
    from gpuspawner.usage.ledger import Ledger

    t0 = datetime(2026, 11, 24, 9, tzinfo=timezone.utc)
    hour = timedelta(hours=1)
    weights = {"T4": 3.0, "A100": 4.0}
    ledger = Ledger("sqlite:///%s" % (tmp_path / "usage.sqlite"))
    try:
        assert ledger.open("ann", "a", [T4S[0]], t0) == 1  # a third of a T4
        assert ledger.open("ann", "b", [A100S[0]], t0) == 1
        # a slot the hub did not see open (restart): reconcile opens it with its share
        late = Holding("ben", "", (T4S[1],))
        assert ledger.reconcile([Holding("ann", "a", (T4S[0],)), Holding("ann", "b", (A100S[0],)),
                                 late], t0) == (0, 1)  # fmt: skip
        shares = sorted((i.user, i.gpu_uuid, i.shared_by) for i in ledger.open_intervals())
        assert shares == [("ann", "GPU-a0", 1), ("ann", "GPU-t0", 3), ("ben", "GPU-t1", 3)]
        ann = ledger.intervals(t0, t0 + hour, "ann")
        assert usage_hours(ann, t0, t0 + hour, t0 + hour, weights) == 3.0 / 3 + 4.0
        ben = ledger.intervals(t0, t0 + hour, "ben")
        assert usage_hours(ben, t0, t0 + hour, t0 + hour, weights) == 1.0
        assert gpu_rate((T4S[0],), weights) == 1.0 and gpu_rate(A100S, weights) == 8.0
    finally:
        ledger.dispose()


def test_a_shared_gpu_held_by_several_servers_is_one_gpu_allocated():
    from gpuspawner.usage.hub_metrics import gpu_counts

    held = [slot("ann", "", T4S[0]), slot("ben", "", T4S[0]), Holding("cat", "", (A100S[0],))]
    counts = gpu_counts({"Tesla T4": 2, "NVIDIA A100-SXM4-80GB": 2}, held)
    assert counts[("Tesla T4", "allocated")] == 1 and counts[("Tesla T4", "free")] == 1
    assert counts[("NVIDIA A100-SXM4-80GB", "free")] == 1


# --- the Docker spawner's settings, checked when the hub makes a spawner ---


def docker_spawner(**settings):
    import types

    from traitlets.config import Config

    from gpuspawner.docker import GPUDockerSpawner
    from gpuspawner.lifecycle.shared import reset_shared_state

    config = Config()
    config.GPUDockerSpawner.images = {"demo": {"image": "org/demo:1"}}
    config.GPUDockerSpawner.inventory = [
        {"uuid": "GPU-a0", "name": "NVIDIA A100-SXM4-80GB", "memory_mib": 81920},
        {"uuid": "GPU-t0", "name": "Tesla T4", "memory_mib": 15360, "switch": 0},
    ]
    for key, value in settings.items():
        setattr(config.GPUDockerSpawner, key, value)
    reset_shared_state()
    return GPUDockerSpawner(
        user=types.SimpleNamespace(name="ann", id=1, groups=[], url="/user/ann/"),
        orm_spawner=types.SimpleNamespace(name="", user_options={}, server=None),
        hub=types.SimpleNamespace(public_host="", api_url="http://h/hub/api", base_url="/hub/"),
        config=config,
    )


def test_shared_gpus_are_checked_when_the_spawner_is_made():
    from traitlets import TraitError

    spawner = docker_spawner(shared_gpus={"T4": 3}, shared_gpu_mode="mps")
    inventory = spawner.gpu_inventory()
    assert [g.shared_by for g in inventory] == [1, 3]
    assert inventory[1].topology.switch == "0"
    with pytest.raises(TraitError, match="no GPU of this hub is of the type 'V100'"):
        docker_spawner(shared_gpus={"V100": 2})
    with pytest.raises(TraitError, match=r"shared_gpus\['T4'\] must be a whole number"):
        docker_spawner(shared_gpus={"T4": 1})
    with pytest.raises(TraitError):
        docker_spawner(shared_gpu_mode="spatial")


def test_a_slots_container_records_its_share_and_gets_the_mps_limits():
    spawner = docker_spawner(shared_gpus={"T4": 3}, shared_gpu_mode="mps")
    spawner.choice = spawner.choose({"gpus": 1})
    spawner.held_gpus = (spawner.gpu_inventory()[1],)
    request = spawner.container_request()
    assert request.labels["gpuspawner.gpu-shared-by"] == "3"
    assert request.gpu_env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=5120M"
    assert request.gpu_env["GPUSPAWNER_GPU_SHARED_BY"] == "3"
    spawner.held_gpus = (spawner.gpu_inventory()[0],)
    whole = spawner.container_request()
    assert "gpuspawner.gpu-shared-by" not in whole.labels
    assert "GPUSPAWNER_GPU_SHARED_BY" not in whole.gpu_env


def test_a_slots_deadline_spends_the_budget_at_one_nth_of_the_weight(tmp_path):
    import logging
    from datetime import datetime, timezone

    from gpuspawner.usage.accounting import Accounting
    from gpuspawner.usage.ledger import Ledger

    spawner = docker_spawner(
        shared_gpus={"T4": 3},
        gpu_hour_budget=1.0,
        gpu_hour_weights={"T4": 3.0},
        budget_grace_period=0,
    )
    t4 = spawner.gpu_inventory()[1]
    ledger = Ledger("sqlite:///%s" % (tmp_path / "usage.sqlite"))
    try:
        accounting = Accounting(spawner, ledger, "ann", "", [], logging.getLogger("test"))
        accounting.used_at_spawn = 0.0
        for gpu, hours in ((t4, 1.0), (replace(t4, shared_by=1), 1 / 3)):
            env = accounting.deadline_env((gpu,))
            at = datetime.fromisoformat(env["GPUSPAWNER_GPU_DEADLINE"])
            left = (at - datetime.now(timezone.utc)).total_seconds() / 3600
            assert abs(left - hours) < 0.01, (gpu, left)
    finally:
        ledger.dispose()


def test_a_slot_keeps_its_share_in_the_saved_state():
    from gpuspawner.lifecycle.base import gpu_to_state

    entry = gpu_to_state(T4S[0])
    assert entry == {"uuid": "GPU-t0", "name": "Tesla T4", "shared_by": 3}
    assert Gpu(**entry).shared_by == 3
    assert "shared_by" not in gpu_to_state(A100S[0])


@pytest.mark.parametrize(
    "shared, words",
    [
        ({"V100": 2}, "no GPU of this hub is of the type 'V100' (its GPUs: Tesla T4)."),
        ({"GPU-9": 2}, "shared_gpus: the GPU GPU-9 is not among this hub's GPUs (GPU-1)."),
        ({"T4": 1}, "shared_gpus['T4'] must be a whole number of servers, 2 or more, not 1"),
    ],
)
def test_check_config_stops_a_hub_with_bad_shared_gpus(shared, words):
    from traitlets.config import Config

    from gpuspawner.config import check_config
    from gpuspawner.errors import ConfigError

    c = Config()
    c.GPUDockerSpawner.images = {"demo": {"image": "org/demo:1.0"}}
    c.GPUDockerSpawner.inventory = [{"uuid": "GPU-1", "name": "Tesla T4"}]
    c.GPUDockerSpawner.shared_gpus = shared
    with pytest.raises(ConfigError) as error:
        check_config(c)
    assert words in str(error.value)
    c.GPUDockerSpawner.shared_gpus = {"T4": 2}
    check_config(c)


def test_the_hub_logs_which_gpus_are_shared(caplog):
    import logging

    spawner = docker_spawner(shared_gpus={"T4": 3})
    spawner.log = logging.getLogger("test-sharing")
    spawner.shared.inventory_note = None
    with caplog.at_level(logging.INFO, logger="test-sharing"):
        spawner.gpu_inventory()
    assert "GPUs of this hub: 2 GPUs declared (inventory); shared: GPU-t0 by 3" in caplog.text
