"""The fair queue through a real hub process and the real Docker engine: spawns wait in line
for the hub's one GPU, the progress page says where, the cancel button leaves the line, a
stopped server's GPU goes to the head, and a hub killed with waiting spawns ends them with a
sentence after its restart (tests/test_queue.py has a hundred waiters in one process)."""

import json
import re
import time
from datetime import datetime, timedelta, timezone

import pytest

from gpuspawner.testing.hubprocess import FAKE_GPUS, is_stopped, wait_for

pytestmark = pytest.mark.docker
UUID = FAKE_GPUS[0]["uuid"]


def env_of(docker_client, user) -> dict:
    (container,) = docker_client.containers.list(filters={"label": "gpuspawner.user=" + user})
    return dict(line.split("=", 1) for line in container.attrs["Config"]["Env"])


def progress_events(hub, user, until=None, timeout=30):
    """The progress stream's events, read until ``until(event)`` is true, or it ends."""
    events = []
    path = "/users/%s/server/progress" % user
    with hub.session.get(hub.url + "/hub/api" + path, stream=True, timeout=timeout) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                event = json.loads(line[len("data:") :])
                events.append(event)
                if (until and until(event)) or event.get("ready") or event.get("failed"):
                    break
    return events


def in_line(hub, user, position):
    """The user's latest progress line, once it says ``position``."""
    marker = "%s in line" % position
    events = progress_events(hub, user, until=lambda e: marker in e.get("message", ""))
    message = events[-1].get("message", "")
    assert marker in message, events
    return message


def test_waiting_in_line_cancel_handoff_and_restart(hub_factory, docker_client):
    hub = hub_factory(
        gpu_mode="runtime-env", gpus=FAKE_GPUS[:1], gpu_queue_timeout=300, gpu_max_age=7200,
        slow_spawn_timeout=1,
    )  # fmt: skip
    for user in ("ann", "bob", "cat", "dan"):
        hub.create_user(user)
    assert hub.spawn("ann", options={"gpus": 1}).status_code in (201, 202)
    hub.wait_ready("ann")
    started_ann = datetime.now(timezone.utc)

    for user in ("bob", "cat", "dan"):
        assert hub.spawn(user, options={"gpus": 1}).status_code == 202  # waiting, not refused
        wait_for(lambda u=user: (hub.server_model(u) or {}).get("pending") == "spawn", 10)
    message = in_line(hub, "cat", "2nd")
    stop_at = re.fullmatch(
        r"2nd in line for 1 GPU; 1 server holds them;"
        r" one stops at the latest at (\d\d:\d\d) \(maximum age\)",
        message,
    )
    assert stop_at, message
    expected = (started_ann + timedelta(hours=2)).strftime("%H:%M")
    earlier = (started_ann + timedelta(hours=2) - timedelta(minutes=1)).strftime("%H:%M")
    assert stop_at.group(1) in (expected, earlier)
    assert in_line(hub, "dan", "3rd").startswith("3rd in line for 1 GPU")

    # one place per user: bob's second GPU server is refused with the sentence
    second = hub.spawn("bob", "extra", {"gpus": 1})
    assert second.status_code == 409, second.text
    assert second.json()["message"] == (
        "You are already waiting for a GPU for the default server (1st in line): cancel that"
        " spawn or let it start before starting another GPU server."
    )

    # the hub's API keeps answering while spawns wait
    for _ in range(20):
        began = time.monotonic()
        assert hub.api("GET", "/users/ann").status_code == 200
        assert time.monotonic() - began < 1.0

    # the cancel button: cat leaves the line at once, dan moves up
    cancelled = hub.api("DELETE", hub.server_path("cat"))
    assert cancelled.status_code in (202, 204), cancelled.text
    wait_for(lambda: is_stopped(hub, "cat"), 10, "cat's spawn cancelled")
    assert in_line(hub, "dan", "2nd").startswith("2nd in line for 1 GPU")

    # ann stops: her GPU goes to bob, the head of the line; dan moves up and waits on
    hub.stop_server("ann")
    hub.wait_ready("bob", timeout=60)
    assert env_of(docker_client, "bob")["NVIDIA_VISIBLE_DEVICES"] == UUID
    assert in_line(hub, "dan", "1st").startswith("1st in line for 1 GPU; 1 server holds them")
    assert (hub.server_model("dan") or {}).get("pending") == "spawn"

    # the hub dies with dan waiting: after the restart dan's spawn is over, with a sentence
    hub.kill9()
    hub.start()
    assert is_stopped(hub, "dan")
    (event,) = progress_events(hub, "dan")
    assert event["failed"] and event["message"] == (
        "Spawn failed: The hub restarted while the default server was waiting for a GPU"
        " (1st in line); the line does not survive a restart: start the server again to wait"
        " anew."
    )
    assert hub.server_model("bob")["ready"]  # the running server kept its GPU
    # dan starts again and waits anew; bob's stop hands the GPU over
    assert hub.spawn("dan", options={"gpus": 1}).status_code in (201, 202)
    assert in_line(hub, "dan", "1st")
    assert (hub.server_model("dan") or {}).get("pending") == "spawn"
    hub.stop_server("bob")
    hub.wait_ready("dan", timeout=60)
    assert env_of(docker_client, "dan")["NVIDIA_VISIBLE_DEVICES"] == UUID


def test_without_a_queue_timeout_a_full_hub_still_refuses_at_once(hub_factory):
    hub = hub_factory(gpu_mode="runtime-env", gpus=FAKE_GPUS[:1])
    hub.create_user("eve")
    hub.create_user("fay")
    hub.spawn("eve", options={"gpus": 1})
    hub.wait_ready("eve")
    refused = hub.spawn("fay", options={"gpus": 1})
    assert refused.status_code == 503
    assert "Not enough GPUs are free" in refused.json()["message"]
