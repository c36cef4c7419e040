"""The admin side of a Kubernetes hub, through a real hub process on the real control plane.

The hub is a JupyterHub process with KubeGPUSpawner (tests/kube_hub_config.py) and the admin
service added with ``add_admin_service(c)``, no spawner class given. On kwok's nodes
(gpuspawner.testing.kube_cluster) a pod is Running but runs nothing, so its server stays
pending for as long as the hub's http_timeout: enough for the dashboard, its JSON and CSV,
the metrics, the spawn form and the progress stream. What needs a server that answers (budget
enforcement stops only ready servers; a hub restart checks its servers) runs on the real node
(tests/kube_node.py), under the node's lock.
"""

import json
import os
import re
import secrets
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import kube_node
import pytest
import requests
import test_kube_node
from test_usage_hub import screenshot_dashboard
from traitlets.config import Config

from gpuspawner.errors import ConfigError
from gpuspawner.kube.holdings import gpu_totals, gpu_type, holdings_from_pods, node_products
from gpuspawner.policy.budget import Interval, gpu_weight
from gpuspawner.service import (
    AdminSettings,
    StandInUser,
    add_admin_service,
    backend_config,
    hub_spawner_class,
    settings_of,
)
from gpuspawner.service.__main__ import listen_address
from gpuspawner.service.engine import EngineView
from gpuspawner.service.report import inventory_report
from gpuspawner.testing import kube_cluster
from gpuspawner.testing.hubprocess import Hub, free_port, hub_settings, is_stopped, wait_for
from gpuspawner.usage.ledger import Ledger

real_node = test_kube_node.node_cluster  # the real node, a module fixture here too

REQUIRE = os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1"
HUB_CONFIG = Path(__file__).with_name("kube_hub_config.py")
SERVICE = "/services/gpu-admin/"
A100 = kube_cluster.A100
A100_MIG = A100 + " MIG 1g.10gb"  # the MIG node's slices, as NVML names them
KWOK_IMAGES = {
    "demo": {"image": "gpuspawner/singleuser:offline", "display_name": "Demo"},
    "demo-mig": {"image": "gpuspawner/singleuser:offline", "display_name": "Demo on a MIG slice"},
}


# --- what the service makes of the hub's config and the backend's answers (no I/O) ---

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


def interval(user, server, uuid, name=A100, start=T0, end=None):
    return Interval(user, server, uuid, name, start, end)


def test_inventory_where_the_engine_picks_the_devices():
    held = [
        interval("zoe", "", "jupyter-zoe/nvidia.com/gpu#0"),
        interval("ann", "train", "jupyter-ann--train/nvidia.com/gpu#1"),
        interval("ann", "train", "jupyter-ann--train/nvidia.com/gpu#0"),
        interval("mia", "", "jupyter-mia/nvidia.com/mig-1g.10gb#0", name="nvidia.com/mig-1g.10gb"),
    ]
    rows = inventory_report(None, held, totals={A100: 4, "NVIDIA-L4": 2})
    assert [(r["uuid"], r["name"], r["user"], r["server"]) for r in rows] == [
        ("jupyter-ann--train/nvidia.com/gpu#0", A100, "ann", "train"),
        ("jupyter-ann--train/nvidia.com/gpu#1", A100, "ann", "train"),
        ("jupyter-zoe/nvidia.com/gpu#0", A100, "zoe", ""),
        # held, of a type the nodes do not report: shown, and counted nowhere else
        ("jupyter-mia/nvidia.com/mig-1g.10gb#0", "nvidia.com/mig-1g.10gb", "mia", ""),
        (None, A100, None, None),  # 4 A100s, 3 held: one free, without a UUID
        (None, "NVIDIA-L4", None, None),
        (None, "NVIDIA-L4", None, None),
    ]
    assert rows[0]["since"] == T0.isoformat() and rows[-1]["since"] is None
    assert not any(r["lost"] for r in rows)
    # more held than the nodes report (a node went away): none free, never a negative count
    assert len(inventory_report(None, held, totals={A100: 1})) == 4
    # totals unknown (the hub may not list nodes): what is held
    assert [r["user"] for r in inventory_report(None, held)] == ["ann", "ann", "zoe", "mia"]
    assert inventory_report(None, [], totals={}) == []


def test_inventory_of_named_gpus_is_one_row_per_gpu():
    named = [{"uuid": "GPU-a", "name": A100}, {"uuid": "GPU-b", "name": A100}]
    rows = inventory_report(named, [interval("ann", "", "GPU-b")], lost={"GPU-a"})
    assert [(r["uuid"], r["user"], r["lost"]) for r in rows] == [
        ("GPU-a", None, True),
        ("GPU-b", "ann", False),
    ]
    # totals play no part where the hub names its GPUs
    assert inventory_report(named, [], totals={A100: 8}) == inventory_report(named, [])


def test_a_mig_slice_is_a_type_of_its_own():
    assert gpu_type(A100, "nvidia.com/gpu") == A100
    assert gpu_type(A100, "nvidia.com/mig-1g.10gb") == A100_MIG
    assert gpu_type(A100, "nvidia.com/mig-3g.40gb") == A100 + " MIG 3g.40gb"
    assert gpu_type(None, "nvidia.com/mig-1g.10gb") == "nvidia.com/mig-1g.10gb"
    assert gpu_type("", "nvidia.com/gpu") == "nvidia.com/gpu"
    labels = {"nvidia.com/gpu.product": A100}
    nodes = [
        {"metadata": {"name": "a100-0", "labels": labels},
         "status": {"allocatable": {"nvidia.com/gpu": "8"}}},
        {"metadata": {"name": "mig-0", "labels": labels},
         "status": {"allocatable": {"nvidia.com/mig-1g.10gb": "7", "nvidia.com/gpu": "0"}}},
    ]  # fmt: skip
    assert gpu_totals(nodes) == {A100: 8, A100_MIG: 7}
    pod = {
        "metadata": {
            "name": "jupyter-mia",
            "labels": {"gpuspawner.io/gpus": "1"},
            "annotations": {
                "hub.jupyter.org/username": "mia",
                "gpuspawner.io/gpu-resource": "nvidia.com/mig-1g.10gb",
            },
        },
        "spec": {"nodeName": "mig-0"},
        "status": {"phase": "Running"},
    }
    (held,) = holdings_from_pods([pod], node_products(nodes))
    assert [(gpu.name, gpu.resource) for gpu in held.gpus] == [(A100_MIG, "nvidia.com/mig-1g.10gb")]
    # weights: the longest matching key wins, so a slice may cost less than its GPU
    weights = {"A100": 2.0, "MIG 1g.10gb": 0.25}
    assert gpu_weight(A100, weights) == 2.0 and gpu_weight(A100_MIG, weights) == 0.25


def test_the_service_takes_the_hubs_spawner_class():
    from gpuspawner.docker import GPUDockerSpawner
    from gpuspawner.kube import KubeGPUSpawner

    def configured(value):
        config = Config()
        if value is not None:
            config.JupyterHub.spawner_class = value
        return config

    assert hub_spawner_class(configured("gpu-kubernetes")) is KubeGPUSpawner
    assert hub_spawner_class(configured("GPU-Docker")) is GPUDockerSpawner
    assert hub_spawner_class(configured("gpuspawner.kube.KubeGPUSpawner")) is KubeGPUSpawner
    assert hub_spawner_class(configured(KubeGPUSpawner)) is KubeGPUSpawner
    # an explicit class wins over the hub's
    assert hub_spawner_class(configured("gpu-docker"), KubeGPUSpawner) is KubeGPUSpawner
    with pytest.raises(ConfigError, match="set c.JupyterHub.spawner_class"):
        hub_spawner_class(configured(None))
    with pytest.raises(ConfigError, match="works with gpuspawner's spawners"):
        hub_spawner_class(configured("jupyterhub.spawner.LocalProcessSpawner"))


def test_the_backend_config_the_service_gets_is_json_without_hooks_or_secrets():
    from gpuspawner.docker import GPUDockerSpawner

    config = Config()
    config.JupyterHub.spawner_class = "gpu-docker"
    config.JupyterHub.admin_users = {"boss"}
    config.Spawner.env_keep.append("GPUSPAWNER_EXTRA")  # built up: the resolved list
    config.Spawner.pre_spawn_hook = lambda spawner: None  # a hook: left out
    config.DockerSpawner.extra_create_kwargs = {"labels": {"x": "y"}}
    config.GPUDockerSpawner.images = {"demo": {"image": "org/demo:1"}}
    config.GPUDockerSpawner.inventory = [{"uuid": "GPU-a", "name": A100}]
    config.GPUDockerSpawner.user_environment = {"ann": {"HF_TOKEN": "secret"}}
    config.GPUDockerSpawner.gpu_max_age = 3600
    spawner = GPUDockerSpawner(config=config, user=StandInUser())
    sections = backend_config(config, spawner)
    assert set(sections) == {"GPUDockerSpawner", "DockerSpawner", "Spawner"}  # no JupyterHub
    assert sections["Spawner"] == {"env_keep": list(spawner.env_keep)}
    assert "GPUSPAWNER_EXTRA" in sections["Spawner"]["env_keep"]
    assert sections["GPUDockerSpawner"] == {
        "images": {"demo": {"image": "org/demo:1"}},
        "inventory": [{"uuid": "GPU-a", "name": A100}],
        "gpu_max_age": 3600,
    }
    assert "secret" not in json.dumps(sections)
    settings = settings_of(spawner, config)
    again = AdminSettings(**json.loads(settings.to_json()))
    assert again.backend == "gpuspawner.docker.spawner.GPUDockerSpawner"
    assert again.gpu_max_age == 3600
    backend = again.build_backend()
    assert type(backend) is GPUDockerSpawner
    assert [gpu.uuid for gpu in backend.gpu_inventory()] == ["GPU-a"]
    assert EngineView(backend).namespace == ""  # containers: matched by GPU UUID


async def test_a_kubernetes_hub_config_gives_the_service_its_backend(tmp_path, monkeypatch):
    from gpuspawner.kube import KubeGPUSpawner

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "here",
            "clusters": [{"name": "here", "cluster": {"server": "https://127.0.0.1:9"}}],
            "users": [{"name": "hub", "user": {"token": "t"}}],
            "contexts": [{"name": "here", "context": {"cluster": "here", "user": "hub"}}],
        })
    )  # fmt: skip
    from kubernetes_asyncio.client import Configuration
    from kubernetes_asyncio.config import kube_config
    from kubespawner import clients

    monkeypatch.setattr(Configuration, "_default", Configuration._default)  # restored after
    monkeypatch.setattr(clients, "_client_cache", {})
    # kubernetes_asyncio reads KUBECONFIG once, at import; kubespawner loads the config once
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    clients.load_config.cache_clear()
    config = Config()
    config.JupyterHub.spawner_class = "gpu-kubernetes"
    config.JupyterHub.services = []
    config.JupyterHub.load_roles = []
    config.KubeGPUSpawner.images = {"demo": {"image": "org/demo:1"}}
    config.KubeGPUSpawner.gpu_hour_budget_groups = {"students": 10}
    add_admin_service(config, port=10199, check_interval=5)  # no spawner_class: the hub's
    add_admin_service(config, name="gpu-admin-z2jh", url="http://hub:10101")
    service, z2jh = config.JupyterHub.services
    assert service["url"] == "http://127.0.0.1:10199"
    # where the proxy is a pod of its own: a Service name, and the service listens on all
    assert z2jh["url"] == "http://hub:10101"
    assert [listen_address(host) for host in ("127.0.0.1", "::1", "localhost", "hub")] == [
        "127.0.0.1",
        "::1",
        "localhost",
        "",
    ]
    assert [role["services"] for role in config.JupyterHub.load_roles] == [
        ["gpu-admin"],
        ["gpu-admin-z2jh"],
    ]
    environment = service["environment"]
    assert environment["KUBECONFIG"] == str(kubeconfig)  # JupyterHub would not pass it on
    settings = AdminSettings(**json.loads(environment["GPUSPAWNER_ADMIN_SETTINGS"]))
    assert settings.backend == "gpuspawner.kube.spawner.KubeGPUSpawner"
    assert settings.gpu_hour_budget_groups == {"students": 10}
    assert settings.check_interval == 5
    view = EngineView.from_settings(settings)
    assert isinstance(view.backend, KubeGPUSpawner)
    assert view.inventory is None and view.named == ()  # the cluster picks the devices
    assert view.namespace == "default"  # the kubeconfig's: where the pods are
    # nothing answers at that address: unknown, said once in the log, never an error
    assert await view.totals() is None and view.totals_problem
    # a hub whose backend cannot be built in the service's process: held GPUs only, no error
    broken = AdminSettings(**dict(json.loads(settings.to_json()), backend="gpuspawner.nothing.X"))
    view = EngineView.from_settings(broken)
    assert view.backend is None and view.inventory is None and await view.totals() is None
    clients.load_config.cache_clear()  # the next spawner loads the real configuration


@pytest.fixture(scope="module")
def kwok_cluster(tmp_path_factory):
    missing = kube_cluster.missing_binaries()
    if missing:
        reason = "needs the control plane binaries %s: run `bash scripts/setup-kube.sh`" % (
            ", ".join(missing)
        )
        if REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = kube_cluster.start_cluster(tmp_path_factory.mktemp("kube-service") / "cluster")
    yield cluster
    cluster.stop()
    for name in ("kube-apiserver", "kube-scheduler"):
        print("---- %s ----\n%s" % (name, cluster.log_tail(name, 15)))


@pytest.fixture
def make_hub(tmp_path_factory):
    """Start Kubernetes hubs (a namespace each) on a given control plane; stopped afterwards."""
    hubs = []

    def make(cluster, hub_ip="127.0.0.1", images=KWOK_IMAGES, service=True, **overrides) -> Hub:
        namespace = "t-" + secrets.token_hex(3)
        cluster.kubectl("create", "namespace", namespace)
        cluster.wait_for(lambda: cluster._sa_ready(namespace), "the service account", 30)
        workdir = tmp_path_factory.mktemp("kube-hub")
        settings = dict(
            kubeconfig=str(cluster.kubeconfig),
            namespace=namespace,
            images=images,
            storage_class="none",
            storage_pvc_ensure=False,  # the workspace has tests of its own (test_kube_node)
            usage_db_url="sqlite:///%s" % (workdir / "usage.sqlite"),
            http_timeout=300,
            admin_users=["boss"],
        )
        if service:
            settings.update(
                admin_service_port=free_port(),
                admin_service_log=str(workdir / "service.log"),
                admin_check_interval=1,
            )
        settings.update(overrides)
        hub = Hub(workdir, hub_settings(workdir, hub_ip, **settings), config=HUB_CONFIG)
        hub.namespace, hub.cluster = namespace, cluster
        hubs.append(hub)
        hub.start(timeout=90)
        if service:
            wait_for(
                lambda: service_get(hub, "api/inventory").status_code == 200,
                what="the admin service",
            )
        return hub

    yield make
    for hub in hubs:
        hub.stop()
        print("---- hub %s ----\n%s" % (hub.namespace, hub.log_tail(80)))
        hub.cluster.kubectl("delete", "namespace", hub.namespace, "--wait=false", check=False)


def service_get(hub, path, **kwargs):
    return hub.session.get(hub.url + SERVICE + path, timeout=30, **kwargs)


def service_log(hub) -> str:
    path = Path(hub.settings["admin_service_log"])
    return path.read_text(errors="replace") if path.exists() else ""


def gpus_offered(cluster) -> dict[str, int]:
    """GPUs per resource on the cluster's nodes, from the API (not by the code under test)."""
    totals: dict[str, int] = {}
    for node in cluster.get_json("nodes")["items"]:
        for resource, value in node["status"].get("allocatable", {}).items():
            if resource.startswith("nvidia.com/"):
                totals[resource] = totals.get(resource, 0) + int(value)
    return totals


def pods_of(cluster, namespace: str, user: str) -> list[dict]:
    return [
        pod
        for pod in cluster.get_json("pods", "-n", namespace)["items"]
        if pod["metadata"].get("annotations", {}).get("hub.jupyter.org/username") == user
    ]


def gauge(text: str, name: str, **labels) -> float | None:
    """The value of one sample of a Prometheus text exposition, or None."""
    wanted = ",".join('%s="%s"' % item for item in sorted(labels.items()))
    for line in text.splitlines():
        found = re.fullmatch(r"%s\{([^}]*)\} (\S+)" % re.escape(name), line)
        if found and ",".join(sorted(found.group(1).split(","))) == wanted:
            return float(found.group(2))
    return None


@pytest.mark.kubernetes
def test_dashboard_json_csv_and_metrics_of_a_kubernetes_hub(kwok_cluster, make_hub):
    cluster = kwok_cluster
    hub = make_hub(cluster, gpu_hour_budget_groups={"students": 10})
    offered = gpus_offered(cluster)
    # two 8-GPU A100 nodes, and an A100 node's 7 MIG slices: a type of their own
    whole, slices = offered["nvidia.com/gpu"], offered["nvidia.com/mig-1g.10gb"]
    assert (whole, slices) == (16, 7)
    total = whole + slices
    hub.create_user("ann", groups=("students",))
    hub.create_user("boss")
    assert hub.spawn("ann", options={"image": "demo", "gpus": 1}).status_code in (201, 202)

    def ann_holds():
        rows = service_get(hub, "api/inventory").json()
        return rows if any(row["user"] == "ann" for row in rows) else None

    inventory = wait_for(ann_holds, what="ann's GPU on the dashboard's inventory")
    (pod,) = pods_of(cluster, hub.namespace, "ann")
    assert pod["status"]["phase"] == "Running"
    (held,) = [row for row in inventory if row["user"] is not None]
    assert (held["name"], held["user"], held["server"]) == (A100, "ann", "")
    assert held["uuid"].startswith(pod["metadata"]["name"] + "/nvidia.com/gpu")
    since = datetime.fromisoformat(held["since"])
    assert datetime.now(timezone.utc) - timedelta(minutes=5) < since <= datetime.now(timezone.utc)
    free = [row for row in inventory if row["user"] is None]
    # the cluster picks the devices: free GPUs are counted by type, without a UUID
    assert [(r["uuid"], r["name"]) for r in free] == [(None, A100)] * (whole - 1) + [
        (None, A100_MIG)
    ] * slices

    page = hub.login("boss").get(hub.url + SERVICE, timeout=30)
    assert page.status_code == 200
    assert "GPU inventory: 1 of %d held" % total in page.text
    assert "<td>%s</td><td>ann</td><td>default</td>" % A100 in page.text
    # ann is no admin (her login would follow her pending server: a token says the same)
    ann = {"Authorization": "token " + hub.user_token("ann")}
    assert requests.get(hub.url + SERVICE + "api/usage", headers=ann, timeout=30).status_code == 403
    own = requests.get(hub.url + SERVICE, headers=ann, timeout=30)  # her own usage page
    assert own.status_code == 200 and "GPU inventory" not in own.text
    assert "<td>default</td><td>%s</td>" % A100 in own.text

    screenshot_dashboard(hub, "gpu-admin-dashboard-kubernetes.png")
    usage = {u["user"]: u for u in service_get(hub, "api/usage").json()["users"]}
    assert usage["ann"]["group"] == "students" and usage["ann"]["budget_hours"] == 10
    assert usage["ann"]["gpu_servers"] == [""] and usage["ann"]["gpus_held"] == 1
    assert usage["ann"]["used_hours"] > 0

    # the service's metrics: the pass after the spawn counts the held GPU by its node's type
    wait_for(
        lambda: gauge(service_get(hub, "metrics").text, "gpuspawner_gpus_held", gpu_type=A100) == 1,
        what="gpuspawner_gpus_held in the service's metrics",
    )
    # the hub's own gauge, from the nodes and the pods
    hub_metrics = hub.session.get(hub.url + "/hub/metrics", timeout=30).text
    assert gauge(hub_metrics, "gpuspawner_gpus", gpu_type=A100, state="allocated") == 1
    assert gauge(hub_metrics, "gpuspawner_gpus", gpu_type=A100, state="free") == whole - 1
    assert gauge(hub_metrics, "gpuspawner_gpus", gpu_type=A100_MIG, state="free") == slices

    hub.stop_server("ann")
    today = datetime.now(timezone.utc).date().isoformat()
    csv_text = service_get(hub, "api/ledger.csv", params={"start": today, "end": today}).text
    (row,) = [line for line in csv_text.splitlines() if line.startswith("ann,")]
    assert row.startswith("ann,,%s,%s," % (held["uuid"], A100)) and row.endswith(",stopped")
    wait_for(lambda: not pods_of(cluster, hub.namespace, "ann"), what="ann's pod to go")
    hub_metrics = hub.session.get(hub.url + "/hub/metrics", timeout=30).text
    assert gauge(hub_metrics, "gpuspawner_gpus", gpu_type=A100, state="allocated") == 0
    assert gauge(hub_metrics, "gpuspawner_gpus", gpu_type=A100, state="free") == whole

    # stopping the hub stops its service cleanly
    hub.stop()
    assert hub.process.returncode is not None
    log = wait_for(
        lambda: "GPU admin service stopped" in service_log(hub) and service_log(hub),
        timeout=20,
        what="the service to stop",
    )
    assert "Traceback" not in log, log


def spawn_form(hub, user: str, server: str = "") -> str:
    return hub.spawn_form(hub.login(user), user, server)


def progress_messages(hub, user: str, until, timeout: float = 60) -> list[str]:
    """The messages of the hub's progress stream of ``user``'s server, up to the first for
    which ``until(message)`` is true."""
    messages = []
    with hub.session.get(
        hub.url + "/hub/api/users/%s/server/progress" % user, stream=True, timeout=timeout
    ) as response:
        assert response.status_code == 200, response.text
        deadline = time.monotonic() + timeout
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                event = json.loads(line[len("data:") :])
                messages.append(event.get("message", ""))
                if until(messages[-1]):
                    return messages
                if event.get("failed") or event.get("ready"):
                    break
            if time.monotonic() > deadline:
                break
    raise AssertionError("the progress stream never said it: %s" % messages)


@pytest.mark.kubernetes
def test_spawn_form_and_the_schedulers_reason_in_the_progress_stream(kwok_cluster, make_hub):
    cluster = kwok_cluster
    hub = make_hub(
        cluster,
        service=False,
        gpu_quota_groups={"staff": 16},
        gpu_hour_budget_groups={"students": 10},
        gpu_wait_timeout=90,
    )
    # the form counts the GPUs of the server's placement (nvidia.com/gpu): not the MIG slices
    offered = gpus_offered(cluster)
    total = offered["nvidia.com/gpu"]
    assert sum(offered.values()) > total
    hub.create_user("sue", groups=("students",))
    form = spawn_form(hub, "sue")
    # the catalog, what is free and what sue may still take, and her budget
    for image in KWOK_IMAGES.values():
        assert image["display_name"] in form
    assert "%d of %d GPUs free on this hub" % (total, total) in form
    assert '<option value="1"' in form and '<option value="2"' not in form  # quota 1
    assert "GPU-hours left this week: 10 of 10 GPU-hours (group &#x27;students&#x27;)" in form

    # staff fills both 8-GPU nodes; sue's 1-GPU server then waits for the scheduler
    hub.create_user("big", groups=("staff",))
    for server in ("a", "b"):
        assert hub.spawn("big", server, {"image": "demo", "gpus": 8}).status_code in (201, 202)

    def running(user):
        return sum(
            p["status"].get("phase") == "Running" for p in pods_of(cluster, hub.namespace, user)
        )

    wait_for(lambda: running("big") == 2, what="big's two 8-GPU pods Running")
    assert hub.spawn("sue", options={"image": "demo", "gpus": 1}).status_code in (201, 202)
    messages = progress_messages(hub, "sue", lambda m: m.startswith("Waiting for room"))
    waiting = messages[-1]
    assert "All GPUs of the cluster are in use" in waiting, messages
    assert "have no free nvidia.com/gpu" in waiting, messages
    (pod,) = pods_of(cluster, hub.namespace, "sue")
    (condition,) = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert (
        condition["reason"] == "Unschedulable"
        and "Insufficient nvidia.com/gpu" in (condition["message"])
    )
    hub.stop_server("sue")
    for server in ("a", "b"):
        hub.stop_server("big", server)


# --- on the real node: servers that answer ---


def node_hub(make_hub, real_node, test_image, **settings) -> Hub:
    cluster, node, host = real_node
    return make_hub(cluster, hub_ip=kube_node.GATEWAY, images=test_image, **settings)


@pytest.mark.kubernetes
def test_budget_spent_warns_then_stops_the_pod_after_the_grace(real_node, make_hub, test_image):
    cluster = real_node[0]
    # 0.0005 GPU-hours is 1.8 s of one GPU: spent almost at once
    hub = node_hub(
        make_hub,
        real_node,
        test_image,
        gpu_hour_budget_groups={"students": 0.0005},
        budget_grace_period=3,
    )
    hub.create_user("ann", groups=("students",))
    assert hub.spawn("ann", options={"image": "demo", "gpus": 1}).status_code in (201, 202)
    # not waited for as ready: the service may stop it at the first pass that sees it ready
    wait_for(lambda: is_stopped(hub, "ann"), timeout=180, what="the service to stop ann")
    wait_for(lambda: not pods_of(cluster, hub.namespace, "ann"), what="ann's pod to go")

    ledger = Ledger(hub.settings["usage_db_url"])
    try:
        notices = ledger.notices()
        assert [n["kind"] for n in notices] == ["budget-warning", "budget-spent"]
        warned, stopped = notices
        assert stopped["at"] - warned["at"] >= timedelta(seconds=3)  # the grace period
        assert "ann's GPU-hour budget is spent" in warned["message"]
        (row,) = ledger.rows(user="ann")
        assert row.end_reason == "budget-spent" and row.ended is not None
    finally:
        ledger.dispose()
    refused = hub.spawn("ann", options={"image": "demo", "gpus": 1})
    assert refused.status_code == 403
    assert refused.json()["message"].startswith("Your GPU-hour budget is spent")
    page = hub.login("boss").get(hub.url + SERVICE, timeout=30)
    assert "Stopped ann&#x27;s server &#x27;&#x27;" in page.text


@pytest.mark.kubernetes
def test_quota_holds_across_named_servers_and_a_hub_sigkill(real_node, make_hub, test_image):
    cluster = real_node[0]
    hub = node_hub(make_hub, real_node, test_image, gpu_quota=1)
    hub.create_user("quinn")
    assert hub.spawn("quinn", "a", {"image": "demo", "gpus": 1}).status_code in (201, 202)
    hub.wait_ready("quinn", "a", timeout=180)

    def refused_b():
        response = hub.spawn("quinn", "b", {"image": "demo", "gpus": 1})
        assert response.status_code == 403, response.text
        message = response.json()["message"]
        assert "your limit is 1 GPU at once" in message and "on server 'a'" in message, message
        assert is_stopped(hub, "quinn", "b")

    refused_b()
    (pod,) = pods_of(cluster, hub.namespace, "quinn")
    service_pid = _service_pid(hub)
    hub.kill9()
    # the orphaned admin service ends by itself, so the restarted hub's service gets the port
    wait_for(lambda: not _alive(service_pid), timeout=15, what="the orphaned service to end")
    hub.start(timeout=90)
    wait_for(lambda: service_get(hub, "api/inventory").status_code == 200, what="the service")
    assert hub.server_model("quinn", "a")["ready"]
    refused_b()
    # the pod the killed hub started is the one the restarted hub counts: no second pod
    assert [p["metadata"]["uid"] for p in pods_of(cluster, hub.namespace, "quinn")] == [
        pod["metadata"]["uid"]
    ]
    hub.stop_server("quinn", "a")
    assert hub.spawn("quinn", "b", {"image": "demo", "gpus": 1}).status_code in (201, 202)
    hub.wait_ready("quinn", "b", timeout=180)
    hub.stop_server("quinn", "b")


def _service_pid(hub) -> int:
    """The pid of the hub's admin service (a child of the hub process)."""
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if parent == hub.process.pid and b"gpuspawner.service" in command:
            return int(proc.name)
    raise AssertionError("no admin service among the hub's children")


def _alive(pid: int) -> bool:
    try:
        state = Path("/proc/%d/stat" % pid).read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
