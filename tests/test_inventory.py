"""The declared GPU inventory is checked at start (pure)."""

from dataclasses import dataclass

import pytest

from gpuspawner.errors import ConfigError
from gpuspawner.policy.inventory import Gpu, from_nvml, parse_inventory


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
