"""The simulated NVML through pynvml's real ctypes path and gpuspawner.nvml, in fresh processes."""

from __future__ import annotations

import json
import subprocess
import sys

import simstate

DISCOVER = """
import json
from gpuspawner import nvml
gpus = nvml.discover_gpus()
rows = [[g.uuid, g.name, g.memory_total, g.index, g.mig_parent_uuid] for g in gpus]
print(json.dumps({"gpus": rows,
                  "driver": nvml.driver_info()}))
"""


def test_inventory_eight_gpus_one_in_mig_mode(sim_host, run_nvml):
    out = json.loads(run_nvml(DISCOVER))
    state = sim_host.read()
    assert out["driver"] == ["550.54.15", [12, 4]]
    assert [g[0] for g in out["gpus"]] == state.allocatable()
    mig_gpu = state.gpus[7]
    assert [g[4] for g in out["gpus"]] == [None] * 7 + [mig_gpu.uuid] * 3
    assert out["gpus"][7][1] == "NVIDIA A100-SXM4-80GB MIG 3g.40gb"
    assert out["gpus"][7][2] == 40192 * simstate.MIB and out["gpus"][9][3] == 7


def test_memory_v1_counts_the_reservation_as_used_and_v2_does_not(sim_host, run_nvml):
    uuid = sim_host.gpus[0].uuid
    sim_host.update(uuid, memory_used=3 * simstate.GIB, memory_reserved=simstate.GIB)
    out = run_nvml(
        """
import pynvml
pynvml.nvmlInit()
h = pynvml.nvmlDeviceGetHandleByUUID(%r)
v1 = pynvml.nvmlDeviceGetMemoryInfo(h)
v2 = pynvml.nvmlDeviceGetMemoryInfo(h, version=pynvml.nvmlMemory_v2)
print(v1.used, v1.free, v2.used, v2.reserved, v2.free, v2.total)
"""
        % uuid
    )
    total = 81920 * simstate.MIB
    assert [int(x) for x in out.split()] == [
        4 * simstate.GIB,
        total - 4 * simstate.GIB,
        3 * simstate.GIB,
        simstate.GIB,
        total - 4 * simstate.GIB,
        total,
    ]


def test_a_running_process_sees_values_change_and_a_gpu_get_lost(sim_host, sim_env):
    gpus = sim_host.gpus
    first, second = gpus[0].uuid, gpus[1].uuid
    code = """
import sys, json
from gpuspawner import nvml
nvml.discover_gpus()
def show():
    r0, r1 = nvml.read_gpu(%r), nvml.read_gpu(%r)
    pids = [p.pid for p in r0.processes]
    print(json.dumps([r0.utilization_gpu, r0.memory_used, pids, r1.lost]), flush=True)
show()
sys.stdin.readline()
show()
""" % (first, second)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=sim_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(proc.stdout.readline()) == [0, 0, [], False]
        sim_host.update(first, util_gpu=93, memory_used=12 * simstate.GIB)
        sim_host.set_processes(first, [(4242, simstate.GIB)])
        sim_host.lose(second)
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == [93, 12 * simstate.GIB, [4242], True]
    finally:
        proc.kill()
        proc.wait()


def test_lost_gpu_fails_enumeration_as_the_driver_does(sim_host, run_nvml):
    lost = sim_host.gpus[2].uuid
    sim_host.lose(lost)
    out = run_nvml(
        """
import pynvml
pynvml.nvmlInit()
by_index = lambda: pynvml.nvmlDeviceGetHandleByIndex(2)
by_uuid = lambda: pynvml.nvmlDeviceGetHandleByUUID(%r)
for call in (by_index, by_uuid):
    try:
        call()
        print("ok")
    except pynvml.NVMLError_GpuIsLost as e:
        print(str(e))
print(pynvml.nvmlDeviceGetCount())
"""
        % lost
    )
    assert out.split("\n")[:3] == ["GPU is lost", "GPU is lost", "8"]


def test_mig_instances_have_no_utilisation_and_no_per_process_memory(sim_host, run_nvml):
    mig = sim_host.read().gpus[7].migs[0]
    sim_host.set_processes(mig.uuid, [(77, simstate.GIB)])
    out = json.loads(
        run_nvml(
            """
import json
from gpuspawner import nvml
nvml.discover_gpus()
r = nvml.read_gpu(%r)
print(json.dumps([r.unsupported, r.temperature_c, [[p.pid, p.used_memory] for p in r.processes]]))
"""
            % mig.uuid
        )
    )
    assert out == [["utilization"], 34, [[77, None]]]


def test_visible_file_limits_what_nvml_enumerates(sim_host, run_nvml, tmp_path):
    state = sim_host.read()
    gpu, mig = state.gpus[4], state.gpus[7].migs[1]
    visible = tmp_path / "visible"
    visible.write_text("%s\n%s\n" % (mig.uuid, gpu.uuid))
    out = json.loads(run_nvml(DISCOVER, SIMNVML_VISIBLE=str(visible)))
    assert [g[0] for g in out["gpus"]] == [gpu.uuid, mig.uuid]
    assert [g[3] for g in out["gpus"]] == [0, 1]  # numbered as NVML does in a container
    visible.write_text("")
    assert json.loads(run_nvml(DISCOVER, SIMNVML_VISIBLE=str(visible)))["gpus"] == []


def test_no_driver_and_injected_errors(sim_host, run_nvml, tmp_path):
    probe = """
from gpuspawner import nvml
try:
    nvml.discover_gpus()
    print("ok")
except nvml.NvmlUnavailable as e:
    print(e)
"""
    assert run_nvml(probe, SIMNVML_STATE=str(tmp_path / "none")).strip() == (
        "The NVIDIA driver is installed but not loaded, so no GPU can be used."
    )
    uuid = sim_host.gpus[0].uuid
    sim_host.fail(uuid, "nvmlDeviceGetPowerUsage", simstate.NOT_SUPPORTED)
    sim_host.fail(uuid, "nvmlDeviceGetTemperature", simstate.NO_PERMISSION)
    out = json.loads(
        run_nvml(
            """
import json
from gpuspawner import nvml
nvml.discover_gpus()
r = nvml.read_gpu(%r)
print(json.dumps([r.unsupported, r.errors, r.power_w, r.utilization_gpu]))
"""
            % uuid
        )
    )
    assert out == [["power"], {"temperature": "no permission to read temperature"}, None, 0]
    sim_host.set_system(init_error=simstate.DRIVER_NOT_LOADED)
    assert "not loaded" in run_nvml(probe)


def test_topology_from_the_pcie_layout(sim_host, run_nvml):
    out = run_nvml("""
import pynvml
pynvml.nvmlInit()
h = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(8)]
t = pynvml.nvmlDeviceGetTopologyCommonAncestor
print(t(h[0], h[0]), t(h[0], h[1]), t(h[0], h[2]), t(h[0], h[4]),
      pynvml.nvmlDeviceGetP2PStatus(h[0], h[5], pynvml.NVML_P2P_CAPS_INDEX_NVLINK))
""")
    assert out.split() == ["0", "10", "30", "50", "0"]
