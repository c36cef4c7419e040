"""A real Kubernetes control plane on loopback, with fake GPU nodes played by kwok.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the real binaries
that scripts/setup-kube.sh builds; kwok plays the kubelet of nodes annotated
``kwok.x-k8s.io/node: fake`` (pods scheduled there are marked Running with an IP, and
run nothing). Admission, validation, quota and scheduling are Kubernetes' own.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpuspawner" / "kube"
COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)
A100 = "NVIDIA-A100-SXM4-80GB"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def bin_dir() -> Path | None:
    """Where setup-kube.sh put the binaries (GPUSPAWNER_KUBE_BIN overrides), or None."""
    configured = os.environ.get("GPUSPAWNER_KUBE_BIN")
    if configured:
        return Path(configured)
    marker = CACHE / "bin-dir"
    return Path(marker.read_text().strip()) if marker.exists() else None


def missing_binaries() -> list[str]:
    where = bin_dir()
    if where is None:
        return list(COMPONENTS)
    return [name for name in COMPONENTS if not os.access(where / name, os.X_OK)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """The control plane's processes, a kubeconfig for them, and kubectl."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.bin = bin_dir()
        self.processes: dict[str, subprocess.Popen] = {}
        self.kubeconfig = self.workdir / "kubeconfig"
        self.token = secrets.token_hex(16)
        # a user with no rights but those a test grants it (a hub without cluster roles)
        self.hub_token = secrets.token_hex(16)
        self.hub_kubeconfig = self.workdir / "kubeconfig-hub"
        self.api_port = free_port()
        self.server = "https://127.0.0.1:%d" % self.api_port

    # --- processes ---

    def _spawn(self, name: str, *args: str) -> None:
        with open(self.workdir / ("%s.log" % name), "wb") as log:
            self.processes[name] = subprocess.Popen(
                [str(self.bin / name), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self) -> "Cluster":
        w = self.workdir
        (w / "tokens.csv").write_text(
            '%s,admin,admin,"system:masters"\n%s,hub,hub\n' % (self.token, self.hub_token)
        )
        subprocess.run(
            ["openssl", "genrsa", "-out", str(w / "sa.key"), "2048"],
            check=True,
            capture_output=True,
        )
        self.kubeconfig.write_text(self._kubeconfig("admin", self.token))
        self.hub_kubeconfig.write_text(self._kubeconfig("hub", self.hub_token))
        etcd_port, peer_port = free_port(), free_port()
        self._spawn(
            "etcd",
            "--data-dir",
            str(w / "etcd"),
            "--listen-client-urls",
            "http://127.0.0.1:%d" % etcd_port,
            "--advertise-client-urls",
            "http://127.0.0.1:%d" % etcd_port,
            "--listen-peer-urls",
            "http://127.0.0.1:%d" % peer_port,
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:%d" % peer_port,
            "--initial-cluster",
            "default=http://127.0.0.1:%d" % peer_port,
            "--unsafe-no-fsync",
        )
        self._spawn(
            "kube-apiserver",
            "--etcd-servers",
            "http://127.0.0.1:%d" % etcd_port,
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
            "--secure-port",
            str(self.api_port),
            "--cert-dir",
            str(w / "certs"),
            "--token-auth-file",
            str(w / "tokens.csv"),
            "--authorization-mode",
            "RBAC",
            "--service-account-key-file",
            str(w / "sa.key"),
            "--service-account-signing-key-file",
            str(w / "sa.key"),
            "--service-account-issuer",
            "https://kubernetes.default.svc",
            "--service-cluster-ip-range",
            "10.96.0.0/16",
            "--endpoint-reconciler-type",
            "none",  # the loopback address cannot be an endpoint
            "--kubelet-preferred-address-types",
            "InternalIP,Hostname",  # the real node has no DNS name
            "--profiling=false",
            "--allow-privileged=true",  # as kubeadm's: z2jh's init container is privileged
        )
        self.wait_ready()
        self._spawn(
            "kube-controller-manager",
            "--kubeconfig",
            str(self.kubeconfig),
            "--leader-elect=false",
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            "0",
            "--service-account-private-key-file",
            str(w / "sa.key"),
            "--use-service-account-credentials=false",
            "--concurrent-resource-quota-syncs",
            "5",
            "--profiling=false",
        )
        self._spawn(
            "kube-scheduler",
            "--kubeconfig",
            str(self.kubeconfig),
            "--leader-elect=false",
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            "0",
            "--profiling=false",
        )
        self._spawn(
            "kwok",
            "--kubeconfig",
            str(self.kubeconfig),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector",
            "kwok.x-k8s.io/node=fake",
            "--cidr",
            "10.244.0.1/16",
            "--node-ip",
            "10.0.0.1",
            "--server-address",
            "127.0.0.1:%d" % free_port(),
        )
        self.wait_for(lambda: self._sa_ready("default"), "the default service account", 60)
        return self

    def _kubeconfig(self, user: str, token: str) -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "local",
                        "cluster": {"server": self.server, "insecure-skip-tls-verify": True},
                    }
                ],
                "users": [{"name": user, "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "local",
                        "context": {"cluster": "local", "user": user, "namespace": "default"},
                    }
                ],
                "current-context": "local",
            }
        )

    def _sa_ready(self, namespace: str) -> bool:
        return (
            self.kubectl(
                "get", "serviceaccount", "default", "-n", namespace, check=False
            ).returncode
            == 0
        )

    def wait_ready(self, timeout: float = 60) -> None:
        def ready():
            request = urllib.request.Request(
                self.server + "/readyz", headers={"Authorization": "Bearer " + self.token}
            )
            import ssl

            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            try:
                with urllib.request.urlopen(request, context=context, timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        self.wait_for(ready, "kube-apiserver /readyz", timeout)

    def wait_for(self, check, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        "%s exited (%s): %s" % (name, process.returncode, self.log_tail(name))
                    )
            if check():
                return
            time.sleep(0.2)
        raise TimeoutError("waited %d s for %s" % (timeout, what))

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / ("%s.log" % name)
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def stop(self) -> None:
        # the cluster's state is thrown away with its directory: no graceful shutdown needed
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        for process in self.processes.values():
            process.wait()

    # --- kubectl ---

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [
                str(self.bin / "kubectl"),
                "--kubeconfig",
                str(self.kubeconfig),
                "--cache-dir",
                str(self.workdir / "kubectl-cache"),
                *args,
            ],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError("kubectl %s: %s" % (" ".join(args), result.stderr.strip()))
        return result

    def apply(self, *objects: dict) -> None:
        self.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
        )

    def get_json(self, *args: str) -> dict:
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    # --- fake nodes ---

    def add_node(
        self,
        name: str,
        *,
        gpus: int = 0,
        resource: str = "nvidia.com/gpu",
        product: str | None = None,
        taints=(),
        cpu: str = "64",
        memory: str = "512Gi",
        labels=None,
    ) -> None:
        labels = {
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": "linux",
            "type": "kwok",
            **(labels or {}),
        }
        capacity = {"cpu": cpu, "memory": memory, "pods": "110"}
        if gpus:
            capacity[resource] = str(gpus)
            labels["nvidia.com/gpu.present"] = "true"
        if product:
            labels["nvidia.com/gpu.product"] = product
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
            },
            "spec": {"taints": list(taints)},
        }
        self.apply(node)
        # status is a subresource: set capacity there (kwok keeps the Ready condition)
        patch = {"status": {"capacity": capacity, "allocatable": capacity}}
        self.kubectl(
            "patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(patch)
        )


def start_cluster(workdir: Path) -> Cluster:
    """A running control plane with the GPU test cluster's nodes, Ready."""
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    cluster = Cluster(workdir)
    try:
        cluster.start()
        for i in range(2):
            cluster.add_node("a100-%d" % i, gpus=8, product=A100, taints=[GPU_TAINT])
        cluster.add_node(
            "mig-0", gpus=7, resource="nvidia.com/mig-1g.10gb", product=A100, taints=[GPU_TAINT]
        )
        cluster.add_node("cpu-0")
        cluster.wait_for(lambda: nodes_ready(cluster) == 4, "4 Ready, untainted nodes", 90)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def nodes_ready(cluster: Cluster) -> int:
    items = cluster.get_json("nodes")["items"]
    return sum(
        1
        for node in items
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )
        and not any(
            t["key"].startswith("node.kubernetes.io/") for t in node["spec"].get("taints", [])
        )
    )
