"""Fixtures for the simulated GPU host (scripts/setup-gpuhost.sh, tools/gpuhost).

- ``sim_host``: a simulated host of the test's own (8 A100s, the last one in MIG mode with three
  instances, UUIDs nobody else uses), removed afterwards. Change its values while things run:
  ``sim_host.update(uuid, util_gpu=90)``, ``sim_host.lose(uuid)``; see tools/gpuhost/simstate.py.
- ``sim_env``: the environment a process needs to use it (LD_LIBRARY_PATH to the simulated
  libnvidia-ml.so.1, SIMNVML_STATE). It is never set on the pytest process itself, so the
  ``gpu``-marked tests still look for a real driver.
- ``run_nvml``: run a Python snippet with pynvml against ``sim_host`` in a fresh process.
- ``nvidia_docker``: the shared engine, checked to have NVIDIA's hook on its PATH.
Helpers (cli_records, nvml_inside) are in gpuhost_helpers.py.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from gpuhost_helpers import HOOK, engine_path, missing, simstate


@pytest.fixture(scope="session")
def sim_lib_dir() -> Path:
    try:
        folder = simstate.lib_dir()
    except FileNotFoundError as e:
        missing(str(e))
    if not (folder / "libnvidia-ml.so.1").exists():
        missing("no simulated libnvidia-ml.so.1 in %s" % folder)
    return folder


@pytest.fixture
def sim_host(sim_lib_dir):
    name = "test-%s" % secrets.token_hex(4)
    try:
        host = simstate.SimHost.create(name, simstate.default_inventory(name))
    except PermissionError as e:
        missing("cannot write %s: %s" % (simstate.HOSTS_ROOT, e))
    yield host
    host.remove()


@pytest.fixture
def sim_env(sim_host) -> dict:
    return dict(os.environ, **sim_host.env())


@pytest.fixture
def run_nvml(sim_env):
    """run_nvml(code, **env) -> stdout of ``python -c code`` using the simulated NVML."""

    def run(code: str, **env) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code],
            env=dict(sim_env, **env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


@pytest.fixture(scope="session")
def nvidia_docker(docker_client, sim_lib_dir):
    """The shared engine, with NVIDIA's hook on its PATH (so its nvidia device driver exists)."""
    path = engine_path()
    if path is None or not any(Path(p, HOOK).exists() for p in path):
        missing("dockerd runs without %s on its PATH" % HOOK)
    return docker_client
