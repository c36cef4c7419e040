"""The shared sampler: its lifecycle for real, and a lost GPU through the stand-in driver."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from lab_fakes import GIB, FakeDevice, FakeDriver
from lab_helpers import needs_no_driver

from gpuspawner import nvml
from gpuspawner.lab.sampler import GpuSampler
from gpuspawner.nvml import pynvml


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.fixture
def sampler_factory():
    made = []

    def make(environ=None, **traits) -> GpuSampler:
        traits.setdefault("host_pids", False)
        sampler = GpuSampler(environ={} if environ is None else environ, **traits)
        made.append(sampler)
        return sampler

    yield make
    for sampler in made:
        sampler.stop()


@needs_no_driver
def test_no_driver_here(sampler_factory):
    snapshot = run(sampler_factory().snapshot())
    assert snapshot["available"] is False
    assert "libnvidia-ml.so.1" in snapshot["reason"]
    assert snapshot["gpus"] == [] and snapshot["driver"] is None


def test_the_hubs_reason_wins_and_nvml_is_not_touched(sampler_factory, monkeypatch):
    monkeypatch.setattr(nvml, "discover_gpus", lambda: pytest.fail("NVML was asked"))
    sampler = sampler_factory({"GPU_LIMIT": "0", "NVIDIA_VISIBLE_DEVICES": "void",
                               "GPUSPAWNER_NO_GPU_REASON": "Your GPU quota is 0."})
    snapshot = run(sampler.snapshot())
    assert snapshot["reason"] == "Your GPU quota is 0."
    assert snapshot["gpu_limit"] == 0


def test_the_json_is_the_snapshot(sampler_factory):
    sampler = sampler_factory()

    async def both():
        return await sampler.snapshot_json(), await sampler.snapshot()

    body, snapshot = run(both())
    assert json.loads(body) == snapshot
    assert snapshot["sampler"]["samples"] >= 1


def test_one_thread_serves_concurrent_requests_then_idles_and_restarts(sampler_factory):
    sampler = sampler_factory(interval=0.2, idle_timeout=0.5)
    assert not sampler.running
    before = {t for t in threading.enumerate() if t.name == "gpuspawner-sampler"}

    async def many():
        return await asyncio.gather(*(sampler.snapshot_json() for _ in range(50)))

    bodies = run(many())
    assert len(set(bodies)) == 1  # every request got the same cached sample
    assert sampler.running
    started = {t for t in threading.enumerate() if t.name == "gpuspawner-sampler"} - before
    assert len(started) == 1
    first = sampler.samples
    assert first <= 2

    deadline = time.monotonic() + 5
    while sampler.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not sampler.running, "the sampler did not stop when nobody asked"
    stopped_at = sampler.samples
    time.sleep(0.5)
    assert sampler.samples == stopped_at

    run(sampler.snapshot())  # stale: waits for a fresh sample from a new thread
    assert sampler.running and sampler.samples > stopped_at


def test_stop_ends_the_thread(sampler_factory):
    sampler = sampler_factory(interval=0.2)
    run(sampler.snapshot())
    assert sampler.running
    sampler.stop()
    assert not sampler.running


def test_a_lost_gpu_does_not_hide_the_other(sampler_factory, monkeypatch):
    devices = [
        FakeDevice("GPU-a", "NVIDIA H100", memory_used=3 * GIB),
        FakeDevice("GPU-b", "NVIDIA H100"),
    ]
    driver = FakeDriver(monkeypatch, devices)
    sampler = sampler_factory({"NVIDIA_VISIBLE_DEVICES": "GPU-a,GPU-b", "GPU_LIMIT": "2"})
    sampler.sample_once()
    driver.fail("nvmlDeviceGetMemoryInfo_v2", pynvml.NVML_ERROR_GPU_IS_LOST, uuid="GPU-b")
    snapshot = sampler.sample_once()
    a, b = snapshot["gpus"]
    assert snapshot["available"] is True
    assert a["lost"] is False and a["memory"]["used"] == 3 * GIB and a["errors"] == {}
    assert b["lost"] is True and "fallen off the bus" in b["errors"]["gpu"]
    assert snapshot["driver"] == {"version": "580.82.07", "cuda": "13.0"}
    # history keeps both, with a gap for the lost one
    history = sampler.history()["gpus"]
    assert [p[2] for p in history["GPU-a"]] == [3 * GIB, 3 * GIB]
    assert history["GPU-b"][-1][1] is None


def test_only_the_given_gpus_are_sampled(sampler_factory, monkeypatch):
    driver = FakeDriver(monkeypatch, [FakeDevice("GPU-a", "A"), FakeDevice("GPU-b", "B")])
    sampler = sampler_factory({"NVIDIA_VISIBLE_DEVICES": "GPU-b", "GPU_LIMIT": "1"})
    snapshot = sampler.sample_once()
    assert [g["uuid"] for g in snapshot["gpus"]] == ["GPU-b"]
    assert "nvmlDeviceGetUtilizationRates" in driver.calls


def test_given_gpu_missing_from_the_driver_is_explained(sampler_factory, monkeypatch):
    FakeDriver(monkeypatch, [FakeDevice("GPU-a", "A")])
    sampler = sampler_factory({"NVIDIA_VISIBLE_DEVICES": "GPU-zzz", "GPU_LIMIT": "1"})
    snapshot = sampler.sample_once()
    assert snapshot["available"] is False
    assert "GPU-zzz" in snapshot["reason"]


def test_history_is_bounded(sampler_factory, monkeypatch):
    FakeDriver(monkeypatch, [FakeDevice("GPU-a", "A")])
    sampler = sampler_factory(history_length=3)
    for _ in range(5):
        sampler.sample_once()
    assert len(sampler.history()["gpus"]["GPU-a"]) == 3


@needs_no_driver
def test_a_gpu_allocated_without_the_runtime_is_said_to_be_allocated_not_visible(sampler_factory):
    """runtime-env mode on an engine without the NVIDIA runtime: the hub gave the GPU (it
    counts as this server's), the container has no driver."""
    sampler = sampler_factory({"GPU_LIMIT": "1", "GPUSPAWNER_GPU_UUIDS": "GPU-aaaa1111",
                               "NVIDIA_VISIBLE_DEVICES": "GPU-aaaa1111"})
    snapshot = run(sampler.snapshot())
    assert snapshot["available"] is False and snapshot["gpus"] == []
    assert snapshot["allocated_not_visible"] == {"count": 1, "uuids": ["GPU-aaaa1111"]}
    reason = snapshot["reason"]
    assert reason.startswith(
        "The hub allocated GPU-aaaa1111 to this server, but it is not visible here: no NVIDIA"
        " driver was found here (libnvidia-ml.so.1 is missing)"), reason
    assert 'gpu_mode "runtime-env" needs the engine\'s default runtime to be nvidia' in reason


def test_an_allocated_gpu_the_driver_does_not_list_is_allocated_not_visible(
    sampler_factory, monkeypatch
):
    FakeDriver(monkeypatch, [FakeDevice("GPU-a", "A")])
    sampler = sampler_factory({"GPU_LIMIT": "2", "GPUSPAWNER_GPU_UUIDS": "GPU-y,GPU-z"})
    snapshot = sampler.sample_once()
    assert snapshot["allocated_not_visible"] == {"count": 2, "uuids": ["GPU-y", "GPU-z"]}
    assert snapshot["reason"] == (
        "The hub allocated GPU-y, GPU-z to this server, but they are not visible here: the"
        " NVIDIA driver here does not list them.")


def test_outside_a_hub_nothing_is_allocated(sampler_factory, monkeypatch):
    FakeDriver(monkeypatch, [])
    snapshot = sampler_factory().sample_once()
    assert snapshot["allocated_not_visible"] is None
    assert snapshot["reason"] == "The NVIDIA driver is loaded but reports no GPU on this machine."
