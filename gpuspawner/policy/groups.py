"""Per-group settings: the one rule for which group's value applies to a user (pure).

A user in several groups with an override gets the most generous of them; ties go to
the group whose name sorts last, so the answer never depends on the order of a dict.
Quotas (:mod:`.quota`) and GPU-hour budgets (:mod:`.budget`) both use it.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

V = TypeVar("V")


def most_generous(
    user_groups: Iterable[str],
    group_values: Mapping[str, V],
    rank: Callable[[V], Any] = lambda value: value,
) -> tuple[V, str] | None:
    """(value, group) of the user's most generous group, or None when none has a value.

    ``rank`` orders the values, more generous is larger (e.g. None, no limit, as infinity).
    """
    groups = set(user_groups)
    overrides = [(value, group) for group, value in group_values.items() if group in groups]
    if not overrides:
        return None
    return max(overrides, key=lambda pair: (rank(pair[0]), pair[1]))


def group_source(group: str) -> str:
    """Where a user's setting comes from, for messages: "group 'staff'"."""
    return "group %r" % group


DEFAULT_SOURCE = "the default for every user"
