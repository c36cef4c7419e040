"""Which GPUs are this server's: pure selection from NVML's list and the environment."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuspawner.lab.visible import (
    NO_GPU_GIVEN,
    GpuEnvironment,
    allocated_gpus,
    reason_for_none,
    reason_not_visible,
    reason_without_gpu,
    select_visible,
)
from gpuspawner.nvml import NvmlGpu

G = 1024**3
A = NvmlGpu("GPU-aaaa1111", "NVIDIA A100-SXM4-80GB", 80 * G, 0)
B = NvmlGpu("GPU-bbbb2222", "NVIDIA A100-SXM4-80GB", 80 * G, 1)
C = NvmlGpu("GPU-cccc3333", "NVIDIA A100-SXM4-80GB", 80 * G, 2)
M1 = NvmlGpu("MIG-1111", "NVIDIA A100-SXM4-80GB MIG 1g.10gb", 10 * G, 3, "GPU-dddd4444")
M2 = NvmlGpu("MIG-2222", "NVIDIA A100-SXM4-80GB MIG 3g.40gb", 40 * G, 3, "GPU-dddd4444")
ALL = [A, B, C, M1, M2]


def env(**variables: str) -> GpuEnvironment:
    return GpuEnvironment.from_environ(variables)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, ALL),  # a laptop: what NVML shows
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, ALL),
        ({"NVIDIA_VISIBLE_DEVICES": "GPU-bbbb2222"}, [B]),
        ({"NVIDIA_VISIBLE_DEVICES": "gpu-bbbb2222, GPU-aaaa1111"}, [A, B]),  # NVML order
        ({"NVIDIA_VISIBLE_DEVICES": "MIG-2222"}, [M2]),
        ({"NVIDIA_VISIBLE_DEVICES": "GPU-dddd4444"}, [M1, M2]),  # a MIG parent gives its instances
        ({"NVIDIA_VISIBLE_DEVICES": "0,1"}, ALL),  # host indices: the runtime already hid the rest
        ({"NVIDIA_VISIBLE_DEVICES": "void"}, []),
        ({"NVIDIA_VISIBLE_DEVICES": "none"}, []),
        ({"NVIDIA_VISIBLE_DEVICES": ""}, []),
        ({"GPU_LIMIT": "0", "NVIDIA_VISIBLE_DEVICES": "all"}, []),
        ({"GPUSPAWNER_GPU_UUIDS": "GPU-cccc3333"}, [C]),
        ({"GPUSPAWNER_GPU_UUIDS": "", "GPU_LIMIT": "1", "NVIDIA_VISIBLE_DEVICES": "all"}, [A]),
        ({"GPU_LIMIT": "2"}, [A, B]),  # no UUID known: the count caps
        ({"GPU_LIMIT": "1", "NVIDIA_VISIBLE_DEVICES": "GPU-aaaa1111,GPU-bbbb2222"}, [A, B]),
        ({"CUDA_VISIBLE_DEVICES": "1"}, [B]),
        ({"CUDA_VISIBLE_DEVICES": "2,0"}, [C, A]),  # CUDA order is the variable's order
        ({"CUDA_VISIBLE_DEVICES": "0,7,1"}, [A]),  # CUDA stops at the first invalid entry
        ({"CUDA_VISIBLE_DEVICES": "GPU-bbbb"}, [B]),  # a unique UUID prefix
        ({"CUDA_VISIBLE_DEVICES": "MIG-1111"}, [M1]),
        ({"CUDA_VISIBLE_DEVICES": ""}, []),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, []),
        ({"NVIDIA_VISIBLE_DEVICES": "GPU-bbbb2222,GPU-cccc3333", "CUDA_VISIBLE_DEVICES": "1"}, [C]),
    ],
)
def test_select_visible(variables, expected):
    assert select_visible(ALL, env(**variables)) == expected


@pytest.mark.parametrize(
    ("variables", "reason"),
    [
        ({"GPU_LIMIT": "0", "GPUSPAWNER_NO_GPU_REASON": "Your GPU quota is 0."},
         "Your GPU quota is 0."),
        ({"GPU_LIMIT": "0"}, NO_GPU_GIVEN),
        ({"NVIDIA_VISIBLE_DEVICES": "void",
          "GPUSPAWNER_NO_GPU_REASON": "No GPU was requested for this server."},
         "No GPU was requested for this server."),
        ({"CUDA_VISIBLE_DEVICES": ""}, "CUDA_VISIBLE_DEVICES hides every GPU"),
        ({}, None),
        ({"GPU_LIMIT": "1"}, None),
        ({"GPU_LIMIT": "not a number"}, None),
    ],
)
def test_reason_without_gpu(variables, reason):
    found = reason_without_gpu(env(**variables))
    if reason is None:
        assert found is None
    else:
        assert found is not None and found.startswith(reason)


def test_reason_for_none_names_the_missing_gpu():
    given = env(NVIDIA_VISIBLE_DEVICES="GPU-eeee", GPU_LIMIT="1")
    assert select_visible(ALL, given) == []
    assert "GPU-eeee" in reason_for_none(ALL, given)
    assert "reports no GPU" in reason_for_none([], env())


tokens = st.sampled_from(
    [g.uuid for g in ALL]
    + ["GPU-dddd4444", "GPU-ffff", "0", "1", "2", "9", "-1", "all", "void", ""]
)
lists = st.lists(tokens, max_size=5).map(",".join)
optional = st.one_of(st.none(), lists)


@given(
    nvd=optional,
    cvd=optional,
    limit=st.one_of(st.none(), st.integers(min_value=0, max_value=8).map(str)),
    uuids=optional,
    gpus=st.permutations(ALL).flatmap(lambda p: st.lists(st.sampled_from(p), unique=True)),
)
def test_selection_properties(nvd, cvd, limit, uuids, gpus):
    variables = {
        k: v for k, v in {
            "NVIDIA_VISIBLE_DEVICES": nvd, "CUDA_VISIBLE_DEVICES": cvd,
            "GPU_LIMIT": limit, "GPUSPAWNER_GPU_UUIDS": uuids,
        }.items() if v is not None
    }
    environment = env(**variables)
    chosen = select_visible(gpus, environment)
    # only devices NVML reported, each once
    assert all(g in gpus for g in chosen)
    assert len(set(chosen)) == len(chosen)
    # a server given no GPU sees none, and an empty selection always has a reason
    if limit == "0":
        assert chosen == []
    if not chosen:
        assert reason_for_none(gpus, environment)
    # named UUIDs are never widened
    if uuids and uuids.strip(","):
        named = set(uuids.lower().split(","))
        assert all(g.uuid.lower() in named or (g.mig_parent_uuid or "").lower() in named
                   for g in chosen)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-25T14:32:00+00:00", "2026-11-25T14:32:00+00:00"),
        ("2026-11-25T14:32:00Z", "2026-11-25T14:32:00+00:00"),
        ("2026-11-25T15:32:00+01:00", "2026-11-25T14:32:00+00:00"),
        ("2026-11-25T14:32:00", "2026-11-25T14:32:00+00:00"),  # naive: UTC
    ],
)
def test_deadline_is_read_as_utc(value, expected):
    given = env(GPUSPAWNER_GPU_DEADLINE=value, GPUSPAWNER_GPU_DEADLINE_REASON=" Why. ")
    deadline = given.deadline_json()
    assert deadline == {"at": expected, "reason": "Why."}


@pytest.mark.parametrize("value", ["", "soon", "25.11.2026 14:32"])
def test_an_unreadable_deadline_is_none(value):
    assert env(GPUSPAWNER_GPU_DEADLINE=value).deadline_json() is None
    assert env().deadline_json() is None


@pytest.mark.parametrize(
    "variables, allocated",
    [
        ({}, None),  # outside a hub
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, None),
        ({"GPU_LIMIT": "0", "NVIDIA_VISIBLE_DEVICES": "void"}, None),
        ({"GPU_LIMIT": "1", "GPUSPAWNER_GPU_UUIDS": "GPU-a", "NVIDIA_VISIBLE_DEVICES": "GPU-a"},
         {"count": 1, "uuids": ["GPU-a"]}),
        ({"GPU_LIMIT": "2", "GPUSPAWNER_GPU_UUIDS": ""}, {"count": 2, "uuids": []}),  # Kubernetes
        ({"NVIDIA_VISIBLE_DEVICES": "GPU-a,MIG-b"}, {"count": 2, "uuids": ["GPU-a", "MIG-b"]}),
        ({"GPU_LIMIT": "1", "NVIDIA_VISIBLE_DEVICES": "void"}, None),
        ({"GPU_LIMIT": "1", "CUDA_VISIBLE_DEVICES": ""}, None),  # hidden on purpose
    ],
)
def test_allocated_gpus(variables, allocated):
    assert allocated_gpus(GpuEnvironment.from_environ(variables)) == allocated


@pytest.mark.parametrize(
    "allocated, problem, reached, expected",
    [
        ({"count": 1, "uuids": ["GPU-a"]}, "NVML is gone.", True,
         "The hub allocated GPU-a to this server, but it is not visible here: NVML is gone."),
        ({"count": 2, "uuids": []}, "The driver is old.", True,
         "The hub allocated 2 GPUs to this server, but they are not visible here: the driver is"
         " old."),
        ({"count": 1, "uuids": []}, "x.", False,
         "The hub allocated 1 GPU to this server, but it is not visible here: x. The container"
         " engine started this server without passing the GPU in"),
    ],
)
def test_reason_not_visible(allocated, problem, reached, expected):
    reason = reason_not_visible(allocated, problem, driver_reached=reached)
    assert reason.startswith(expected)
    assert ("Tell the hub's admin." in reason) is not reached
