"""GPU quota: how many GPUs one user may hold at once, across all of their servers.

A user's limit is the most generous override of the groups they belong to; a user in
no group with an override gets the default. An override may be lower than the default
(e.g. a "cpu-only" group set to 0): what counts is the best of the user's groups.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from .groups import DEFAULT_SOURCE, group_source, most_generous
from .wording import join_phrases, plural


@dataclass(frozen=True)
class GpuLimit:
    """A user's limit and where it comes from, for messages."""

    count: int  # GPUs at once, across all of the user's servers
    source: str  # "the default for every user" or "group 'staff'"


def gpu_limit(
    user_groups: Iterable[str], default: int, group_limits: Mapping[str, int]
) -> GpuLimit:
    """The limit that applies to a member of ``user_groups``."""
    best = most_generous(user_groups, group_limits)
    if best is None:
        return GpuLimit(default, DEFAULT_SOURCE)
    return GpuLimit(best[0], group_source(best[1]))


def check_limits(default: int, group_limits: Mapping[str, int]) -> None:
    """Refuse negative or non-integer limits at hub start."""
    for where, limit in [("gpu_quota", default)] + [
        ("gpu_quota_groups[%r]" % group, limit) for group, limit in group_limits.items()
    ]:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ConfigError(
                "%s must be a whole number of GPUs (0 or more), not %r." % (where, limit)
            )


def over_quota(count: int, limit: GpuLimit, held: Sequence[tuple[int, str]]) -> str | None:
    """Why asking for ``count`` more GPUs breaks ``limit``, or None.

    ``held`` is the user's other servers holding GPUs, as (GPUs, description) pairs in the
    order to name them. Every backend words its quota refusals with this one sentence.
    """
    if count == 0:
        return None
    already = sum(gpus for gpus, _ in held)
    if already + count <= limit.count:
        return None
    may_take = max(limit.count - already, 0)
    asked = "You asked for %s, but your limit is %s at once (%s)" % (
        plural(count),
        plural(limit.count),
        limit.source,
    )
    if not held:
        return "%s. Ask for at most %d." % (asked, may_take)
    return "%s and you already hold %s. Stop a server holding GPUs, or ask for at most %d." % (
        asked,
        join_phrases([description for _, description in held]),
        may_take,
    )
