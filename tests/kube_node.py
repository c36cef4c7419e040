"""One real Kubernetes node joined to a test control plane (gpuspawner.testing.kube_cluster).

scripts/setup-kube-node.sh builds the kubelet (the control plane's version), the project's
device plugin (tools/kube-deviceplugin) and a pause image, and starts a containerd of the
node's own. A test session then starts here, per control plane: a CNI bridge for the pods
(the hub on its gateway reaches pods on their IPs, pods reach the hub; no route anywhere
else), the kubelet, and the device plugin advertising a simulated GPU host's devices
(tools/gpuhost/simstate.py). Only one test session at a time can hold the node (a lock file):
a kubelet removes every pod of the runtime that its API server does not know.
"""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from gpuspawner.testing import kube_cluster

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gpuspawner"
NODE_ENV = CACHE / "kube-node" / "node.env"
NODE_NAME = "gpu-node-0"
BRIDGE = "gpuspnode0"
SUBNET = "10.251.0.0/24"
GATEWAY = "10.251.0.1"
# kubelet sets these host sysctls at start; they are put back when the node stops
KERNEL_TUNABLES = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")


def settings() -> dict[str, str] | None:
    """What setup-kube-node.sh wrote (None when it has not run here)."""
    if not NODE_ENV.exists():
        return None
    pairs = (line.split("=", 1) for line in NODE_ENV.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


def unavailable_reason() -> str | None:
    """Why no real node can run here, in a sentence, or None."""
    if os.geteuid() != 0:
        return "the real test node needs root"
    found = settings()
    if found is None:
        return "the real test node is not set up: run `bash scripts/setup-kube-node.sh`"
    missing = [
        name
        for name in ("kubelet", "kube-deviceplugin")
        if not os.access(Path(found["GPUSPAWNER_NODE_BIN"]) / name, os.X_OK)
    ]
    if missing:
        return "the real test node lacks %s: run `bash scripts/setup-kube-node.sh`" % ", ".join(
            missing
        )
    return None


def run(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), capture_output=True, text=True, check=False, **kwargs)
    if check and result.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(args), (result.stderr or result.stdout).strip()))
    return result


class Node:
    """The kubelet and device plugin of one control plane, on the node's containerd."""

    def __init__(self, cluster: kube_cluster.Cluster, workdir: Path, sim_host, lib_dir: Path):
        self.cluster = cluster
        self.workdir = Path(workdir)
        self.env = settings()
        self.bin = Path(self.env["GPUSPAWNER_NODE_BIN"])
        self.run_dir = Path(self.env["GPUSPAWNER_NODE_RUN_DIR"])
        self.socket = self.env["GPUSPAWNER_NODE_CONTAINERD_SOCKET"]
        self.sim_host = sim_host
        self.lib = Path(lib_dir) / "libnvidia-ml.so.1"
        self.root_dir = Path("/var/lib/gpuspawner-node/kubelet")
        self.processes: dict[str, subprocess.Popen] = {}
        self.lock = None
        self.tunables: dict[str, str] = {}

    # --- containerd ---

    def ctr(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return run("ctr", "--address", self.socket, "-n", "k8s.io", *args, **kwargs)

    def ensure_containerd(self) -> None:
        if self.ctr("version", check=False).returncode == 0:
            return
        log = open(CACHE / "kube-node" / "containerd.log", "ab")
        subprocess.Popen(
            ["containerd", "--config", self.env["GPUSPAWNER_NODE_CONTAINERD_CONFIG"]],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.wait_for(
            lambda: self.ctr("version", check=False).returncode == 0, "the node's containerd", 30
        )

    def _forget_dead_containers(self) -> None:
        """Earlier sessions' stopped pod containers (their kubelet stopped before its garbage
        collector ran); running ones are left to the new kubelet, which stops what it does not
        know."""
        if self.running_tasks():
            return
        for container in self.ctr("containers", "ls", "-q").stdout.split():
            self.ctr("containers", "delete", container, check=False)

    def import_image(self, image: str, *aliases: str) -> None:
        """Docker's ``image`` into the node's containerd (again when its ID changed), aliased."""
        image_id = run("docker", "image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
        marker = CACHE / "kube-node" / ("imported-" + image.replace("/", "_").replace(":", "_"))
        reference = "docker.io/" + image if image.count("/") < 2 else image
        present = reference in self.ctr("images", "ls", "-q").stdout.split()
        if not present or not marker.exists() or marker.read_text() != image_id:
            save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
            try:
                self.ctr("images", "import", "-", stdin=save.stdout)
            finally:
                save.stdout.close()
                save.wait()
            marker.write_text(image_id)
        for alias in aliases:
            target = "docker.io/" + alias if alias.count("/") < 2 else alias
            self.ctr("images", "tag", "--force", reference, target)

    # --- the node ---

    def start(self) -> "Node":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.lock = open(self.run_dir / "node.lock", "w")
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        "another test session holds the real node (%s)" % self.lock.name
                    )
                time.sleep(2)
        self.tunables = {name: Path("/proc/sys", name).read_text() for name in KERNEL_TUNABLES}
        self.ensure_containerd()
        self._forget_dead_containers()
        self._network()
        self._kubelet()
        self._device_plugin()
        return self

    def _network(self) -> None:
        if run("ip", "link", "show", BRIDGE, check=False).returncode != 0:
            run("ip", "link", "add", BRIDGE, "type", "bridge")
        addresses = run("ip", "-o", "-4", "addr", "show", "dev", BRIDGE).stdout
        if " %s/" % GATEWAY not in addresses:
            run("ip", "addr", "add", GATEWAY + "/24", "dev", BRIDGE)
        run("ip", "link", "set", BRIDGE, "up")
        conflist = {
            "cniVersion": "0.4.0",
            "name": "gpuspawner-node",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,  # no way out: pods reach only the bridge and each other
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": SUBNET, "gateway": GATEWAY}]],
                        "dataDir": str(self.run_dir / "ipam"),
                    },
                }
            ],
        }
        cni_dir = self.run_dir / "cni"
        cni_dir.mkdir(exist_ok=True)
        (cni_dir / "10-gpuspawner.conflist").write_text(json.dumps(conflist, indent=1))

    def _kubelet(self) -> None:
        w = self.workdir
        w.mkdir(parents=True, exist_ok=True)
        self.port, self.healthz_port = kube_cluster.free_port(), kube_cluster.free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": GATEWAY,
            "port": self.port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            # the API server's exec/logs calls come unauthenticated over the bridge
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            "failCgroupV1": False,
            "containerRuntimeEndpoint": "unix://" + self.socket,
            "evictionHard": {
                "memory.available": "0%",
                "nodefs.available": "0%",
                "imagefs.available": "0%",
            },
            "imageGCHighThresholdPercent": 100,
            "localStorageCapacityIsolation": False,
            "makeIPTablesUtilChains": False,
            "resolvConf": "",
            "serializeImagePulls": False,
            "podPidsLimit": -1,
            "nodeStatusUpdateFrequency": "4s",
            "syncFrequency": "5s",
            "fileCheckFrequency": "5s",
        }
        (w / "kubelet.json").write_text(json.dumps(config, indent=1))
        # a node that already exists (a previous session's) is re-registered from scratch
        self.cluster.kubectl("delete", "node", NODE_NAME, "--ignore-not-found", check=False)
        labels = "nvidia.com/gpu.present=true,nvidia.com/gpu.product=%s" % self.product_label()
        self._spawn(
            "kubelet",
            str(self.bin / "kubelet"),
            "--config", str(w / "kubelet.json"),
            "--kubeconfig", str(self.cluster.kubeconfig),
            "--hostname-override", NODE_NAME,
            "--node-ip", GATEWAY,
            "--node-labels", labels,
            "--root-dir", str(self.root_dir),
            "--cert-dir", str(w / "kubelet-pki"),
            "--v", "1",
        )  # fmt: skip
        self.wait_for(self.ready, "node %s Ready" % NODE_NAME, 120)

    def product_label(self) -> str:
        name = next(gpu.name for gpu in self.sim_host.read().gpus)
        return name.replace(" ", "-")

    def _device_plugin(self) -> None:
        self._spawn(
            "deviceplugin",
            str(self.bin / "kube-deviceplugin"),
            "-state", str(self.sim_host.state_path),
            "-lib", str(self.lib),
            # the kubelet's device manager always serves /var/lib/kubelet/device-plugins
            "-plugin-dir", "/var/lib/kubelet/device-plugins",
            "-alloc-dir", str(self.workdir / "allocations"),
            "-shared", "1",
            "-replicas", "4",
        )  # fmt: skip
        self.wait_for(
            lambda: "nvidia.com/gpu" in self.allocatable(), "the device plugin's resources", 60
        )

    def _spawn(self, name: str, *argv: str) -> None:
        with open(self.workdir / ("%s.log" % name), "wb") as log:
            self.processes[name] = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def node(self) -> dict:
        return self.cluster.get_json("node", NODE_NAME)

    def allocatable(self) -> dict:
        found = self.cluster.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if found.returncode != 0:
            return {}
        return {
            k: v
            for k, v in json.loads(found.stdout)["status"].get("allocatable", {}).items()
            if v != "0"
        }

    def ready(self) -> bool:
        found = self.cluster.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if found.returncode != 0:
            return False
        conditions = json.loads(found.stdout).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def wait_for(self, check, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        "%s exited (%s):\n%s" % (name, process.returncode, self.log_tail(name))
                    )
            if check():
                return
            time.sleep(0.5)
        tails = "\n".join("---- %s ----\n%s" % (n, self.log_tail(n)) for n in self.processes)
        raise TimeoutError("waited %d s for %s\n%s" % (timeout, what, tails))

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / ("%s.log" % name)
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else ""
        )

    def allocations(self) -> list[list[str]]:
        """The UUIDs of each Allocate the device plugin answered, oldest first."""
        folder = self.workdir / "allocations"
        files = sorted(folder.glob("visible-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
        return [p.read_text().split() for p in files]

    def running_tasks(self) -> list[str]:
        return self.ctr("tasks", "ls", "-q", check=False).stdout.split()

    def stop(self) -> None:
        """Remove the node's pods (through the API, so CNI releases their addresses), then stop
        the device plugin and the kubelet; what is still running then is killed."""
        self.cluster.kubectl(
            "delete", "pods", "--all", "--all-namespaces",
            "--grace-period=0", "--force", "--wait=false", check=False,
        )  # fmt: skip
        kubelet = self.processes.get("kubelet")
        deadline = time.monotonic() + 60
        while (
            kubelet
            and kubelet.poll() is None
            and self.running_tasks()
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        for task in self.running_tasks():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        for name, value in self.tunables.items():
            Path("/proc/sys", name).write_text(value)
        if self.lock:
            self.lock.close()


def storage_dir(name: str) -> Path:
    """A workspace disk on the node: a folder the pods' user (uid 1000) may write."""
    path = Path("/var/lib/gpuspawner-node/disks") / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.chown(path, 1000, 100)
    return path
