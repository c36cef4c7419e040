"""Class reservations in the spawn lifecycle: what a request may not take, and its deadline.

The rules are :mod:`gpuspawner.policy.reservations`; here the hub's part: which holders
are members of each reserving group (the hub's database), read once per spawn, and the
clock, read at each decision, so a spawn waiting in line gets its GPU once a window closes.
"""

from ..policy.reservations import HeldBack, held_back
from ..usage.ledger import now_utc


def member_holders(spawner, groups, holder_key) -> dict[str, set[str]]:
    """Per group, the holder keys (and names, for holdings labelled by name) of its members;
    ``holder_key(scope, user_id)``: the lifecycle's key of a hub user."""
    db = getattr(spawner.user, "db", None)
    members: dict[str, set[str]] = {group: set() for group in groups}
    if db is None:  # no hub database (a bare spawner): no member is known to hold any
        return members
    from jupyterhub import orm

    for group in groups:
        found = orm.Group.find(db, group)
        for user in found.users if found is not None else ():
            members[group].update({holder_key(spawner.holder_scope, user.id), user.name})
    return members


def held_back_for(spawner, holder_key):
    """The request's ``held_back`` callable (None: no reservations, or the engine picks)."""
    reservations = spawner.reservations
    if not reservations or spawner.engine_picks_devices:
        return None
    mine = tuple(spawner.user_groups)
    groups = sorted({r.group for r in reservations} - set(mine))
    members = member_holders(spawner, groups, holder_key)

    def kept(holdings) -> HeldBack:
        holding = {
            group: sum(
                1 for h in holdings if h.user in keys for gpu in h.gpus if not gpu.is_shared
            )
            for group, keys in members.items()
        }
        return held_back(reservations, now_utc(), mine, holding)

    return kept


def kept_now(spawner, holder_key) -> int:
    """Free whole GPUs kept from this user right now by other groups' open windows (the
    form's free count leaves them out)."""
    kept = held_back_for(spawner, holder_key)
    if kept is None:
        return 0
    key = (spawner.holder, spawner.server_name)
    return kept([h for h in spawner.pool.holdings if h.key != key]).count
