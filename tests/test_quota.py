"""Quota: the most generous group wins; bad limits are refused (pure)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuspawner.errors import ConfigError
from gpuspawner.policy.quota import GpuLimit, check_limits, gpu_limit
from gpuspawner.policy.wording import plural, server_label


def test_default_applies_without_group_override():
    assert gpu_limit([], 1, {"staff": 4}) == GpuLimit(1, "the default for every user")
    assert gpu_limit(["students"], 1, {"staff": 4}) == GpuLimit(1, "the default for every user")


def test_most_generous_group_applies():
    assert gpu_limit(["students", "staff"], 1, {"staff": 4, "students": 1}) == GpuLimit(
        4, "group 'staff'"
    )


def test_group_override_may_be_lower_than_default():
    assert gpu_limit(["cpu-only"], 1, {"cpu-only": 0}) == GpuLimit(0, "group 'cpu-only'")


@given(
    groups=st.sets(st.sampled_from("abcdef")),
    overrides=st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 16)),
    default=st.integers(0, 16),
)
def test_limit_is_max_of_member_overrides_or_default(groups, overrides, default):
    mine = [limit for group, limit in overrides.items() if group in groups]
    assert gpu_limit(groups, default, overrides).count == (max(mine) if mine else default)


@pytest.mark.parametrize("default, groups", [(-1, {}), (1, {"a": -2}), (1, {"a": 1.5}), (True, {})])
def test_bad_limits_refused(default, groups):
    with pytest.raises(ConfigError, match="whole number"):
        check_limits(default, groups)


def test_wording():
    assert plural(1) == "1 GPU" and plural(0) == "0 GPUs" and plural(3) == "3 GPUs"
    assert server_label("") == "the default server"
    assert server_label("train") == "server 'train'"


def test_join_phrases_and_the_shared_quota_sentence():
    from gpuspawner.policy.quota import over_quota
    from gpuspawner.policy.wording import join_phrases

    assert join_phrases([]) == "" and join_phrases(["a"]) == "a"
    assert join_phrases(["a", "b", "c"]) == "a, b and c"
    limit = GpuLimit(2, "group 'staff'")
    assert over_quota(0, limit, [(2, "x")]) is None
    assert over_quota(1, limit, [(1, "x")]) is None
    assert over_quota(1, limit, [(1, "x"), (1, "y")]) == (
        "You asked for 1 GPU, but your limit is 2 GPUs at once (group 'staff') and you already"
        " hold x and y."
        " Stop a server holding GPUs, or ask for at most 0."
    )


def test_slots_count_as_fractions_of_the_quota():
    from fractions import Fraction

    from gpuspawner.policy.quota import over_quota

    limit = GpuLimit(1, "the default for every user")
    quarter = Fraction(1, 4)
    assert over_quota(quarter, limit, [(Fraction(3, 4), "x")]) is None  # four slots fit in 1
    assert over_quota(quarter, limit, [(Fraction(3, 4), "x"), (quarter, "y")]) == (
        "You asked for 1/4 GPU, but your limit is 1 GPU at once (the default for every user)"
        " and you already hold x and y. Stop a server holding GPUs, or ask for at most 0."
    )
    asked = "1/4 GPU (a shared slot)"
    assert over_quota(quarter, limit, [(1, "1 GPU on server 'a' (GPU-a)")], asked) == (
        "You asked for 1/4 GPU (a shared slot), but your limit is 1 GPU at once (the default"
        " for every user) and you already hold 1 GPU on server 'a' (GPU-a)."
        " Stop a server holding GPUs, or ask for at most 0."
    )
    # a whole GPU next to three slots of a GPU shared by 4: 1 3/4 of a limit of 2
    two = GpuLimit(2, "group 'staff'")
    assert over_quota(1, two, [(Fraction(3, 4), "s")]) is None
    assert over_quota(2, two, [(Fraction(1, 4), "s")]).endswith("ask for at most 1.")
