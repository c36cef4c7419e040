"""The Jupyter server extension behind gpuspawner's JupyterLab GPU status.

Enabled by the ``jupyter_server_config.d/gpuspawner.json`` file that the wheel
installs. It adds, under ``<base_url>/gpuspawner/``:

- ``api/gpus``: a JSON snapshot of this server's GPUs (or why it has none);
- ``api/history``: recent utilisation and memory per GPU;
- ``api/verify-code``: the "Verify CUDA" cell;
- ``metrics``: the same numbers for Prometheus.

Configure the sampler with ``c.GpuSampler.interval = 1.0`` and friends.
"""

from __future__ import annotations

from typing import Any

from .handlers import setup_handlers
from .sampler import GpuSampler

__all__ = ["GpuSampler"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "gpuspawner.lab"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    sampler = GpuSampler(parent=serverapp)
    patterns = setup_handlers(serverapp.web_app, sampler)
    serverapp.log.info("gpuspawner GPU status extension loaded at %s", patterns[0])
