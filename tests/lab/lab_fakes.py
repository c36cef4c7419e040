"""A stand-in NVIDIA driver, for the NVML failures a machine without a GPU cannot produce.

``FakeDriver`` answers gpuspawner.nvml's pynvml calls from a table of devices
and raises the NVML error a test asks for (``fail``). It exists to show that
one failing field or GPU does not take down the rest; it is not evidence that
the healthy path works against a real driver (the gpu-marked tests are).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from gpuspawner.nvml import pynvml

GIB = 1024**3


@dataclass
class FakeDevice:
    uuid: str
    name: str
    memory_total: int = 80 * GIB
    memory_used: int = 1 * GIB
    mig: list[FakeDevice] = field(default_factory=list)
    processes: list[tuple[int, int | None]] = field(default_factory=list)


class FakeDriver:
    """Patch pynvml's functions (as gpuspawner.nvml sees them) to serve ``devices``."""

    def __init__(self, monkeypatch, devices: list[FakeDevice]):
        self.devices = devices
        self.failures: dict[tuple[str, str | None], int] = {}
        self.calls: list[str] = []
        for name in dir(self):
            if name.startswith("nvml"):
                monkeypatch.setattr(pynvml, name, getattr(self, name))

    def fail(self, function: str, error: int, uuid: str | None = None) -> None:
        """Make ``function`` raise NVML ``error`` (for one device's UUID, or always)."""
        self.failures[(function, uuid)] = error

    def _check(self, function: str, device: FakeDevice | None = None) -> None:
        self.calls.append(function)
        for key in ((function, None), (function, device.uuid if device else None)):
            if key in self.failures:
                raise pynvml.NVMLError(self.failures[key])

    # -- the pynvml functions gpuspawner.nvml uses --------------------------------

    def nvmlInit(self):
        self._check("nvmlInit")

    def nvmlShutdown(self):
        self._check("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self):
        self._check("nvmlSystemGetDriverVersion")
        return "580.82.07"

    def nvmlSystemGetCudaDriverVersion_v2(self):
        self._check("nvmlSystemGetCudaDriverVersion_v2")
        return 13000

    def nvmlDeviceGetCount(self):
        self._check("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index):
        self._check("nvmlDeviceGetHandleByIndex", self.devices[index])
        return self.devices[index]

    def nvmlDeviceGetUUID(self, device):
        self._check("nvmlDeviceGetUUID", device)
        return device.uuid

    def nvmlDeviceGetName(self, device):
        self._check("nvmlDeviceGetName", device)
        return device.name

    def nvmlDeviceGetMigMode(self, device):
        self._check("nvmlDeviceGetMigMode", device)
        enabled = pynvml.NVML_DEVICE_MIG_ENABLE if device.mig else pynvml.NVML_DEVICE_MIG_DISABLE
        return [enabled, enabled]

    def nvmlDeviceGetMaxMigDeviceCount(self, device):
        self._check("nvmlDeviceGetMaxMigDeviceCount", device)
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device, index):
        self._check("nvmlDeviceGetMigDeviceHandleByIndex", device)
        if index >= len(device.mig):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return device.mig[index]

    def nvmlDeviceGetMemoryInfo(self, device, version=None):
        self._check("nvmlDeviceGetMemoryInfo_v2" if version else "nvmlDeviceGetMemoryInfo", device)
        free = device.memory_total - device.memory_used
        if version:
            return SimpleNamespace(total=device.memory_total, used=device.memory_used,
                                   free=free, reserved=GIB // 2)
        return SimpleNamespace(total=device.memory_total, used=device.memory_used, free=free)

    def nvmlDeviceGetUtilizationRates(self, device):
        self._check("nvmlDeviceGetUtilizationRates", device)
        return SimpleNamespace(gpu=37, memory=12)

    def nvmlDeviceGetTemperature(self, device, sensor):
        self._check("nvmlDeviceGetTemperature", device)
        return 45

    def nvmlDeviceGetPowerUsage(self, device):
        self._check("nvmlDeviceGetPowerUsage", device)
        return 312_400

    def nvmlDeviceGetEnforcedPowerLimit(self, device):
        self._check("nvmlDeviceGetEnforcedPowerLimit", device)
        return 700_000

    def nvmlDeviceGetComputeRunningProcesses(self, device):
        self._check("nvmlDeviceGetComputeRunningProcesses", device)
        return [SimpleNamespace(pid=pid, usedGpuMemory=used) for pid, used in device.processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, device):
        self._check("nvmlDeviceGetGraphicsRunningProcesses", device)
        return []
