"""pytest-jupyter's server fixtures, for the tests in this folder only.

pytest refuses ``pytest_plugins`` outside the rootdir's conftest, and the
plugin's autouse fixtures and collection hooks must not reach the rest of the
suite (which runs pytest-asyncio), so its fixtures are bound here by name.
The tests are plain functions that drive ``jp_fetch`` on the plugin's loop.
"""

from __future__ import annotations

import pytest
from lab_helpers import GPU_VARIABLES
from pytest_jupyter import jupyter_core, jupyter_server, pytest_tornasync

_PLUGIN_FIXTURES = (
    "echo_kernel_spec", "io_loop", "http_server", "http_server_port", "http_server_client",
)
for _module in (jupyter_core, pytest_tornasync, jupyter_server):
    for _name in dir(_module):
        if _name.startswith("jp_") or _name in _PLUGIN_FIXTURES:
            globals()[_name] = getattr(_module, _name)


@pytest.fixture
def gpu_environ(request, monkeypatch):
    """The GPU variables the server starts with: none, or (indirect parametrize) a dict of them."""
    for name in GPU_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in getattr(request, "param", {}).items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def jp_server_config(gpu_environ):
    return {
        "ServerApp": {"jpserver_extensions": {"gpuspawner.lab": True}},
        "GpuSampler": {"interval": 0.2, "idle_timeout": 5.0},
    }


@pytest.fixture
def sampler(jp_serverapp):
    """The server's one GpuSampler; its thread is stopped after the test."""
    sampler = jp_serverapp.web_app.settings["gpuspawner_sampler"]
    yield sampler
    sampler.stop()


@pytest.fixture
def fetch(jp_fetch, jp_asyncio_loop, sampler):
    """``jp_fetch`` run to completion; errors come back as responses, redirects unfollowed."""

    def call(*parts, **kwargs):
        kwargs.setdefault("raise_error", False)
        kwargs.setdefault("follow_redirects", False)
        return jp_asyncio_loop.run_until_complete(jp_fetch(*parts, **kwargs))

    return call
