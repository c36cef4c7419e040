"""Fixtures for the browser tests: a real JupyterLab and Debian's Chromium via Playwright."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lab_server import REPO, LabServer, labextension_built, start_lab  # noqa: E402

from gpuspawner.testing.browser import chromium  # noqa: E402



@pytest.fixture(scope="session")
def output_dir() -> Path:
    """Where screenshots go: $GPUSPAWNER_TEST_OUTPUT/lab, or test-output/lab in the repo."""
    base = Path(os.environ.get("GPUSPAWNER_TEST_OUTPUT", REPO / "test-output"))
    path = base / "lab"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> LabServer:
    if not labextension_built():
        pytest.fail("the labextension is not built: run scripts/setup-lab.sh first")
    server = start_lab(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture
def page(browser, lab, request):
    """A fresh browser context on a workspace of this test's own, reset."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    workspace = request.node.name.replace("_", "-")
    page.goto("%slab/workspaces/%s?reset&token=%s" % (lab.url, workspace, lab.token))
    yield page
    context.close()
