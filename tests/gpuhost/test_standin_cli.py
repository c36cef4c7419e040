"""The stand-in nvidia-container-cli on its own: the arguments NVIDIA's hook passes, a container
mount namespace of its own (``unshare``), what it mounts and writes, and how it refuses."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from gpuhost_helpers import ROOT, simstate

CLI = ROOT / "tools" / "gpuhost" / "nvidia-container-cli"


@pytest.fixture
def cli(sim_lib_dir, tmp_path):
    log = tmp_path / "cli.log"
    env = dict(os.environ, SIMNVML_LIB_DIR=str(sim_lib_dir), SIMNVML_CLI_LOG=str(log))

    def run(*args):
        done = subprocess.run([str(CLI), *args], env=env, capture_output=True, text=True)
        records = (
            [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        )
        return done, records

    return run


@pytest.fixture
def namespace():
    """A process in a mount namespace of its own, standing in for a container's init."""
    if os.geteuid() != 0:
        pytest.skip("needs root (unshare --mount)")
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "120"])
    time.sleep(0.3)
    yield str(proc.pid)
    proc.kill()
    proc.wait()


def hook_args(devices: str, pid: str, rootfs) -> list[str]:
    """What nvidia-container-runtime-hook v1.17.8 passes in legacy mode."""
    return [
        "--load-kmods",
        "configure",
        "--cuda-compat-mode=ldconfig",
        "--ldconfig=@/sbin/ldconfig",
        "--device=" + devices,
        "--compute",
        "--utility",
        "--pid=" + pid,
        str(rootfs),
    ]


def test_configure_mounts_the_library_and_exactly_the_devices(cli, sim_host, namespace, tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    state = sim_host.read()
    wanted = [state.gpus[3].uuid, state.gpus[7].migs[2].uuid]
    done, (record,) = cli(*hook_args(",".join(wanted), namespace, rootfs))
    assert done.returncode == 0, done.stderr
    assert record["devices"] == wanted and record["host"] == sim_host.name
    assert record["result"] == "ok" and record["rootfs"] == str(rootfs)
    assert (rootfs / "run/simnvml/visible").read_text().split() == wanted

    def inside(*command):
        return subprocess.run(
            ["nsenter", "--target", namespace, "--mount", "--", *command],
            capture_output=True,
            text=True,
        )

    lib = rootfs / "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.15"
    assert inside("grep", "-c", "simnvmlVersion", str(lib)).stdout.strip() != "0"
    assert (rootfs / "usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1").is_symlink()  # ldconfig
    # the host's state folder, read-only and live
    state_inside = str(rootfs / "run/simnvml/host/state")
    sim_host.update(wanted[0], util_gpu=42)
    assert "util_gpu=42" in inside("cat", state_inside).stdout
    assert inside("touch", str(rootfs / "run/simnvml/host/x")).returncode != 0
    # the host itself sees none of it: the mounts are the container's
    assert lib.stat().st_size == 0


def test_indices_all_and_refusals(cli, sim_host, tmp_path):
    default = simstate.SimHost(simstate.DEFAULT_HOST)
    if not default.state_path.exists():
        pytest.skip("no default simulated host (scripts/setup-gpuhost.sh)")
    gpus = default.read().gpus
    done, _ = cli("info")
    assert done.returncode == 0 and "GPU UUID:       %s" % gpus[0].uuid in done.stdout
    rootfs = str(tmp_path / "rootfs")
    done, records = cli(*hook_args("GPU-nobody-has-this", "", rootfs))
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        == "nvidia-container-cli: device error: GPU-nobody-has-this: unknown device"
    )
    assert records[-1]["result"] == "device error: GPU-nobody-has-this: unknown device"
    uuid = sim_host.gpus[0].uuid
    done, _ = cli(*hook_args(uuid, "", rootfs)[:-1], "--require=cuda>=12.6", rootfs)
    assert done.returncode == 1 and "unsatisfied condition: cuda>=12.6" in done.stderr
    sim_host.set_system(init_error=simstate.DRIVER_NOT_LOADED)
    done, _ = cli(*hook_args(uuid, "", rootfs))
    assert (
        done.stderr.strip()
        == "nvidia-container-cli: initialization error: nvml error: driver not loaded"
    )
    assert not os.path.exists(rootfs)  # refused before touching the rootfs


def test_indices_and_all_name_the_default_hosts_devices(cli, namespace, tmp_path):
    default = simstate.SimHost(simstate.DEFAULT_HOST)
    if not default.state_path.exists():
        pytest.skip("no default simulated host (scripts/setup-gpuhost.sh)")
    gpus = default.read().gpus
    for name in ("a", "b"):
        (tmp_path / name / "etc").mkdir(parents=True)
    done, records = cli(*hook_args("0,7:1", namespace, tmp_path / "a"))
    assert done.returncode == 0, done.stderr
    assert records[-1]["devices"] == [gpus[0].uuid, gpus[7].migs[1].uuid]
    done, records = cli(*hook_args("all", namespace, tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    assert records[-1]["devices"] == [g.uuid for g in gpus]
