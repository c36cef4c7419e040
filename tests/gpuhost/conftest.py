"""Fixtures for the simulated GPU host (scripts/setup-gpuhost.sh, tools/gpuhost).

- ``sim_host``: a simulated host of the test's own (8 A100s, the last one in MIG mode with three
  instances, UUIDs nobody else uses), removed afterwards. Change its values while things run:
  ``sim_host.update(uuid, util_gpu=90)``, ``sim_host.lose(uuid)``; see tools/gpuhost/simstate.py.
- ``sim_env``: the environment a process needs to use it (LD_LIBRARY_PATH to the simulated
  libnvidia-ml.so.1, SIMNVML_STATE). It is never set on the pytest process itself, so the
  ``gpu``-marked tests still look for a real driver.
- ``run_nvml``: run a Python snippet with pynvml against ``sim_host`` in a fresh process.
- ``nvidia_docker``: the shared engine, checked to have NVIDIA's hook on its PATH.
- ``cli_log``: the stand-in nvidia-container-cli's records for one container.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "gpuhost"))

import simstate  # noqa: E402

REQUIRE = os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1"
CLI_LOG = Path(os.environ.get("SIMNVML_CLI_LOG", "/var/lib/simnvml/cli.log"))
HOOK = "nvidia-container-runtime-hook"


def missing(reason: str):
    """Fail where the test command set the GPU host up (scripts/test.sh); skip elsewhere."""
    reason += " (bash scripts/setup-gpuhost.sh sets it up)"
    if REQUIRE:
        pytest.fail(reason)
    pytest.skip(reason)


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
            [sys.executable, "-c", code], env=dict(sim_env, **env), capture_output=True, text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


def engine_path(pid_file: str = "/var/run/docker.pid") -> list[str] | None:
    """The PATH of a running dockerd, or None when it cannot be read."""
    try:
        pid = Path(pid_file).read_text().strip()
        environ = Path("/proc/%s/environ" % pid).read_bytes().split(b"\0")
    except OSError:
        return None
    for item in environ:
        if item.startswith(b"PATH="):
            return item[5:].decode().split(":")
    return []


@pytest.fixture(scope="session")
def nvidia_docker(docker_client, sim_lib_dir):
    """The shared engine, with NVIDIA's hook on its PATH (so its nvidia device driver exists)."""
    path = engine_path()
    if path is None or not any(Path(p, HOOK).exists() for p in path):
        missing("dockerd runs without %s on its PATH" % HOOK)
    return docker_client


def cli_records(container) -> list[dict]:
    """What the stand-in nvidia-container-cli was asked for this container (by its id)."""
    if not CLI_LOG.exists():
        return []
    records = [json.loads(line) for line in CLI_LOG.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("container") == container.id]


NVML_PROBE = r"""
import json, pynvml
try:
    pynvml.nvmlInit()
except pynvml.NVMLError as e:
    print(json.dumps({"error": type(e).__name__}))
    raise SystemExit(0)
seen = []
for i in range(pynvml.nvmlDeviceGetCount()):
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    uuid = pynvml.nvmlDeviceGetUUID(h)
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    try:
        mig = pynvml.nvmlDeviceGetMigMode(h)[0] == 1
    except pynvml.NVMLError:
        mig = False
    if not mig:
        seen.append(uuid)
        continue
    for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(h)):
        try:
            m = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, slot)
        except pynvml.NVMLError_NotFound:
            continue
        u = pynvml.nvmlDeviceGetUUID(m)
        seen.append(u.decode() if isinstance(u, bytes) else u)
print(json.dumps({"devices": seen, "driver": str(pynvml.nvmlSystemGetDriverVersion())}))
"""


def nvml_inside(container) -> dict:
    """What the image's own pynvml sees inside a running container: devices or an error."""
    result = container.exec_run(["python3", "-c", NVML_PROBE], user="1000")
    assert result.exit_code == 0, result.output.decode(errors="replace")
    return json.loads(result.output.decode().strip().splitlines()[-1])
