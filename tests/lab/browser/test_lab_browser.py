"""JupyterLab with the extension, in Debian's Chromium: what a person sees.

Elements are found by role and accessible name. Screenshots are saved under
the test output folder (see ``output_dir``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from lab_helpers import needs_no_driver
from lab_server import labextension_built, start_lab
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def _expected_status(lab) -> tuple[re.Pattern, dict]:
    status, body = lab.get("gpuspawner/api/gpus")
    assert status == 200
    snapshot = json.loads(body)
    if snapshot["available"]:
        return re.compile(r"GPU"), snapshot
    return re.compile(r"^No GPU"), snapshot


def _palette(page):
    """The command palette's search box (it has no accessible name of its own)."""
    return page.locator("#modal-command-palette").get_by_role("textbox")


def test_status_panel_and_verify_cuda(page, lab, output_dir):
    expected, snapshot = _expected_status(lab)
    status_item = page.get_by_role("button", name=re.compile(r"Show the GPU panel"))
    # "GPU …" until the first poll answers; then the real status (auto-retried, then failed)
    expect(status_item).to_have_text(expected, timeout=30_000)

    # the status item opens the panel
    status_item.click()
    panel = page.get_by_role("region", name="GPU status")
    panel.wait_for()
    if not snapshot["available"]:
        no_gpu = panel.get_by_role("status")
        assert "No GPU" in no_gpu.inner_text()
        assert snapshot["reason"] in no_gpu.inner_text()
    else:
        assert panel.locator("section").count() == len(snapshot["gpus"])
    page.screenshot(path=str(output_dir / "panel.png"))

    # the launcher offers Verify CUDA
    page.keyboard.press("Control+Shift+L")
    launcher = page.locator(".jp-Launcher")
    launcher.get_by_text("Verify CUDA").wait_for()

    # run Verify CUDA from the command palette: a new notebook, the cell, its output
    page.keyboard.press("Control+Shift+C")
    _palette(page).fill("Verify CUDA")
    page.keyboard.press("Enter")
    output = page.locator(".jp-OutputArea-output").filter(has_text="VERDICT:")
    output.wait_for(timeout=90_000)
    text = output.inner_text()
    assert re.search(r"VERDICT: (NO TORCH|NO CUDA DEVICE|OK|PROBLEM)", text)
    # the code is collapsed under its verdict; one click shows it
    cell = page.locator(".jp-Notebook .jp-CodeCell").filter(has_text="VERDICT:")
    assert cell.count() == 1
    page.screenshot(path=str(output_dir / "verify-cuda.png"))
    cell.locator(".jp-InputPlaceholder").click()
    cell.get_by_text("_gpuspawner_verify_cuda").first.wait_for()

    # the notebook toolbar has the command too
    toolbar = page.locator(".jp-NotebookPanel-toolbar")
    assert toolbar.get_by_role("button", name=re.compile("Verify CUDA")).count() == 1


def test_verify_cuda_inserts_below_active_cell(page, lab, output_dir):
    """From the notebook toolbar: the verify cell goes right below the active cell."""
    page.get_by_role("button", name=re.compile(r"Show the GPU panel")).wait_for()
    page.keyboard.press("Control+Shift+L")
    page.locator(".jp-Launcher").get_by_text("Python 3").first.click()
    editor = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    editor.click()
    page.keyboard.type("print('first cell')")
    toolbar = page.locator(".jp-NotebookPanel-toolbar:visible")
    toolbar.get_by_role("button", name=re.compile("Verify CUDA")).click()
    page.locator(".jp-OutputArea-output").filter(has_text="VERDICT:").wait_for(timeout=90_000)
    cells = page.locator(".jp-Notebook .jp-Cell")
    assert cells.count() == 2
    assert "first cell" in cells.nth(0).inner_text()
    assert "VERDICT:" in cells.nth(1).inner_text()


def test_dark_theme(page, lab, output_dir):
    """The panel stays readable in the dark theme (look at the screenshot)."""
    page.get_by_role("button", name=re.compile(r"Show the GPU panel")).click()
    page.keyboard.press("Control+Shift+C")
    _palette(page).fill("JupyterLab Dark")
    page.keyboard.press("Enter")
    page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
    page.locator("#jupyterlab-splash").wait_for(state="detached")
    page.get_by_role("region", name="GPU status").wait_for()
    page.screenshot(path=str(output_dir / "panel-dark.png"))


def test_settings_hide_the_status_item(browser, lab):
    """showStatusItem=false (through the settings REST API, as the Settings Editor saves it)."""
    path = "lab/api/settings/gpuspawner:plugin"
    status, _ = lab.request("PUT", path, json.dumps({"raw": '{"showStatusItem": false}'}).encode())
    assert status == 204
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto("%slab/workspaces/settings?reset&token=%s" % (lab.url, lab.token))
        page.locator(".jp-StatusBar-Widget").first.wait_for()
        page.locator("#jupyterlab-splash").wait_for(state="detached")
        # the panel is still there, and once it shows a snapshot the status bar has been updated
        page.get_by_role("tab", name=re.compile("GPUs")).click()
        panel = page.get_by_role("region", name="GPU status")
        panel.locator(".jp-gpuspawner-nogpu, .jp-gpuspawner-card").first.wait_for()
        assert page.get_by_role("button", name=re.compile(r"Show the GPU panel")).count() == 0
    finally:
        context.close()
        lab.request("PUT", path, json.dumps({"raw": "{}"}).encode())


DEADLINE_IN = timedelta(minutes=4)
DEADLINE_REASON = (
    "GPU-hour budget: 0.1 of 10 GPU-hours left this week (group 'students');"
    " it resets on Monday 30 November 2026 at 00:00 UTC."
)
BROWSER_ZONE = "Europe/Berlin"


def shown_time(moment: datetime) -> str:
    """How the extension writes a time in the browser's zone: "14:32", or "Wed 00:03" when
    it is not today there (a deadline a few minutes after midnight)."""
    zone = ZoneInfo(BROWSER_ZONE)
    at = moment.astimezone(zone)
    return at.strftime("%a %H:%M" if at.date() != datetime.now(zone).date() else "%H:%M")


@pytest.fixture(scope="module")
def deadline_lab(tmp_path_factory):
    """A JupyterLab the hub told that it stops a few minutes from now."""
    if not labextension_built():
        pytest.fail("the labextension is not built: run scripts/setup-lab.sh first")
    deadline = (datetime.now(timezone.utc) + DEADLINE_IN).replace(microsecond=0)
    server = start_lab(tmp_path_factory.mktemp("deadline-lab"), env={
        "GPUSPAWNER_GPU_DEADLINE": deadline.isoformat(),
        "GPUSPAWNER_GPU_DEADLINE_REASON": DEADLINE_REASON,
    })
    yield server, deadline
    server.stop()


def test_deadline_warning(browser, deadline_lab, output_dir):
    """Within the lead time: the status item warns, the panel has a banner, one notification."""
    lab, deadline = deadline_lab
    local = shown_time(deadline)
    context = browser.new_context(viewport={"width": 1400, "height": 900}, timezone_id=BROWSER_ZONE)
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto("%slab/workspaces/deadline?reset&token=%s" % (lab.url, lab.token))
        status_item = page.get_by_role("button", name=re.compile(r"Show the GPU panel"))
        expect(status_item).to_have_text(re.compile(r" · stops %s$" % local))
        expect(status_item).to_have_class(re.compile(r"\bjp-mod-warning\b"))

        toast = page.get_by_role("alert").filter(has_text="save your work before then")
        expect(toast).to_have_count(1)
        expect(toast).to_have_text(re.compile(
            r"^This server stops at %s \(in [34] min\) – GPU-hour budget\. "
            r"Your workspace is kept;" % local))

        status_item.click()
        panel = page.get_by_role("region", name="GPU status")
        banner = panel.get_by_role("alert", name="Server stop time")
        expect(banner).to_contain_text("This server stops at %s" % local)
        expect(banner).to_contain_text(DEADLINE_REASON)
        expect(banner).to_contain_text("your workspace is kept")
        page.screenshot(path=str(output_dir / "deadline.png"))
        page.keyboard.press("Control+Shift+C")
        _palette(page).fill("JupyterLab Dark")
        page.keyboard.press("Enter")
        page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
        page.locator("#jupyterlab-splash").wait_for(state="detached")
        banner.wait_for()
        page.screenshot(path=str(output_dir / "deadline-dark.png"))

        # later polls (showing the panel again polls at once) do not repeat the notification
        tab = page.get_by_role("tab", name=re.compile("GPUs"))
        tab.click()
        tab.click()
        banner.wait_for()
        page.wait_for_timeout(1_000)
        expect(toast).to_have_count(1)
    finally:
        context.close()


HIDDEN_UUID = "GPU-aaaa1111-0000-4000-8000-000000000000"


@pytest.fixture(scope="module")
def hidden_gpu_lab(tmp_path_factory):
    """A JupyterLab the hub gave a GPU that it cannot see: what a server in runtime-env mode on
    an engine without the NVIDIA runtime gets (the GPU variables, no driver in the container;
    this machine has none either). The deadline banner counts its GPU budget as well."""
    if not labextension_built():
        pytest.fail("the labextension is not built: run scripts/setup-lab.sh first")
    deadline = (datetime.now(timezone.utc) + timedelta(hours=3)).replace(microsecond=0)
    server = start_lab(tmp_path_factory.mktemp("hidden-gpu-lab"), env={
        "GPU_LIMIT": "1",
        "GPUSPAWNER_GPU_UUIDS": HIDDEN_UUID,
        "NVIDIA_VISIBLE_DEVICES": HIDDEN_UUID,
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
        "GPUSPAWNER_GPU_DEADLINE": deadline.isoformat(),
        "GPUSPAWNER_GPU_DEADLINE_REASON": DEADLINE_REASON,
    })
    yield server
    server.stop()


@needs_no_driver
def test_a_gpu_allocated_but_not_visible_is_said_so(browser, hidden_gpu_lab, output_dir):
    """Not "No GPU … start it again with a GPU": the GPU is allocated (it counts), not visible
    here, and the panel says why."""
    lab = hidden_gpu_lab
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto("%slab/workspaces/hidden-gpu?reset&token=%s" % (lab.url, lab.token))
        status_item = page.get_by_role("button", name=re.compile(r"Show the GPU panel"))
        expect(status_item).to_have_text("GPU not visible")
        expect(status_item).to_have_class(re.compile(r"\bjp-mod-warning\b"))
        status_item.click()
        panel = page.get_by_role("region", name="GPU status")
        box = panel.get_by_role("status")
        expect(box).to_contain_text("GPU allocated, not visible")
        expect(box).to_contain_text(
            "The hub allocated %s to this server, but it is not visible here: no NVIDIA driver"
            " was found here" % HIDDEN_UUID)
        expect(box).to_contain_text('gpu_mode "runtime-env" needs the engine\'s default runtime')
        expect(box).to_contain_text("counts this GPU as this server's")
        expect(box).not_to_contain_text("start it again with a GPU")
        expect(box).not_to_contain_text("No GPU")
        expect(panel.get_by_role("note", name="Server stop time")).to_contain_text(
            DEADLINE_REASON)
        page.screenshot(path=str(output_dir / "panel-gpu-not-visible.png"))
    finally:
        context.close()
