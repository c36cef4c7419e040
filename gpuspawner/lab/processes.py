"""Which of a GPU's processes are this user's, and what may be said about the rest.

NVML reports PIDs in the host's PID namespace. Inside a container those
numbers mean nothing (or, worse, name an unrelated local process), so there
the processes are counted but never named. On a host, a process is shown only
when it belongs to this server's Unix user; other users' processes are
counted, and their command lines are never read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..nvml import ProcessUsage

CONTAINER_NOTE = (
    "NVML reports host process IDs, which cannot be matched to processes inside this "
    "container, so they are counted but not named."
)


def in_container(environ: Mapping[str, str], root: str = "/") -> bool:
    """A best guess that this server runs in its own PID namespace (a container)."""
    if "KUBERNETES_SERVICE_HOST" in environ:
        return True
    for marker in (".dockerenv", "run/.containerenv"):
        if os.path.exists(os.path.join(root, marker)):
            return True
    try:
        with open(os.path.join(root, "proc/1/cgroup"), encoding="utf-8") as f:
            cgroup = f.read()
    except OSError:
        return False
    return any(word in cgroup for word in ("docker", "kubepods", "containerd", "libpod"))


@dataclass
class Attribution:
    """Processes split into this user's (named) and everyone else's (counted)."""

    mine: list[dict] = field(default_factory=list)
    other_count: int = 0
    other_memory: int | None = None
    note: str | None = None

    def as_json(self) -> dict:
        return {
            "processes": self.mine,
            "other_processes": {"count": self.other_count, "used_memory": self.other_memory},
            "process_note": self.note,
        }


def _comm(proc_root: str, pid: int) -> str | None:
    try:
        with open(os.path.join(proc_root, str(pid), "comm"), encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def _owner(proc_root: str, pid: int) -> int | None:
    try:
        return os.stat(os.path.join(proc_root, str(pid))).st_uid
    except OSError:
        return None


def attribute(
    processes: Iterable[ProcessUsage] | None,
    host_pids: bool,
    uid: int,
    proc_root: str = "/proc",
) -> Attribution:
    """Split NVML's processes of one device.

    ``host_pids`` says whether this server sees the host's PID namespace;
    ``uid`` is this server's user. Memory is None where NVML cannot attribute
    it (MIG, some drivers).
    """
    result = Attribution()
    if processes is None:
        return result
    others: list[ProcessUsage] = []
    for proc in processes:
        if host_pids and _owner(proc_root, proc.pid) == uid:
            name = _comm(proc_root, proc.pid)
            result.mine.append({"pid": proc.pid, "name": name, "used_memory": proc.used_memory})
        else:
            others.append(proc)
    result.other_count = len(others)
    if others and all(p.used_memory is not None for p in others):
        result.other_memory = sum(p.used_memory or 0 for p in others)
    if others and not host_pids:
        result.note = CONTAINER_NOTE
    elif others:
        result.note = "%d process%s of other users not shown." % (
            len(others), "" if len(others) == 1 else "es"
        )
    return result
