"""On a machine with an NVIDIA GPU: the real NVML, sampler and verify cell (skipped elsewhere)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time

import pytest
from lab_helpers import nvml_library_present

from gpuspawner import nvml
from gpuspawner.lab.sampler import GpuSampler
from gpuspawner.lab.verify import cell_source

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not nvml_library_present(), reason="needs an NVIDIA driver and GPU"),
]


def test_discover_and_read_every_gpu():
    gpus = nvml.discover_gpus()
    assert gpus, "the driver is loaded but lists no GPU"
    version, (major, _minor) = nvml.driver_info()
    assert version and major >= 11
    for gpu in gpus:
        reading = nvml.read_gpu(gpu.uuid)
        assert not reading.lost
        assert reading.memory_total and reading.memory_total > 0
        assert reading.memory_used is not None and reading.memory_reserved is not None


def test_sampler_snapshot_and_cost(capsys):
    sampler = GpuSampler(environ={}, host_pids=True)
    snapshot = asyncio.run(sampler.snapshot())
    assert snapshot["available"], snapshot["reason"]
    costs = []
    for _ in range(20):
        started = time.perf_counter()
        sampler.sample_once()
        costs.append(time.perf_counter() - started)
    sampler.stop()
    with capsys.disabled():
        print("\nsnapshot:", json.dumps(sampler.sample_once(), indent=1))
        print("sampler: %.2f ms per sample (median of 20)" % (sorted(costs)[10] * 1000))


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_verify_cell_says_ok(capsys):
    from test_lab_verify_kernel import run_cell, verdict

    output = run_cell(cell_source(), {})
    with capsys.disabled():
        print("\n" + output)
    assert verdict(output).startswith("VERDICT: OK"), output
