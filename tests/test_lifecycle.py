"""The shared lifecycle's pure helpers."""

from gpuspawner.lifecycle.base import holder_key, of_scope
from gpuspawner.policy.allocation import Holding
from gpuspawner.policy.inventory import Gpu


def test_a_hub_records_only_its_own_users_holdings():
    ours = Holding(holder_key("gpst1", 7), "", (Gpu("GPU-a"),), owner="ann")
    other_hub = Holding(holder_key("gpst2", 7), "", (Gpu("GPU-b"),), owner="ann")
    unknown_name = Holding("someone", "", (Gpu("GPU-c"),))  # a legacy label no user of ours has
    assert of_scope([ours, other_hub, unknown_name], "gpst1") == [ours]
    assert of_scope([ours, other_hub], "gpst") == []  # a scope is a whole prefix, not a start
