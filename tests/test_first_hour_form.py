"""The first hour of a new hub: what it offers is what its host can do, and the form says so.

Real hub processes, the real Docker engine (and a second one without NVIDIA's device
driver), Chromium for what a person sees. Screenshots go to $GPUSPAWNER_SCREENSHOTS (default:
a temporary folder) to be looked at.
"""

import io
import os
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

from gpuspawner.policy.budget import Budget, left_text
from gpuspawner.service.page import fmt_hours
from gpuspawner.testing.browser import chromium, hub_page
from gpuspawner.testing.hubprocess import RUN_ID
import test_docker_hub

pytestmark = pytest.mark.docker
driver_not_loaded = test_docker_hub.driver_not_loaded  # its fixture, here too
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpuspawner"
GPUHOST_BIN = str(CACHE / "gpuhost" / "bin")
PLAIN_RUN = Path("/run/gpuspawner-plain-engine")
PLAIN_HOST = "unix://%s/docker.sock" % PLAIN_RUN
PLAIN_BRIDGE = "gpuplain0"
PLAIN_SUBNET_IP = "172.31.251.1/24"
TINY_IMAGE = "gpst-tiny/true:1"


def screenshot(page, name: str) -> Path:
    folder = Path(os.environ.get("GPUSPAWNER_SCREENSHOTS") or "/tmp/gpuspawner-screens")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("%s.png" % name)
    page.screenshot(path=str(path), full_page=True)
    return path


def open_form(browser, hub, user: str, server: str = ""):
    path = "/hub/spawn/%s%s" % (
        quote(user, safe=""),
        "/" + quote(server, safe="") if server else "",
    )
    context, page = hub_page(browser, hub, user, path)
    page.wait_for_selector("#gpuspawner-gpus")
    return context, page


def gpu_choices(page) -> list[str]:
    return page.eval_on_selector_all("#gpuspawner-gpus option", "els => els.map(e => e.value)")


# ---- a host without GPUs ----


def test_a_host_without_gpus_says_so_at_start_in_the_form_and_to_the_api(
    hub_factory, monkeypatch
):
    # no inventory declared and no NVIDIA driver: the hub finds no NVML library (the test
    # command puts the simulated one on LD_LIBRARY_PATH, which this hub does not get)
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    hub = hub_factory(gpus=None, check_config=True)
    hub.create_user("newcomer")
    with chromium() as browser:
        context, page = open_form(browser, hub, "newcomer")
        status = page.inner_text("#gpuspawner-gpu-status")
        assert "This hub has no GPUs: servers run on the CPU only." in status
        assert "0 of 0" not in page.content() and "Your limit" not in status
        assert gpu_choices(page) == ["0"]
        shot = screenshot(page, "form-host-without-gpus")
        context.close()
    assert shot.stat().st_size > 0

    refused = hub.spawn("newcomer", options={"gpus": 1})
    assert refused.status_code == 400, refused.text
    assert refused.json()["message"] == (
        "This hub has no GPUs: servers run on the CPU only. You asked for 1 GPU: start the"
        " server with 0 GPUs."
    )
    # the admin learns it at start, with the settings that declare GPUs
    log = hub.log_path.read_text()
    assert "GPUs of this hub: none: no NVIDIA driver was found" in log
    assert "Declare them with GPUSPAWNER_GPUS (jupyterhub_config.py) or" in log
    assert "Image demo: on this host" in log


# ---- an engine without NVIDIA's device driver ----


def tiny_image_tar() -> bytes:
    """A root filesystem holding /bin/true and the libraries it needs, for `docker import`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path in ("/bin/true", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"):
            tar.add(os.path.realpath(path), arcname=path.lstrip("/"))
    return out.getvalue()


@pytest.fixture(scope="module")
def plain_engine():
    """A second Docker engine started without NVIDIA's hook on its PATH, so it has no nvidia
    device driver (as on a host without the NVIDIA Container Toolkit), on a socket, data root and
    bridge of its own; it holds a tiny image. Stopped afterwards."""
    import docker

    if os.geteuid() != 0:
        pytest.skip("starting a second Docker engine needs root")
    data = CACHE / "plain-engine"
    PLAIN_RUN.mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    path = ":".join(p for p in os.environ["PATH"].split(":") if p != GPUHOST_BIN)
    # a bridge of its own: "--bridge none" would make dockerd delete docker0, the shared
    # engine's bridge
    if subprocess.run(["ip", "link", "show", PLAIN_BRIDGE], capture_output=True).returncode:
        subprocess.run(["ip", "link", "add", PLAIN_BRIDGE, "type", "bridge"], check=True)
        subprocess.run(["ip", "addr", "add", PLAIN_SUBNET_IP, "dev", PLAIN_BRIDGE], check=True)
    subprocess.run(["ip", "link", "set", PLAIN_BRIDGE, "up"], check=True)
    log = open(data / "dockerd.log", "a")
    process = subprocess.Popen(
        ["dockerd", "--host", PLAIN_HOST, "--data-root", str(data / "data"),
         "--exec-root", str(PLAIN_RUN / "exec"), "--pidfile", str(PLAIN_RUN / "docker.pid"),
         "--bridge", PLAIN_BRIDGE, "--iptables=false", "--ip-masq=false", "--ip-forward=false"],
        env=dict(os.environ, PATH=path), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            client = docker.DockerClient(base_url=PLAIN_HOST)
            client.ping()
            break
        except Exception:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the plain engine did not start: see %s" % (data / "dockerd.log"))
            time.sleep(0.5)
    try:
        client.images.get(TINY_IMAGE)
    except docker.errors.ImageNotFound:
        repository, tag = TINY_IMAGE.split(":")
        client.api.import_image_from_data(tiny_image_tar(), repository=repository, tag=tag)
    yield client
    client.close()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_an_engine_that_cannot_attach_gpus_offers_none_and_says_why(
    hub_factory, plain_engine, monkeypatch
):
    monkeypatch.setenv("DOCKER_HOST", PLAIN_HOST)
    hub = hub_factory(
        gpu_mode="device-request",
        images={"demo": {"image": TINY_IMAGE, "display_name": "Demo"}},
        check_config=True,
    )
    hub.create_user("student")
    with chromium() as browser:
        context, page = open_form(browser, hub, "student")
        status = page.inner_text("#gpuspawner-gpu-status")
        assert "This hub's Docker engine cannot attach GPUs to servers" in status
        assert "GPUs free" not in status
        assert gpu_choices(page) == ["0"]
        screenshot(page, "form-gpus-cannot-be-attached")
        context.close()

    refused = hub.spawn("student", options={"gpus": 1})
    assert refused.status_code == 400, refused.text
    message = refused.json()["message"]
    assert message.startswith("This hub's Docker engine cannot attach GPUs to servers")
    assert message.endswith("You asked for 1 GPU: start the server with 0 GPUs.")
    assert plain_engine.containers.list(all=True, filters={"name": hub.settings["prefix"]}) == []
    log = hub.log_path.read_text()
    assert "GPUs of this hub: 8 GPUs declared (inventory)" in log
    assert "the engine cannot attach GPUs: GPUs are not offered" in log
    assert 'could not select device driver "nvidia" with capabilities: [[gpu]]' in log
    # the probe left nothing behind
    assert plain_engine.containers.list(all=True, filters={"label": "gpuspawner.probe"}) == []


# ---- a GPU start that fails on the host, from the form of a named server ----


def test_a_refused_named_spawn_keeps_its_form_and_leaves_no_container(
    hub_factory, docker_client, driver_not_loaded
):
    hub = hub_factory(gpu_mode="device-request", gpu_quota=2)
    hub.create_user("nia")
    prefix = hub.settings["prefix"]
    with chromium() as browser:
        context, page = open_form(browser, hub, "nia", "train")
        assert page.inner_text("label[for=gpuspawner-gpus]") == "GPUs for server 'train'"
        page.select_option("#gpuspawner-image", "demo-second")
        page.select_option("#gpuspawner-gpus", "1")
        with page.expect_navigation():
            page.click("form button[type=submit]")
        page.wait_for_selector(".spawn-error-msg")
        error = page.inner_text(".spawn-error-msg")
        assert "This Docker host cannot attach GPUs" in error and "driver not loaded" in error
        # JupyterHub renders the form again through the default server's spawner: it still
        # names the server being started and keeps what the user chose
        assert page.inner_text("label[for=gpuspawner-gpus]") == "GPUs for server 'train'"
        assert page.eval_on_selector("#gpuspawner-image", "e => e.value") == "demo-second"
        assert page.eval_on_selector("#gpuspawner-gpus", "e => e.value") == "1"
        assert urlparse(page.url).path == "/hub/spawn/nia/train"  # where the next post goes
        # the selects look like selects: Bootstrap's arrow is their background image
        arrow = page.eval_on_selector(
            "#gpuspawner-gpus", "e => getComputedStyle(e).backgroundImage"
        )
        assert arrow.startswith("url(") and "svg" in arrow
        screenshot(page, "form-refused-named-server")
        context.close()
    # the failed start removed its container at once: none is left "Created"
    left = docker_client.containers.list(all=True, filters={"name": prefix})
    assert [(c.name, c.status) for c in left] == []


# ---- images: on this host, pulled at the first start, or not offered ----


REGISTRY = os.environ.get("GPUSPAWNER_TEST_REGISTRY", "127.0.0.1:5000")


@pytest.fixture
def registry_only_image(docker_client, test_image):
    """The test image in the local registry (scripts/setup-registry.sh) under a tag that is
    not on this host."""
    import requests

    try:
        requests.get("http://%s/v2/" % REGISTRY, timeout=3).raise_for_status()
    except requests.RequestException as e:
        pytest.skip("needs a registry on %s (bash scripts/setup-registry.sh): %s" % (REGISTRY, e))
    repository = "%s/gpst-form/%s" % (REGISTRY, RUN_ID)
    image = docker_client.images.get(test_image["demo"]["image"])
    image.tag(repository, "1")
    for line in docker_client.api.push(repository, "1", stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(repository + ":1")  # the tag only: the image stays
    return repository + ":1"


def test_each_image_says_whether_it_is_here_and_one_that_cannot_be_pulled_is_not_offered(
    hub_factory, test_image, registry_only_image
):
    images = {
        "demo": dict(test_image["demo"]),
        "remote": {"image": registry_only_image, "display_name": "Remote"},
        "offline": {"image": "127.0.0.1:1/gpst/nowhere:1", "display_name": "Unreachable"},
    }
    hub = hub_factory(gpu_mode="runtime-env", images=images, pull_policy="ifnotpresent",
                      check_config=True)  # fmt: skip
    log = hub.log_path.read_text()
    assert "Image remote: not on this host yet: the first start pulls it from %s" % REGISTRY in log
    assert "Image offline: not on this host, and the registry 127.0.0.1:1 cannot be reached" in log
    hub.create_user("ola")
    with chromium() as browser:
        context, page = open_form(browser, hub, "ola")
        options = page.eval_on_selector_all(
            "#gpuspawner-image option", "els => els.map(e => [e.value, e.textContent])"
        )
        assert options == [
            ["demo", "Demo - on this host"],
            [
                "remote",
                "Remote - not on this host yet: the first start pulls it from %s" % REGISTRY,
            ],
        ]
        status = page.inner_text("#gpuspawner-image-status")
        assert status.startswith("Unreachable is not offered: The image 127.0.0.1:1/gpst/nowhere:1")
        assert "cannot be reached from here" in status
        page.select_option("#gpuspawner-image", "remote")  # the one the first start pulls
        screenshot(page, "form-image-not-present")
        context.close()
    refused = hub.spawn("ola", options={"image": "offline"})
    assert refused.status_code == 400 and "cannot be pulled" in refused.json()["message"]


# ---- the form's GPU-hours and the dashboard's agree ----


def test_hours_left_and_hours_used_are_rounded_alike():
    import datetime

    used = 0.0312  # what a few minutes on one GPU add up to
    text = left_text(used, Budget(10.0, "group 'students'"), "week", datetime.datetime(2026, 12, 7))
    assert text.startswith("GPU-hours left this week: 9.97 of 10 GPU-hours")
    assert fmt_hours(used) == "0.03"  # the dashboard's hours used
    assert float("9.97") + float(fmt_hours(used)) == pytest.approx(10)
