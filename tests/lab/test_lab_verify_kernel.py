"""The "Verify CUDA" cell executed in a real ipykernel on this machine."""

from __future__ import annotations

import importlib.util
import os

import pytest
from jupyter_client.manager import start_new_kernel
from lab_helpers import GPU_VARIABLES

from gpuspawner.lab.verify import cell_source

HAS_TORCH = importlib.util.find_spec("torch") is not None


def run_cell(code: str, env: dict[str, str]) -> str:
    """Run ``code`` in a fresh python3 kernel with ``env``; return its stdout and errors."""
    kernel_env = {k: v for k, v in os.environ.items() if k not in GPU_VARIABLES}
    kernel_env.update(env)
    manager, client = start_new_kernel(kernel_name="python3", env=kernel_env)
    chunks: list[str] = []

    def hook(message):
        content = message["content"]
        if message["msg_type"] == "stream":
            chunks.append(content["text"])
        elif message["msg_type"] == "error":
            chunks.append("ERROR %s: %s" % (content["ename"], content["evalue"]))

    try:
        reply = client.execute_interactive(code, output_hook=hook, timeout=120)
        assert reply["content"]["status"] == "ok", "".join(chunks)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return "".join(chunks)


def verdict(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("VERDICT:")]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.skipif(HAS_TORCH, reason="torch is installed here")
def test_without_torch_the_verdict_says_so_and_what_to_do():
    output = run_cell(cell_source(), {})
    line = verdict(output)
    assert line.startswith("VERDICT: NO TORCH")
    assert "pip install torch" in line
    assert "PyTorch is not installed in this kernel" in output


@pytest.mark.skipif(HAS_TORCH, reason="torch is installed here")
def test_in_a_hubs_server_without_torch_the_advice_is_another_image_not_pip():
    """A hub's server (JUPYTERHUB_API_URL set, as jupyterhub-singleuser has it) may reach no
    package index, and its image is what the catalog offers: pick a PyTorch image there."""
    output = run_cell(cell_source(), {"JUPYTERHUB_API_URL": "http://172.17.0.1:8081/hub/api",
                                      "GPU_LIMIT": "0", "NVIDIA_VISIBLE_DEVICES": "void",
                                      "GPUSPAWNER_NO_GPU_REASON": "No GPU was requested."})
    line = verdict(output)
    assert line.startswith("VERDICT: NO TORCH - this server's image has no PyTorch; pick a"
                           " PyTorch image from the hub's catalog: stop this server (File > Hub"
                           " Control Panel) and start it again with that image"), line
    assert "pip" not in line


@pytest.mark.skipif(HAS_TORCH, reason="torch is installed here")
def test_without_torch_and_without_gpu_the_hubs_reason_is_shown():
    output = run_cell(cell_source(), {"GPU_LIMIT": "0", "NVIDIA_VISIBLE_DEVICES": "void",
                                      "GPUSPAWNER_NO_GPU_REASON": "Your GPU quota is 0."})
    assert "This server has no GPU either: Your GPU quota is 0." in output
    assert verdict(output).startswith("VERDICT: NO TORCH")


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed here")
def test_with_torch_on_a_cpu_machine_there_is_no_cuda_device():
    import torch

    output = run_cell(cell_source(), {})
    assert "torch        %s" % torch.__version__ in output
    if not torch.cuda.is_available():
        assert verdict(output).startswith("VERDICT: NO CUDA DEVICE")
    else:
        assert verdict(output).startswith("VERDICT: OK")


def test_the_cell_leaves_no_names_behind():
    output = run_cell(cell_source() + "\nprint(sorted(n for n in dir() if 'gpuspawner' in n))", {})
    assert output.rstrip().endswith("[]")
