"""What the GPU-host lab tests share: a hub on a simulated host of their own, Chromium, JupyterLab.

The simulated host (tools/gpuhost/simstate.py) is made per test with UUIDs of its own; the
hub loads the simulated NVML through its environment (never the pytest process's own), and
so does the admin service (``service_environment``). Containers get the library from
NVIDIA's hook and the stand-in nvidia-container-cli, which finds the host owning a UUID.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from urllib.parse import quote

import simstate

from gpuspawner.testing.browser import hub_page
from gpuspawner.testing.hubprocess import RUN_ID, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("GPUSPAWNER_TEST_OUTPUT", REPO / "test-output")) / "gpuhost"
SERVICE = "/services/gpu-admin/"
GIB = simstate.GIB


def user_names(*names: str) -> list[str]:
    """Names of this test run's own: a hub counts every container on the engine (others' too)."""
    return ["%s-%s" % (name, RUN_ID) for name in names]


def make_host(mig_index: int | None = 7) -> simstate.SimHost:
    """A simulated host of this test's own: 8 A100s, the one at ``mig_index`` in MIG mode."""
    name = "lab-%s" % secrets.token_hex(4)
    return simstate.SimHost.create(name, simstate.default_inventory(name, mig_index=mig_index))


def start_gpu_hub(hub_factory, host: simstate.SimHost, monkeypatch, **settings):
    """A hub on ``host``: it discovers the GPUs with NVML (no ``gpus`` declared)."""
    settings.setdefault("gpus", None)
    if "admin_service_port" in settings:
        settings.setdefault("service_environment", host.env())
    with monkeypatch.context() as patch:
        for key, value in host.env().items():
            patch.setenv(key, value)
        return hub_factory(**settings)


def start_service_hub(hub_factory, host: simstate.SimHost, monkeypatch, tmp_path, **settings):
    """A hub on ``host`` with its usage ledger and the admin service (checking every second),
    once the service answers."""
    settings = dict(usage_db_url="sqlite:///%s" % (tmp_path / "usage.sqlite"),
                    admin_service_port=free_port(), admin_users=["boss"],
                    admin_check_interval=1, **settings)
    hub = start_gpu_hub(hub_factory, host, monkeypatch, **settings)
    wait_for_service(hub)
    return hub


def held_gpus(docker_client, hub, user: str, server: str = "") -> list[str]:
    """The GPUs named by the labels of ``user``'s container (this hub's: runs share the engine)."""
    (container,) = [
        c for c in docker_client.containers.list(
            filters={"label": "gpuspawner.user=" + user, "name": hub.settings["prefix"]})
        if c.labels.get("gpuspawner.server") == server
    ]
    return [uuid for uuid in container.labels["gpuspawner.gpus"].split(",") if uuid]


def wait_for_service(hub) -> None:
    """Until the admin service answers behind the hub."""
    url = hub.url + SERVICE + "api/inventory"
    wait_for(lambda: hub.session.get(url, timeout=10).status_code == 200, what="the admin service")


def open_page(browser, hub, user: str, path: str):
    """A page of ``user``, logged in to the hub, at ``path`` (closed with the browser)."""
    return hub_page(browser, hub, user, path)[1]


def open_lab(browser, hub, user: str):
    """A page of ``user``, logged in to the hub, on their server's JupyterLab."""
    page = open_page(browser, hub, user, "/user/%s/lab/workspaces/gpuhost?reset"
                     % quote(user, safe=""))
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=120_000)
    page.locator(".jp-Launcher").first.wait_for()  # the page a person sees, fully drawn
    return page


def status_item(page):
    return page.get_by_role("button", name=re.compile(r"Show the GPU panel"))


def open_panel(page):
    """Click the status item; the panel region that opens."""
    status_item(page).click()
    panel = page.get_by_role("region", name="GPU status")
    panel.wait_for()
    return panel


def screenshot(page, name: str, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path
