"""GPU allocation: distinct GPUs, quota across named servers, sentences (pure)."""

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gpuspawner.policy.allocation import (
    GpuPool,
    GpuRequest,
    Grant,
    Holding,
    Refusal,
    decide,
    describe_holdings,
    free_gpus,
)
from gpuspawner.policy.inventory import Gpu
from gpuspawner.policy.quota import GpuLimit

INVENTORY = tuple(Gpu("GPU-%d" % i, "NVIDIA A100") for i in range(4))


def held_gpus(*uuids):
    return tuple(Gpu(uuid) for uuid in uuids)


ONE = GpuLimit(1, "the default for every user")
TWO = GpuLimit(2, "group 'staff'")


def test_grants_first_free_gpus_in_inventory_order():
    held = [Holding("bob", "", held_gpus("GPU-0"))]
    outcome = decide(GpuRequest("alice", "", 2, TWO), INVENTORY, held)
    assert outcome == Grant(INVENTORY[1:3])
    assert outcome.uuids == ("GPU-1", "GPU-2")


def test_zero_gpus_always_granted():
    full = [Holding("bob", "", INVENTORY)]
    assert decide(GpuRequest("alice", "", 0, GpuLimit(0, "x")), INVENTORY, full) == Grant(())


def test_quota_counts_all_named_servers_and_names_them():
    held = [
        Holding("alice", "train", held_gpus("GPU-0")),
        Holding("alice", "eval", held_gpus("GPU-1")),
    ]
    outcome = decide(GpuRequest("alice", "", 1, TWO), INVENTORY, held)
    assert isinstance(outcome, Refusal) and outcome.reason == "quota"
    assert outcome.message == (
        "You asked for 1 GPU, but your limit is 2 GPUs at once (group 'staff') and you already"
        " hold 1 GPU on server 'eval' (GPU-1) and 1 GPU on server 'train' (GPU-0)."
        " Stop a server holding GPUs, or ask for at most 0."
    )


def test_quota_refusal_without_holdings():
    outcome = decide(GpuRequest("alice", "", 3, TWO), INVENTORY, [])
    assert outcome == Refusal(
        "quota",
        "You asked for 3 GPUs, but your limit is 2 GPUs at once (group 'staff'). Ask for at most"
        " 2.",
    )


def test_restarting_the_same_server_does_not_count_its_old_gpus():
    held = [Holding("alice", "train", held_gpus("GPU-0"))]
    assert decide(GpuRequest("alice", "train", 1, ONE), INVENTORY, held) == Grant((INVENTORY[0],))


def test_capacity_refusal_says_how_many_are_free():
    held = [Holding("u%d" % i, "", held_gpus("GPU-%d" % i)) for i in range(3)]
    outcome = decide(GpuRequest("alice", "", 2, TWO), INVENTORY, held)
    assert outcome == Refusal(
        "capacity",
        "Not enough GPUs are free: you asked for 2 GPUs and 1 of 4 is free right now."
        " Try again later, or start with fewer GPUs.",
    )


def test_holdings_of_unknown_gpus_count_for_quota_not_capacity():
    held = [Holding("alice", "old", held_gpus("GPU-gone"))]
    assert decide(GpuRequest("alice", "", 1, ONE), INVENTORY, held).reason == "quota"
    assert len(free_gpus(INVENTORY, held)) == 4


def test_describe_holdings():
    assert describe_holdings([]) == "no GPU"
    assert (
        describe_holdings([Holding("a", "", held_gpus("GPU-1", "GPU-2"))])
        == "2 GPUs on the default server (GPU-1, GPU-2)"
    )


def test_where_the_engine_picks_devices_only_the_quota_is_checked():
    pool = GpuPool(inventory=None)
    pod = (Gpu("jupyter-ann/nvidia.com/gpu#0", "NVIDIA-L4", resource="nvidia.com/gpu"),)
    assert pool.allocate(GpuRequest("ann", "", 1, ONE, devices=pod)) == Grant(pod)
    assert pool.free() == []
    refused = pool.allocate(GpuRequest("ann", "b", 1, ONE, devices=pod))
    assert (
        refused.reason == "quota"
        and "you already hold 1 GPU on the default server" in refused.message
    )
    assert pool.release("ann", "") == pod


def test_confirm_takes_the_engines_word_on_what_is_held():
    pool = GpuPool(inventory=None)
    asked = (Gpu("p/nvidia.com/gpu#0", "nvidia.com/gpu", resource="nvidia.com/gpu"),)
    pool.allocate(GpuRequest("ann", "", 1, ONE, devices=asked))
    placed = Holding(
        "ann",
        "",
        (Gpu(asked[0].uuid, "NVIDIA-A100", resource="nvidia.com/gpu"),),
        "pod p, on node a",
    )
    pool.confirm("ann", "", placed)
    assert pool.holding("ann", "") == placed and pool.in_flight() == set()


def test_a_granted_holding_names_its_owner_until_the_engine_says_otherwise():
    """The holder key survives renames; the owner is the user's name, which the ledger and
    the line's messages go by (a holding this hub granted has one before any rebuild)."""
    pool = GpuPool(INVENTORY)
    pool.allocate(GpuRequest("#7", "", 1, ONE, owner="ann"))
    assert pool.holding("#7", "").owner == "ann"
    pool.confirm("#7", "", Holding("#7", "", held_gpus("GPU-0"), "node a"))  # none named
    assert pool.holding("#7", "").owner == "ann"
    pool.confirm("#7", "", Holding("#7", "", held_gpus("GPU-0"), "node a", owner="anna"))
    assert pool.holding("#7", "").owner == "anna"


def test_pool_keeps_spawns_in_flight_across_a_rebuild():
    pool = GpuPool(INVENTORY)
    assert pool.allocate(GpuRequest("alice", "", 1, ONE)).uuids == ("GPU-0",)
    # the engine does not show alice's container yet, but shows bob's from before a restart
    pool.rebuild([Holding("bob", "x", held_gpus("GPU-1"))], pool.in_flight())
    assert sorted(h.user for h in pool.holdings) == ["alice", "bob"]
    assert pool.allocate(GpuRequest("carol", "", 1, ONE)).uuids == ("GPU-2",)


def test_pool_rebuild_drops_dead_servers_and_release_frees():
    pool = GpuPool(INVENTORY)
    pool.allocate(GpuRequest("alice", "", 1, ONE))
    pool.confirm("alice", "")
    pool.rebuild([], set())  # alice's container died while the hub was away
    assert pool.holdings == []
    pool.allocate(GpuRequest("bob", "", 1, ONE))
    assert pool.release("bob", "") == (INVENTORY[0],)
    assert pool.release("bob", "") == ()


def test_spawn_confirmed_during_listing_is_kept():
    pool = GpuPool(INVENTORY)
    pool.allocate(GpuRequest("alice", "", 1, ONE))
    before = pool.in_flight()
    pool.confirm("alice", "")  # started while the engine was being listed
    pool.rebuild([], before)
    assert [h.user for h in pool.holdings] == ["alice"]


USERS = ["ann", "ben", "cat"]
SERVERS = ["", "a", "b"]
LIMITS = {"ann": GpuLimit(1, "d"), "ben": GpuLimit(2, "g"), "cat": GpuLimit(3, "g")}


class PoolMachine(RuleBasedStateMachine):
    """Any sequence of spawns, stops, crashes and hub restarts keeps the invariants."""

    def __init__(self):
        super().__init__()
        self.pool = GpuPool(tuple(Gpu("GPU-%d" % i) for i in range(5)))
        self.running: dict[tuple[str, str], tuple[str, ...]] = {}  # what the engine shows

    @rule(user=st.sampled_from(USERS), server=st.sampled_from(SERVERS), count=st.integers(0, 4))
    def spawn(self, user, server, count):
        request = GpuRequest(user, server, count, LIMITS[user])
        others = [h for h in self.pool.holdings if h.key != (user, server)]
        free_before = {g.uuid for g in free_gpus(self.pool.inventory, others)}
        outcome = self.pool.allocate(request)
        if isinstance(outcome, Grant):
            assert len(outcome.uuids) == count
            assert set(outcome.uuids) <= free_before
            self.pool.confirm(user, server)
            self.running[(user, server)] = outcome.uuids
        else:
            mine = sum(len(h.uuids) for h in others if h.user == user)
            assert mine + count > LIMITS[user].count or len(free_before) < count

    @rule(data=st.data())
    @precondition(lambda self: self.running)
    def stop(self, data):
        user, server = data.draw(st.sampled_from(sorted(self.running)))
        del self.running[(user, server)]
        self.pool.release(user, server)

    @rule(data=st.data())
    @precondition(lambda self: self.running)
    def crash_while_hub_is_away(self, data):
        key = data.draw(st.sampled_from(sorted(self.running)))
        del self.running[key]

    @rule()
    def hub_restart(self):
        fresh = GpuPool(self.pool.inventory)
        fresh.rebuild(
            [Holding(u, s, held_gpus(*uuids)) for (u, s), uuids in self.running.items()], set()
        )
        self.pool = fresh

    @invariant()
    def no_gpu_held_twice(self):
        counts = Counter(uuid for h in self.pool.holdings for uuid in h.uuids)
        assert all(n == 1 for n in counts.values()), counts

    @invariant()
    def nobody_over_quota(self):
        for user in USERS:
            assert sum(len(h.uuids) for h in self.pool.held_by(user)) <= LIMITS[user].count


PoolMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_pool_state_machine = PoolMachine.TestCase


# --- topology: multi-GPU grants get the closest free GPUs ---

from itertools import combinations  # noqa: E402

from gpuspawner.policy.inventory import Topology  # noqa: E402
from gpuspawner.policy.topology import (  # noqa: E402
    NUMA,
    NVLINK,
    SWITCH,
    SYSTEM,
    closest,
    distance,
    link_of,
    spread,
)


def two_islands(count=8, island=4):
    """GPUs in NVLink islands of ``island``, PCIe switches of two, one NUMA node."""
    return tuple(
        Gpu(
            "GPU-%02d" % i,
            "NVIDIA A100",
            topology=Topology(nvlink=str(i // island), switch=str(i // 2), numa="0"),
        )
        for i in range(count)
    )


EIGHT = two_islands()


def grant(free_indices, count, inventory=EIGHT):
    held = [Holding("x%d" % i, "", (g,)) for i, g in enumerate(inventory) if i not in free_indices]
    outcome = decide(GpuRequest("ann", "", count, GpuLimit(count, "g")), inventory, held)
    return [inventory.index(g) for g in outcome.gpus]


def test_distance_levels():
    a, b, c, d = (Gpu("GPU-%d" % i, topology=t) for i, t in enumerate([
        Topology(nvlink="1", switch="s0"), Topology(nvlink="1", switch="s1"),
        Topology(switch="s1", numa="n"), Topology(numa="n"),
    ]))  # fmt: skip
    assert distance(a, b) == NVLINK and distance(b, c) == SWITCH
    assert distance(c, d) == NUMA and distance(a, d) == SYSTEM
    assert distance(Gpu("GPU-x"), Gpu("GPU-y")) == SYSTEM  # unknown is not close
    assert link_of([a, b]) == "in one NVLink island" and link_of([a, b, c]) == "across NUMA nodes"


def test_pairs_and_quads_stay_in_one_island():
    assert grant({1, 2, 3, 4, 5}, 2) == [1, 2]
    assert grant({3, 4, 6}, 2) == [4, 6]  # an island, not the first two free
    assert grant({0, 4, 5, 6, 7}, 4) == [4, 5, 6, 7]
    assert grant({0, 3, 4, 5, 7}, 3) == [4, 5, 7]
    assert grant({3, 4}, 2) == [3, 4]  # no island has two free: across, in inventory order
    # no island has four: three of one and one of the other beats two and two
    assert grant({0, 1, 2, 5, 6, 7}, 4) == [0, 1, 2, 5]
    assert grant({0, 1, 5, 6, 7}, 4) == [0, 5, 6, 7]


def test_without_nvlink_the_pcie_switch_decides():
    pcie = tuple(
        Gpu("GPU-%d" % i, topology=Topology(switch=str(i // 2), bridge=str(i // 4), numa="0"))
        for i in range(8)
    )
    assert grant({1, 2, 3}, 2, pcie) == [2, 3]  # same switch
    assert grant({1, 3, 4}, 2, pcie) == [1, 3]  # same host bridge
    assert grant({1, 4}, 2, pcie) == [1, 4]  # one NUMA node
    assert grant({0}, 1, pcie) == [0]


def test_every_fragmented_free_set_gets_a_tightest_set():
    """All 256 free sets of two islands of four and every count: the grant is as tight as
    the tightest set, the earliest in inventory order among those."""
    for mask in range(256):
        free = [i for i in range(8) if mask >> i & 1]
        for count in range(1, len(free) + 1):
            got = grant(set(free), count)
            best = min(
                combinations(free, count), key=lambda s: (spread([EIGHT[i] for i in s]), s)
            )
            assert got == list(best), (free, count, got)
            if count > 1:  # same as a rule of thumb: an island with room is used
                islands = Counter(i // 4 for i in free)
                if max(islands.values()) >= count:
                    assert len({i // 4 for i in got}) == 1, (free, count, got)


def test_large_hosts_search_greedily_and_still_keep_islands():
    big = two_islands(32, 8)  # 32 choose 8 sets: too many to compare each
    free = [i for i in range(32) if i not in {0, 9, 17, 18}]
    got = grant(set(free), 8, big)
    assert got == list(range(24, 32))  # the first island with eight free
    assert spread([big[i] for i in got])[0] == NVLINK
    nearly = [i for i in range(32) if i % 8 != 0]  # seven free in each island
    got = grant(set(nearly), 8, big)
    assert spread([big[i] for i in got]) == (NUMA, 7 * NUMA)  # seven and one


def test_closest_without_topology_is_the_first_free():
    plain = tuple(Gpu("GPU-%d" % i) for i in range(6))
    assert closest(plain, 3) == plain[:3]
    assert closest(EIGHT[:2], 2) == EIGHT[:2]


labels = st.sampled_from(["", "0", "1", "2"])
topologies = st.builds(Topology, nvlink=labels, switch=labels, bridge=labels, numa=labels)


@given(st.lists(topologies, min_size=2, max_size=9), st.integers(2, 5))
@settings(max_examples=300, deadline=None)
def test_any_topology_gets_a_tightest_set(places, count):
    """Whatever the labels (nested or not), no set of ``count`` free GPUs is tighter than the
    grant, and none as tight comes earlier in inventory order."""
    free = tuple(Gpu("GPU-%d" % i, topology=t) for i, t in enumerate(places))
    count = min(count, len(free))
    got = closest(free, count)
    assert len(set(got)) == count and list(got) == sorted(got, key=free.index)
    for other in combinations(free, count):
        assert spread(got) <= spread(other)
        if spread(other) == spread(got):
            assert [free.index(g) for g in got] <= [free.index(g) for g in other]


@given(st.lists(st.from_regex(r"[A-Za-z0-9]{1,5}", fullmatch=True), min_size=1, max_size=5),
       st.data())  # fmt: skip
def test_a_run_of_a_names_words_is_its_type(words, data):
    from gpuspawner.policy.inventory import matches_type

    name = "-".join(words)
    start = data.draw(st.integers(0, len(words) - 1))
    end = data.draw(st.integers(start + 1, len(words)))
    assert matches_type(name, " ".join(words[start:end]).upper())
    assert not matches_type(name, words[start] + "x" * 6)  # longer than any word
