"""Usage: the ledger of GPU intervals, budget enforcement at spawn, GPU-idle culling and the
hub's Prometheus metrics.

- :mod:`.settings`: the ledger, budget and culling settings of every backend's spawner
- :mod:`.accounting`: what the spawn lifecycle records and asks (ledger, budget, deadline)
- :mod:`.ledger`: every interval a server held a GPU, in a database (SQLAlchemy)
- :mod:`.culler`: the GPU-idle policy and where utilisation comes from
- :mod:`.hub_metrics`: the hub process's gauges and counters
"""
