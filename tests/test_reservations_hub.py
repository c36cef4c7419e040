"""Class reservations through a real hub, its admin service and the real Docker engine.

The hub has one GPU, reserved for group cs231n in a window that opens about 45 s after
the test starts (days and times computed from the zone's clock, to the second). A
student's server started before the window is told its start as the deadline and stopped
then, its workspace kept; during the window another student is refused the GPU while a
member gets it, and the dashboard shows the window open; once it closes, the student
gets the GPU.
"""

import secrets
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gpuspawner.testing.hubprocess import is_stopped, wait_for
from gpuspawner.usage.ledger import Ledger
from test_max_age import deadline_of, mine
from test_usage_hub import SERVICE, service_hub

pytestmark = pytest.mark.docker
ZONE = ZoneInfo("Europe/Berlin")
OPENS_IN, LASTS = 45, 40  # seconds


def sleep_until(moment: datetime) -> None:
    time.sleep(max((moment - datetime.now(moment.tzinfo)).total_seconds(), 0) + 0.5)


def test_a_class_reservation_opens_and_closes(hub_factory, docker_client, tmp_path):
    start = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=OPENS_IN)
    end = start + timedelta(seconds=LASTS)
    if end.date() != start.date():
        pytest.skip("the window would cross midnight in %s" % ZONE)
    gpu = {"uuid": "GPU-resv-%s" % secrets.token_hex(4), "name": "NVIDIA A100-SXM4-80GB",
           "memory_mib": 81920}  # fmt: skip  (this hub's own: the engine is shared)
    reservation = {"group": "cs231n", "gpus": 1, "days": [start.strftime("%A").lower()],
                   "start": start.strftime("%H:%M:%S"), "end": end.strftime("%H:%M:%S"),
                   "timezone": "Europe/Berlin"}  # fmt: skip
    hub = service_hub(
        hub_factory, tmp_path, gpus=[gpu], gpu_reservations=[reservation],
        gpu_reservation_lead=3600, admin_check_interval=1, gpu_quota_groups={},
    )  # fmt: skip
    for user, group in (("early", "students"), ("ann", "students"), ("bo", "cs231n")):
        hub.create_user(user, groups=(group,))
    hub.create_user("boss")
    assert datetime.now(ZONE) < start, "the hub took too long to start"

    # before the window: a student gets the GPU, told it is reserved from the window's start
    assert hub.spawn("early", options={"gpus": 1}).status_code in (201, 202)
    hub.wait_ready("early")
    (container,) = docker_client.containers.list(filters=mine(hub, "early"))
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    deadline, reason = deadline_of(env)
    assert deadline == start
    assert reason == (
        "This GPU is reserved for group 'cs231n' from %s (Europe/Berlin): the server stops"
        " then; your workspace is kept." % start.strftime("%H:%M")
    )
    assert "0 of 1 GPUs free on this hub" in hub.spawn_form(hub.login("ann"), "ann")  # early's
    page = hub.login("boss").get(hub.url + SERVICE, timeout=30).text
    assert "<td>cs231n</td><td class=num>1</td><td>%s</td>" % start.strftime(
        "%a %d %b %H:%M") in page  # fmt: skip
    assert "(open now)" not in page

    # the window opens: the admin service stops the student's server, the workspace stays
    sleep_until(start)
    wait_for(lambda: is_stopped(hub, "early"), timeout=30, what="the student's server to stop")
    assert not docker_client.containers.list(filters=mine(hub, "early"))
    assert docker_client.volumes.get(hub.settings["prefix"] + "-workspace-early")
    ledger = Ledger(hub.settings["usage_db_url"])
    try:
        (row,) = ledger.rows(user="early")
        assert row.end_reason == "reservation"
        (notice,) = ledger.notices(kind="reservation")
        assert notice["message"].startswith(
            "Stopped early's server '': its GPUs are reserved for group 'cs231n' from "
        )
    finally:
        ledger.dispose()

    # during the window: a student is refused (capacity), a member gets it
    refused = hub.spawn("ann", options={"gpus": 1})
    assert refused.status_code == 503, refused.text
    assert "reserved for a class right now: 1 for group 'cs231n' until %s (Europe/Berlin)" % (
        end.strftime("%H:%M")) in refused.json()["message"]  # fmt: skip
    assert "0 of 1 GPUs free on this hub" in hub.spawn_form(hub.login("ann"), "ann")
    assert "1 of 1 GPUs free on this hub" in hub.spawn_form(hub.login("bo"), "bo")
    assert hub.spawn("bo", options={"gpus": 1}).status_code in (201, 202)
    hub.wait_ready("bo")
    (member,) = docker_client.containers.list(filters=mine(hub, "bo"))
    assert "reserved for group" not in str(member.attrs["Config"]["Env"])
    page = hub.login("boss").get(hub.url + SERVICE, timeout=30).text
    assert "(open now)" in page
    hub.stop_server("bo")
    assert hub.spawn("ann", options={"gpus": 1}).status_code == 503  # still the class's
    assert datetime.now(ZONE) < end, "the window closed before the checks in it were done"

    # the window closes: the GPU is an ordinary one again
    sleep_until(end)
    assert hub.spawn("ann", options={"gpus": 1}).status_code in (201, 202)
    hub.wait_ready("ann")
    (after,) = docker_client.containers.list(filters=mine(hub, "ann"))
    assert "reserved for group" not in str(after.attrs["Config"]["Env"])


def test_a_waiting_spawn_gets_the_gpu_when_the_window_closes(hub_factory, tmp_path):
    start = datetime.now(ZONE).replace(microsecond=0) + timedelta(seconds=30)
    end = start + timedelta(seconds=20)
    if end.date() != start.date():
        pytest.skip("the window would cross midnight in %s" % ZONE)
    gpu = {"uuid": "GPU-resv-%s" % secrets.token_hex(4), "name": "NVIDIA A100-SXM4-80GB",
           "memory_mib": 81920}  # fmt: skip
    reservation = {"group": "cs231n", "gpus": 1, "days": [start.strftime("%A").lower()],
                   "start": start.strftime("%H:%M:%S"), "end": end.strftime("%H:%M:%S"),
                   "timezone": "Europe/Berlin"}  # fmt: skip
    hub = service_hub(
        hub_factory, tmp_path, gpus=[gpu], gpu_reservations=[reservation],
        gpu_queue_timeout=120, gpu_quota_groups={},
    )  # fmt: skip
    hub.create_user("ann", groups=("students",))
    sleep_until(start)
    # the GPU is free but the class's: the student's spawn waits in line (a capacity refusal)
    assert hub.spawn("ann", options={"gpus": 1}).status_code == 202
    time.sleep(max((end - datetime.now(ZONE)).total_seconds() - 3, 0))
    assert (hub.server_model("ann") or {}).get("pending") == "spawn"
    hub.wait_ready("ann", timeout=60)
    assert datetime.now(ZONE) >= end
