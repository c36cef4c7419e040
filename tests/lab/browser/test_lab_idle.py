"""The warning before the hub's GPU-idle cull, and the budget line with the usage page's
link, in JupyterLab in Chromium. The server's GPU is a simulated NVML device
(tools/gpuhost, scripts/setup-gpuhost.sh) whose utilisation the test sets."""

from __future__ import annotations

import json
import re
import secrets
import sys
from pathlib import Path

import pytest
from lab_server import labextension_built, start_lab
from playwright.sync_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools" / "gpuhost"))
import simstate  # noqa: E402

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def idle_lab(tmp_path_factory):
    """A JupyterLab with one idle GPU, told that the hub culls it after 320 s of no GPU use
    and warns 300 s before: the warning is due about 20 s after the server starts."""
    if not labextension_built():
        pytest.fail("the labextension is not built: run scripts/setup-lab.sh first")
    try:
        simstate.lib_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    name = "idle-%s" % secrets.token_hex(4)
    host = simstate.SimHost.create(name, simstate.default_inventory(name, count=1, mig_index=None))
    uuid = host.gpus[0].uuid
    host.update(uuid, util_gpu=0)
    server = start_lab(tmp_path_factory.mktemp("idle-lab"), env={
        **host.env(),
        "NVIDIA_VISIBLE_DEVICES": uuid, "GPUSPAWNER_GPU_UUIDS": uuid, "GPU_LIMIT": "1",
        "GPUSPAWNER_GPU_IDLE_TIMEOUT": "320", "GPUSPAWNER_GPU_IDLE_THRESHOLD": "5",
        "GPUSPAWNER_GPU_IDLE_WARNING": "300",
        "GPUSPAWNER_BUDGET_HOURS": "10", "GPUSPAWNER_BUDGET_USED_HOURS": "2.5",
        "GPUSPAWNER_BUDGET_PERIOD": "week",
        "GPUSPAWNER_USAGE_URL": "/services/gpu-admin/users/tester",
    })  # fmt: skip
    yield server, host, uuid
    server.stop()
    host.remove()


def test_idle_gpu_warning_and_the_budget_line(browser, idle_lab, output_dir):
    lab, host, uuid = idle_lab
    status, body = lab.get("gpuspawner/api/gpus")
    snapshot = json.loads(body)
    assert status == 200 and snapshot["available"], snapshot
    assert snapshot["budget"]["text"] == "7.5 of 10 GPU-hours left this week (at start)"
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto("%slab/workspaces/idle?reset&token=%s" % (lab.url, lab.token))
        status_item = page.get_by_role("button", name=re.compile(r"Show the GPU panel"))
        expect(status_item).to_have_text(re.compile(r"^GPU 0%"), timeout=60_000)
        status_item.click()
        panel = page.get_by_role("region", name="GPU status")
        budget = panel.get_by_role("note", name="GPU-hour budget")
        expect(budget).to_contain_text("7.5 of 10 GPU-hours left this week (at start)")
        link = budget.get_by_role("link", name="My GPU usage")
        expect(link).to_have_attribute("href", "/services/gpu-admin/users/tester")

        toast = page.get_by_role("alert").filter(has_text="No GPU use for")
        expect(toast).to_have_count(1, timeout=60_000)
        expect(toast).to_contain_text(re.compile(
            r"No GPU use for \d+ min: this server stops in [45] min unless the GPU is used;"
            r" your workspace is kept\."))
        page.wait_for_timeout(1_000)  # the toast has slid in
        page.screenshot(path=str(output_dir / "gpu-idle-warning.png"))

        # the GPU used again: the warning goes
        host.update(uuid, util_gpu=80)
        expect(toast).to_have_count(0, timeout=30_000)
        expect(status_item).to_have_text(re.compile(r"^GPU 80%"), timeout=30_000)
    finally:
        context.close()
