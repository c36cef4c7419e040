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


def nvml_library_present() -> bool:
    """Whether this machine has the NVIDIA driver's NVML library at all."""
    return ctypes.util.find_library("nvidia-ml") is not None


needs_no_driver = pytest.mark.skipif(
    nvml_library_present(),
    reason="this machine has an NVIDIA driver; the no-driver path needs none",
)
