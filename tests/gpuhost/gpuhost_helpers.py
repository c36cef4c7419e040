"""Helpers of the GPU-host tests: the stand-in CLI's records, NVML as a container sees it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "gpuhost"))

import simstate  # noqa: E402,F401  (re-exported for the tests)

REQUIRE = os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1"
CLI_LOG = Path(os.environ.get("SIMNVML_CLI_LOG", "/var/lib/simnvml/cli.log"))
HOOK = "nvidia-container-runtime-hook"


def missing(reason: str):
    """Fail where the test command set the GPU host up (scripts/test.sh); skip elsewhere."""
    reason += " (bash scripts/setup-gpuhost.sh sets it up)"
    if REQUIRE:
        pytest.fail(reason)
    pytest.skip(reason)


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


def cli_records(container) -> list[dict]:
    """What the stand-in nvidia-container-cli was asked for this container (by its id)."""
    if not CLI_LOG.exists():
        return []
    records = []
    for line in CLI_LOG.read_text().splitlines():
        if container.id in line:  # other runs append too; only this container's lines matter
            records.append(json.loads(line))
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
