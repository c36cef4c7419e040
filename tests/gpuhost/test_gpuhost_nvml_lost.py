"""gpuspawner.nvml and the lab sampler when a GPU falls off the bus, through pynvml's real ctypes
path against the simulated NVML (GPU_IS_LOST from enumeration and from every query), each in a
fresh process (the simulated library is never loaded into the pytest process).
"""

from __future__ import annotations

import json
import subprocess
import sys

SAMPLER = r"""
import json, sys
from gpuspawner import nvml
from gpuspawner.lab.sampler import GpuSampler

uuid = sys.argv[1]
sampler = GpuSampler(environ={"NVIDIA_VISIBLE_DEVICES": uuid, "GPUSPAWNER_GPU_UUIDS": uuid,
                              "GPU_LIMIT": "1"}, host_pids=False)
for line in sys.stdin:
    snapshot = sampler.sample_once()
    print(json.dumps({
        "available": snapshot["available"],
        "cards": [[g["uuid"], g["name"], g["lost"], g["errors"]] for g in snapshot["gpus"]],
        "lost": sorted(nvml.lost_gpus([uuid])),
    }), flush=True)
"""


class Sampler:
    """A sampler in a process of its own; ``sample()`` takes one sample and returns it."""

    def __init__(self, env: dict, uuid: str):
        self.process = subprocess.Popen(
            [sys.executable, "-c", SAMPLER, uuid], env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True,
        )

    def sample(self) -> dict:
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def test_a_gpu_lost_under_the_sampler_keeps_its_card_until_it_answers_again(sim_host, sim_env):
    uuid = sim_host.gpus[0].uuid
    sampler = Sampler(sim_env, uuid)
    try:
        healthy = sampler.sample()
        assert healthy["cards"] == [[uuid, "NVIDIA A100-SXM4-80GB", False, {}]]
        assert healthy["lost"] == []
        sim_host.lose(uuid)
        # the first sample sees the loss, the next ones enumerate again and keep the card
        for _ in range(3):
            lost = sampler.sample()
            assert lost["available"] is True
            ((card_uuid, name, is_lost, errors),) = lost["cards"]
            assert (card_uuid, name, is_lost) == (uuid, "NVIDIA A100-SXM4-80GB", True)
            assert "fallen off the bus" in errors["gpu"]
            assert lost["lost"] == [uuid]
        sim_host.lose(uuid, False)
        back = sampler.sample()
        assert back["lost"] == []
        assert sampler.sample()["cards"] == [[uuid, "NVIDIA A100-SXM4-80GB", False, {}]]
    finally:
        sampler.close()


def test_a_given_gpu_lost_before_the_server_looked_is_a_lost_card(sim_host, sim_env):
    uuid = sim_host.gpus[3].uuid
    sim_host.lose(uuid)
    sampler = Sampler(sim_env, uuid)
    try:
        snapshot = sampler.sample()
        # NVML cannot name it any more; the card still says what happened
        assert snapshot["cards"][0][:3] == [uuid, "GPU (name unknown)", True]
        assert snapshot["lost"] == [uuid]
    finally:
        sampler.close()


def test_lost_gpus_names_exactly_the_lost_ones(sim_host, run_nvml):
    gpus = sim_host.allocatable()
    sim_host.lose(gpus[1])
    sim_host.lose(gpus[-1])  # a MIG instance: its parent GPU falls off with all its instances
    out = run_nvml("""
import json, sys
from gpuspawner import nvml
print(json.dumps(sorted(nvml.lost_gpus(%r + ["GPU-not-on-this-host"]))))
""" % gpus)
    assert json.loads(out) == sorted([gpus[1]] + gpus[-3:])
