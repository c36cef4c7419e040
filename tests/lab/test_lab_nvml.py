"""gpuspawner.nvml: the real no-driver path, and NVML's failures through a stand-in driver."""

from __future__ import annotations

import dataclasses

import pytest
from lab_fakes import GIB, FakeDevice, FakeDriver
from lab_helpers import needs_no_driver

from gpuspawner import nvml
from gpuspawner.nvml import pynvml

H100 = "NVIDIA H100 80GB HBM3"


@needs_no_driver
def test_no_driver_here_is_a_sentence():
    """Real: this machine has no libnvidia-ml.so.1."""
    with pytest.raises(nvml.NvmlUnavailable) as info:
        nvml.discover_gpus()
    assert "libnvidia-ml.so.1" in str(info.value)
    assert str(info.value).endswith(".")
    with pytest.raises(nvml.NvmlUnavailable):
        nvml.driver_info()
    with pytest.raises(nvml.NvmlUnavailable):
        nvml.read_gpu("GPU-0")


@needs_no_driver
def test_init_failure_is_remembered_then_retried(monkeypatch):
    """A missing driver is not looked for again on every sample."""
    calls = []
    real_init = pynvml.nvmlInit
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: calls.append(1) or real_init())
    for _ in range(3):
        with pytest.raises(nvml.NvmlUnavailable):
            nvml.discover_gpus()
    assert len(calls) == 1
    monkeypatch.setattr(nvml, "INIT_RETRY_SECONDS", 0.0)
    with pytest.raises(nvml.NvmlUnavailable):
        nvml.discover_gpus()
    assert len(calls) == 2


def test_nvml_gpu_is_frozen_with_the_hub_contract_fields():
    gpu = nvml.NvmlGpu(
        uuid="GPU-1", name=H100, memory_total=80 * GIB, index=0, mig_parent_uuid=None
    )
    assert [f.name for f in dataclasses.fields(gpu)] == [
        "uuid", "name", "memory_total", "index", "mig_parent_uuid",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        gpu.uuid = "GPU-2"


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "not loaded"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "no permission"),
        (pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, "too old"),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "does not match"),
        (pynvml.NVML_ERROR_UNKNOWN, "could not be queried"),
    ],
)
def test_init_failures_become_nvml_unavailable(monkeypatch, error, words):
    driver = FakeDriver(monkeypatch, [FakeDevice("GPU-a", H100)])
    driver.fail("nvmlInit", error)
    with pytest.raises(nvml.NvmlUnavailable, match=words):
        nvml.discover_gpus()


def test_driver_info(monkeypatch):
    FakeDriver(monkeypatch, [])
    assert nvml.driver_info() == ("580.82.07", (13, 0))


def test_mig_instances_replace_their_parent(monkeypatch):
    parent = FakeDevice("GPU-p", H100, mig=[
        FakeDevice("MIG-1", H100 + " MIG 1g.10gb", memory_total=10 * GIB),
        FakeDevice("MIG-2", H100 + " MIG 3g.40gb", memory_total=40 * GIB),
    ])
    FakeDriver(monkeypatch, [FakeDevice("GPU-a", H100), parent])
    gpus = nvml.discover_gpus()
    assert [(g.uuid, g.index, g.mig_parent_uuid) for g in gpus] == [
        ("GPU-a", 0, None), ("MIG-1", 1, "GPU-p"), ("MIG-2", 1, "GPU-p"),
    ]
    assert gpus[1].memory_total == 10 * GIB


def test_a_gpu_lost_while_enumerating_is_left_out(monkeypatch):
    driver = FakeDriver(monkeypatch, [FakeDevice("GPU-a", H100), FakeDevice("GPU-b", H100)])
    driver.fail("nvmlDeviceGetName", pynvml.NVML_ERROR_GPU_IS_LOST, uuid="GPU-a")
    assert [g.uuid for g in nvml.discover_gpus()] == ["GPU-b"]


def test_a_gpu_lost_while_reading_leaves_the_other_intact(monkeypatch):
    driver = FakeDriver(monkeypatch, [FakeDevice("GPU-a", H100), FakeDevice("GPU-b", H100)])
    nvml.discover_gpus()
    driver.fail("nvmlDeviceGetUtilizationRates", pynvml.NVML_ERROR_GPU_IS_LOST, uuid="GPU-a")
    lost = nvml.read_gpu("GPU-a")
    assert lost.lost
    assert "fallen off the bus" in lost.errors["gpu"]
    assert lost.temperature_c is None
    healthy = nvml.read_gpu("GPU-b")
    assert not healthy.lost and healthy.errors == {}
    assert healthy.utilization_gpu == 37


def test_not_supported_fields_are_gaps_not_errors(monkeypatch):
    """As on a MIG instance: no utilisation, no per-process memory."""
    device = FakeDevice("GPU-a", H100, processes=[(4242, None)])
    driver = FakeDriver(monkeypatch, [device])
    nvml.discover_gpus()
    driver.fail("nvmlDeviceGetUtilizationRates", pynvml.NVML_ERROR_NOT_SUPPORTED)
    driver.fail("nvmlDeviceGetPowerUsage", pynvml.NVML_ERROR_NOT_SUPPORTED)
    reading = nvml.read_gpu("GPU-a")
    assert reading.utilization_gpu is None and reading.power_w is None
    assert sorted(reading.unsupported) == ["power", "utilization"]
    assert reading.errors == {}
    assert reading.temperature_c == 45 and reading.power_limit_w == 700.0
    assert reading.processes == [nvml.ProcessUsage(4242, None)]


def test_memory_info_falls_back_to_v1_on_old_drivers(monkeypatch):
    driver = FakeDriver(monkeypatch, [FakeDevice("GPU-a", H100, memory_used=3 * GIB)])
    driver.fail("nvmlDeviceGetMemoryInfo_v2", pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    nvml.discover_gpus()
    reading = nvml.read_gpu("GPU-a")
    assert (reading.memory_used, reading.memory_reserved) == (3 * GIB, None)
    assert "nvmlDeviceGetMemoryInfo" in driver.calls


def test_memory_info_v2_is_preferred(monkeypatch):
    FakeDriver(monkeypatch, [FakeDevice("GPU-a", H100, memory_used=3 * GIB)])
    nvml.discover_gpus()
    reading = nvml.read_gpu("GPU-a")
    assert (reading.memory_used, reading.memory_reserved) == (3 * GIB, GIB // 2)


def test_no_permission_on_processes_is_reported_per_field(monkeypatch):
    driver = FakeDriver(monkeypatch, [FakeDevice("GPU-a", H100)])
    nvml.discover_gpus()
    driver.fail("nvmlDeviceGetComputeRunningProcesses", pynvml.NVML_ERROR_NO_PERMISSION)
    reading = nvml.read_gpu("GPU-a")
    assert reading.processes is None
    assert reading.errors == {"processes": "no permission to read processes"}
    assert reading.memory_used is not None


def test_mig_instance_reads_temperature_and_power_from_its_parent(monkeypatch):
    mig = FakeDevice("MIG-1", H100 + " MIG 1g.10gb", memory_total=10 * GIB)
    parent = FakeDevice("GPU-p", H100, mig=[mig])
    driver = FakeDriver(monkeypatch, [parent])
    driver.fail("nvmlDeviceGetTemperature", pynvml.NVML_ERROR_NOT_SUPPORTED, uuid="MIG-1")
    nvml.discover_gpus()
    reading = nvml.read_gpu("MIG-1")
    assert reading.temperature_c == 45
    assert reading.memory_total == 10 * GIB


def test_unknown_uuid_is_unavailable(monkeypatch):
    FakeDriver(monkeypatch, [FakeDevice("GPU-a", H100)])
    with pytest.raises(nvml.NvmlUnavailable, match="GPU-zzz"):
        nvml.read_gpu("GPU-zzz")
