"""Shared fixtures for the tests of gpuspawner's JupyterLab side (tests/lab)."""

from __future__ import annotations

import pytest
from lab_helpers import GPU_VARIABLES

from gpuspawner import nvml


@pytest.fixture(autouse=True)
def fresh_nvml():
    """Forget NVML's state (and a remembered init failure) around every test."""
    nvml.shutdown()
    yield
    nvml.shutdown()


@pytest.fixture
def clean_gpu_env(monkeypatch):
    """No GPU variables from the machine running the tests."""
    for name in GPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch
