"""The Docker backend end to end: a real hub process, a real Docker engine, real containers.

GPUs are declared (this machine has none). The engine has NVIDIA's hook and device driver
(scripts/setup-gpuhost.sh), and the declared GPUs belong to a simulated host whose driver is not
loaded, so a DeviceRequest spawn fails at start the way it does on such a host; the
"runtime-env" mode (hosts whose default runtime is nvidia) starts containers that hold GPUs by
label and NVIDIA_VISIBLE_DEVICES. tests/gpuhost/ has the spawns that do get GPUs.
"""

import concurrent.futures
import json
import sys
import threading
import time
from pathlib import Path

import pytest

from gpuspawner.testing.hubprocess import FAKE_GPUS, RUN_ID

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "gpuhost"))
import simstate  # noqa: E402

pytestmark = pytest.mark.docker
UUIDS = [gpu["uuid"] for gpu in FAKE_GPUS]


def container_of(docker_client, user, server=""):
    found = [
        c
        for c in docker_client.containers.list(
            all=True, filters={"label": "gpuspawner.user=" + user}
        )
        if c.labels.get("gpuspawner.server") == server
    ]
    assert len(found) == 1, found
    return found[0]


def env_of(container) -> dict:
    return dict(line.split("=", 1) for line in container.attrs["Config"]["Env"])


def test_spawn_without_gpu_answers_through_proxy_and_sees_no_gpu(hub_factory, docker_client):
    hub = hub_factory()
    hub.create_user("alice")
    response = hub.spawn("alice", options={"image": "demo", "gpus": 0})
    assert response.status_code in (201, 202), response.text
    hub.wait_ready("alice")
    status = hub.through_proxy("GET", "alice", "api/status", hub.user_token("alice"))
    assert status.status_code == 200, status.text

    container = container_of(docker_client, "alice")
    env = env_of(container)
    assert env["NVIDIA_VISIBLE_DEVICES"] == "void"
    assert env["GPU_LIMIT"] == "0" and env["GPUSPAWNER_GPU_UUIDS"] == ""
    assert env["GPUSPAWNER_NO_GPU_REASON"] == "No GPU was requested for this server."
    host = container.attrs["HostConfig"]
    assert host["Privileged"] is False and host["CapDrop"] == ["ALL"]
    assert host["ShmSize"] == 2 * 1024**3 and host["Memory"] == 2 * 1024**3
    assert not host.get("DeviceRequests")
    assert container.attrs["Config"]["User"] == "1000"
    assert container.exec_run("id -u").output.strip() == b"1000"
    assert container.labels["gpuspawner.gpus"] == ""


def test_workspace_survives_stop_start_and_image_change(hub_factory, docker_client):
    hub = hub_factory()
    hub.create_user("bea")
    hub.spawn("bea", options={"image": "demo"})
    hub.wait_ready("bea")
    token = hub.user_token("bea")
    put = hub.through_proxy(
        "PUT",
        "bea",
        "api/contents/notes.txt",
        token,
        json={"type": "file", "format": "text", "content": "epoch 3: loss 0.12"},
    )
    assert put.status_code in (200, 201), put.text
    first = container_of(docker_client, "bea").id
    hub.stop_server("bea")
    with pytest.raises(AssertionError):
        container_of(docker_client, "bea")  # the container is gone ...
    hub.spawn("bea", options={"image": "demo-second"})
    hub.wait_ready("bea")
    second = container_of(docker_client, "bea")
    assert second.id != first and second.attrs["Config"]["Image"].endswith(":second")
    got = hub.through_proxy("GET", "bea", "api/contents/notes.txt", token)
    assert (
        got.status_code == 200 and got.json()["content"] == "epoch 3: loss 0.12"
    )  # ... the workspace is not
    hub.stop_server("bea")
    (volume,) = [
        m["Name"] for m in second.attrs["Mounts"] if m["Destination"] == "/home/jovyan/work"
    ]
    assert volume == hub.settings["prefix"] + "-workspace-bea"
    docker_client.volumes.get(volume)  # stopping never removes the workspace


def watch_gpu_creates(docker_client, users: list, seen: list, stop: threading.Event):
    """Record the GPU labels of the containers the engine creates for ``users`` (the engine's
    own word)."""
    events = docker_client.events(decode=True, filters={"type": "container", "event": "create"})
    for event in events:
        attributes = event["Actor"]["Attributes"]
        if attributes.get("gpuspawner.gpus") and attributes.get("gpuspawner.user") in users:
            seen.append((attributes["gpuspawner.user"], attributes["gpuspawner.gpus"]))
        if stop.is_set():
            events.close()
            return


@pytest.fixture
def driver_not_loaded():
    """The declared GPUs on a simulated host whose NVIDIA driver is not loaded: the toolkit's
    CLI refuses to attach them, as on a real host in that state."""
    gpus = [simstate.Gpu(index=i, uuid=g["uuid"]) for i, g in enumerate(FAKE_GPUS)]
    state = simstate.State(init_error=simstate.DRIVER_NOT_LOADED, gpus=gpus)
    try:
        host = simstate.SimHost.create("no-driver-" + RUN_ID, state)
    except PermissionError as e:
        pytest.skip("cannot write the simulated host (scripts/setup-gpuhost.sh as root): %s" % e)
    yield host
    host.remove()


def test_concurrent_gpu_spawns_get_distinct_gpus_and_missing_runtime_releases_them(
    hub_factory, docker_client, driver_not_loaded
):
    hub = hub_factory(gpu_mode="device-request")
    users = ["gpu-user-%d" % i for i in range(4)]
    for user in users:
        hub.create_user(user)
    seen, stop = [], threading.Event()
    watcher = threading.Thread(
        target=watch_gpu_creates, args=(docker_client, users, seen, stop), daemon=True
    )
    watcher.start()
    time.sleep(0.5)
    with concurrent.futures.ThreadPoolExecutor(len(users)) as pool:
        responses = list(pool.map(lambda u: hub.spawn(u, options={"gpus": 1}), users))
    stop.set()
    docker_client.containers.run(
        hub.settings["images"]["demo"]["image"], "true", remove=True
    )  # wake the watcher
    watcher.join(10)

    for response in responses:
        assert response.status_code == 503, response.text
        assert "cannot attach GPUs" in response.json()["message"]
        # the engine ran NVIDIA's hook, whose CLI found no loaded driver
        assert (
            "nvidia-container-cli: initialization error: nvml error: driver not loaded"
            in (response.json()["message"])
        )
    created = dict(seen)
    assert sorted(created) == users
    assert len(set(created.values())) == len(users), created  # no GPU handed out twice
    assert set(created.values()) <= set(UUIDS)
    # the failed starts released every GPU: all 8 are free again, and the form says so
    form = hub.spawn_form(hub.login(users[0]), users[0])
    assert "8 of 8 GPUs free on this hub. You hold no GPU." in form


def test_quota_counts_gpus_across_named_servers(hub_factory, docker_client):
    hub = hub_factory(gpu_mode="runtime-env", gpu_quota=1, gpu_quota_groups={"staff": 2})
    hub.create_user("carl")
    assert hub.spawn("carl", "train", {"gpus": 1}).status_code in (201, 202)
    hub.wait_ready("carl", "train")
    held = env_of(container_of(docker_client, "carl", "train"))["NVIDIA_VISIBLE_DEVICES"]
    assert held in UUIDS

    refused = hub.spawn("carl", "eval", {"gpus": 1})
    assert refused.status_code == 403
    message = refused.json()["message"]
    assert "your limit is 1 GPU at once (the default for every user)" in message
    assert "you already hold 1 GPU on server 'train' (%s)" % held in message

    # a CPU-only server is still fine, and sees no GPU
    assert hub.spawn("carl", "notes", {"gpus": 0}).status_code in (201, 202)
    hub.wait_ready("carl", "notes")
    assert env_of(container_of(docker_client, "carl", "notes"))["NVIDIA_VISIBLE_DEVICES"] == "void"

    # joining staff raises the limit to 2: the second GPU server starts, on another GPU
    hub.create_user("carl", groups=("staff",))
    assert hub.spawn("carl", "eval", {"gpus": 1}).status_code in (201, 202)
    hub.wait_ready("carl", "eval")
    assert env_of(container_of(docker_client, "carl", "eval"))["NVIDIA_VISIBLE_DEVICES"] not in (
        "void",
        held,
    )


def test_no_free_gpu_fails_at_once_with_the_count(hub_factory):
    hub = hub_factory(gpu_mode="runtime-env", gpus=FAKE_GPUS[:2], gpu_quota=2)
    hub.create_user("dana")
    hub.create_user("eli")
    assert hub.spawn("dana", options={"gpus": 2}).status_code in (201, 202)
    hub.wait_ready("dana")
    started = time.monotonic()
    refused = hub.spawn("eli", options={"gpus": 1})
    assert time.monotonic() - started < 10
    assert refused.status_code == 503
    assert refused.json()["message"] == (
        "Not enough GPUs are free: you asked for 1 GPU and 0 of 2 are free right now."
        " Try again later, or start with fewer GPUs."
    )


def test_gpu_count_is_not_inherited_by_the_next_spawn(hub_factory, docker_client):
    hub = hub_factory(gpu_mode="runtime-env")
    hub.create_user("fay")
    hub.spawn("fay", options={"gpus": 1})
    hub.wait_ready("fay")
    assert env_of(container_of(docker_client, "fay"))["GPU_LIMIT"] == "1"
    hub.stop_server("fay")
    assert hub.spawn("fay").status_code in (201, 202)  # no options: the stored ones, minus the GPUs
    hub.wait_ready("fay")
    env = env_of(container_of(docker_client, "fay"))
    assert env["GPU_LIMIT"] == "0" and env["NVIDIA_VISIBLE_DEVICES"] == "void"


def test_hub_killed_and_restarted_rebuilds_allocations(hub_factory, docker_client):
    hub = hub_factory(gpu_mode="runtime-env", gpus=FAKE_GPUS[:3], gpu_quota=1)
    for user in ("gus", "hal", "ivy"):
        hub.create_user(user)
    for user in ("gus", "hal"):
        hub.spawn(user, options={"gpus": 1})
        hub.wait_ready(user)
    held = {
        env_of(container_of(docker_client, u))["NVIDIA_VISIBLE_DEVICES"] for u in ("gus", "hal")
    }
    assert len(held) == 2

    hub.kill9()
    hub.start()
    # the containers kept running; the new hub process learns their GPUs from the engine
    hub.spawn("ivy", options={"gpus": 1})
    hub.wait_ready("ivy")
    ivy = env_of(container_of(docker_client, "ivy"))["NVIDIA_VISIBLE_DEVICES"]
    assert ivy in UUIDS[:3] and ivy not in held
    refused = hub.spawn("gus", "second", {"gpus": 1})
    assert (
        refused.status_code == 403
        and "you already hold 1 GPU on the default server" in refused.json()["message"]
    )
    hub.create_user("jon")
    full = hub.spawn("jon", options={"gpus": 1})
    assert full.status_code == 503 and "0 of 3 are free" in full.json()["message"]


def test_spawn_form_offers_catalog_and_what_is_left(hub_factory, docker_client):
    hub = hub_factory(gpu_mode="runtime-env", gpu_quota=2)
    hub.create_user("kim")
    browser = hub.login("kim")
    form = hub.spawn_form(browser, "kim")
    assert '<option value="demo" selected>Demo - on this host</option>' in form
    assert '<option value="2">2 GPUs</option>' in form and '"3"' not in form
    assert "Your limit: 2 GPUs at once (the default for every user)." in form
    assert "8 of 8 GPUs free on this hub. You hold no GPU." in form

    # the form posts the same options the API takes; a bad count is refused on the form
    xsrf = browser.cookies.get("_xsrf")
    bad = browser.post(
        hub.url + "/hub/spawn/kim", data={"image": "demo", "gpus": "two", "_xsrf": xsrf}
    )
    assert "The number of GPUs must be a whole number, not &#39;two&#39;." in bad.text
    good = browser.post(
        hub.url + "/hub/spawn/kim", data={"image": "demo-second", "gpus": "1", "_xsrf": xsrf}
    )
    assert good.status_code == 200, good.text[-3000:]
    hub.wait_ready("kim")
    container = container_of(docker_client, "kim")
    assert (
        container.labels["gpuspawner.image"] == "demo-second"
        and env_of(container)["GPU_LIMIT"] == "1"
    )
    form = hub.spawn_form(browser, "kim", "second")
    assert "7 of 8 GPUs free on this hub. You hold 1 GPU on the default server" in form
    assert '<option value="1">1 GPU</option>' in form and '"2"' not in form


HOSTILE_NAMES = ["émilie o'brien", "日本語ユーザー", "x; rm -rf ~ #", "--rm -v", "ab-2d"]


def test_any_user_name_gets_its_own_container_and_workspace(hub_factory, docker_client):
    hub = hub_factory()
    for name in HOSTILE_NAMES:
        hub.create_user(name)
        assert hub.spawn(name, options={"gpus": 0}).status_code in (201, 202)
    volumes = set()
    for name in HOSTILE_NAMES:
        hub.wait_ready(name)
        assert hub.through_proxy("GET", name, "api/status", hub.user_token(name)).status_code == 200
        container = container_of(docker_client, name)
        assert container.labels["gpuspawner.user"] == name  # labels keep the real name
        (volume,) = [
            m["Name"] for m in container.attrs["Mounts"] if m["Destination"] == "/home/jovyan/work"
        ]
        volumes.add(volume)
    assert len(volumes) == len(HOSTILE_NAMES)  # escaping never merges two users' workspaces
    assert (
        hub.settings["prefix"] + "-workspace-ab-2d2d" in volumes
    )  # '-' is escaped too: no collisions


BAD_OPTIONS = [
    ({"gpus": -1}, "The number of GPUs must be from 0 to 8 per server, not -1."),
    ({"gpus": 10**30}, "The number of GPUs must be from 0 to 8 per server, not %d." % 10**30),
    ({"gpus": 1.5}, "The number of GPUs must be a whole number from 0 to 8, not 1.5."),
    ({"gpus": "1"}, "The number of GPUs must be a whole number from 0 to 8, not '1'."),
    ({"gpus": None}, "The number of GPUs must be a whole number from 0 to 8, not None."),
    (
        {"image": "ubuntu:latest"},
        "There is no image 'ubuntu:latest' in this hub's catalog; choose one of: demo,"
        " demo-second.",
    ),
    ({"image": {"$ne": 1}}, "The image must be given by its catalog name, such as 'demo'."),
    (
        {"privileged": True},
        "Unknown spawn option(s) 'privileged'; the options are: gpus, image, shared.",
    ),
    # the hub itself refuses options that are not an object, before the spawner sees them
    ([1, 2], "user_options must be an object or null"),
    ("gpus=8", "user_options must be an object or null"),
]


def test_bad_options_through_the_api_are_400_with_a_sentence(hub_factory, docker_client):
    hub = hub_factory()
    hub.create_user("mallory")
    for options, sentence in BAD_OPTIONS:
        response = hub.spawn("mallory", options=options)
        assert response.status_code == 400, (options, response.text)
        assert response.json()["message"] == sentence
    assert not docker_client.containers.list(all=True, filters={"label": "gpuspawner.user=mallory"})
    # the user can still start a good server afterwards
    assert hub.spawn("mallory", options={"gpus": 0}).status_code in (201, 202)
    hub.wait_ready("mallory")


def test_progress_names_the_stages_and_the_gpu(hub_factory):
    hub = hub_factory(gpu_mode="runtime-env", slow_spawn_timeout=0)
    hub.create_user("lea")
    assert hub.spawn("lea", options={"gpus": 1}).status_code == 202
    messages = []
    with hub.session.get(
        hub.url + "/hub/api/users/lea/server/progress", stream=True, timeout=90
    ) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                event = json.loads(line[len("data:") :])
                messages.append(event.get("message", ""))
                if event.get("ready") or event.get("failed"):
                    break
    text = "\n".join(messages)
    assert "Allocated 1 GPU: NVIDIA A100-SXM4-80GB (%s)" % UUIDS[0] in text
    assert "Preparing workspace volume %s-workspace-lea" % hub.settings["prefix"] in text
    assert "Starting container from Demo" in text


def test_a_container_that_died_gives_its_gpu_back(hub_factory, docker_client):
    hub = hub_factory(gpu_mode="runtime-env", gpus=FAKE_GPUS[:1])
    hub.create_user("max")
    hub.create_user("ned")
    hub.spawn("max", options={"gpus": 1})
    hub.wait_ready("max")
    container_of(docker_client, "max").kill()  # e.g. the OOM killer, or an admin's docker kill
    time.sleep(2.5)  # older than the engine view a capacity refusal may rely on
    assert hub.spawn("ned", options={"gpus": 1}).status_code in (201, 202)
    hub.wait_ready("ned")
    assert env_of(container_of(docker_client, "ned"))["NVIDIA_VISIBLE_DEVICES"] == UUIDS[0]
