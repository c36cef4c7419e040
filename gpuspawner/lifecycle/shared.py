"""What the spawners of one hub process share, in one place, with one reset.

JupyterHub builds a spawner per server, but the GPU pool (who holds which GPU), the
engine listing in progress, the usage ledgers and a backend's caches (the node list, the
driver's CUDA version) belong to the hub process. They live in a :class:`SharedState`
per backend (the class that declares ``shared_state_class``), so spawners of a subclass
share their backend's state. :func:`reset_shared_state` forgets all of it: what a hub
restart does, and what a test calls to start from a fresh hub process.
"""

import asyncio
from dataclasses import dataclass
from typing import Any

from ..policy.allocation import GpuPool
from ..usage.ledger import Ledger


@dataclass
class SharedState:
    """One backend's state in this hub process. A backend subclasses it for its caches."""

    pool: GpuPool | None = None
    rebuilt_at: float = 0.0  # time.monotonic() of the last rebuild from the engine
    rebuilding: asyncio.Future | None = None  # the engine listing in progress, shared
    reconciled_at: float | None = None  # when the ledger was last matched with the engine
    queue: Any = None  # the line of spawns waiting for a GPU (lifecycle.queue.GpuQueue)


_states: dict[type, SharedState] = {}
_ledgers: dict[str, Ledger] = {}
_owners: dict[type, type] = {}  # a spawner class -> the class whose state it shares


def shared_state(spawner_class: type) -> SharedState:
    """The state of the backend ``spawner_class`` belongs to (created on first use)."""
    owner = _owners.get(spawner_class)
    if owner is None:
        owner = _owners[spawner_class] = next(
            klass for klass in spawner_class.__mro__ if "shared_state_class" in vars(klass)
        )
    state = _states.get(owner)
    if state is None:
        state = _states[owner] = owner.shared_state_class()
    return state


def parsed_once(owner, name: str, settings: tuple, parse):
    """``parse()`` of ``settings`` (the values it reads) for ``owner`` (a spawner), parsed
    again only once one of them is another object: a setting is replaced, not changed in
    place (a spawn reads the catalog and the profiles several times)."""
    memo = owner.__dict__.setdefault("_parsed", {})
    last = memo.get(name)
    if last is not None and all(a is b for a, b in zip(last[0], settings, strict=True)):
        return last[1]
    value = parse()
    memo[name] = (settings, value)
    return value


def ledger_for(url: str) -> Ledger:
    """The usage ledger at ``url``, opened once per hub process."""
    ledger = _ledgers.get(url)
    if ledger is None:
        ledger = _ledgers[url] = Ledger(url)
    return ledger


def reset_shared_state() -> None:
    """Forget every pool, listing, cache and ledger of this hub process."""
    for state in _states.values():
        if state.rebuilding is not None and not state.rebuilding.done():
            state.rebuilding.cancel()
    _states.clear()
    for ledger in _ledgers.values():
        ledger.dispose()
    _ledgers.clear()
