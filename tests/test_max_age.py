"""Maximum age (``gpu_max_age``) on both backends, through a real hub and its admin service.

A server holding GPUs for longer than ``gpu_max_age`` is stopped by the admin service, however
busy, with the reason in the ledger and a notice; a server without GPUs is never stopped for
its age. The server is told its deadline at start (GPUSPAWNER_GPU_DEADLINE). Docker: a real
container on the real engine (tests/hub_config.py); Kubernetes: a pod on the real node
(tests/kube_hub_config.py, tests/kube_node.py).
"""

from datetime import datetime, timedelta

import pytest

from gpuspawner.usage.ledger import Ledger
import test_kube_node
import test_kube_service
from test_kube_service import node_hub, pods_of
from test_usage_hub import is_stopped, service_hub, wait_for

MAX_AGE = 8  # seconds
real_node = test_kube_node.node_cluster  # the real node, a module fixture here too
kube_hubs = test_kube_service.make_hub  # Kubernetes hubs, stopped after each test


def deadline_of(env: dict[str, str]) -> tuple[datetime, str]:
    return datetime.fromisoformat(env["GPUSPAWNER_GPU_DEADLINE"]), env[
        "GPUSPAWNER_GPU_DEADLINE_REASON"
    ]


def mine(hub, user: str) -> dict:
    """Docker filters for ``user``'s containers of this test's hub (the engine is shared)."""
    return {"label": "gpuspawner.user=" + user, "name": hub.settings["prefix"]}


def check_stopped_for_age(ledger_url: str, user: str) -> None:
    """The ledger says why, and the server held its GPU at least the maximum age."""
    ledger = Ledger(ledger_url)
    try:
        (row,) = ledger.rows(user=user)
        assert row.end_reason == "max-age" and row.ended is not None
        assert row.ended - row.started >= timedelta(seconds=MAX_AGE)
        (notice,) = ledger.notices(kind="max-age")
        assert notice["user"] == user
        assert notice["message"].startswith("Stopped %s's server '': it held GPUs for " % user)
        assert notice["message"].endswith(", the maximum is %d s (gpu_max_age)." % MAX_AGE)
        assert ledger.notices(kind="budget-spent") == ledger.notices(kind="gpu-idle") == []
    finally:
        ledger.dispose()


@pytest.mark.docker
def test_docker_server_holding_gpus_is_stopped_at_its_maximum_age(
    hub_factory, docker_client, tmp_path
):
    hub = service_hub(hub_factory, tmp_path, gpu_max_age=MAX_AGE, admin_check_interval=1)
    hub.create_user("cpu", groups=("staff",))
    assert hub.spawn("cpu", options={"gpus": 0}).status_code in (201, 202)
    hub.wait_ready("cpu")
    hub.create_user("old", groups=("staff",))  # no budget: only its age can stop it
    assert hub.spawn("old", options={"gpus": 1}).status_code in (201, 202)
    (container,) = docker_client.containers.list(filters=mine(hub, "old"))
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    created = datetime.fromisoformat(container.attrs["Created"][:26] + "+00:00")
    deadline, reason = deadline_of(env)
    assert reason.startswith("GPU servers stop after"), reason
    assert abs((deadline - created).total_seconds() - MAX_AGE) < 5

    # not waited for as ready: the service may stop it at the first pass that sees it ready
    wait_for(lambda: is_stopped(hub, "old"), timeout=60, what="the old server to be stopped")
    assert not docker_client.containers.list(filters=mine(hub, "old"))
    check_stopped_for_age(hub.settings["usage_db_url"], "old")
    assert hub.server_model("cpu")["ready"]  # no GPU: never stopped for its age
    (cpu_container,) = docker_client.containers.list(filters=mine(hub, "cpu"))
    assert "GPUSPAWNER_GPU_DEADLINE" not in str(cpu_container.attrs["Config"]["Env"])


@pytest.mark.kubernetes
def test_kubernetes_pod_holding_gpus_is_stopped_at_its_maximum_age(
    real_node, kube_hubs, test_image
):
    cluster = real_node[0]
    hub = node_hub(kube_hubs, real_node, test_image, gpu_max_age=MAX_AGE)
    for user, gpus in (("cpu", 0), ("old", 1)):
        hub.create_user(user)
        assert hub.spawn(user, options={"image": "demo", "gpus": gpus}).status_code in (201, 202)
    (pod,) = wait_for(lambda: pods_of(cluster, hub.namespace, "old"), what="old's pod")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    created = datetime.fromisoformat(pod["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    deadline, reason = deadline_of(env)
    assert reason.startswith("GPU servers stop after"), reason
    assert abs((deadline - created).total_seconds() - MAX_AGE) < 5
    hub.wait_ready("cpu", timeout=180)

    # not waited for as ready: the service may stop it at the first pass that sees it ready
    wait_for(lambda: is_stopped(hub, "old"), timeout=180, what="the old server to be stopped")
    wait_for(lambda: not pods_of(cluster, hub.namespace, "old"), what="old's pod to go")
    check_stopped_for_age(hub.settings["usage_db_url"], "old")
    assert hub.server_model("cpu")["ready"]
    hub.stop_server("cpu")
