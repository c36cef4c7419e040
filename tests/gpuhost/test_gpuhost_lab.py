"""JupyterLab in Chromium in GPU servers spawned by a real hub on the real engine, on a GPU host
made of software (NVIDIA's hook, the stand-in nvidia-container-cli, the simulated NVML).

The server extension inside the container reads the simulated NVML through the image's own
pynvml; the test changes the simulated values while the page is open and sees them arrive.
Screenshots go to test-output/gpuhost/.
"""

from __future__ import annotations

import re

import pytest
from gpuhost_lab_helpers import (
    GIB,
    held_gpus,
    make_host,
    open_lab,
    open_panel,
    screenshot,
    start_gpu_hub,
    status_item,
    user_names,
)

from gpuspawner.testing.browser import chromium
from playwright.sync_api import expect

pytestmark = [pytest.mark.docker, pytest.mark.browser]

ADA, BOB, CYD = user_names("ada", "bob", "cyd")
NAME = "NVIDIA A100-SXM4-80GB"


@pytest.fixture
def lab_host(sim_lib_dir):
    """GPU 0 whole, GPU 1 in MIG mode: the first spawn gets GPU 0, the next the 3g.40gb instance."""
    host = make_host(mig_index=1)
    yield host
    host.remove()


def util_points(card) -> list[tuple[float, float]]:
    """The utilisation line of a card's history chart, as (x, y) in the chart's viewBox."""
    points = card.locator("polyline.jp-gpuspawner-chart-util").get_attribute("points") or ""
    return [tuple(float(v) for v in pair.split(",")) for pair in points.split()]


def test_status_bar_panel_history_and_a_mig_card(hub_factory, nvidia_docker, lab_host, monkeypatch):
    hub = start_gpu_hub(hub_factory, lab_host, monkeypatch)
    whole, mig = lab_host.allocatable()[:2]
    for user in (ADA, BOB):
        hub.create_user(user)
        assert hub.spawn(user, options={"gpus": 1}).status_code in (201, 202)
        hub.wait_ready(user, timeout=120)
    assert held_gpus(nvidia_docker, hub, ADA) == [whole]
    assert held_gpus(nvidia_docker, hub, BOB) == [mig]
    lab_host.update(whole, util_gpu=37, memory_used=12 * GIB, temperature=51, power=203_000)
    lab_host.update(mig, memory_used=5 * GIB)

    with chromium() as browser:
        page = open_lab(browser, hub, ADA)
        expect(status_item(page)).to_have_text("GPU 37% · 12.0/80.0 GiB", timeout=60_000)
        panel = open_panel(page)
        cards = panel.locator("section.jp-gpuspawner-card")
        expect(cards).to_have_count(1)
        card = panel.get_by_role("region", name="GPU 0: %s" % NAME)
        expect(card.locator(".jp-gpuspawner-uuid")).to_have_text(whole)
        expect(card).to_contain_text("37%")
        expect(card).to_contain_text("12.0/80.0 GiB")
        expect(card).to_contain_text("51 °C")
        expect(card).to_contain_text(re.compile(r"203 / \d+ W"))
        expect(card.get_by_role("img", name=re.compile("utilisation and memory"))).to_be_visible()
        driver = page.locator(".jp-gpuspawner-driver")
        expect(driver).to_have_text(re.compile(r"NVIDIA driver 550\.54\.15"))
        page.wait_for_function(
            "() => (document.querySelector('polyline.jp-gpuspawner-chart-util')"
            "?.getAttribute('points') || '').trim().split(' ').length >= 2")
        before = util_points(card)
        screenshot(page, "gpu-panel.png")

        # the GPU gets busy: the status bar, the card and the chart follow
        lab_host.update(whole, util_gpu=92, memory_used=60 * GIB, temperature=68, power=351_000)
        expect(status_item(page)).to_have_text("GPU 92% · 60.0/80.0 GiB", timeout=30_000)
        expect(card).to_contain_text("68 °C")
        expect(card).to_contain_text(re.compile(r"351 / \d+ W"))
        page.wait_for_timeout(4_000)  # two more samples on the chart
        after = util_points(card)
        assert len(after) > len(before)
        # y is 60 at 0 % and 0 at 100 %: 37 % is 37.8, 92 % is 4.8
        assert {round(y, 1) for _, y in before} == {37.8}
        assert round(after[-1][1], 1) == 4.8 and 37.8 in {round(y, 1) for _, y in after}
        screenshot(page, "gpu-panel-busy.png")
        page.context.close()

        # the MIG server: the instance's own card, utilisation n/a, temperature of the whole GPU
        page = open_lab(browser, hub, BOB)
        expect(status_item(page)).to_have_text("GPU · 5.0/39.3 GiB", timeout=60_000)
        panel = open_panel(page)
        card = panel.get_by_role("region", name="%s MIG 3g.40gb" % NAME)
        expect(card.locator(".jp-gpuspawner-uuid")).to_have_text(mig)
        expect(card).to_contain_text("n/a on MIG")
        expect(card).to_contain_text("5.0/39.3 GiB")
        expect(card).to_contain_text("(whole GPU)")
        expect(panel.locator("section.jp-gpuspawner-card")).to_have_count(1)
        screenshot(page, "gpu-panel-mig.png")
        page.context.close()


def test_verify_cuda_without_torch_says_nvml_sees_the_gpu(hub_factory, nvidia_docker, lab_host,
                                                          monkeypatch):
    hub = start_gpu_hub(hub_factory, lab_host, monkeypatch)
    hub.create_user(CYD)
    assert hub.spawn(CYD, options={"gpus": 1}).status_code in (201, 202)
    hub.wait_ready(CYD, timeout=120)
    (uuid,) = held_gpus(nvidia_docker, hub, CYD)
    with chromium() as browser:
        page = open_lab(browser, hub, CYD)
        panel = open_panel(page)
        panel.get_by_role("button", name="Verify CUDA").click()
        output = page.locator(".jp-OutputArea-output").filter(has_text="VERDICT:")
        output.wait_for(timeout=120_000)
        text = output.inner_text()
        screenshot(page, "verify-cuda-gpu-no-torch.png")
        page.context.close()
    assert "NVIDIA driver 550.54.15 (supports CUDA up to 12.4); NVML sees 1 GPU:" in text
    assert "%s (%s)" % (NAME, uuid) in text
    assert "PyTorch is not installed in this kernel" in text
    (verdict,) = [line for line in text.splitlines() if line.startswith("VERDICT:")]
    assert verdict.startswith(
        "VERDICT: NO TORCH - NVML sees the GPU (%s; driver 550.54.15), but PyTorch is not installed"
        % NAME), verdict
    assert "no gpu" not in text.lower() and "gpu either" not in text.lower(), text
