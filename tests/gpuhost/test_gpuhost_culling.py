"""GPU-idle culling with the default ``nvml`` utilisation source, on the simulated GPU host.

The admin service runs as the hub's managed service and samples the GPUs through the
simulated NVML (pynvml's real ctypes path), as it would on a GPU host; the test sets the
utilisation of each server's GPU in the simulated host's state.
"""

from __future__ import annotations

import time

import pytest
from gpuhost_lab_helpers import (
    SERVICE,
    held_gpus,
    start_service_hub,
    user_names,
    wait_for,
)

from gpuspawner.testing.hubprocess import is_stopped
from gpuspawner.usage.ledger import Ledger

IDLE, BUSY = user_names("idle", "busy")

pytestmark = pytest.mark.docker


def test_idle_gpu_is_culled_and_a_busy_one_kept_by_nvml(hub_factory, nvidia_docker, sim_host,
                                                       monkeypatch, tmp_path):
    # gpu_utilisation_source: the default, nvml
    hub = start_service_hub(hub_factory, sim_host, monkeypatch, tmp_path, gpu_idle_timeout=4)
    for user in (IDLE, BUSY):
        hub.create_user(user)
    # every whole GPU is busy while the servers start (MIG instances have no utilisation)
    for gpu in sim_host.gpus:
        if not gpu.migs:
            sim_host.update(gpu.uuid, util_gpu=80)
    for user in (IDLE, BUSY):
        assert hub.spawn(user, options={"gpus": 1}).status_code in (201, 202)
        hub.wait_ready(user, timeout=120)
    (idle_gpu,) = held_gpus(nvidia_docker, hub, IDLE)
    (busy_gpu,) = held_gpus(nvidia_docker, hub, BUSY)
    # the service reads the simulated values through NVML (its dashboard shows them)
    rows = hub.session.get(hub.url + SERVICE + "api/inventory", timeout=30).json()
    inventory = {row["uuid"]: row for row in rows}
    assert set(inventory) == set(sim_host.allocatable())
    assert "80%" in hub.session.get(hub.url + SERVICE, timeout=30).text

    sim_host.update(idle_gpu, util_gpu=1)
    sim_host.update(busy_gpu, util_gpu=90)
    started = time.monotonic()
    wait_for(lambda: is_stopped(hub, IDLE), timeout=60, what="the idle GPU server to be culled")
    assert time.monotonic() - started >= 3  # not before the timeout
    time.sleep(3)
    assert hub.server_model(BUSY)["ready"]
    ledger = Ledger(hub.settings["usage_db_url"])
    (notice,) = ledger.notices(kind="gpu-idle")
    assert notice["user"] == IDLE and "below 5% utilisation for 4 s" in notice["message"]
    assert [r.end_reason for r in ledger.rows(user=IDLE)] == ["gpu-idle"]
    assert [r.end_reason for r in ledger.rows(user=BUSY)] == [None]
    ledger.dispose()
    metrics = hub.session.get(hub.url + SERVICE + "metrics", timeout=30).text
    lines = [line for line in metrics.splitlines() if busy_gpu in line]
    assert lines == ['gpuspawner_gpu_utilisation_percent{gpu_uuid="%s",server="",user="%s"} 90.0'
                     % (busy_gpu, BUSY)], lines
