"""The simulated GPU host's state: what the simulated NVML (nvml/simnvml.c) reports.

A *host* is a folder under HOSTS_ROOT (``/var/lib/simnvml/hosts``, or ``$SIMNVML_HOSTS``)
holding one ``state`` file. The simulated ``libnvidia-ml.so.1`` reads that file again whenever
it changes, so a test that calls :meth:`SimHost.update` is seen by every process using the
library on its next NVML call: the hub, a JupyterLab server extension, a container whose rootfs
the stand-in ``nvidia-container-cli`` prepared (it mounts the host's folder read-only).

Several hosts may exist at once (concurrent test runs each make their own, with UUIDs of their
own); the stand-in finds the host that owns the UUIDs a container asks for. ``default`` is the
one the setup script creates and the one device indices and ``all`` refer to.

    host = SimHost.create("mytest", default_inventory("mytest"))
    env = host.env()                       # LD_LIBRARY_PATH + SIMNVML_STATE for a hub process
    host.update(host.gpus[0].uuid, util_gpu=97, memory_used=40 * 2**30)
    host.lose(host.gpus[1].uuid)           # NVML answers GPU_IS_LOST for it from now on
    host.remove()

The file format is documented in nvml/simnvml.c; this module is the only writer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HOSTS_ROOT = Path(os.environ.get("SIMNVML_HOSTS", "/var/lib/simnvml/hosts"))
DEFAULT_HOST = "default"
#: where scripts/setup-gpuhost.sh puts the simulated libnvidia-ml.so.1 (and records its folder)
LIB_DIR_FILE = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "gpuspawner"
    / "gpuhost"
    / "lib-dir"
)

MIB = 2**20
GIB = 2**30

# NVML return codes a test may inject (nvml.h's nvmlReturn_t)
NOT_SUPPORTED = 3
NO_PERMISSION = 4
DRIVER_NOT_LOADED = 9
GPU_IS_LOST = 15
UNKNOWN = 999


@dataclass
class Mig:
    """A MIG instance of a MIG-enabled GPU."""

    uuid: str
    name: str
    memory_total: int
    memory_used: int = 0
    memory_reserved: int = 0
    gi: int = 0
    ci: int = 0
    fail: dict[str, int] = field(default_factory=dict)


@dataclass
class Gpu:
    """A physical GPU. ``power`` and ``power_limit`` are in milliwatts, as NVML reports them."""

    index: int
    uuid: str
    name: str = "NVIDIA A100-SXM4-80GB"
    memory_total: int = 81920 * MIB
    memory_used: int = 0
    memory_reserved: int = 512 * MIB
    util_gpu: int = 0
    util_memory: int = 0
    temperature: int = 34
    power: int = 62000
    power_limit: int = 400000
    pci: str = ""
    numa: int = 0
    bridge: int = 0
    switch: int = 0
    nvlink: int = 1
    lost: bool = False
    migs: list[Mig] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)

    @property
    def mig(self) -> bool:
        return bool(self.migs)


@dataclass
class Proc:
    """A process NVML reports on a device (a GPU or a MIG instance); ``pid`` is a host PID."""

    device: str
    pid: int
    used: int = 0
    kind: str = "compute"


@dataclass
class State:
    driver: str = "550.54.15"
    cuda: int = 12040  # 12.4, as nvmlSystemGetCudaDriverVersion_v2 encodes it
    init_error: int = 0  # e.g. DRIVER_NOT_LOADED: nvmlInit fails, and so does the stand-in CLI
    gpus: list[Gpu] = field(default_factory=list)
    procs: list[Proc] = field(default_factory=list)

    def device(self, uuid: str) -> Gpu | Mig:
        for gpu in self.gpus:
            if gpu.uuid == uuid:
                return gpu
            for mig in gpu.migs:
                if mig.uuid == uuid:
                    return mig
        raise KeyError("no device %s on this simulated host" % uuid)

    def parent_of(self, uuid: str) -> Gpu | None:
        for gpu in self.gpus:
            if any(mig.uuid == uuid for mig in gpu.migs):
                return gpu
        return None

    def allocatable(self) -> list[str]:
        """What a hub hands out: every GPU not in MIG mode, and every MIG instance."""
        return [uuid for g in self.gpus for uuid in ([m.uuid for m in g.migs] or [g.uuid])]


def _uuid(kind: str, token: str, index: int, sub: int = 0) -> str:
    digest = hashlib.sha256(("%s/%d/%d" % (token, index, sub)).encode()).hexdigest()
    head = hashlib.sha256(token.encode()).hexdigest()[:8]
    return "%s-%s-%04x-4%s-8%s-%s" % (
        kind,
        head,
        index * 16 + sub,
        digest[:3],
        digest[3:6],
        digest[6:18],
    )


MIG_PROFILES = [  # (profile, memory MiB, GPU instance id) as an A100 80GB offers them
    ("3g.40gb", 40192, 2),
    ("2g.20gb", 19968, 5),
    ("1g.10gb", 9856, 13),
]


def default_inventory(
    token: str = DEFAULT_HOST, count: int = 8, mig_index: int | None = 7
) -> State:
    """``count`` A100 80GB GPUs; the one at ``mig_index`` is in MIG mode with three instances.

    UUIDs derive from ``token``, so each host's devices are its own. PCIe: GPUs pair up on a
    switch, four per host bridge, one host bridge per NUMA node; all share one NVLink group.
    """
    gpus = []
    for i in range(count):
        gpu = Gpu(
            index=i,
            uuid=_uuid("GPU", token, i),
            pci="00000000:%02X:00.0" % (0x18 + 0x10 * i),
            numa=i // 4,
            bridge=i // 4,
            switch=i // 2,
        )
        if i == mig_index:
            gpu.memory_used = 0
            gpu.migs = [
                Mig(
                    uuid=_uuid("MIG", token, i, n + 1),
                    name="%s MIG %s" % (gpu.name, profile),
                    memory_total=mib * MIB,
                    memory_reserved=16 * MIB,
                    gi=gi,
                    ci=0,
                )
                for n, (profile, mib, gi) in enumerate(MIG_PROFILES)
            ]
        gpus.append(gpu)
    return State(gpus=gpus)


# ---- the file format (see nvml/simnvml.c) ----


def _fail_text(fail: dict[str, int]) -> str:
    return ",".join("%s:%d" % item for item in sorted(fail.items()))


def _line(record: str, **fields) -> str:
    for key, value in fields.items():
        if any(c in str(value) for c in "\t\n"):
            raise ValueError("%s=%r: tabs and newlines cannot be stored" % (key, value))
    return "\t".join(
        [record] + ["%s=%s" % (k, int(v) if isinstance(v, bool) else v) for k, v in fields.items()]
    )


def dumps(state: State) -> str:
    lines = [
        "# simulated NVML state (tools/gpuhost/simstate.py)",
        _line("system", driver=state.driver, cuda=state.cuda, init_error=state.init_error),
    ]
    for g in state.gpus:
        lines.append(
            _line(
                "gpu",
                index=g.index,
                uuid=g.uuid,
                name=g.name,
                memory_total=g.memory_total,
                memory_used=g.memory_used,
                memory_reserved=g.memory_reserved,
                util_gpu=g.util_gpu,
                util_memory=g.util_memory,
                temperature=g.temperature,
                power=g.power,
                power_limit=g.power_limit,
                pci=g.pci,
                numa=g.numa,
                bridge=g.bridge,
                switch=g.switch,
                nvlink=g.nvlink,
                mig=g.mig,
                lost=g.lost,
                fail=_fail_text(g.fail),
            )
        )
    for g in state.gpus:
        for m in g.migs:
            lines.append(
                _line(
                    "mig",
                    parent=g.uuid,
                    uuid=m.uuid,
                    name=m.name,
                    memory_total=m.memory_total,
                    memory_used=m.memory_used,
                    memory_reserved=m.memory_reserved,
                    gi=m.gi,
                    ci=m.ci,
                    fail=_fail_text(m.fail),
                )
            )
    for p in state.procs:
        lines.append(_line("proc", device=p.device, pid=p.pid, used=p.used, kind=p.kind))
    return "\n".join(lines) + "\n"


def _fields(parts: list[str]) -> dict[str, str]:
    return dict(part.split("=", 1) for part in parts if "=" in part)


def _fail(text: str) -> dict[str, int]:
    return {
        k: int(v, 0) for k, v in (item.split(":", 1) for item in text.split(",") if ":" in item)
    }


def loads(text: str) -> State:
    state = State()
    by_uuid: dict[str, Gpu] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        kind, *parts = line.split("\t")
        f = _fields(parts)
        if kind == "system":
            state.driver, state.cuda = f.get("driver", state.driver), int(f.get("cuda", state.cuda))
            state.init_error = int(f.get("init_error", 0))
        elif kind == "gpu":
            ints = {
                k: int(f[k])
                for k in (
                    "index",
                    "memory_total",
                    "memory_used",
                    "memory_reserved",
                    "util_gpu",
                    "util_memory",
                    "temperature",
                    "power",
                    "power_limit",
                    "numa",
                    "bridge",
                    "switch",
                    "nvlink",
                )
                if k in f
            }
            gpu = Gpu(
                uuid=f["uuid"],
                name=f.get("name", Gpu.name),
                pci=f.get("pci", ""),
                lost=f.get("lost") == "1",
                fail=_fail(f.get("fail", "")),
                **ints,
            )
            state.gpus.append(gpu)
            by_uuid[gpu.uuid] = gpu
        elif kind == "mig" and f.get("parent") in by_uuid:
            ints = {
                k: int(f[k])
                for k in ("memory_total", "memory_used", "memory_reserved", "gi", "ci")
                if k in f
            }
            by_uuid[f["parent"]].migs.append(
                Mig(uuid=f["uuid"], name=f.get("name", ""), fail=_fail(f.get("fail", "")), **ints)
            )
        elif kind == "proc":
            state.procs.append(
                Proc(
                    device=f["device"],
                    pid=int(f["pid"]),
                    used=int(f.get("used", 0)),
                    kind=f.get("kind", "compute"),
                )
            )
    return state


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` in one rename, so a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def lib_dir() -> Path:
    """The folder holding the simulated libnvidia-ml.so.1 (scripts/setup-gpuhost.sh builds it)."""
    env = os.environ.get("SIMNVML_LIB_DIR")
    if env:
        return Path(env)
    if LIB_DIR_FILE.exists():
        return Path(LIB_DIR_FILE.read_text().strip())
    raise FileNotFoundError("the simulated NVML is not built: run bash scripts/setup-gpuhost.sh")


class SimHost:
    """One simulated host's folder and state; every change is written at once."""

    def __init__(self, name: str, root: Path = HOSTS_ROOT):
        self.name = name
        self.folder = Path(root) / name
        self.state_path = self.folder / "state"

    @classmethod
    def create(cls, name: str, state: State | None = None, root: Path = HOSTS_ROOT) -> "SimHost":
        host = cls(name, root)
        host.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(host.folder, 0o755)
        host.write(state if state is not None else default_inventory(name))
        return host

    def read(self) -> State:
        return loads(self.state_path.read_text())

    def write(self, state: State) -> None:
        write_atomically(self.state_path, dumps(state))

    @property
    def state(self) -> State:
        return self.read()

    @property
    def gpus(self) -> list[Gpu]:
        return self.read().gpus

    def allocatable(self) -> list[str]:
        return self.read().allocatable()

    def update(self, uuid: str, **values) -> None:
        """Set fields of one device (a GPU or MIG instance), e.g. util_gpu=90, memory_used=..."""
        state = self.read()
        device = state.device(uuid)
        for key, value in values.items():
            if not hasattr(device, key) or key == "uuid":
                raise AttributeError("%s has no field %r" % (type(device).__name__, key))
            setattr(device, key, value)
        self.write(state)

    def lose(self, uuid: str, lost: bool = True) -> None:
        """The GPU falls off the bus: NVML answers GPU_IS_LOST for it (and its MIG instances)."""
        state = self.read()
        gpu = state.parent_of(uuid) or state.device(uuid)
        gpu.lost = lost
        self.write(state)

    def fail(self, uuid: str, function: str, code: int | None) -> None:
        """Make one NVML function answer ``code`` for this device (None: work again)."""
        state = self.read()
        device = state.device(uuid)
        if code is None:
            device.fail.pop(function, None)
        else:
            device.fail[function] = code
        self.write(state)

    def set_processes(self, uuid: str, procs: list[tuple[int, int]]) -> None:
        """The compute processes on one device, as (host pid, used bytes)."""
        state = self.read()
        state.device(uuid)
        state.procs = [p for p in state.procs if p.device != uuid]
        state.procs += [Proc(device=uuid, pid=pid, used=used) for pid, used in procs]
        self.write(state)

    def set_system(self, **values) -> None:
        """driver=..., cuda=..., init_error=... (DRIVER_NOT_LOADED: a host without a driver)."""
        state = self.read()
        for key, value in values.items():
            if key not in {f.name for f in dataclasses.fields(State)} or key in ("gpus", "procs"):
                raise AttributeError("State has no field %r" % key)
            setattr(state, key, value)
        self.write(state)

    def env(self) -> dict[str, str]:
        """What a process on this host needs to load the simulated NVML and read this host."""
        libs = str(lib_dir())
        ld = os.environ.get("LD_LIBRARY_PATH", "")
        return {
            "LD_LIBRARY_PATH": libs + (":" + ld if ld else ""),
            "SIMNVML_STATE": str(self.state_path),
        }

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def hosts(root: Path = HOSTS_ROOT) -> list[SimHost]:
    """Every host with a state file, the default one first."""
    found = sorted(p.parent.name for p in Path(root).glob("*/state"))
    found.sort(key=lambda name: name != DEFAULT_HOST)
    return [SimHost(name, root) for name in found]
