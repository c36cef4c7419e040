"""Image pulls from a real registry: Debian's docker-registry on loopback
(scripts/setup-registry.sh).

The test image is copied into one layer of its own (so none of it is on this host once the
local copy is removed), pushed to the registry, removed locally, and pulled by a real hub
while the test reads the spawn's progress stream.
"""

import datetime
import io
import json
import os
import re
import secrets
import subprocess
import sys
import tarfile
import time

import pytest
import requests

from gpuspawner.testing.hubprocess import free_port

pytestmark = pytest.mark.docker
REGISTRY = os.environ.get("GPUSPAWNER_TEST_REGISTRY", "127.0.0.1:5000")
TEST_IMAGE = os.environ.get("GPUSPAWNER_TEST_IMAGE", "")
REQUIRE_DOCKER = os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1"
REPOSITORY = "gpst-pulltest/singleuser"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def registry_or_skip() -> None:
    try:
        requests.get("http://%s/v2/" % REGISTRY, timeout=3).raise_for_status()
    except requests.RequestException as e:
        reason = "needs a registry on %s (bash scripts/setup-registry.sh): %s" % (REGISTRY, e)
        if REQUIRE_DOCKER:
            pytest.fail(reason)
        pytest.skip(reason)


def one_layer_copy(docker_client, source: str, target: str) -> None:
    """``source`` flattened into a single new layer (with a marker file), tagged ``target``."""
    config = docker_client.images.get(source).attrs["Config"]
    changes = ["ENV %s" % env for env in config.get("Env") or []]
    changes += ["USER %s" % config["User"]] if config.get("User") else []
    changes += ["WORKDIR %s" % config["WorkingDir"]] if config.get("WorkingDir") else []
    changes += ["EXPOSE %s" % port for port in config.get("ExposedPorts") or {}]
    changes += ["CMD %s" % json.dumps(config["Cmd"])] if config.get("Cmd") else []
    container = docker_client.containers.create(source, "true")
    try:
        marker = io.BytesIO()
        with tarfile.open(fileobj=marker, mode="w") as tar:
            data = ("pull test copy of %s made %s\n" % (source, time.time())).encode()
            info = tarfile.TarInfo("etc/gpuspawner-pulltest")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        container.put_archive("/", marker.getvalue())
        export = subprocess.Popen(["docker", "export", container.id], stdout=subprocess.PIPE)
        args = [a for change in changes for a in ("--change", change)]
        subprocess.run(
            ["docker", "import", *args, "-", target],
            stdin=export.stdout,
            check=True,
            capture_output=True,
        )
        assert export.wait() == 0
    finally:
        container.remove(force=True)


def remove_local(docker_client, ref: str) -> None:
    import docker

    try:
        docker_client.images.remove(ref, force=True)
    except docker.errors.ImageNotFound:
        pass
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(ref)


MANIFEST_V2 = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}


PRUNE_AFTER = 24 * 3600  # a copy this old was left by a session that died


def copies() -> dict[str, tuple[str, float]]:
    """tag -> (manifest digest, seconds since the copy was made) for the copies in the registry."""
    base = "http://%s/v2/%s" % (REGISTRY, REPOSITORY)
    found = {}
    for tag in requests.get(base + "/tags/list", timeout=10).json().get("tags") or []:
        manifest = requests.get(base + "/manifests/" + tag, headers=MANIFEST_V2, timeout=10)
        if manifest.status_code != 200:
            continue  # deleted meanwhile
        config = requests.get(
            base + "/blobs/" + manifest.json()["config"]["digest"], timeout=10
        ).json()
        created = datetime.datetime.fromisoformat(config["created"][:19]).replace(
            tzinfo=datetime.timezone.utc
        )
        age = time.time() - created.timestamp()
        found[tag] = (manifest.headers["Docker-Content-Digest"], age)
    return found


def delete_copy(digest: str) -> None:
    """Untag a copy; setup-registry.sh garbage-collects its layer when it next starts the
    registry."""
    requests.delete("http://%s/v2/%s/manifests/%s" % (REGISTRY, REPOSITORY, digest), timeout=10)


@pytest.fixture(scope="module")
def pushed_image(docker_client):
    """A copy of the test image for this session alone, in the registry and not on this host.

    Its layer is this session's own, so a concurrent session's pulls never share it. It is
    deleted afterwards; copies older than a day (left by sessions that died) are deleted too.
    """
    registry_or_skip()
    for digest, age in copies().values():
        if age > PRUNE_AFTER:
            delete_copy(digest)
    tag = "s-%s" % secrets.token_hex(4)
    ref = "%s/%s:%s" % (REGISTRY, REPOSITORY, tag)
    started = time.monotonic()
    one_layer_copy(docker_client, TEST_IMAGE, ref)
    copied = time.monotonic()
    events = docker_client.images.push(
        REGISTRY + "/" + REPOSITORY, tag=tag, stream=True, decode=True
    )
    for event in events:
        assert "error" not in event, event
    print(
        "one-layer copy of %s: %d MB, made in %.1f s, pushed to %s in %.1f s"
        % (
            TEST_IMAGE,
            docker_client.images.get(ref).attrs["Size"] // 10**6,
            copied - started,
            REGISTRY,
            time.monotonic() - copied,
        ),
        file=sys.stderr,
    )
    remove_local(docker_client, ref)
    yield ref
    remove_local(docker_client, ref)
    digest, _ = copies()[tag]
    delete_copy(digest)


def progress_of(hub, user: str, timeout: float = 180) -> list[dict]:
    """Every event of the hub's progress stream for the user's server, until ready or failed."""
    events = []
    url = hub.url + "/hub/api/users/%s/server/progress" % user
    with hub.session.get(url, stream=True, timeout=timeout) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                event = json.loads(line[len("data:") :])
                events.append(event)
                if event.get("ready") or event.get("failed"):
                    break
    return events


def test_pull_from_the_registry_shows_progress_and_the_server_answers(
    hub_factory, docker_client, pushed_image
):
    remove_local(docker_client, pushed_image)
    images = {"demo": {"image": pushed_image, "display_name": "Demo from the registry"}}
    hub = hub_factory(images=images, pull_policy="ifnotpresent", slow_spawn_timeout=0)
    hub.create_user("puller")
    started = time.monotonic()
    assert hub.spawn("puller", options={"image": "demo"}).status_code == 202
    events = progress_of(hub, "puller")
    assert events[-1].get("ready"), events
    messages = [e.get("message", "") for e in events]
    print(
        "spawn with a pull: %.1f s; %s" % (time.monotonic() - started, messages[-3:]),
        file=sys.stderr,
    )

    assert "pulling demo: asking the registry %s" % REGISTRY in messages
    assert any(re.fullmatch(r"pulling demo: \d+ / \d+ MB", m) for m in messages), messages
    assert any(re.fullmatch(r"pulling demo: unpacking \d+ / \d+ MB", m) for m in messages), messages
    (done,) = [m for m in messages if m.startswith("Pulled demo")]
    assert re.fullmatch(r"Pulled demo \(\d+ MB\) in \d+ s", done), done
    pulling = [e["progress"] for e in events if e.get("message", "").startswith("pulling demo")]
    assert pulling == sorted(pulling) and 50 <= pulling[0] and pulling[-1] <= 85
    docker_client.images.get(pushed_image)  # now on this host

    status = hub.through_proxy("GET", "puller", "api/status", hub.user_token("puller"))
    assert status.status_code == 200, status.text


def test_a_pull_longer_than_pull_timeout_is_refused_with_how_far_it_got(
    hub_factory, docker_client, pushed_image
):
    remove_local(docker_client, pushed_image)
    images = {"demo": {"image": pushed_image, "display_name": "Demo from the registry"}}
    hub = hub_factory(images=images, pull_policy="ifnotpresent", pull_timeout=1)
    hub.create_user("impatient")
    response = hub.spawn("impatient", options={"image": "demo"})
    assert response.status_code == 503, response.text
    message = response.json()["message"]
    assert message.startswith(
        "Pulling the image %s of 'Demo from the registry' did not finish within 1 s (pulling demo:"
        % pushed_image
    ), message
    assert message.endswith(
        "ask an admin to pre-pull the catalog's images (python -m gpuspawner.prepull)."
    )
    assert not docker_client.containers.list(
        all=True, filters={"label": "gpuspawner.user=impatient"}
    )


def test_a_missing_tag_is_refused_with_a_sentence(hub_factory, pushed_image):
    missing = "%s/%s:no-such-tag" % (REGISTRY, REPOSITORY)
    hub = hub_factory(
        images={"demo": {"image": missing, "display_name": "Demo"}}, pull_policy="ifnotpresent"
    )
    hub.create_user("tagless")
    response = hub.spawn("tagless", options={"image": "demo"})
    assert response.status_code == 503, response.text
    assert response.json()["message"] == (
        "The image %s of 'Demo' is not in the registry %s (no such tag or repository), so it"
        " cannot be"
        " pulled. Ask an admin to push it or to fix the catalog. (Docker said: manifest for %s"
        " not found:"
        " manifest unknown: manifest unknown.)" % (missing, REGISTRY, missing)
    )


def test_an_unreachable_registry_is_refused_with_a_sentence(hub_factory):
    nowhere = "127.0.0.1:%d" % free_port()
    image = nowhere + "/team/notebook:1.0"
    hub = hub_factory(
        images={"demo": {"image": image, "display_name": "Demo"}}, pull_policy="ifnotpresent"
    )
    hub.create_user("offline")
    response = hub.spawn("offline", options={"image": "demo"})
    assert response.status_code == 503, response.text
    message = response.json()["message"]
    assert message.startswith(
        "The registry %s could not be reached, so the image %s of 'Demo' cannot be pulled right"
        " now."
        " Try again later, or ask an admin. (Docker said: " % (nowhere, image)
    ), message
    assert "connection refused" in message


def test_prepull_pulls_every_catalog_image_and_names_the_ones_that_fail(
    docker_client, pushed_image, tmp_path
):
    remove_local(docker_client, pushed_image)
    missing = "%s/%s:no-such-tag" % (REGISTRY, REPOSITORY)
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(
        "c = get_config()\n"
        "c.GPUDockerSpawner.images = %r\n"
        % {
            "demo": {"image": pushed_image},
            "gone": {"image": missing},
            "here": {"image": TEST_IMAGE},
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "gpuspawner.prepull", "-f", str(config), "--interval", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    print(result.stdout, result.stderr, file=sys.stderr)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(
        re.fullmatch(r"demo: pulling demo: (unpacking )?\d+ / \d+ MB", line) for line in lines
    ), lines
    assert any(re.fullmatch(r"demo: Pulled demo \(\d+ MB\) in \d+ s", line) for line in lines), (
        lines
    )
    assert "here: already on this host (%s)" % TEST_IMAGE in lines
    assert any(
        line.startswith("gone: The image %s of 'gone' is not in the registry" % missing)
        for line in lines
    )
    assert lines[-1] == "1 of 3 images could not be pulled: gone."
    docker_client.images.get(pushed_image)
