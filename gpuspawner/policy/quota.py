"""GPU quota: how many GPUs one user may hold at once, across all of their servers.

A user's limit is the most generous override of the groups they belong to; a user in
no group with an override gets the default. An override may be lower than the default
(e.g. a "cpu-only" group set to 0): what counts is the best of the user's groups.

A slot of a shared GPU (``Gpu.shared_by`` = N) counts as 1/N of a GPU, summed exactly
(:class:`fractions.Fraction`): a quota of 1 lets a user hold one whole GPU, or N slots of
GPUs shared by N (one of each of N servers).
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

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


def gpu_share(gpus: Iterable) -> Fraction:
    """How much of the quota ``gpus`` (inventory Gpus) take: 1 each, 1/N for a slot."""
    return sum((Fraction(1, max(gpu.shared_by, 1)) for gpu in gpus), Fraction(0))


def fraction_text(amount: Fraction) -> str:
    """'1', '1/4', '1 1/2'."""
    whole, rest = divmod(Fraction(amount), 1)
    if not rest:
        return "%d" % whole
    return ("%d %s" % (whole, rest)) if whole else str(rest)


def share_text(amount: Fraction) -> str:
    """'2 GPUs', '1/4 GPU', '1 1/2 GPUs'."""
    if amount.denominator == 1:
        return plural(int(amount))
    return "%s GPU%s" % (fraction_text(amount), "s" if amount > 1 else "")


def amount_text(gpus: Sequence) -> str:
    """'2 GPUs'; '1/4 GPU (a shared slot)' for a slot of a GPU shared by 4."""
    slots = [gpu for gpu in gpus if gpu.shared_by > 1]
    if not slots:
        return plural(len(gpus))
    amount = gpu_share(gpus)
    return "%s GPU%s (%s)" % (
        fraction_text(amount),
        "s" if amount > 1 else "",
        "a shared slot" if len(gpus) == 1 else "%d shared slots" % len(slots),
    )


def over_quota(
    count: int | Fraction, limit: GpuLimit, held: Sequence[tuple[int | Fraction, str]],
    asked_text: str | None = None,
) -> str | None:  # fmt: skip
    """Why asking for ``count`` more GPUs breaks ``limit``, or None.

    ``held`` is the user's other servers holding GPUs, as (GPUs, description) pairs in the
    order to name them; a count is a Fraction where slots of shared GPUs count 1/N.
    ``asked_text`` words ``count`` ('1/4 GPU (a shared slot)'; default '2 GPUs').
    Every backend words its quota refusals with this one sentence.
    """
    if count == 0:
        return None
    already = sum((Fraction(gpus) for gpus, _ in held), Fraction(0))
    if already + count <= limit.count:
        return None
    may_take = max(int(limit.count - already), 0)  # whole GPUs
    asked = "You asked for %s, but your limit is %s at once (%s)" % (
        asked_text or share_text(Fraction(count)),
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
