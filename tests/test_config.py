"""Bad gpuspawner configuration stops the hub at start with the reason."""

import html
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from traitlets.config import Config

from gpuspawner.config import check_config
from gpuspawner.errors import ConfigError
from gpuspawner.testing.hubprocess import FAKE_GPUS, Hub, free_port, hub_settings


def config(**settings):
    c = Config()
    c.GPUDockerSpawner.images = {"demo": {"image": "org/demo:1.0"}}
    c.GPUDockerSpawner.inventory = [{"uuid": "GPU-1"}]
    for key, value in settings.items():
        setattr(c.GPUDockerSpawner, key, value)
    return c


def test_good_config_passes():
    check_config(config())


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"images": {"demo": {"image": "org/demo:latest"}}}, "is not pinned"),
        ({"images": {"demo": {"image": "org/demo"}}}, "is not pinned"),
        ({"images": {}}, "catalog (images) is empty"),
        ({"gpus": [{"uuid": "0"}]}, "not a GPU UUID"),
        ({"gpus": [{"uuid": "GPU-1"}, {"uuid": "GPU-1"}]}, "listed twice"),
        ({"gpu_quota_groups": {"staff": -1}}, "whole number of GPUs"),
        ({"gpu_quota": -1}, "0 or more"),
        ({"default_image": "nope"}, "default_image 'nope'"),
        ({"container_user": "0"}, "non-root"),
        ({"container_user": "root:root"}, "non-root"),
        ({"gpu_mode": "magic"}, "gpu_mode"),
    ],
)
def test_bad_config_refused_with_reason(settings, words):
    with pytest.raises(ConfigError) as error:
        check_config(config(**settings))
    assert words in str(error.value)


def test_unpinned_allowed_when_asked():
    check_config(config(images={"demo": {"image": "org/demo:latest"}}, allow_unpinned_images=True))


def test_hub_refuses_to_start_with_an_unpinned_image(tmp_path):
    """The runnable config ends with check_config: a real `jupyterhub` exits with the reason."""
    bad = tmp_path / "bad_config.py"
    bad.write_text(
        "c = get_config()\n"
        "c.GPUDockerSpawner.images = {'demo': {'image': 'org/demo:latest'}}\n"
        "c.GPUDockerSpawner.inventory = []\n"
        "from gpuspawner.config import check_config\n"
        "check_config(c)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "jupyterhub", "-f", str(bad), "--JupyterHub.port=0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "image 'org/demo:latest' is not pinned" in result.stderr + result.stdout


def test_the_inventory_under_its_old_name_still_works_and_warns(caplog):
    from gpuspawner.docker import GPUDockerSpawner

    c = Config()
    c.GPUDockerSpawner.images = {"demo": {"image": "org/demo:1.0"}}
    c.GPUDockerSpawner.gpus = [{"uuid": "GPU-old", "name": "Old name"}]
    with caplog.at_level("WARNING"):
        spawner = GPUDockerSpawner(config=c)
    assert [gpu.uuid for gpu in spawner.gpu_inventory()] == ["GPU-old"]
    assert (
        "GPUDockerSpawner.gpus is deprecated in gpuspawner 0.x, use GPUDockerSpawner.inventory"
        in caplog.text
    )
    with pytest.raises(ConfigError, match=r"gpus\[1\]: GPU GPU-old is listed twice"):
        check_config(config(gpus=[{"uuid": "GPU-old"}, {"uuid": "GPU-old"}]))


# ---- the runnable config (jupyterhub_config.py) as a real hub, as scripts/run-hub.sh starts it

RUNNABLE = Path(__file__).resolve().parents[1] / "jupyterhub_config.py"
DEMO_PASSWORD = "a-demo-password"
ADMIN_PASSWORD = "b" * 40
DEMO_LABEL = "CPU only, without PyTorch: for trying the hub"


@pytest.fixture
def runnable_hub(tmp_path, monkeypatch, docker_client, test_image, bridge_gateway):
    """jupyterhub -f jupyterhub_config.py with the settings run-hub.sh exports on a machine
    without a registry, plus what lets it run beside other hubs (its own ports) and be asked
    through the REST API (the tests' token)."""
    settings = hub_settings(tmp_path, bridge_gateway)
    admin_port = free_port()
    wrapper = tmp_path / "runnable_config.py"
    wrapper.write_text(
        "c = get_config()\n"
        "load_subconfig(%r)\n"
        "c.JupyterHub.hub_port = %d\n"
        "c.ConfigurableHTTPProxy.api_url = 'http://127.0.0.1:%d'\n"
        "c.ConfigurableHTTPProxy.pid_file = 'proxy.pid'\n"
        "services = c.JupyterHub.services.get_value([])\n"
        "for service in services:\n"
        "    if service['name'] == 'gpu-admin':\n"
        "        service['url'] = 'http://127.0.0.1:%d'\n"
        "c.JupyterHub.services = services + [{'name': 'tests', 'api_token': %r}]\n"
        "c.JupyterHub.load_roles.append({'name': 'admin', 'services': ['tests']})\n"
        % (str(RUNNABLE), settings["hub_port"], settings["proxy_api_port"], admin_port,
           settings["token"])
    )
    for name, value in {
        "GPUSPAWNER_PORT": str(settings["port"]),
        "GPUSPAWNER_DEMO_IMAGE": test_image["demo"]["image"],
        "GPUSPAWNER_OFFLINE": "1",
        "GPUSPAWNER_HUB_CONNECT_IP": bridge_gateway,
        "GPUSPAWNER_GPUS": ",".join(gpu["uuid"] for gpu in FAKE_GPUS[:2]),
        "GPUSPAWNER_DEMO_PASSWORD": DEMO_PASSWORD,
        "GPUSPAWNER_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }.items():
        monkeypatch.setenv(name, value)
    hub = Hub(tmp_path, settings, config=wrapper).start()
    yield hub
    hub.stop()
    print("---- %s ----\n%s" % (hub.log_path, hub.log_tail(200)))


def log_in(hub: Hub, user: str, password: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(hub.url + "/hub/login", timeout=30)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    response = browser.post(
        hub.url + "/hub/login",
        data={"username": user, "password": password, "_xsrf": xsrf},
        timeout=30,
    )
    assert response.status_code == 200 and "/hub/login" not in response.url, response.url
    return browser


def groups_of(hub: Hub, user: str) -> list[str]:
    return hub.api("GET", "/users/" + quote(user, safe="")).json()["groups"]


@pytest.mark.docker
def test_the_demo_student_sees_the_students_budget_and_only_the_demo_image(runnable_hub):
    """The shipped example (10 GPU-hours a week for students) is what a newcomer sees; on a
    machine without a registry the form offers only the image run-hub.sh built, for what it
    is."""
    browser = log_in(runnable_hub, "newcomer", DEMO_PASSWORD)
    assert groups_of(runnable_hub, "newcomer") == ["students"]
    form = html.unescape(runnable_hub.spawn_form(browser, "newcomer"))
    assert re.search(r"of 10 GPU-hours \(group '?students'?\)", form), form
    assert DEMO_LABEL in form
    assert "PyTorch 2.9" not in form and "pytorch-notebook" not in form

    log_in(runnable_hub, "admin", ADMIN_PASSWORD)
    assert groups_of(runnable_hub, "admin") == ["staff"]
    admin = runnable_hub.api("GET", "/users/admin").json()
    assert admin["admin"] is True


@pytest.mark.docker
def test_a_refused_spawn_logs_one_line_with_the_sentence(runnable_hub):
    """A student asking for more GPUs than the quota, through the form and through the REST
    API: the hub's log has one line each, with the sentence, and no traceback."""
    browser = log_in(runnable_hub, "eager", DEMO_PASSWORD)
    form_page = browser.get(runnable_hub.url + "/hub/spawn/eager", timeout=60)
    action = html.unescape(re.search(r'<form[^>]*action="([^"]+)"', form_page.text).group(1))
    refused = browser.post(
        runnable_hub.url + action, data={"image": "demo", "gpus": "2"}, timeout=60
    )
    assert refused.status_code in (400, 403), refused.status_code
    response = runnable_hub.spawn("eager", "second", options={"image": "demo", "gpus": 2})
    assert response.status_code in (400, 403), response.text
    sentence = response.json()["message"]

    time.sleep(1)  # the last lines reach the log file
    log = runnable_hub.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-6000:]
    lines = [line for line in log.splitlines() if sentence in line]
    assert len(lines) == 2, "\n".join(lines)
    # JupyterHub names a server "eager:second" or "eager's server second"
    assert [bool(re.search(r"eager(:|'s server )second", line)) for line in lines] == [
        False, True], "\n".join(lines)
