"""The "Verify CUDA" cell against the simulated NVML, in a fresh Python without PyTorch.

What the cell prints before PyTorch: the driver's version, its CUDA version and the GPUs of
this server, named by NVML. tests/gpuhost/test_gpuhost_lab.py runs the same cell in
JupyterLab in a spawned server; these cases need no engine.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
import simstate

from gpuspawner.lab.verify import cell_source

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is not None,
                                reason="torch is installed here: the cell goes on to CUDA")
NAME = "NVIDIA A100-SXM4-80GB"


def run_cell(sim_env: dict, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", cell_source()], env=dict(sim_env, **env),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def verdict(output: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith("VERDICT:")]
    return line


def given(uuid: str) -> dict[str, str]:
    return {"NVIDIA_VISIBLE_DEVICES": uuid, "GPUSPAWNER_GPU_UUIDS": uuid, "GPU_LIMIT": "1"}


def test_nvml_sees_the_given_gpu_and_pytorch_is_missing(sim_host, sim_env):
    uuid = sim_host.gpus[2].uuid
    # outside a container NVML enumerates the whole host: the cell names only the given GPU
    output = run_cell(sim_env, **given(uuid))
    assert output.splitlines()[:2] == [
        "NVIDIA driver 550.54.15 (supports CUDA up to 12.4); NVML sees 1 GPU:",
        "  %s (%s)" % (NAME, uuid),
    ]
    assert "PyTorch is not installed in this kernel" in output
    assert verdict(output).startswith(
        "VERDICT: NO TORCH - NVML sees the GPU (%s; driver 550.54.15), but PyTorch is not"
        " installed in this kernel: install a CUDA build of PyTorch" % NAME)
    assert "no gpu" not in output.lower()


def test_a_mig_instance_is_named_as_such(sim_host, sim_env):
    mig = sim_host.allocatable()[-1]
    output = run_cell(sim_env, **given(mig))
    assert "  %s MIG 1g.10gb (%s)" % (NAME, mig) in output
    assert "NVML sees 1 GPU:" in output


def test_a_lost_gpu_is_reported_not_counted(sim_host, sim_env, tmp_path):
    uuid = sim_host.gpus[0].uuid
    sim_host.lose(uuid)
    visible = tmp_path / "visible"
    visible.write_text(uuid + "\n")  # inside its container, the only device NVML enumerates
    output = run_cell(sim_env, SIMNVML_VISIBLE=str(visible), **given(uuid))
    assert "NVML sees 0 GPUs:" in output
    assert "  GPU 0: NVML cannot read it (GPU is lost)" in output
    assert verdict(output).startswith("VERDICT: NO TORCH - install a CUDA build")


def test_a_driver_that_is_not_loaded_is_said(sim_host, sim_env):
    sim_host.set_system(init_error=simstate.DRIVER_NOT_LOADED)
    output = run_cell(sim_env, **given(sim_host.gpus[0].uuid))
    assert "NVML: NVML cannot be used here (Driver Not Loaded)." in output
    assert verdict(output).startswith("VERDICT: NO TORCH")
