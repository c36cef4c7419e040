"""Hostile names, outside changes and admin operations against a real hub and Docker engine.

Every test here drives a real JupyterHub process (tests/hubprocess.py) whose servers are real
containers; the GPUs are declared and held by label ("runtime-env" mode), as in
tests/test_docker_hub.py.
"""

import random
import time
from urllib.parse import quote

import pytest
from test_docker_hub import driver_not_loaded  # noqa: F401 (a fixture)

pytestmark = pytest.mark.docker

# names the README promises to serve; each escaped volume name passed 255 bytes before
LONG_NAMES = ["学" * 27, "😀" * 20, "ж" * 40, "a" * 255, "tab\tand\x07bell-" + "é" * 60]


def our_containers(docker_client, prefix):
    return docker_client.containers.list(all=True, filters={"name": prefix})


def created_name(hub, wanted: str) -> str:
    """Create a user; the hub's name for it (the authenticator may normalise it)."""
    response = hub.api("POST", "/users/" + quote(wanted, safe=""))
    assert response.status_code < 500, response.text[:500]
    if response.status_code == 201:
        return response.json()["name"]
    return ""


def spawn_and_settle(hub, name: str, timeout: float = 120) -> str:
    """Spawn a 0-GPU server; 'ready', or the refusal's status (never a 5xx)."""
    response = hub.spawn(name, options={"image": "demo", "gpus": 0})
    assert response.status_code < 500, (repr(name[:40]), response.status_code, response.text[:500])
    if response.status_code >= 400:
        return str(response.status_code)
    hub.wait_ready(name, timeout=timeout)
    return "ready"


def test_long_unicode_and_control_character_names_get_servers(hub_factory, docker_client):
    hub = hub_factory(gpu_mode="runtime-env")
    names = [created_name(hub, wanted) for wanted in LONG_NAMES]
    assert all(names)
    for name in names:
        assert spawn_and_settle(hub, name) == "ready"
    containers = our_containers(docker_client, hub.settings["prefix"])
    by_user = {c.labels["gpuspawner.user"]: c for c in containers}
    assert set(by_user) == set(names)
    volumes = set()
    for name, container in by_user.items():
        (volume,) = [
            m["Name"] for m in container.attrs["Mounts"] if m["Destination"] == "/home/jovyan/work"
        ]
        assert len(volume.encode()) <= 255 and len(container.name.encode()) <= 255
        volumes.add(volume)
    assert len(volumes) == len(names)  # nobody shares a workspace
    # a short name keeps the volume name it always had
    assert created_name(hub, "plain") and spawn_and_settle(hub, "plain") == "ready"
    plain = [
        c
        for c in our_containers(docker_client, hub.settings["prefix"])
        if c.labels["gpuspawner.user"] == "plain"
    ][0]
    assert hub.settings["prefix"] + "-workspace-plain" in [m["Name"] for m in plain.attrs["Mounts"]]


def test_nul_name_and_huge_input_get_a_short_sentence(hub_factory, docker_client):
    hub = hub_factory(gpu_mode="runtime-env")
    name = created_name(hub, "nul\x00name")
    assert name == "nul\x00name"  # the hub accepts it ...
    refused = hub.spawn(name, options={"image": "demo", "gpus": 0})
    assert refused.status_code == 400, refused.text[:500]  # ... and its spawn is a sentence
    assert "cannot be served: it contains a NUL character" in refused.json()["message"]
    hub.create_user("mallory")
    for options in ({"image": "x" * 300_000}, {"x" * 300_000: 1}, {"gpus": "9" * 300_000}):
        refused = hub.spawn("mallory", options=options)
        assert refused.status_code == 400, refused.text[:500]
        assert len(refused.content) < 2000, len(refused.content)
        assert "characters)" in refused.json()["message"]


def test_fuzzed_user_names_never_5xx_and_never_share_a_name(hub_factory, docker_client):
    """A bounded sample of random names up to JupyterHub's 255 characters on the real hub
    (tests/test_names.py fuzzes the naming itself with hypothesis)."""
    rng = random.Random(14)
    alphabet = [chr(c) for c in range(1, 0x80)] + list("éßжЖ学生😀🚀\u200b\u00a0") + ["\x00"]
    hub = hub_factory(gpu_mode="runtime-env")
    outcomes = {}
    for _ in range(8):
        wanted = "".join(rng.choice(alphabet) for _ in range(rng.choice([1, 30, 120, 255])))
        name = created_name(hub, wanted)
        if name:
            outcomes[name] = spawn_and_settle(hub, name)
    assert "ready" in outcomes.values()
    assert set(outcomes.values()) <= {"ready", "400"}
    assert all(outcome == "400" for name, outcome in outcomes.items() if "\x00" in name)
    containers = our_containers(docker_client, hub.settings["prefix"])
    assert (
        len({c.name for c in containers})
        == len(containers)
        == sum(1 for outcome in outcomes.values() if outcome == "ready")
    )


def test_killed_container_frees_its_gpu_at_once_and_is_removed(hub_factory, docker_client):
    hub = hub_factory(gpu_mode="runtime-env", gpu_quota=1)
    hub.create_user("kim")
    assert hub.spawn("kim", "a", options={"image": "demo", "gpus": 1}).status_code in (201, 202)
    hub.wait_ready("kim", "a")
    (first,) = [c for c in our_containers(docker_client, hub.settings["prefix"])]
    first.kill()  # what the OOM killer or `docker kill` does
    again = hub.spawn("kim", "b", options={"image": "demo", "gpus": 1})
    assert again.status_code in (201, 202), again.text  # not "you already hold 1 GPU"
    hub.wait_ready("kim", "b")
    names = [c.name for c in our_containers(docker_client, hub.settings["prefix"])]
    assert first.name not in names  # the killed container was removed ...
    docker_client.volumes.get(hub.settings["prefix"] + "-workspace-kim")  # ... never the workspace


def test_failed_start_leaves_no_created_container(
    hub_factory,
    docker_client,
    driver_not_loaded,  # noqa: F811 (the fixture imported above)
):
    hub = hub_factory(gpu_mode="device-request")
    hub.create_user("fay")
    refused = hub.spawn("fay", options={"image": "demo", "gpus": 1})
    assert refused.status_code == 503, refused.text
    deadline = time.monotonic() + 10
    while our_containers(docker_client, hub.settings["prefix"]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert our_containers(docker_client, hub.settings["prefix"]) == []
    docker_client.volumes.get(hub.settings["prefix"] + "-workspace-fay")


def test_ledger_export_refuses_dates_out_of_range_with_the_range(
    hub_factory, docker_client, tmp_path
):
    from test_usage_hub import SERVICE, service_hub

    hub = service_hub(hub_factory, tmp_path)

    def export(**params):
        return hub.session.get(hub.url + SERVICE + "api/ledger.csv", params=params, timeout=30)

    for params in (
        {"start": "0001-01-01", "end": "9999-12-31"},
        {"end": "9999-12-31"},
        {"start": "0001-01-01"},
    ):
        refused = export(**params)
        assert refused.status_code == 400, (params, refused.status_code, refused.text[:300])
        assert "from 1970-01-01 to 9999-12-30" in refused.text, refused.text
    widest = export(start="1970-01-01", end="9999-12-30")
    assert widest.status_code == 200 and widest.text.startswith("user,server,gpu_uuid")
    bad = export(start="x" * 3000)  # (the proxy refuses much longer URLs itself)
    assert bad.status_code == 400 and len(bad.content) < 500


UNSAFE_HOST_CONFIG = {
    "cap_add": ["SYS_ADMIN", "NET_ADMIN"],
    "pid_mode": "host",
    "devices": ["/dev/null:/dev/nvidia0:rwm"],
}


def test_unsafe_host_config_stops_the_hub_at_start_with_the_keys(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "unsafe_config.py"
    config.write_text(
        "c = get_config()\n"
        "c.GPUDockerSpawner.images = {'demo': {'image': 'org/demo:1.0'}}\n"
        "c.GPUDockerSpawner.inventory = []\n"
        "c.GPUDockerSpawner.extra_host_config = %r\n"
        "from gpuspawner.config import check_config\n"
        "check_config(c)\n" % UNSAFE_HOST_CONFIG
    )
    result = subprocess.run(
        [sys.executable, "-m", "jupyterhub", "-f", str(config), "--JupyterHub.port=0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = result.stderr + result.stdout
    assert result.returncode != 0, said[-2000:]
    for key in (
        "cap_add ['SYS_ADMIN', 'NET_ADMIN']",
        "pid_mode 'host'",
        "devices ['/dev/null:/dev/nvidia0:rwm']",
        "allow_unsafe_host_config = True",
    ):
        assert key in said, said[-2000:]


def test_unsafe_host_config_from_a_callable_refuses_the_spawn(hub_factory, docker_client):
    hub = hub_factory(gpu_mode="runtime-env", extra_host_config=UNSAFE_HOST_CONFIG, callable=True)
    hub.create_user("ivy")
    refused = hub.spawn("ivy", options={"image": "demo", "gpus": 0})
    assert refused.status_code == 503, refused.text[:500]
    assert (
        "cap_add" in refused.json()["message"]
        and "allow_unsafe_host_config" in refused.json()["message"]
    )
    assert our_containers(docker_client, hub.settings["prefix"]) == []


def test_opting_out_passes_the_keys_but_keeps_the_locks(hub_factory, docker_client):
    hub = hub_factory(
        gpu_mode="runtime-env",
        extra_host_config={"cap_add": ["NET_ADMIN"], "pid_mode": "host", "privileged": True},
        allow_unsafe_host_config=True,
    )
    hub.create_user("ola")
    assert hub.spawn("ola", options={"image": "demo", "gpus": 0}).status_code in (201, 202)
    hub.wait_ready("ola")
    (container,) = our_containers(docker_client, hub.settings["prefix"])
    host = container.attrs["HostConfig"]
    assert host["CapAdd"] == ["NET_ADMIN"] and host["PidMode"] == "host"
    assert host["Privileged"] is False and host["CapDrop"] == ["ALL"]  # enforced either way
    assert "no-new-privileges" in host["SecurityOpt"]


def workspace_of(container) -> str:
    (volume,) = [
        m["Name"] for m in container.attrs["Mounts"] if m["Destination"] == "/home/jovyan/work"
    ]
    return volume


def write_note(hub, user, server, text):
    token = hub.user_token(user)
    put = hub.through_proxy(
        "PUT",
        user,
        "api/contents/note.txt",
        token,
        server=server,
        json={"type": "file", "format": "text", "content": text},
    )
    assert put.status_code in (200, 201), put.text
    return token


def test_renamed_user_keeps_quota_workspace_and_ledger(hub_factory, docker_client, tmp_path):
    from gpuspawner.usage.ledger import Ledger

    usage = "sqlite:///%s" % (tmp_path / "usage.sqlite")
    hub = hub_factory(gpu_mode="runtime-env", gpu_quota=1, usage_db_url=usage)
    hub.create_user("ren")
    assert hub.spawn("ren", "a", options={"image": "demo", "gpus": 1}).status_code in (201, 202)
    hub.wait_ready("ren", "a")
    write_note(hub, "ren", "a", "before the rename")
    (before,) = our_containers(docker_client, hub.settings["prefix"])
    renamed = hub.api("PATCH", "/users/ren", json={"name": "ren2"})
    assert renamed.status_code == 200, renamed.text
    refused = hub.spawn("ren2", "b", options={"image": "demo", "gpus": 1})
    assert refused.status_code == 403, refused.text  # the old server's GPU still counts
    assert "already hold 1 GPU on server 'a'" in refused.json()["message"]
    hub.stop_server("ren2", "a")
    assert [i for i in Ledger(usage).open_intervals() if i.user in ("ren", "ren2")] == []
    assert hub.spawn("ren2", "b", options={"image": "demo", "gpus": 1}).status_code in (201, 202)
    hub.wait_ready("ren2", "b")
    # the same workspace (JupyterHub keeps routing a renamed user's new servers under the old
    # name until the hub restarts, so the file is read in the container itself)
    (after,) = our_containers(docker_client, hub.settings["prefix"])
    assert after.labels["gpuspawner.user"] == "ren2" and after.id != before.id
    assert workspace_of(after) == workspace_of(before)
    assert after.exec_run(["cat", "/home/jovyan/work/note.txt"]).output == b"before the rename"


def test_deleted_users_files_never_reach_a_new_user_of_that_name(
    hub_factory, docker_client, test_image
):
    hub = hub_factory(gpu_mode="runtime-env")
    hub.create_user("dana")
    assert hub.spawn("dana", options={"image": "demo", "gpus": 0}).status_code in (201, 202)
    hub.wait_ready("dana")
    write_note(hub, "dana", "", "the first dana's notes")
    hub.stop_server("dana")
    assert hub.api("DELETE", "/users/dana").status_code == 204
    hub.create_user("dana")  # a new person, given the same name
    assert hub.spawn("dana", options={"image": "demo", "gpus": 0}).status_code in (201, 202)
    hub.wait_ready("dana")
    token = hub.user_token("dana")
    assert hub.through_proxy("GET", "dana", "api/contents/note.txt", token).status_code == 404
    (archive,) = docker_client.volumes.list(filters={"label": "gpuspawner.archived-user=dana"})
    assert archive.name.startswith(hub.settings["prefix"] + "-archive-u")
    reader = docker_client.containers.create(
        test_image["demo"]["image"],
        ["cat", "/a/note.txt"],
        entrypoint=[],
        volumes={archive.name: {"bind": "/a", "mode": "ro"}},
    )
    try:
        reader.start()
        assert reader.wait(timeout=60)["StatusCode"] == 0, reader.logs()
        kept = reader.logs(stdout=True, stderr=False)
    finally:
        reader.remove(force=True)
    assert kept == b"the first dana's notes"  # the admin still has them
