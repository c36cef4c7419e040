"""GPU-idle culling from Prometheus: a real Prometheus server (Debian's package, set up by
scripts/setup-prometheus.sh) scraping stand-ins of DCGM exporter (tests/dcgm_standin.py).

- the source against the real server: GPUs matched by UUID, by pod and namespace (as DCGM
  exporter labels a Kubernetes pod's GPUs, scraped with and without honor_labels), an
  unknown GPU, and a Prometheus that cannot be reached, each said once in the log;
- the admin service's idle check on a Kubernetes hub's ledger (GPUs named after their
  pods): the pod idle for the timeout is due, a busy pod is not, and a same-named pod of
  another namespace does not keep it alive;
- a real hub and admin service (Docker backend): while Prometheus is unreachable nothing is
  culled and one warning says so; once it answers, the server whose GPU shows 0 % longer
  than the idle timeout is culled and the one whose GPU works is kept.
"""

import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from dcgm_standin import write_state

from gpuspawner.policy.inventory import Gpu
from gpuspawner.testing.hubprocess import free_port, wait_for
from gpuspawner.usage.culler import IdleTracker, utilisation_source
from gpuspawner.usage.ledger import Ledger, now_utc
from gpuspawner.usage.prometheus import METRIC, PrometheusUtilisation, Series, match_readings

STANDIN = Path(__file__).resolve().parent / "dcgm_standin.py"
NAMESPACE = "jhub"
EXPORTER_POD = "nvidia-dcgm-exporter-7xk2p"  # the exporter's own pod, a scrape target label


def prometheus_binary() -> str:
    binary = os.environ.get("GPUSPAWNER_PROMETHEUS") or shutil.which("prometheus")
    if binary:
        return binary
    if os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1":
        pytest.fail("no prometheus binary: bash scripts/setup-prometheus.sh installs it")
    pytest.skip("no prometheus binary (bash scripts/setup-prometheus.sh)")


class Exporter:
    """One node's stand-in DCGM exporter, a process serving the GPUs in its state file."""

    def __init__(self, workdir: Path, hostname: str):
        self.port = free_port()
        self.state = workdir / ("%s.json" % hostname)
        self.set([])
        self.process = subprocess.Popen(
            [sys.executable, str(STANDIN), "--port", str(self.port), "--state", str(self.state),
             "--hostname", hostname],
        )  # fmt: skip
        wait_for(self.answers, 15, "the stand-in exporter")

    def answers(self) -> bool:
        try:
            return requests.get("http://127.0.0.1:%d/metrics" % self.port, timeout=2).ok
        except requests.ConnectionError:
            return False

    def set(self, gpus: list[dict]) -> None:
        write_state(self.state, gpus)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


class Prometheus:
    """A real Prometheus server scraping ``exporters`` every second: the first as a
    ServiceMonitor with honorLabels does (the workload's pod in ``pod``), the others as
    one without (the exporter's pod in ``pod``, the workload's in ``exported_pod``)."""

    def __init__(self, workdir: Path, exporters: list[Exporter], port: int | None = None):
        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.workdir = workdir
        jobs = []
        for i, exporter in enumerate(exporters):
            target = '["127.0.0.1:%d"]' % exporter.port
            if i == 0:
                jobs.append(
                    "  - job_name: dcgm-%d\n    honor_labels: true\n"
                    "    static_configs:\n      - targets: %s\n" % (i, target)
                )
            else:
                jobs.append(
                    "  - job_name: dcgm-%d\n    static_configs:\n      - targets: %s\n"
                    "        labels: {pod: %s, namespace: gpu-operator}\n"
                    % (i, target, EXPORTER_POD)
                )
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n" + "".join(jobs)
        )
        self.process = None

    def start(self) -> "Prometheus":
        self.log = open(self.workdir / "prometheus.log", "a")
        self.process = subprocess.Popen(
            [prometheus_binary(), "--config.file=%s" % self.config,
             "--storage.tsdb.path=%s" % (self.workdir / "tsdb"),
             "--web.listen-address=127.0.0.1:%d" % self.port,
             "--storage.tsdb.retention.time=1h"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_for(self.ready, 60, "Prometheus to be ready")
        return self

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                "prometheus exited:\n" + (self.workdir / "prometheus.log").read_text()[-3000:]
            )
        try:
            return requests.get(self.url + "/-/ready", timeout=2).ok
        except requests.ConnectionError:
            return False

    def series(self, metric: str = METRIC) -> list[dict]:
        answer = requests.get(self.url + "/api/v1/query", params={"query": metric}, timeout=5)
        return answer.json()["data"]["result"]

    def wait_scraped(self, condition, what: str) -> None:
        """Until an instant query of the metric satisfies ``condition`` (a scrape landed)."""
        wait_for(lambda: condition(self.series()), 30, what)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two nodes' exporters and a Prometheus scraping both."""
    workdir = tmp_path_factory.mktemp("prometheus")
    prometheus_binary()
    exporters = [Exporter(workdir, "node-a"), Exporter(workdir, "node-b")]
    prometheus = Prometheus(workdir, exporters).start()
    yield exporters, prometheus
    prometheus.stop()
    for exporter in exporters:
        exporter.stop()


def uuid(n: int) -> str:
    return "GPU-%08d-1111-2222-3333-444444444444" % n


def pod_gpu(pod: str, index: int = 0) -> str:
    """A GPU as the Kubernetes backend names it in the ledger (kube.holdings.pod_gpus)."""
    return "%s/nvidia.com/gpu#%d" % (pod, index)


def utilisation_seen(prometheus, wanted: dict[str, float]):
    def condition(series):
        values = {s["metric"].get("UUID"): float(s["value"][1]) for s in series}
        return all(values.get(u) == v for u, v in wanted.items())

    prometheus.wait_scraped(condition, "Prometheus to scrape %s" % wanted)


# --- the source against a real Prometheus ---


def test_gpus_match_by_uuid_and_by_pod_and_namespace(cluster, caplog):
    (node_a, node_b), prometheus = cluster
    node_a.set([
        {"uuid": uuid(1), "util": 0, "pod": "jupyter-ann", "namespace": NAMESPACE},
        {"uuid": uuid(2), "util": 87, "pod": "jupyter-bob", "namespace": NAMESPACE},
        {"uuid": uuid(3), "util": 12},  # a GPU no pod holds (the Docker host's)
    ])  # fmt: skip
    node_b.set([
        # a two-GPU pod: its GPUs in the exporter's order (the index on the node)
        {"uuid": uuid(5), "gpu": 1, "util": 40, "pod": "jupyter-cay", "namespace": NAMESPACE},
        {"uuid": uuid(4), "gpu": 0, "util": 3, "pod": "jupyter-cay", "namespace": NAMESPACE},
        # another hub's pod of the same name
        {"uuid": uuid(6), "gpu": 2, "util": 99, "pod": "jupyter-ann", "namespace": "other"},
    ])  # fmt: skip
    utilisation_seen(prometheus, {uuid(n): v for n, v in ((1, 0), (2, 87), (4, 3), (6, 99))})
    # node b is scraped without honor_labels: the workload's pod is renamed, not lost
    (renamed,) = [s["metric"] for s in prometheus.series() if s["metric"]["UUID"] == uuid(6)]
    assert renamed["pod"] == EXPORTER_POD and renamed["exported_pod"] == "jupyter-ann"

    source = utilisation_source("prometheus:" + prometheus.url, namespace=NAMESPACE)
    keys = [
        uuid(3), uuid(2), uuid(1) + "::2",  # by UUID; a time-sliced replica is its GPU
        pod_gpu("jupyter-ann"), pod_gpu("jupyter-bob"),
        pod_gpu("jupyter-cay", 0), pod_gpu("jupyter-cay", 1), pod_gpu("jupyter-cay", 2),
        pod_gpu("jupyter-dan"), "GPU-not-exported",
    ]  # fmt: skip
    with caplog.at_level(logging.DEBUG, logger="gpuspawner.usage"):
        assert source.sample(keys) == {
            uuid(3): 12.0,
            uuid(2): 87.0,
            uuid(1) + "::2": 0.0,
            pod_gpu("jupyter-ann"): 0.0,  # this hub's namespace, not the other hub's 99 %
            pod_gpu("jupyter-bob"): 87.0,
            pod_gpu("jupyter-cay", 0): 3.0,
            pod_gpu("jupyter-cay", 1): 40.0,
            pod_gpu("jupyter-cay", 2): None,
            pod_gpu("jupyter-dan"): None,
            "GPU-not-exported": None,
        }
        source.sample(keys)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(warnings) == sorted(
        "No GPU utilisation for %s (no DCGM_FI_DEV_GPU_UTIL series matches it):"
        " it counts as busy" % key
        for key in (pod_gpu("jupyter-cay", 2), pod_gpu("jupyter-dan"), "GPU-not-exported")
    )  # once each, though sampled twice
    # without a namespace, a pod name two namespaces have is nobody's
    anywhere = PrometheusUtilisation(prometheus.url)
    assert anywhere.sample([pod_gpu("jupyter-ann"), pod_gpu("jupyter-bob")]) == {
        pod_gpu("jupyter-ann"): None,
        pod_gpu("jupyter-bob"): 87.0,
    }


def test_unreachable_prometheus_warns_once_and_knows_no_gpu(cluster, caplog):
    (node_a, _), prometheus = cluster
    node_a.set([{"uuid": uuid(1), "util": 0}])
    utilisation_seen(prometheus, {uuid(1): 0})
    source = PrometheusUtilisation("http://127.0.0.1:%d" % free_port(), timeout=2)
    with caplog.at_level(logging.DEBUG, logger="gpuspawner.usage"):
        for _ in range(3):
            assert source.sample([uuid(1)]) == {uuid(1): None}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].getMessage().startswith(
        "Prometheus at %s (DCGM_FI_DEV_GPU_UTIL) cannot be read (" % source.url
    ) and warnings[0].getMessage().endswith("no GPU counts as idle, none is culled")
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 2
    caplog.clear()
    source.url = prometheus.url  # it answers again
    with caplog.at_level(logging.INFO, logger="gpuspawner.usage"):
        assert source.sample([uuid(1)]) == {uuid(1): 0.0}
    assert [r.getMessage() for r in caplog.records] == [
        "Prometheus at %s (DCGM_FI_DEV_GPU_UTIL) answers again: GPU-idle culling resumes"
        % prometheus.url
    ]


def test_prometheus_that_answers_an_error_is_unreadable(cluster, caplog):
    _, prometheus = cluster
    source = PrometheusUtilisation(prometheus.url, metric="DCGM_FI_DEV_GPU_UTIL{")
    with caplog.at_level(logging.WARNING, logger="gpuspawner.usage"):
        assert source.sample([uuid(1)]) == {uuid(1): None}
    (record,) = caplog.records
    assert "HTTP 400" in record.getMessage()


def test_a_bad_prometheus_url_is_a_sentence():
    with pytest.raises(ValueError, match="needs the Prometheus server's http"):
        utilisation_source("prometheus:prometheus.monitoring:9090")
    with pytest.raises(ValueError, match="'nvml', 'file:/path' or 'prometheus:<url>'"):
        utilisation_source("dcgm")


def test_match_readings_pure():
    series = [
        Series(uuid(1), "0", "p", "ns", 10.0),
        Series(uuid(1), "0", "p", "ns", 30.0),  # scraped by two jobs, or time-sliced
        Series(uuid(2), "1", "p", "ns", None),
    ]
    assert match_readings([uuid(1), pod_gpu("p"), pod_gpu("p", 1)], series, "ns") == {
        uuid(1): 30.0,
        pod_gpu("p"): 30.0,
        pod_gpu("p", 1): None,
    }
    assert match_readings([pod_gpu("p")], series, "elsewhere") == {pod_gpu("p"): None}


# --- a Kubernetes hub's ledger, culled from Prometheus ---


def test_kubernetes_pods_idle_for_the_timeout_are_due(cluster, tmp_path):
    """The service's idle check as it runs it: the ledger's open intervals (GPUs named after
    their pods, as on Kubernetes) per server, sampled from Prometheus, fed to the tracker."""
    (node_a, node_b), prometheus = cluster
    node_a.set([
        {"uuid": uuid(1), "util": 0, "pod": "jupyter-ann", "namespace": NAMESPACE},
        {"uuid": uuid(2), "util": 65, "pod": "jupyter-bob", "namespace": NAMESPACE},
    ])  # fmt: skip
    node_b.set([{"uuid": uuid(6), "util": 95, "pod": "jupyter-ann", "namespace": "other"}])
    utilisation_seen(prometheus, {uuid(1): 0, uuid(2): 65, uuid(6): 95})
    ledger = Ledger("sqlite:///%s" % (tmp_path / "usage.sqlite"))
    started = now_utc() - timedelta(minutes=5)
    for user in ("ann", "bob"):
        ledger.open(user, "", [Gpu(pod_gpu("jupyter-" + user), "NVIDIA A100")], started)
    source = utilisation_source("prometheus:" + prometheus.url, namespace=NAMESPACE)
    tracker = IdleTracker(threshold=5.0, timeout=timedelta(seconds=60))

    def check(now):
        servers = {}
        for interval in ledger.open_intervals():
            servers.setdefault((interval.user, interval.server), []).append(interval.gpu_uuid)
        readings = source.sample(sorted(u for uuids in servers.values() for u in uuids))
        for key, uuids in servers.items():
            tracker.observe(key, {u: readings[u] for u in uuids}, now)
        return readings, tracker.due(now)

    now = now_utc()
    assert check(now) == (
        {pod_gpu("jupyter-ann"): 0.0, pod_gpu("jupyter-bob"): 65.0},
        [],
    )
    assert check(now + timedelta(seconds=59))[1] == []  # not before the timeout
    assert check(now + timedelta(seconds=61))[1] == [("ann", "")]  # bob's pod works
    ledger.dispose()


# --- a real hub and admin service ---


@pytest.mark.docker
def test_hub_culls_an_idle_gpu_from_prometheus_and_waits_while_it_is_unreachable(
    hub_factory, docker_client, tmp_path
):
    from test_usage_hub import SERVICE, held_gpu, is_stopped, service_hub

    prometheus_binary()
    exporter = Exporter(tmp_path, "docker-host")
    prometheus = Prometheus(tmp_path, [exporter])  # its port chosen, not started yet
    try:
        hub = service_hub(
            hub_factory,
            tmp_path,
            gpu_idle_timeout=3,
            admin_check_interval=1,
            gpu_utilisation_source="prometheus:" + prometheus.url,
        )
        for user in ("idle", "busy"):
            hub.create_user(user, groups=("students",))
            assert hub.spawn(user, options={"gpus": 1}).status_code in (201, 202)
        for user in ("idle", "busy"):
            hub.wait_ready(user)
        gpus = {user: held_gpu(docker_client, user) for user in ("idle", "busy")}
        exporter.set([{"uuid": gpus["idle"], "util": 0}, {"uuid": gpus["busy"], "util": 93}])

        # Prometheus down: every GPU unknown, counted busy; said once, not every pass
        time.sleep(8)
        assert hub.server_model("idle")["ready"] and hub.server_model("busy")["ready"]
        log = hub.log_path.read_text()
        assert log.count("cannot be read") == 1, hub.log_tail(80)
        assert (
            "Prometheus at %s (DCGM_FI_DEV_GPU_UTIL) cannot be read" % prometheus.url in log
        ) and "no GPU counts as idle, none is culled" in log

        prometheus.start()
        utilisation_seen(prometheus, {gpus["idle"]: 0, gpus["busy"]: 93})
        answered = time.monotonic()
        wait_for(lambda: is_stopped(hub, "idle"), 40, "the idle GPU server to be culled")
        assert time.monotonic() - answered >= 2  # the idle clock starts when it is known
        time.sleep(4)
        assert hub.server_model("busy")["ready"]
        log = hub.log_path.read_text()
        assert "answers again: GPU-idle culling resumes" in log
        assert log.count("cannot be read") == 1
        ledger = Ledger(hub.settings["usage_db_url"])
        (notice,) = ledger.notices(kind="gpu-idle")
        assert notice["user"] == "idle"
        assert [r.end_reason for r in ledger.rows(user="idle")] == ["gpu-idle"]
        assert [r.ended for r in ledger.rows(user="busy")] == [None]
        ledger.dispose()
        assert "Stopped idle&#x27;s server" in hub.session.get(hub.url + SERVICE, timeout=30).text
    finally:
        prometheus.stop()
        exporter.stop()
