"""NVML, the NVIDIA Management Library: the one module that talks to it.

Everything else in gpuspawner asks this module about GPUs and never imports
``pynvml`` (nvidia-ml-py) itself. The rules NVML imposes live here:

- initialise once per process and cache device handles by UUID;
- read memory with the v2 call (v1 counts driver-reserved memory as used);
- list MIG instances as devices of their own, and leave out their parent;
- turn every NVML error into either :class:`NvmlUnavailable` (NVML cannot be
  used at all: no library, no driver, no permission) or a per-field gap in a
  reading, so one unsupported field or one lost GPU never hides the rest;
- read where GPUs sit (:func:`topology`) from the common PCIe ancestor of each pair
  and their NVLink peer-to-peer status; a pair NVML cannot say anything about is
  simply not close.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

try:
    import pynvml
except ImportError:  # nvidia-ml-py is a dependency, but a broken install must not crash callers
    pynvml = None

__all__ = [
    "GpuReading",
    "NvmlGpu",
    "NvmlUnavailable",
    "ProcessUsage",
    "discover_gpus",
    "driver_info",
    "lost_gpus",
    "topology",
    "read_gpu",
    "shutdown",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a failed initialisation is remembered before NVML is asked again.
INIT_RETRY_SECONDS = 30.0

_lock = threading.RLock()
_initialized = False
_init_error: NvmlUnavailable | None = None
_init_error_at = 0.0
# uuid -> (handle, parent handle or None); filled by discover_gpus()
_handles: dict[str, tuple[Any, Any | None]] = {}
# GPUs NVML reported lost, until an enumeration finds them again
_lost: set[str] = set()
_lost_indices: set[int] = set()  # NVML indices the last enumeration found lost


class NvmlUnavailable(Exception):
    """NVML cannot be used here; ``str(error)`` is a sentence a person can act on."""


@dataclass(frozen=True)
class NvmlGpu:
    """A GPU, or a MIG instance of one, as NVML enumerates it.

    ``index`` is NVML's index of the physical GPU (for a MIG instance, its
    parent's), which is PCI bus order and not necessarily CUDA's order.
    """

    uuid: str
    name: str
    memory_total: int
    index: int
    mig_parent_uuid: str | None = None


@dataclass(frozen=True)
class ProcessUsage:
    """A process NVML reports on a device; ``pid`` is in the host's PID namespace."""

    pid: int
    used_memory: int | None


@dataclass
class GpuReading:
    """One sample of one device. A field is None when NVML could not give it.

    ``unsupported`` names the fields this device does not support (not an
    error: utilisation on a MIG instance, power on some boards); ``errors``
    maps a field to the sentence explaining why it failed; ``lost`` means the
    GPU fell off the bus and nothing else was read.
    """

    uuid: str
    memory_used: int | None = None
    memory_total: int | None = None
    memory_reserved: int | None = None
    utilization_gpu: int | None = None
    utilization_memory: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    processes: list[ProcessUsage] | None = None
    unsupported: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    lost: bool = False


class _GpuLost(Exception):
    """Internal: NVML said GPU_IS_LOST while reading one device."""


def _unavailable_message(error: Exception) -> str:
    """Translate an initialisation failure into a sentence for a person."""
    if pynvml is None:
        return "nvidia-ml-py is not installed, so GPU status cannot be read."
    if isinstance(error, pynvml.NVMLError_LibraryNotFound):
        return (
            "No NVIDIA driver was found here (libnvidia-ml.so.1 is missing): "
            "this machine or container has no GPU driver mounted."
        )
    if isinstance(error, pynvml.NVMLError_DriverNotLoaded):
        return "The NVIDIA driver is installed but not loaded, so no GPU can be used."
    if isinstance(error, pynvml.NVMLError_NoPermission):
        return "This user has no permission to query the NVIDIA driver (NVML)."
    if isinstance(error, pynvml.NVMLError_LibRmVersionMismatch):
        return (
            "The NVIDIA user-space library does not match the loaded kernel driver; "
            "the machine needs a reboot or a matching driver."
        )
    if isinstance(error, pynvml.NVMLError_FunctionNotFound):
        return "The NVIDIA driver is too old for this version of NVML."
    return "The NVIDIA driver could not be queried: %s." % error


def _ensure_init() -> None:
    """Initialise NVML once; remember a failure for INIT_RETRY_SECONDS."""
    global _initialized, _init_error, _init_error_at
    with _lock:
        if _initialized:
            return
        if pynvml is None:
            raise NvmlUnavailable(_unavailable_message(ImportError("pynvml")))
        now = time.monotonic()
        if _init_error is not None and now - _init_error_at < INIT_RETRY_SECONDS:
            raise _init_error
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            _init_error = NvmlUnavailable(_unavailable_message(e))
            _init_error_at = now
            log.info("NVML unavailable: %s", _init_error)
            raise _init_error from e
        _initialized = True
        _init_error = None


def shutdown() -> None:
    """Release NVML (tests and server shutdown); the next call initialises again."""
    global _initialized, _init_error
    with _lock:
        _handles.clear()
        _lost.clear()
        _lost_indices.clear()
        _init_error = None
        if _initialized and pynvml is not None:
            try:
                pynvml.nvmlShutdown()
            except pynvml.NVMLError as e:
                log.debug("nvmlShutdown failed: %s", e)
        _initialized = False


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _call_or_unavailable(fn: Callable[..., T], *args: Any) -> T:
    """Call an NVML function whose failure means NVML is unusable as a whole."""
    try:
        return fn(*args)
    except pynvml.NVMLError as e:
        raise NvmlUnavailable(_unavailable_message(e)) from e


def driver_info() -> tuple[str, tuple[int, int]]:
    """The driver version and the CUDA version it supports, e.g. ("550.54.15", (12, 4))."""
    _ensure_init()
    version = _text(_call_or_unavailable(pynvml.nvmlSystemGetDriverVersion))
    cuda = _call_or_unavailable(pynvml.nvmlSystemGetCudaDriverVersion_v2)
    return version, (cuda // 1000, (cuda % 1000) // 10)


def _mig_enabled(handle: Any) -> bool:
    try:
        current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
    except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
        return False
    return current == pynvml.NVML_DEVICE_MIG_ENABLE


def _memory_total(handle: Any) -> int:
    return int(_memory_info(handle)[1])


def _memory_info(handle: Any) -> tuple[int, int, int | None]:
    """(used, total, reserved) from memory info v2, falling back to v1 on old drivers."""
    try:
        info = pynvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
        return int(info.used), int(info.total), int(info.reserved)
    except (pynvml.NVMLError_FunctionNotFound, pynvml.NVMLError_NotSupported,
            pynvml.NVMLError_ArgumentVersionMismatch):
        info = pynvml.nvmlDeviceGetMemoryInfo(handle)
        return int(info.used), int(info.total), None


def _mig_devices(parent: Any, parent_uuid: str, index: int) -> list[tuple[NvmlGpu, Any]]:
    found = []
    for slot in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(parent)):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
        except pynvml.NVMLError_NotFound:
            continue  # an empty slot
        gpu = NvmlGpu(
            uuid=_text(pynvml.nvmlDeviceGetUUID(mig)),
            name=_text(pynvml.nvmlDeviceGetName(mig)),
            memory_total=_memory_total(mig),
            index=index,
            mig_parent_uuid=parent_uuid,
        )
        found.append((gpu, mig))
    return found


def discover_gpus() -> list[NvmlGpu]:
    """Every GPU NVML can see, with MIG instances in place of MIG-enabled parents.

    Raises :class:`NvmlUnavailable` when NVML cannot be used. A GPU that fails
    while being enumerated (lost, or an unexpected error) is logged and left
    out; the others are still returned.
    """
    _ensure_init()
    count = _call_or_unavailable(pynvml.nvmlDeviceGetCount)
    gpus: list[NvmlGpu] = []
    handles: dict[str, tuple[Any, Any | None]] = {}
    lost_indices: set[int] = set()
    for index in range(count):
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
            if _mig_enabled(handle):
                for gpu, mig in _mig_devices(handle, uuid, index):
                    gpus.append(gpu)
                    handles[gpu.uuid] = (mig, handle)
                continue
            gpus.append(
                NvmlGpu(
                    uuid=uuid,
                    name=_text(pynvml.nvmlDeviceGetName(handle)),
                    memory_total=_memory_total(handle),
                    index=index,
                )
            )
            handles[uuid] = (handle, None)
        except pynvml.NVMLError_GpuIsLost:
            lost_indices.add(index)
            if index not in _lost_indices:  # said once, not at every enumeration
                log.error("GPU %d is lost (fallen off the bus); leaving it out", index)
        except pynvml.NVMLError_NoPermission as e:
            log.warning("No permission to query GPU %d: %s", index, e)
        except pynvml.NVMLError as e:
            log.warning("Leaving out GPU %d, which NVML could not enumerate: %s", index, e)
    with _lock:
        _handles.clear()
        _handles.update(handles)
        _lost.difference_update(handles)
        _lost_indices.clear()
        _lost_indices.update(lost_indices)
    return gpus


def _handle_for(uuid: str) -> tuple[Any, Any | None]:
    """The cached handles of ``uuid``; raises _GpuLost for a GPU NVML reported lost."""
    with _lock:
        cached = _handles.get(uuid)
    if cached is not None:
        return cached
    discover_gpus()
    with _lock:
        if uuid in _handles:
            return _handles[uuid]
        if uuid in _lost:
            raise _GpuLost()
    try:
        pynvml.nvmlDeviceGetHandleByUUID(uuid)
    except pynvml.NVMLError_GpuIsLost as e:
        with _lock:
            _lost.add(uuid)
        raise _GpuLost() from e
    except pynvml.NVMLError:
        pass
    raise NvmlUnavailable("NVML does not know the GPU %s." % uuid)


def _lost_reading(uuid: str) -> GpuReading:
    reading = GpuReading(uuid=uuid, lost=True)
    reading.errors["gpu"] = (
        "The GPU has fallen off the bus (NVML: GPU is lost); the machine needs attention."
    )
    with _lock:
        _handles.pop(uuid, None)
        _lost.add(uuid)
    return reading


def _read_field(reading: GpuReading, name: str, fn: Callable[..., T], *args: Any) -> T | None:
    """Call one NVML getter; a failure becomes a gap in ``reading``, not an exception."""
    try:
        return fn(*args)
    except (pynvml.NVMLError_NotSupported, pynvml.NVMLError_FunctionNotFound):
        reading.unsupported.append(name)
    except pynvml.NVMLError_GpuIsLost as e:
        raise _GpuLost() from e
    except pynvml.NVMLError_NoPermission:
        reading.errors[name] = "no permission to read %s" % name
    except pynvml.NVMLError as e:
        reading.errors[name] = str(e)
    return None


def _processes(handle: Any) -> list[ProcessUsage]:
    seen: dict[int, ProcessUsage] = {}
    for getter in (pynvml.nvmlDeviceGetComputeRunningProcesses,
                   pynvml.nvmlDeviceGetGraphicsRunningProcesses):
        for proc in getter(handle):
            used = getattr(proc, "usedGpuMemory", None)
            if used is not None and used >= 2**63:  # NVML_VALUE_NOT_AVAILABLE
                used = None
            seen.setdefault(int(proc.pid), ProcessUsage(int(proc.pid), used))
    return list(seen.values())


def lost_gpus(uuids: Iterable[str]) -> set[str]:
    """Which of ``uuids`` NVML reports lost (fallen off the bus); unknown UUIDs are not.

    Raises :class:`NvmlUnavailable` when NVML as a whole cannot be used.
    """
    lost = set()
    for uuid in uuids:
        try:
            if read_gpu(uuid, with_processes=False).lost:
                lost.add(uuid)
        except NvmlUnavailable:
            _ensure_init()  # raises again when NVML as a whole is unusable
    return lost


def read_gpu(uuid: str, with_processes: bool = True) -> GpuReading:
    """Sample one device by UUID (a GPU or a MIG instance).

    Raises :class:`NvmlUnavailable` only when NVML as a whole is unusable or
    the UUID is unknown; everything else is reported inside the reading. A GPU
    that NVML reported lost reads as lost (``lost``, nothing else) until an
    enumeration finds it again. For a MIG instance, temperature and power are
    the parent GPU's.
    """
    _ensure_init()
    try:
        handle, parent = _handle_for(uuid)
    except _GpuLost:
        return _lost_reading(uuid)
    reading = GpuReading(uuid=uuid)
    whole_gpu = parent if parent is not None else handle
    try:
        memory = _read_field(reading, "memory", _memory_info, handle)
        if memory is not None:
            reading.memory_used, reading.memory_total, reading.memory_reserved = memory
        rates = _read_field(reading, "utilization", pynvml.nvmlDeviceGetUtilizationRates, handle)
        if rates is not None:
            reading.utilization_gpu, reading.utilization_memory = int(rates.gpu), int(rates.memory)
        reading.temperature_c = _read_field(
            reading, "temperature", pynvml.nvmlDeviceGetTemperature, whole_gpu,
            pynvml.NVML_TEMPERATURE_GPU,
        )
        power = _read_field(reading, "power", pynvml.nvmlDeviceGetPowerUsage, whole_gpu)
        reading.power_w = None if power is None else power / 1000.0
        limit = _read_field(
            reading, "power_limit", pynvml.nvmlDeviceGetEnforcedPowerLimit, whole_gpu
        )
        reading.power_limit_w = None if limit is None else limit / 1000.0
        if with_processes:
            reading.processes = _read_field(reading, "processes", _processes, handle)
    except _GpuLost:
        return _lost_reading(uuid)
    return reading


#: (group, the loosest common PCIe ancestor that still puts two GPUs in one group)
_PCIE_GROUPS = (("switch", "NVML_TOPOLOGY_MULTIPLE"), ("bridge", "NVML_TOPOLOGY_HOSTBRIDGE"),
                ("numa", "NVML_TOPOLOGY_NODE"))  # fmt: skip


def topology() -> dict[str, dict[str, str]]:
    """Where each physical GPU sits, by UUID: {"nvlink", "switch", "bridge", "numa"} labels.

    Two GPUs get the same label when NVML says they are that close: NVLink peer-to-peer
    works between them ("nvlink"), or their common PCIe ancestor is at most a switch tree
    ("switch", NVML_TOPOLOGY_SINGLE or MULTIPLE), the host bridge ("bridge") or the NUMA
    node ("numa"); groups are the connected sets of such pairs, labelled "gpu<first NVML
    index>". A pair NVML cannot answer for counts as not close; a GPU NVML cannot enumerate
    is left out. Raises :class:`NvmlUnavailable` when NVML cannot be used.
    """
    _ensure_init()
    count = _call_or_unavailable(pynvml.nvmlDeviceGetCount)
    found: list[tuple[int, str, Any]] = []
    for index in range(count):
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            found.append((index, _text(pynvml.nvmlDeviceGetUUID(handle)), handle))
        except pynvml.NVMLError as e:
            log.debug("Topology: leaving out GPU %d: %s", index, e)
    groups = {name: list(range(len(found))) for name in ("nvlink", "switch", "bridge", "numa")}

    def join(name: str, a: int, b: int) -> None:
        parent = groups[name]
        while parent[a] != a:
            a = parent[a]
        while parent[b] != b:
            b = parent[b]
        parent[max(a, b)] = min(a, b)

    for a in range(len(found)):
        for b in range(a + 1, len(found)):
            ha, hb = found[a][2], found[b][2]
            try:
                level = pynvml.nvmlDeviceGetTopologyCommonAncestor(ha, hb)
            except pynvml.NVMLError:
                level = None
            for name, limit in _PCIE_GROUPS:
                if level is not None and level <= getattr(pynvml, limit):
                    join(name, a, b)
            try:
                nvlink = pynvml.nvmlDeviceGetP2PStatus(ha, hb, pynvml.NVML_P2P_CAPS_INDEX_NVLINK)
            except pynvml.NVMLError:
                nvlink = None
            if nvlink == pynvml.NVML_P2P_STATUS_OK:
                join("nvlink", a, b)

    def label(name: str, i: int) -> str:
        parent = groups[name]
        while parent[i] != i:
            i = parent[i]
        return "gpu%d" % found[i][0]

    return {
        uuid: {name: label(name, i) for name in groups} for i, (_, uuid, _) in enumerate(found)
    }
