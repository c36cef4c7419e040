"""The GPUs a hub hands out: declared in config, or discovered with NVML.

Each allocatable unit is a :class:`Gpu`, named by UUID. A GPU in MIG mode is not
allocatable itself; each of its MIG instances is (``MIG-...`` UUIDs).

A GPU's *type* ("A100", "T4") is matched against its name by :func:`matches_type`: the
type's words, compared case-insensitively, must appear as consecutive whole words of the
name, where a word is a run of letters and digits (anything else separates words). So
"A100" and "a100-sxm4" match "NVIDIA A100-SXM4-80GB", "T4" matches "Tesla T4" but not
"Tesla T40", and "RTX 4090" matches "NVIDIA GeForce RTX 4090".

Where a GPU sits (:class:`Topology`: NVLink island, PCIe switch, host bridge, NUMA node)
comes from NVML or from the declared inventory; multi-GPU grants prefer close GPUs
(:mod:`.topology`). An admin's shared GPUs (:func:`apply_sharing`) are held by up to
``shared_by`` servers at once, each holding a *slot*.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from ..errors import ConfigError, check_fields

UUID_PATTERN = re.compile(r"^(GPU|MIG)-[A-Za-z0-9][A-Za-z0-9/._-]*$")
TOPOLOGY_FIELDS = ("nvlink", "switch", "bridge", "numa")
FIELDS = {"uuid", "name", "memory_mib", "parent", *TOPOLOGY_FIELDS}
WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class Topology:
    """Where a GPU sits: labels of the groups it belongs to, each empty when unknown.

    Two GPUs with the same non-empty ``nvlink`` are in one NVLink island; the same
    ``switch``, behind one PCIe switch; the same ``bridge``, one host bridge; the same
    ``numa``, one NUMA node. Labels mean nothing beyond equality.
    """

    nvlink: str = ""
    switch: str = ""
    bridge: str = ""
    numa: str = ""

    @property
    def known(self) -> bool:
        return any((self.nvlink, self.switch, self.bridge, self.numa))


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
    topology: Topology = Topology()

    @property
    def is_mig(self) -> bool:
        return self.uuid.startswith("MIG-")

    @property
    def is_shared(self) -> bool:
        return self.shared_by > 1

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
        topology = {}
        for key in TOPOLOGY_FIELDS:
            value = entry.get(key, "")
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise ConfigError(
                    "%s: %r must be a label (text or a whole number) naming the GPU's %s,"
                    " not %r." % (where, key, TOPOLOGY_WORDS[key], value)
                )
            topology[key] = str(value)
        gpus.append(
            Gpu(uuid, name, memory, parent, topology=Topology(**topology))
        )
    return tuple(gpus)


TOPOLOGY_WORDS = {
    "nvlink": "NVLink island",
    "switch": "PCIe switch",
    "bridge": "PCIe host bridge",
    "numa": "NUMA node",
}


def type_words(text: str) -> tuple[str, ...]:
    """'NVIDIA A100-SXM4-80GB' -> ('nvidia', 'a100', 'sxm4', '80gb')."""
    return tuple(word.lower() for word in WORD.findall(text))


def matches_type(name: str, gpu_type: str) -> bool:
    """Whether a GPU named ``name`` is of ``gpu_type`` (see the module's rule); an empty
    type matches every GPU."""
    wanted = type_words(gpu_type)
    if not wanted:
        return not gpu_type.strip()
    words = type_words(name)
    return any(words[i : i + len(wanted)] == wanted for i in range(len(words) - len(wanted) + 1))


def check_sharing(shared: Mapping) -> None:
    """Refuse a ``shared_gpus`` setting of the wrong shape (a key and a whole number >= 2)."""
    if not isinstance(shared, Mapping):
        raise ConfigError(
            "shared_gpus must be a dict of GPU UUID or type -> servers, e.g. {'T4': 4}."
        )
    for key, count in shared.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(
                "shared_gpus: %r is not a GPU UUID ('GPU-…', 'MIG-…') or a GPU type ('T4')."
                % (key,)
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 2:
            raise ConfigError(
                "shared_gpus[%r] must be a whole number of servers, 2 or more, not %r"
                " (a GPU held by one server is not shared: leave it out)." % (key, count)
            )


def apply_sharing(gpus: Sequence[Gpu], shared: Mapping[str, int]) -> tuple[Gpu, ...]:
    """The inventory with ``shared_by`` set from an admin's ``shared_gpus``.

    A key is a UUID of the inventory or a GPU type (:func:`matches_type`) matching at least
    one of its GPUs; a UUID wins over a type, and of two matching types the one with more
    words (the more specific) wins, then the larger count. Raises ConfigError otherwise.
    """
    check_sharing(shared)
    if not shared:
        return tuple(gpus)
    by_uuid = {gpu.uuid for gpu in gpus}
    types = {}
    for key, count in shared.items():
        if UUID_PATTERN.match(key):
            if key not in by_uuid:
                raise ConfigError(
                    "shared_gpus: the GPU %s is not among this hub's GPUs (%s)."
                    % (key, ", ".join(sorted(by_uuid)) or "none")
                )
        elif not any(matches_type(gpu.name, key) for gpu in gpus):
            names = sorted({gpu.name for gpu in gpus})
            raise ConfigError(
                "shared_gpus: no GPU of this hub is of the type %r (its GPUs: %s)."
                % (key, ", ".join(names) or "none")
            )
        else:
            types[key] = count
    out = []
    for gpu in gpus:
        count = shared.get(gpu.uuid)
        if count is None:
            matching = [
                (len(type_words(key)), n, key) for key, n in types.items()
                if matches_type(gpu.name, key)
            ]  # fmt: skip
            count = max(matching)[1] if matching else 1
        out.append(replace(gpu, shared_by=count))
    return tuple(out)


def from_nvml(devices: Iterable, topology: Mapping[str, Topology] | None = None) -> tuple[Gpu, ...]:
    """Turn NVML's devices (``gpuspawner.nvml.NvmlGpu``) into allocatable GPUs.

    ``topology``: where each physical GPU sits, by UUID (``nvml.topology``); a MIG
    instance sits where its parent does."""
    topology = topology or {}
    return tuple(
        Gpu(
            uuid=device.uuid,
            name=device.name,
            memory_mib=device.memory_total // (1024 * 1024),
            parent=device.mig_parent_uuid,
            topology=topology.get(device.mig_parent_uuid or device.uuid, Topology()),
        )
        for device in devices
    )
