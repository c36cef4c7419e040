"""Usage: the ledger of GPU intervals, budget enforcement at spawn, GPU-idle culling and the
hub's Prometheus metrics.

- :mod:`.ledger`: every interval a server held a GPU, in a database (SQLAlchemy)
- :mod:`.accounting`: the budget and culling settings and what the lifecycle records
- :mod:`.culler`: the GPU-idle policy and where utilisation comes from
- :mod:`.hub_metrics`: the hub process's gauges and counters
"""


def __getattr__(name):
    if name == "UsageMixin":  # gpuspawner.usage was a module before 0.x
        from .._moved import moved_warning
        from .accounting import UsageMixin

        moved_warning("gpuspawner.usage.UsageMixin", "gpuspawner.usage.accounting.UsageMixin")
        globals()[name] = UsageMixin
        return UsageMixin
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
