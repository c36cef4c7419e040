"""Which device each Kubernetes pod really got, learned from DCGM exporter's series.

On Kubernetes the hub names a pod's GPUs after the pod (``<pod>/<resource>#<i>``); the admin
service's pass reads the device each one is from the series it samples in a real Prometheus
server scraping stand-ins of DCGM exporter (tests/dcgm_standin.py), and records it in the
ledger once: the dashboard, its JSON and CSV, the metrics and the budgets (GPU-type weights)
then see the GPU's UUID and type. What the series do not say without doubt (a pod not
exported, a MIG slice, a pod with a GPU not yet exported) stays named after its pod.
"""

import logging
from datetime import timedelta

import pytest

from gpuspawner.kube.holdings import gpu_type, holding_from_pod
from gpuspawner.policy.budget import usage_hours
from gpuspawner.policy.inventory import Gpu
from gpuspawner.service import AdminSettings
from gpuspawner.service.engine import EngineView
from gpuspawner.service.report import inventory_report, usage_report
from gpuspawner.service.service_metrics import ServiceMetrics
from gpuspawner.service.watcher import Watcher
from gpuspawner.usage.ledger import Ledger, now_utc
from gpuspawner.usage.prometheus import (
    Device,
    PrometheusUtilisation,
    Series,
    assign_devices,
    product_of,
)

import test_prometheus_culling
from test_prometheus_culling import uuid

cluster = test_prometheus_culling.cluster  # its exporters and Prometheus, a module fixture here too

NAMESPACE = "ns"
H100 = "NVIDIA H100 80GB HBM3"  # modelName, as NVML names it
T4 = "Tesla T4"
MIG = "nvidia.com/mig-1g.10gb"


def key(pod: str, index: int = 0, resource: str = "nvidia.com/gpu") -> str:
    return "%s/%s#%d" % (pod, resource, index)


class HubUsers:
    """The hub's user list as the watcher reads it; these tests stop no server."""

    def __init__(self, names):
        self.names = names

    async def users(self):
        return [{"name": name, "groups": [], "servers": {}} for name in self.names]

    async def stop_server(self, user, server):
        raise AssertionError("nothing is to be stopped here: %s %r" % (user, server))


def scraped(prometheus, uuids: set[str]):
    prometheus.wait_scraped(
        lambda series: uuids <= {s["metric"].get("UUID") for s in series},
        "Prometheus to scrape %s" % sorted(uuids),
    )


async def test_a_watcher_pass_records_each_pods_device_from_prometheus(cluster, tmp_path, caplog):
    (node_a, node_b), prometheus = cluster
    node_a.set([
        {"uuid": uuid(11), "util": 7, "model": H100, "pod": "jupyter-ann", "namespace": NAMESPACE},
        # a MIG slice: the series carries the parent GPU's UUID, the slice only as GPU_I_ID
        {"uuid": uuid(15), "util": 0, "mig_instance": "3", "pod": "jupyter-mig",
         "namespace": NAMESPACE},
        # a two-GPU pod of which one GPU is exported so far
        {"uuid": uuid(16), "gpu": 2, "util": 0, "model": T4, "pod": "jupyter-two",
         "namespace": NAMESPACE},
    ])  # fmt: skip
    node_b.set([
        # scraped without honor_labels: the pod is in exported_pod; in the node's order
        {"uuid": uuid(14), "gpu": 1, "util": 50, "model": T4, "pod": "jupyter-cay",
         "namespace": NAMESPACE},
        {"uuid": uuid(13), "gpu": 0, "util": 60, "model": T4, "pod": "jupyter-cay",
         "namespace": NAMESPACE},
        # another hub's pod of the same name
        {"uuid": uuid(19), "gpu": 2, "util": 99, "model": T4, "pod": "jupyter-ann",
         "namespace": "other"},
    ])  # fmt: skip
    scraped(prometheus, {uuid(n) for n in (11, 13, 14, 15, 16, 19)})

    ledger = Ledger("sqlite:///%s" % (tmp_path / "usage.sqlite"))
    now = now_utc()
    started = now - timedelta(hours=1)
    # typed as the kube backend types them on nodes without a product label: by resource
    pods = {
        "ann": [Gpu(key("jupyter-ann"), "nvidia.com/gpu")],
        "cay": [Gpu(key("jupyter-cay", i), "nvidia.com/gpu") for i in (0, 1)],
        "mig": [Gpu(key("jupyter-mig", 0, MIG), gpu_type(None, MIG))],
        "two": [Gpu(key("jupyter-two", i), "nvidia.com/gpu") for i in (0, 1)],
        "dan": [Gpu(key("jupyter-dan"), "nvidia.com/gpu")],  # not exported
    }
    for user, gpus in pods.items():
        ledger.open(user, "", gpus, started)
    settings = AdminSettings(
        usage_db_url=ledger.url,
        gpu_utilisation_source="prometheus:" + prometheus.url,
        gpu_hour_weights={"H100": 3.0, "T4": 0.5},
    )
    source = PrometheusUtilisation(prometheus.url, namespace=NAMESPACE)
    watcher = Watcher(
        settings, ledger, HubUsers(pods), ServiceMetrics(), EngineView(None), source=source
    )
    with caplog.at_level(logging.INFO, logger="gpuspawner.service"):
        await watcher.check(now)

    held = {(i.user, i.gpu_uuid, i.gpu_name) for i in ledger.open_intervals()}
    assert held == {
        ("ann", uuid(11), "NVIDIA-H100-80GB-HBM3"),  # its namespace's, not the other hub's
        ("cay", uuid(13), "Tesla-T4"),
        ("cay", uuid(14), "Tesla-T4"),
        ("mig", key("jupyter-mig", 0, MIG), MIG),
        ("two", key("jupyter-two", 0), "nvidia.com/gpu"),
        ("two", key("jupyter-two", 1), "nvidia.com/gpu"),
        ("dan", key("jupyter-dan"), "nvidia.com/gpu"),
    }
    # the hub's names are kept, so the hub still closes and reconciles by them
    ann_row = ledger.rows(user="ann")[0]
    assert (ann_row.gpu_uuid, ann_row.device_uuid) == (key("jupyter-ann"), uuid(11))
    resolved = [r.getMessage() for r in caplog.records if "as Prometheus says" in r.getMessage()]
    assert sorted(resolved) == sorted([
        "Ledger: %s is GPU %s (NVIDIA-H100-80GB-HBM3), as Prometheus says"
        % (key("jupyter-ann"), uuid(11)),
        "Ledger: %s is GPU %s (Tesla-T4), as Prometheus says" % (key("jupyter-cay", 0), uuid(13)),
        "Ledger: %s is GPU %s (Tesla-T4), as Prometheus says" % (key("jupyter-cay", 1), uuid(14)),
    ])  # fmt: skip

    # the dashboard's rows, its JSON budgets and the CSV: the device, at its type's weight
    rows = inventory_report(None, ledger.open_intervals())
    assert {(r["user"], r["uuid"], r["name"]) for r in rows} == {
        (user, uuid_, name) for user, uuid_, name in held
    }
    weights = settings.gpu_hour_weights
    used = {
        user: usage_hours(ledger.intervals(user=user), started, now, now, weights) for user in pods
    }
    # the whole hour at the device's weight (it had that GPU from the start); unresolved: 1
    assert used == pytest.approx({"ann": 3.0, "cay": 1.0, "mig": 1.0, "two": 2.0, "dan": 1.0})
    report = usage_report(settings, ledger.intervals(), watcher.user_groups, now)
    assert report["weights"] == weights and {u["user"] for u in report["users"]} == set(pods)
    csv_rows = [line.split(",") for line in ledger.csv(started, now, now).splitlines()[1:]]
    assert [r[2:4] for r in csv_rows if r[0] == "ann"] == [[uuid(11), "NVIDIA-H100-80GB-HBM3"]]
    # the service's metrics already name the device, with this pass's reading
    metrics = watcher.metrics.registry
    assert (
        metrics.get_sample_value(
            "gpuspawner_gpu_utilisation_percent",
            {"gpu_uuid": uuid(11), "user": "ann", "server": ""},
        )
        == 7.0
    )
    assert (
        metrics.get_sample_value("gpuspawner_gpus_held", {"gpu_type": "NVIDIA-H100-80GB-HBM3"})
        == 1.0
    )

    # later: two's second GPU is exported, and ann's series names another GPU; ann keeps
    # the device recorded first, two's are recorded now, matched by UUID from then on
    node_a.set([
        {"uuid": uuid(17), "util": 7, "model": H100, "pod": "jupyter-ann", "namespace": NAMESPACE},
        {"uuid": uuid(18), "gpu": 3, "util": 20, "model": T4, "pod": "jupyter-two",
         "namespace": NAMESPACE},
        {"uuid": uuid(16), "gpu": 2, "util": 30, "model": T4, "pod": "jupyter-two",
         "namespace": NAMESPACE},
    ])  # fmt: skip
    scraped(prometheus, {uuid(17), uuid(18)})
    prometheus.wait_scraped(
        lambda series: uuid(15) not in {s["metric"].get("UUID") for s in series},
        "the MIG series to go stale",
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gpuspawner.service"):
        await watcher.check(now + timedelta(seconds=30))
    held = {(i.user, i.gpu_uuid) for i in ledger.open_intervals()}
    assert ("ann", uuid(11)) in held and ("ann", uuid(17)) not in held
    assert {("two", uuid(16)), ("two", uuid(18))} <= held
    assert sum("as Prometheus says" in r.getMessage() for r in caplog.records) == 2
    assert watcher.utilisation[uuid(16)] == 30.0 and watcher.utilisation[uuid(11)] is None
    ledger.dispose()


async def test_without_prometheus_nothing_is_resolved(tmp_path):
    """A file source knows no pods: a pass leaves the names as the hub gave them."""
    (tmp_path / "util.json").write_text("{}")
    ledger = Ledger("sqlite:///%s" % (tmp_path / "usage.sqlite"))
    ledger.open("ann", "", [Gpu(key("jupyter-ann"), "nvidia.com/gpu")], now_utc())
    settings = AdminSettings(
        usage_db_url=ledger.url, gpu_utilisation_source="file:%s" % (tmp_path / "util.json")
    )
    watcher = Watcher(settings, ledger, HubUsers(["ann"]), ServiceMetrics(), EngineView(None))
    await watcher.check()
    assert [i.gpu_uuid for i in ledger.open_intervals()] == [key("jupyter-ann")]
    ledger.dispose()


def series(uuid_, gpu, pod, namespace="ns", model=H100, mig=""):
    return Series(uuid_, gpu, pod, namespace, 0.0, model, mig)


def test_assign_devices_only_what_the_series_say_without_doubt():
    shared = "nvidia.com/gpu.shared"
    exported = [
        series(uuid(1), "0", "p"),
        series(uuid(1), "0", "p"),  # scraped by two jobs: one GPU
        series(uuid(2), "1", "q", model=""),  # no modelName
        series(uuid(3), "2", "same", "ns"),
        series(uuid(4), "3", "same", "other"),
        series(uuid(5), "4", "mig", mig="1"),
        series(uuid(6), "5", "whole-as-mig"),
        series(uuid(7), "6", "sliced", model=T4),
        series(uuid(7), "6", "sliced-too", model=T4),
        series("", "7", "nouuid"),
    ]
    keys = [
        key("p"), key("q"), key("same"), key("mig", 0, MIG), key("whole-as-mig", 0, MIG),
        key("sliced", 0, shared), key("sliced-too", 0, shared), key("nouuid"),
        key("p", 1), uuid(1), "GPU-on-docker",
    ]  # fmt: skip
    assert assign_devices(keys, exported, "ns") == {
        key("q"): Device(uuid(2), None),  # the hub's type stays
        key("same"): Device(uuid(3), "NVIDIA-H100-80GB-HBM3"),
        key("sliced", 0, shared): Device(uuid(7), "Tesla-T4 " + shared),
        key("sliced-too", 0, shared): Device(uuid(7), "Tesla-T4 " + shared),
    }  # p: two GPUs in the ledger, one exported; MIG never; UUID keys are devices already
    assert assign_devices([key("p")], exported, "ns") == {
        key("p"): Device(uuid(1), "NVIDIA-H100-80GB-HBM3")
    }
    # without a namespace, a pod name two namespaces have is nobody's
    assert assign_devices([key("same"), key("q")], exported) == {key("q"): Device(uuid(2), None)}
    assert assign_devices([key("p")], exported, "elsewhere") == {}


def test_a_devices_type_is_named_as_the_kube_backend_names_its_nodes_product():
    """GPU feature discovery labels a node's product with NVML's name, spaces as hyphens; a
    pod on such a node is typed the same as its device from DCGM exporter's modelName."""
    pod = {
        "metadata": {
            "name": "jupyter-ann",
            "labels": {"gpuspawner.io/gpus": "1"},
            "annotations": {"hub.jupyter.org/username": "ann"},
        },
        "spec": {"nodeName": "node-a"},
        "status": {"phase": "Running"},
    }
    for model, label in ((H100, "NVIDIA-H100-80GB-HBM3"), (T4, "Tesla-T4")):
        assert product_of(model) == label
        (gpu,) = holding_from_pod(pod, {"node-a": label}).gpus
        exported = [series(uuid(1), "0", "jupyter-ann", "", model)]
        assert assign_devices([gpu.uuid], exported) == {gpu.uuid: Device(uuid(1), gpu.name)}
