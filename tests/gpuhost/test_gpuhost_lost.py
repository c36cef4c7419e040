"""A GPU falls off the bus on the simulated GPU host (NVML answers GPU_IS_LOST for it, through
pynvml's real ctypes path, in the hub, the admin service and the server's container alike).

The server holding it keeps running and its panel says the GPU is lost; the hub's inventory
(admin service, /hub/metrics) shows it as lost; neither it nor a lost free GPU is handed out,
and a GPU that answers again is handed out again.
"""

from __future__ import annotations

import re

import pytest
from gpuhost_lab_helpers import (
    SERVICE,
    held_gpus,
    open_lab,
    open_page,
    open_panel,
    screenshot,
    start_service_hub,
    status_item,
    user_names,
    wait_for,
)

from gpuspawner.testing.browser import chromium
from playwright.sync_api import expect

pytestmark = [pytest.mark.docker, pytest.mark.browser]

ANN, BEA, CAT = user_names("ann", "bea", "cat")
NAME = "NVIDIA A100-SXM4-80GB"
LOST_SENTENCE = "The GPU has fallen off the bus (NVML: GPU is lost); the machine needs attention."


def lost_count(hub) -> float:
    text = hub.session.get(hub.url + "/hub/metrics", timeout=30).text
    pattern = r'gpuspawner_gpus\{gpu_type="%s",state="lost"\} ([0-9.]+)' % re.escape(NAME)
    match = re.search(pattern, text)
    return float(match.group(1)) if match else -1.0


def test_a_lost_gpu_is_shown_as_lost_and_not_handed_out(hub_factory, nvidia_docker, sim_host,
                                                        monkeypatch, tmp_path):
    hub = start_service_hub(hub_factory, sim_host, monkeypatch, tmp_path, gpu_resync_interval=1)
    first, second, third = sim_host.allocatable()[:3]
    for user in (ANN, BEA, CAT):
        hub.create_user(user)
    assert hub.spawn(ANN, options={"gpus": 1}).status_code in (201, 202)
    hub.wait_ready(ANN, timeout=120)
    assert held_gpus(nvidia_docker, hub, ANN) == [first]
    token = hub.user_token(ANN)
    # ann has the panel open: the server's sampler has seen the GPU
    seen = hub.through_proxy("GET", ANN, "gpuspawner/api/gpus", token).json()
    assert [(g["uuid"], g["lost"]) for g in seen["gpus"]] == [(first, False)]

    # ann's GPU and the next free one fall off the bus
    sim_host.lose(first)
    sim_host.lose(second)

    # the panel's data: the card of ann's GPU says it is lost; the server keeps answering
    def lost_card():
        response = hub.through_proxy("GET", ANN, "gpuspawner/api/gpus", token)
        assert response.status_code == 200, response.text
        snapshot = response.json()
        return snapshot if snapshot["gpus"] and snapshot["gpus"][0]["lost"] else None

    snapshot = wait_for(lost_card, timeout=30, what="the panel to report the GPU lost")
    (card,) = snapshot["gpus"]
    assert card["uuid"] == first and card["name"] == NAME
    assert card["errors"] == {"gpu": LOST_SENTENCE}
    with chromium() as browser:
        page = open_lab(browser, hub, ANN)
        expect(status_item(page)).to_have_text("GPU lost", timeout=60_000)
        panel = open_panel(page)
        region = panel.get_by_role("region", name=re.compile(r"GPU 0: %s" % NAME))
        expect(region.get_by_role("alert")).to_have_text(LOST_SENTENCE)
        expect(region.get_by_role("heading")).to_have_text("GPU 0: %s – lost" % NAME)
        screenshot(page, "gpu-panel-lost.png")
        page.context.close()

    # the hub's inventory: both lost GPUs, as lost, held or not
    def inventory_lost():
        rows = hub.session.get(hub.url + SERVICE + "api/inventory", timeout=30).json()
        return {row["uuid"] for row in rows if row["lost"]} == {first, second} and rows

    rows = wait_for(inventory_lost, timeout=30, what="the admin inventory to show the lost GPUs")
    assert [row["user"] for row in rows if row["uuid"] == first] == [ANN]
    page = hub.login("boss").get(hub.url + SERVICE, timeout=30).text
    assert page.count('<span class="lost">lost</span>') == 2
    assert '<span class="lost">lost</span> %s' % ANN in page
    with chromium() as browser:
        page = open_page(browser, hub, "boss", SERVICE)
        expect(page.get_by_role("heading", name=re.compile("GPU inventory"))).to_be_visible()
        screenshot(page, "admin-inventory-lost.png", full_page=True)
        page.context.close()

    # neither is handed out: bea gets the third GPU, not the second
    assert hub.spawn(BEA, options={"gpus": 1}).status_code in (201, 202)
    hub.wait_ready(BEA, timeout=120)
    assert held_gpus(nvidia_docker, hub, BEA) == [third]
    assert lost_count(hub) == 1  # the free one; ann's still counts as allocated
    assert "GPU %s (%s) is lost" % (NAME, second) in hub.log_tail(400)

    # the second GPU answers again and is handed out again; ann's server never went down
    sim_host.lose(second, False)
    assert hub.spawn(CAT, options={"gpus": 1}).status_code in (201, 202)
    hub.wait_ready(CAT, timeout=120)
    assert held_gpus(nvidia_docker, hub, CAT) == [second]
    assert lost_count(hub) == 0
    assert hub.server_model(ANN)["ready"]
    assert hub.through_proxy("GET", ANN, "gpuspawner/api/gpus", token).json()["gpus"][0]["lost"]
