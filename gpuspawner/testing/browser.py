"""Debian's Chromium through Playwright, for the tests that look at what a person sees.

``scripts/setup-lab.sh`` installs both (never ``playwright install``, which downloads a
browser). Under the test command (``GPUSPAWNER_REQUIRE_DOCKER=1``) a missing browser fails
the test; elsewhere it skips it.
"""

from __future__ import annotations

import contextlib
import os

import pytest

CHROMIUM = os.environ.get("GPUSPAWNER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 900}


def require_chromium():
    """Playwright's sync API; without it or Chromium the test is skipped (failed under the
    test command) with a sentence saying which is missing."""
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
    if sync_api is None or not os.path.exists(CHROMIUM):
        message = "needs Playwright and Chromium at %s (scripts/setup-lab.sh installs them)" % (
            CHROMIUM
        )
        if os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return sync_api


@contextlib.contextmanager
def chromium():
    """A headless Chromium, closed afterwards."""
    sync_api = require_chromium()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def hub_page(browser, hub, user: str, path: str | None = None, *, password: str = "x"):
    """A fresh browser context logged in to ``hub`` as ``user``, at ``path`` if given.

    Returns ``(context, page)``; closing the context logs the page out.
    """
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(hub.url + "/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    page.click("#login_submit")
    page.wait_for_load_state()
    if path is not None:
        page.goto(hub.url + path)
    return context, page
