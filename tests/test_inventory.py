"""The declared GPU inventory is checked at start (pure)."""

from dataclasses import dataclass

import pytest

from gpuspawner.errors import ConfigError
from gpuspawner.policy.inventory import (
    Gpu,
    Topology,
    apply_sharing,
    from_nvml,
    matches_type,
    parse_inventory,
)


def test_parse_declared_inventory():
    gpus = parse_inventory(
        [
            {"uuid": "GPU-aaaa", "name": "NVIDIA A100", "memory_mib": 81920},
            {"uuid": "MIG-bbbb", "name": "1g.10gb", "parent": "GPU-cccc"},
        ]
    )
    assert gpus == (
        Gpu("GPU-aaaa", "NVIDIA A100", 81920),
        Gpu("MIG-bbbb", "1g.10gb", 0, "GPU-cccc"),
    )
    assert not gpus[0].is_mig and gpus[1].is_mig
    assert gpus[0].describe() == "NVIDIA A100 (GPU-aaaa)"


@pytest.mark.parametrize(
    "entries, words",
    [
        ("GPU-1", "must be a list"),
        ([{"uuid": "0"}], "not a GPU UUID"),
        ([{"uuid": 3}], "not a GPU UUID"),
        ([{"name": "x"}], "not a GPU UUID"),
        ([{"uuid": "GPU-1"}, {"uuid": "GPU-1"}], "listed twice"),
        ([{"uuid": "GPU-1", "memory": 3}], "unknown field"),
        ([{"uuid": "GPU-1", "memory_mib": -1}], "whole number of MiB"),
        ([{"uuid": "GPU-1", "memory_mib": "80G"}], "whole number of MiB"),
        ([{"uuid": "GPU-1", "name": ""}], "'name' must be text"),
        ([{"uuid": "MIG-1", "parent": "gpu0"}], "'parent' must be"),
        (["GPU-1"], "must be a dict"),
        ([{"uuid": "GPU-1", "nvlink": [1]}], "'nvlink' must be a label .* NVLink island"),
        ([{"uuid": "GPU-1", "numa": True}], "'numa' must be a label .* NUMA node"),
    ],
)
def test_bad_inventory_refused(entries, words):
    with pytest.raises(ConfigError, match=words):
        parse_inventory(entries)


def test_from_nvml_devices():
    @dataclass(frozen=True)
    class Device:
        uuid: str
        name: str
        memory_total: int
        index: int
        mig_parent_uuid: str | None

    gpus = from_nvml([Device("MIG-x", "NVIDIA A100 MIG 1g.10gb", 10 * 1024**3, 0, "GPU-p")])
    assert gpus == (Gpu("MIG-x", "NVIDIA A100 MIG 1g.10gb", 10240, "GPU-p"),)


def test_declared_topology():
    gpus = parse_inventory(
        [{"uuid": "GPU-1", "nvlink": 0, "switch": "sw1", "bridge": 2, "numa": 1}, {"uuid": "GPU-2"}]
    )
    assert gpus[0].topology == Topology(nvlink="0", switch="sw1", bridge="2", numa="1")
    assert gpus[1].topology == Topology() and not gpus[1].topology.known


def test_from_nvml_with_topology_mig_instances_sit_where_their_parent_does():
    @dataclass(frozen=True)
    class Device:
        uuid: str
        name: str
        memory_total: int
        index: int
        mig_parent_uuid: str | None

    place = Topology(nvlink="gpu0", switch="gpu0", bridge="gpu0", numa="gpu0")
    gpus = from_nvml(
        [Device("GPU-a", "A100", 0, 0, None), Device("MIG-b", "A100 MIG", 0, 1, "GPU-p")],
        {"GPU-a": place, "GPU-p": place},
    )
    assert [g.topology for g in gpus] == [place, place]


@pytest.mark.parametrize(
    "name, gpu_type, matches",
    [
        ("NVIDIA A100-SXM4-80GB", "A100", True),
        ("NVIDIA A100-SXM4-80GB", "a100", True),
        ("NVIDIA A100-SXM4-80GB", "A100-SXM4", True),
        ("NVIDIA A100-SXM4-80GB", "A100 80GB", False),  # not consecutive words
        ("NVIDIA A100-SXM4-80GB", "A10", False),
        ("NVIDIA A100-SXM4-80GB MIG 1g.10gb", "A100", True),
        ("Tesla T4", "T4", True),
        ("Tesla T40", "T4", False),
        ("NVIDIA GeForce RTX 4090", "RTX 4090", True),
        ("NVIDIA GeForce RTX 4090", "4090", True),
        ("NVIDIA H100 NVL", "H100", True),
        ("NVIDIA L4", "", True),
        ("NVIDIA L4", "-", False),  # no words: matches nothing
    ],
)
def test_gpu_type_rule(name, gpu_type, matches):
    assert matches_type(name, gpu_type) is matches


HOST = (
    Gpu("GPU-a0", "NVIDIA A100-SXM4-80GB"),
    Gpu("GPU-t0", "Tesla T4"),
    Gpu("GPU-t1", "Tesla T4"),
    Gpu("GPU-x", "Tesla T40"),
)


def test_apply_sharing_by_type_and_uuid():
    shared = apply_sharing(HOST, {"T4": 3, "GPU-t1": 2})
    assert [g.shared_by for g in shared] == [1, 3, 2, 1]
    assert shared[1].is_shared and not shared[0].is_shared
    assert apply_sharing(HOST, {}) == HOST
    # the more specific type wins
    specific = apply_sharing(HOST, {"Tesla": 2, "Tesla T4": 4})
    assert [g.shared_by for g in specific] == [1, 4, 4, 2]


@pytest.mark.parametrize(
    "shared, words",
    [
        ({"T4": 1}, r"shared_gpus\['T4'\] must be a whole number of servers, 2 or more, not 1"),
        ({"T4": 2.5}, "whole number of servers"),
        ({"T4": True}, "whole number of servers"),
        ({"": 2}, "is not a GPU UUID"),
        ({"GPU-zz": 2}, r"the GPU GPU-zz is not among this hub's GPUs \(GPU-a0, GPU-t0"),
        ({"V100": 2}, r"no GPU of this hub is of the type 'V100' \(its GPUs: NVIDIA A100"),
        (["T4"], "must be a dict"),
    ],
)
def test_bad_sharing_refused(shared, words):
    with pytest.raises(ConfigError, match=words):
        apply_sharing(HOST, shared)
