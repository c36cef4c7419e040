"""gpuspawner: JupyterHub spawners that give each user their own GPUs, a quota and a workspace.

The package is grouped by what each part is:

- ``policy/``: pure decisions (catalog, inventory, quota, allocation, options, budgets, CUDA)
- ``lifecycle/``: the spawn lifecycle every backend shares, and its backend contract
- ``docker/``, ``kube/``: the two backends, each with its pure spec builders
- ``usage/``: the usage ledger, budget enforcement, GPU-idle culling, hub metrics
- ``service/``: the admin service (dashboard, JSON API, enforcement loop)
- ``lab/``: the Jupyter server extension inside each server (GPU status from NVML)
- ``nvml.py``: the one module that talks to NVML; ``errors.py``: errors carrying a sentence
- ``config.py``: ``check_config(c)`` for the hub's config file; ``prepull.py``: the command
"""

from . import _moved
from ._version import __version__

_moved.install()

__all__ = ["__version__"]
