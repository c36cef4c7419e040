"""The Docker backend's CUDA check asks the driver through NVML: the simulated one, in a fresh
process (pynvml's real ctypes path), with no ``driver_cuda_version`` configured.

tests/test_cuda.py holds the rule itself, and the path where NVML is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys

OFFERED = r"""
import json, sys, types
from traitlets.config import Config
from gpuspawner.docker import GPUDockerSpawner

config = Config()
config.GPUDockerSpawner.images = {
    "pytorch-2.9": {"image": "org/pytorch-notebook:2.9.1-cuda12.8", "cuda": "12.8"},
    "next": {"image": "org/next:1.0-cuda13.0", "cuda": "13.0"},
    "cpu": {"image": "org/cpu:1.0"},
}
config.GPUDockerSpawner.inventory = []
config.GPUDockerSpawner.driver_cuda_version = sys.argv[1]
spawner = GPUDockerSpawner(
    user=types.SimpleNamespace(name="ana", groups=[], url="/user/ana/"),
    orm_spawner=types.SimpleNamespace(name="", user_options={}, server=None),
    hub=types.SimpleNamespace(public_host="", api_url="http://127.0.0.1:8081/hub/api",
                              base_url="/hub/"),
    config=config,
)
print(json.dumps([image.key for image in spawner.offered_images()]))
"""


def offered(sim_env: dict, configured: str = "") -> list[str]:
    done = subprocess.run([sys.executable, "-c", OFFERED, configured], env=sim_env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_drivers_own_cuda_version_decides(sim_host, sim_env):
    # 550.54.15 supports CUDA 12.4: a 12.8 image runs by minor-version compatibility, 13.0 not
    assert offered(sim_env) == ["pytorch-2.9", "cpu"]
    sim_host.set_system(driver="470.82.01", cuda=11040)
    assert offered(sim_env) == ["cpu"]
    # the configured version wins over NVML
    assert offered(sim_env, "13.0") == ["pytorch-2.9", "next", "cpu"]
