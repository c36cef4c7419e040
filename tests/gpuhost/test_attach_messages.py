"""The cause named when a GPU container cannot start, from what the engine and NVIDIA's CLI say."""

import pytest

from gpuspawner.docker.spawner import gpu_attach_cause

HOOK = "error running hook #0: error running hook: exit status 1, stdout: , stderr: "


@pytest.mark.parametrize(
    "said, cause",
    [
        (
            'could not select device driver "nvidia" with capabilities: [[gpu]]',
            "the NVIDIA Container Toolkit is not installed or not configured for Docker",
        ),
        (
            "unknown or invalid runtime name: nvidia",
            "the NVIDIA Container Toolkit is not installed or not configured for Docker",
        ),
        (
            HOOK + "nvidia-container-cli: initialization error: nvml error: driver not loaded",
            "the NVIDIA driver is not loaded on this host",
        ),
        (
            HOOK + "nvidia-container-cli: device error: GPU-1234: unknown device",
            "this host has no such GPU (the hub's GPU list does not match the host)",
        ),
        (
            HOOK + "nvidia-container-cli: requirement error: unsatisfied condition: cuda>=12.6",
            "the host's NVIDIA driver is too old for this image's CUDA",
        ),
    ],
)
def test_the_cause_in_an_admins_words(said, cause):
    assert gpu_attach_cause(said) == cause
