"""The GPUs a hub hands out: declared in config, or discovered with NVML.

Each allocatable unit is a :class:`Gpu`, named by UUID. A GPU in MIG mode is not
allocatable itself; each of its MIG instances is (``MIG-...`` UUIDs).
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError, check_fields

UUID_PATTERN = re.compile(r"^(GPU|MIG)-[A-Za-z0-9][A-Za-z0-9/._-]*$")
FIELDS = {"uuid", "name", "memory_mib", "parent"}


@dataclass(frozen=True)
class Gpu:
    """One allocatable GPU or MIG instance."""

    uuid: str
    name: str = "GPU"
    memory_mib: int = 0
    parent: str | None = None  # the physical GPU's UUID, for a MIG instance
    # the Kubernetes extended resource ("nvidia.com/gpu", a MIG slice) of a GPU the scheduler
    # picks; empty where the hub names each GPU by its UUID (Docker)
    resource: str = ""
    # how many servers may hold this GPU at once (an admin's shared GPU: each holds a slot,
    # counted as 1/shared_by of a GPU by the quota and budgets); 1: held whole
    shared_by: int = 1

    @property
    def is_mig(self) -> bool:
        return self.uuid.startswith("MIG-")

    def describe(self) -> str:
        """'NVIDIA A100-SXM4-80GB (GPU-1234abcd…)' for messages."""
        return "%s (%s)" % (self.name, self.uuid)


def parse_inventory(entries: Sequence) -> tuple[Gpu, ...]:
    """Check a declared inventory: a list of {"uuid": ..., "name": ..., "memory_mib": ...}."""
    if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
        raise ConfigError("The GPU inventory must be a list of {'uuid': ..., 'name': ...} dicts.")
    gpus = []
    seen = set()
    for position, entry in enumerate(entries):
        where = "gpus[%d]" % position
        if not isinstance(entry, dict):
            raise ConfigError("%s must be a dict with a 'uuid', not %r." % (where, entry))
        check_fields(where, entry, FIELDS)
        uuid = entry.get("uuid")
        if not isinstance(uuid, str) or not UUID_PATTERN.match(uuid):
            raise ConfigError(
                "%s: %r is not a GPU UUID; use the 'GPU-…' or 'MIG-…' value"
                " that `nvidia-smi -L` prints." % (where, uuid)
            )
        if uuid in seen:
            raise ConfigError("%s: GPU %s is listed twice." % (where, uuid))
        seen.add(uuid)
        memory = entry.get("memory_mib", 0)
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < 0:
            raise ConfigError("%s: 'memory_mib' must be a whole number of MiB." % where)
        name = entry.get("name", "GPU")
        if not isinstance(name, str) or not name:
            raise ConfigError("%s: 'name' must be text." % where)
        parent = entry.get("parent")
        if parent is not None and not (isinstance(parent, str) and UUID_PATTERN.match(parent)):
            raise ConfigError("%s: 'parent' must be the UUID of the physical GPU." % where)
        gpus.append(Gpu(uuid=uuid, name=name, memory_mib=memory, parent=parent))
    return tuple(gpus)


def from_nvml(devices: Iterable) -> tuple[Gpu, ...]:
    """Turn NVML's devices (``gpuspawner.nvml.NvmlGpu``) into allocatable GPUs."""
    return tuple(
        Gpu(
            uuid=device.uuid,
            name=device.name,
            memory_mib=device.memory_total // (1024 * 1024),
            parent=device.mig_parent_uuid,
        )
        for device in devices
    )
