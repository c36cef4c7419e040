"""The hub host on the simulated GPU host: NVML discovery and the driver's CUDA version, for real.

The hub process loads the simulated libnvidia-ml.so.1 (its environment, not pytest's) and
declares no ``gpus`` and no ``driver_cuda_version``: what it hands out and which images it
offers come from NVML through pynvml's real ctypes path. tests/test_cuda.py covers the rule
itself with a monkeypatched driver; this is the same path with a driver to ask.
"""

from __future__ import annotations

import re

import pytest
from gpuhost_lab_helpers import (
    SERVICE,
    held_gpus,
    start_service_hub,
    user_names,
)

pytestmark = pytest.mark.docker

(DEE,) = user_names("dee")
NAME = "NVIDIA A100-SXM4-80GB"


def gpu_counts(hub) -> dict[tuple[str, str], float]:
    text = hub.session.get(hub.url + "/hub/metrics", timeout=30).text
    return {(kind, state): float(value) for kind, state, value in re.findall(
        r'gpuspawner_gpus\{gpu_type="([^"]+)",state="(\w+)"\} ([0-9.]+)', text)}


def test_the_hub_discovers_the_inventory_and_the_drivers_cuda_with_nvml(
        hub_factory, nvidia_docker, sim_host, monkeypatch, tmp_path, test_image):
    images = dict(
        test_image,
        fits={"image": test_image["demo"]["image"], "display_name": "CUDA 12.8", "cuda": "12.8"},
        next={"image": test_image["demo"]["image"], "display_name": "CUDA 13.0", "cuda": "13.0"},
    )
    hub = start_service_hub(hub_factory, sim_host, monkeypatch, tmp_path, images=images)
    state = sim_host.read()
    mig_gpu = state.gpus[7]

    # the inventory: 7 whole GPUs and the 3 MIG instances of the 8th, in NVML order
    inventory = hub.session.get(hub.url + SERVICE + "api/inventory", timeout=30).json()
    assert [row["uuid"] for row in inventory] == state.allocatable()
    assert [row["name"] for row in inventory] == [NAME] * 7 + [
        "%s MIG %s" % (NAME, profile) for profile in ("3g.40gb", "2g.20gb", "1g.10gb")]
    assert mig_gpu.uuid not in {row["uuid"] for row in inventory}

    hub.create_user(DEE)
    browser = hub.login(DEE)
    form = hub.spawn_form(browser, DEE)
    assert "10 of 10 GPUs free on this hub" in form
    # the driver's CUDA version (12.4, driver 550.54.15) decides the images
    assert 'value="fits"' in form and 'value="next"' not in form
    refused = hub.spawn(DEE, options={"image": "next", "gpus": 1})
    assert refused.status_code == 400
    assert refused.json()["message"] == (
        "This server's driver 550.54.15 supports CUDA up to 12.4; image 'next' needs CUDA 13.0."
        " Pick another image, or ask an admin for a driver that supports CUDA 13.0.")
    assert "NVIDIA driver 550.54.15 supports CUDA up to 12.4" in hub.log_path.read_text()

    # a GPU of the discovered inventory is handed out by its UUID
    assert hub.spawn(DEE, options={"image": "fits", "gpus": 1}).status_code in (201, 202)
    hub.wait_ready(DEE, timeout=120)
    assert held_gpus(nvidia_docker, hub, DEE) == state.allocatable()[:1]
    counts = gpu_counts(hub)
    assert counts[(NAME, "allocated")] == 1 and counts[(NAME, "free")] == 6
    assert counts[("%s MIG 3g.40gb" % NAME, "free")] == 1
