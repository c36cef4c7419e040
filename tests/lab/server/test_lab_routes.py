"""The server extension's routes in a real Jupyter server (pytest-jupyter's jp_fetch)."""

from __future__ import annotations

import json

import pytest
from lab_helpers import HUB_GAVE_NO_GPU, HUB_SET_A_DEADLINE, needs_no_driver

from gpuspawner.lab.handlers import ROUTES
from gpuspawner.lab.verify import cell_source

PATHS = [("gpuspawner", *parts) for parts, _ in ROUTES]


@pytest.mark.parametrize("path", PATHS, ids=["/".join(p) for p in PATHS])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_no_route_answers_without_a_token(fetch, sampler, path, method):
    body = b"{}" if method in ("POST", "PUT") else None
    response = fetch(*path, method=method, body=body, headers={"Authorization": ""})
    assert response.code in (302, 401, 403, 405), response.code
    if response.code == 302:
        assert "/login" in response.headers["Location"]
    text = response.body.decode()
    assert "gpuspawner_" not in text and "available" not in text and "VERDICT" not in text
    assert sampler.samples == 0  # nothing was sampled for a stranger


@pytest.mark.parametrize("path", PATHS, ids=["/".join(p) for p in PATHS])
def test_a_wrong_token_is_refused(fetch, path):
    response = fetch(*path, headers={"Authorization": "token not-the-token"})
    assert response.code in (302, 401, 403)


def test_routes_live_under_the_base_url(fetch, jp_base_url, jp_serverapp):
    assert jp_base_url != "/"  # pytest-jupyter serves under /a%40b/, like a hub's /user/<name>/
    for path in PATHS:
        response = fetch(*path)
        assert response.code == 200, path
        assert response.effective_url.split("?")[0].endswith("/".join(path))
        assert jp_base_url.rstrip("/") in response.effective_url


@needs_no_driver
def test_gpus_says_why_there_is_no_gpu_here(fetch):
    response = fetch("gpuspawner", "api", "gpus")
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    snapshot = json.loads(response.body)
    assert snapshot["available"] is False and snapshot["gpus"] == []
    assert "No NVIDIA driver" in snapshot["reason"]


@pytest.mark.parametrize("gpu_environ", [HUB_GAVE_NO_GPU], indirect=True)
def test_gpus_with_gpu_limit_zero_shows_the_hubs_reason(gpu_environ, fetch):
    snapshot = json.loads(fetch("gpuspawner", "api", "gpus").body)
    assert snapshot["available"] is False
    assert snapshot["reason"] == "No GPU was requested for this server."
    assert snapshot["gpu_limit"] == 0


def test_one_sampler_serves_all_requests(fetch, sampler):
    for _ in range(10):
        assert fetch("gpuspawner", "api", "gpus").code == 200
    assert sampler.running
    assert sampler.samples <= 3


def test_history(fetch):
    history = json.loads(fetch("gpuspawner", "api", "history").body)
    assert history["interval"] == 0.2
    assert isinstance(history["gpus"], dict)


def test_verify_code_is_the_packaged_cell(fetch):
    reply = json.loads(fetch("gpuspawner", "api", "verify-code").body)
    assert reply["code"] == cell_source()
    compile(reply["code"], "<verify-cuda>", "exec")


def test_metrics_is_prometheus_text(fetch):
    response = fetch("gpuspawner", "metrics")
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.body.decode()
    assert "# TYPE gpuspawner_gpu_available gauge" in text
    assert "gpuspawner_sampler_samples_total" in text


@pytest.mark.parametrize("gpu_environ", [HUB_SET_A_DEADLINE], indirect=True)
def test_gpus_carries_the_hubs_deadline(gpu_environ, fetch):
    snapshot = json.loads(fetch("gpuspawner", "api", "gpus").body)
    assert snapshot["deadline"] == {
        "at": "2026-11-25T14:32:00+00:00",
        "reason": "GPU servers stop after 8 h.",
    }


def test_gpus_without_a_deadline(fetch):
    assert json.loads(fetch("gpuspawner", "api", "gpus").body)["deadline"] is None
