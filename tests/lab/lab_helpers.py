"""Helpers shared by the tests in tests/lab (a module name of its own, unlike conftest)."""

from __future__ import annotations

import ctypes.util

import pytest

GPU_VARIABLES = (
    "NVIDIA_VISIBLE_DEVICES",
    "CUDA_VISIBLE_DEVICES",
    "GPU_LIMIT",
    "GPUSPAWNER_GPU_UUIDS",
    "GPUSPAWNER_NO_GPU_REASON",
    "GPUSPAWNER_GPU_DEADLINE",
    "GPUSPAWNER_GPU_DEADLINE_REASON",
)

# GPU variables the hub sets in a server's environment (gpuspawner/lifecycle/base.py get_env)
HUB_GAVE_NO_GPU = {
    "GPU_LIMIT": "0",
    "NVIDIA_VISIBLE_DEVICES": "void",
    "GPUSPAWNER_GPU_UUIDS": "",
    "GPUSPAWNER_NO_GPU_REASON": "No GPU was requested for this server.",
}
HUB_SET_A_DEADLINE = {
    "GPU_LIMIT": "1",
    "NVIDIA_VISIBLE_DEVICES": "GPU-aaaa1111",
    "GPUSPAWNER_GPU_UUIDS": "GPU-aaaa1111",
    "GPUSPAWNER_GPU_DEADLINE": "2026-11-25T14:32:00+00:00",
    "GPUSPAWNER_GPU_DEADLINE_REASON": "GPU servers stop after 8 h.",
}


def nvml_library_present() -> bool:
    """Whether this machine has the NVIDIA driver's NVML library at all."""
    return ctypes.util.find_library("nvidia-ml") is not None


needs_no_driver = pytest.mark.skipif(
    nvml_library_present(),
    reason="this machine has an NVIDIA driver; the no-driver path needs none",
)
