"""REST routes of the GPU status extension, all under ``<base_url>/gpuspawner/``.

Every verb is ``@tornado.web.authenticated``: nothing here answers without
the server's token or the hub's login cookie.
"""

from __future__ import annotations

import json

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from . import metrics
from .sampler import GpuSampler
from .verify import cell_source

SETTINGS_KEY = "gpuspawner_sampler"


class _SamplerHandler(APIHandler):
    """Base for the routes that read the shared sampler."""

    @property
    def sampler(self) -> GpuSampler:
        return self.settings[SETTINGS_KEY]

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")


class GpusHandler(_SamplerHandler):
    """``GET gpuspawner/api/gpus``: the latest snapshot of this server's GPUs."""

    @tornado.web.authenticated
    async def get(self) -> None:
        self.finish(await self.sampler.snapshot_json())


class HistoryHandler(_SamplerHandler):
    """``GET gpuspawner/api/history``: recent samples per GPU for the charts."""

    @tornado.web.authenticated
    async def get(self) -> None:
        await self.sampler.snapshot()  # starts the sampler if it was idle
        self.finish(json.dumps(self.sampler.history()))


class VerifyCodeHandler(APIHandler):
    """``GET gpuspawner/api/verify-code``: the "Verify CUDA" cell's source."""

    @tornado.web.authenticated
    def get(self) -> None:
        self.finish(json.dumps({"code": cell_source()}))


class MetricsHandler(_SamplerHandler):
    """``GET gpuspawner/metrics``: the snapshot in Prometheus text format."""

    @tornado.web.authenticated
    async def get(self) -> None:
        snapshot = await self.sampler.snapshot()
        text = metrics.render(snapshot, self.sampler.samples, self.sampler.last_cost)
        self.finish(text, set_content_type=metrics.CONTENT_TYPE)


ROUTES = [
    (("api", "gpus"), GpusHandler),
    (("api", "history"), HistoryHandler),
    (("api", "verify-code"), VerifyCodeHandler),
    (("metrics",), MetricsHandler),
]


def setup_handlers(web_app: tornado.web.Application, sampler: GpuSampler) -> list[str]:
    """Add the routes under ``<base_url>/gpuspawner/``; return their patterns."""
    base_url = web_app.settings.get("base_url", "/")
    web_app.settings[SETTINGS_KEY] = sampler
    patterns = [url_path_join(base_url, "gpuspawner", *parts) for parts, _ in ROUTES]
    web_app.add_handlers(".*$", [(p, h) for p, (_, h) in zip(patterns, ROUTES, strict=True)])
    return patterns
