"""KubeGPUSpawner servers on a real Kubernetes node, through a real hub process.

The control plane is gpuspawner/testing/kube_cluster.py's; the node is a real kubelet on its
own containerd with CNI networking and the project's device plugin over a simulated GPU host
(tests/kube_node.py, scripts/setup-kube-node.sh). The hub is a JupyterHub process
(tests/kube_hub_config.py) driven through its REST API; JupyterLab is reached through the hub's
proxy, and what a pod sees is asked from inside it (kubectl exec, pynvml).
"""

import json
import os
import secrets
import shutil
import sys
from pathlib import Path

import kube_node
import pytest

from gpuspawner.testing import kube_cluster
from gpuspawner.testing.hubprocess import Hub, hub_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "gpuhost"))
import simstate  # noqa: E402

pytestmark = pytest.mark.kubernetes

REQUIRE = os.environ.get("GPUSPAWNER_REQUIRE_KUBE_NODE") == "1"
HUB_CONFIG = Path(__file__).with_name("kube_hub_config.py")
STORAGE_CLASS = "gpuspawner-node"
MIG_RESOURCE = "nvidia.com/mig-1g.10gb"
CHECKPOINT = Path("/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint")
# what NVML shows inside a pod: the devices it enumerates, or why it cannot start
NVML_INSIDE = """
import json, os
import pynvml
seen = {"visible": os.environ.get("NVIDIA_VISIBLE_DEVICES"),
        "library": os.path.exists("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1"),
        "simnvml": os.path.exists("/run/simnvml")}
try:
    pynvml.nvmlInit()
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    seen["uuids"] = [pynvml.nvmlDeviceGetUUID(h) for h in handles]
    seen["migs"] = []
    for h in handles:
        for j in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(h)):
            try:
                mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
                seen["migs"].append(pynvml.nvmlDeviceGetUUID(mig))
            except pynvml.NVMLError:
                pass
except pynvml.NVMLError as e:
    seen["error"] = type(e).__name__
print(json.dumps(seen))
"""


def unavailable(reason: str):
    """Fail where the test command set the node up (scripts/test.sh); skip elsewhere."""
    if REQUIRE:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory, docker_client, test_image):
    missing = kube_cluster.missing_binaries()
    if missing:
        unavailable(
            "needs the control plane binaries %s: run `bash scripts/setup-kube.sh`"
            % ", ".join(missing)
        )
    reason = kube_node.unavailable_reason()
    if reason:
        unavailable(reason)
    try:
        lib_dir = simstate.lib_dir()
    except FileNotFoundError as e:
        unavailable(str(e))
    workdir = tmp_path_factory.mktemp("kube-node")
    cluster = kube_cluster.Cluster(workdir / "cluster")
    cluster.workdir.mkdir()
    name = "kube-%s" % secrets.token_hex(4)
    host = simstate.SimHost.create(name, simstate.default_inventory(name))
    node = kube_node.Node(cluster, workdir / "node", host, lib_dir)
    try:
        cluster.start()
        node.start()
        demo = test_image["demo"]["image"]
        node.import_image(demo, test_image["demo-second"]["image"])
        disks = []
        for i in range(4):
            path = kube_node.storage_dir("%s-%02d" % (name, i))
            disks.append(path)
            cluster.apply(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": "node-disk-%02d" % i},
                    "spec": {
                        "capacity": {"storage": "1Gi"},
                        "accessModes": ["ReadWriteOnce"],
                        "storageClassName": STORAGE_CLASS,
                        "persistentVolumeReclaimPolicy": "Retain",
                        "hostPath": {"path": str(path), "type": "Directory"},
                    },
                }
            )
        node.disks = disks
        yield cluster, node, host
    finally:
        node.stop()
        cluster.stop()
        host.remove()
        for disk in getattr(node, "disks", []):
            # pytest shows this only when a test failed
            print(
                "disk %s: %s"
                % (disk, sorted(p.name for p in disk.iterdir()) if disk.exists() else "gone")
            )
            shutil.rmtree(disk, ignore_errors=True)
        for name in ("kubelet", "deviceplugin"):
            print("---- %s ----\n%s" % (name, node.log_tail(name, 20)))


@pytest.fixture
def hub(node_cluster, tmp_path_factory, test_image):
    cluster, node, host = node_cluster
    namespace = "t-" + secrets.token_hex(3)
    cluster.kubectl("create", "namespace", namespace)
    cluster.wait_for(
        lambda: cluster._sa_ready(namespace), "the default service account of " + namespace, 30
    )
    workdir = tmp_path_factory.mktemp("kube-hub")
    settings = hub_settings(
        workdir,
        kube_node.GATEWAY,
        usage_db_url="sqlite:///%s" % (workdir / "usage.sqlite"),
        images=dict(
            test_image, **{"demo-mig": dict(test_image["demo"], display_name="Demo, MIG")}
        ),
        gpu_profiles={"demo-mig": {"resource": MIG_RESOURCE}},
        kubeconfig=str(cluster.kubeconfig),
        namespace=namespace,
        storage_class=STORAGE_CLASS,
    )
    started = Hub(workdir, settings, config=HUB_CONFIG).start(timeout=90)
    started.namespace = namespace
    yield started
    started.stop()
    print("---- hub ----\n%s" % started.log_tail(40))
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def pod_of(cluster, namespace: str, user: str) -> dict:
    pods = cluster.get_json("pods", "-n", namespace)["items"]
    mine = [
        p
        for p in pods
        if p["metadata"].get("annotations", {}).get("hub.jupyter.org/username") == user
    ]
    assert len(mine) == 1, [p["metadata"]["name"] for p in pods]
    return mine[0]


def inside(cluster, pod: dict, *command: str) -> str:
    done = cluster.kubectl(
        "exec", "-n", pod["metadata"]["namespace"], pod["metadata"]["name"], "--", *command
    )
    return done.stdout


def nvml_inside(cluster, pod: dict) -> dict:
    return json.loads(inside(cluster, pod, "python", "-c", NVML_INSIDE))


def kubelet_assigned(pod: dict) -> dict[str, list[str]]:
    """The devices the kubelet's device manager gave the pod's containers (from its checkpoint)."""
    data = json.loads(CHECKPOINT.read_text())["Data"]
    assigned: dict[str, list[str]] = {}
    for entry in data.get("PodDeviceEntries") or []:
        if entry["PodUID"] == pod["metadata"]["uid"]:
            ids = [i for per_numa in entry["DeviceIDs"].values() for i in per_numa]
            assigned.setdefault(entry["ResourceName"], []).extend(ids)
    return assigned


def answers(hub: Hub, user: str) -> dict:
    token = hub.user_token(user)
    response = hub.through_proxy("GET", user, "api/status", token)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    lab = hub.through_proxy("GET", user, "lab", token)
    assert lab.status_code == 200 and "JupyterLab" in lab.text, lab.status_code
    return response.json()


def start_server(hub: Hub, user: str, **options) -> None:
    hub.create_user(user)
    response = hub.spawn(user, options=options)
    assert response.status_code in (201, 202), response.text
    hub.wait_ready(user, timeout=180)


def test_one_gpu_server_on_the_real_node_sees_exactly_its_device(node_cluster, hub):
    cluster, node, host = node_cluster
    before = len(node.allocations())
    start_server(hub, "gina", image="demo", gpus=1)
    pod = pod_of(cluster, hub.namespace, "gina")
    assert pod["spec"]["nodeName"] == kube_node.NODE_NAME
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert answers(hub, "gina")["started"]

    assigned = kubelet_assigned(pod)
    assert list(assigned) == ["nvidia.com/gpu"] and len(assigned["nvidia.com/gpu"]) == 1
    uuid = assigned["nvidia.com/gpu"][0]
    whole_gpus = [gpu.uuid for gpu in host.gpus if not gpu.mig]
    assert uuid in whole_gpus
    # the plugin's Allocate for this pod handed over that device and no other
    assert node.allocations()[before:] == [[uuid]]
    seen = nvml_inside(cluster, pod)
    assert seen["visible"] == uuid
    assert seen["uuids"] == [uuid] and seen["migs"] == [], seen

    hub.stop_server("gina")
    assert (
        cluster.kubectl(
            "get", "pod", pod["metadata"]["name"], "-n", hub.namespace, check=False
        ).returncode
        != 0
    )


def test_server_without_gpu_gets_no_gpu_resource_no_device_and_answers(node_cluster, hub):
    cluster, node, host = node_cluster
    before = len(node.allocations())
    start_server(hub, "carl", image="demo", gpus=0)
    pod = pod_of(cluster, hub.namespace, "carl")
    assert pod["spec"]["nodeName"] == kube_node.NODE_NAME
    resources = pod["spec"]["containers"][0]["resources"]
    assert not any(
        name.startswith("nvidia.com/") for kind in resources.values() for name in kind
    ), resources
    assert answers(hub, "carl")["started"]

    assert kubelet_assigned(pod) == {}
    assert node.allocations()[before:] == []
    seen = nvml_inside(cluster, pod)
    assert seen["visible"] == "void"
    assert not seen["library"] and not seen["simnvml"]
    assert "uuids" not in seen and seen["error"] == "NVMLError_LibraryNotFound", seen
    # the pod network leads nowhere but the node's bridge: no default route
    routes = [
        line.split()[1] for line in inside(cluster, pod, "cat", "/proc/net/route").splitlines()[1:]
    ]
    assert routes and "00000000" not in routes, routes
    hub.stop_server("carl")


def test_workspace_survives_stop_start_and_a_change_of_image(node_cluster, hub, test_image):
    cluster, node, host = node_cluster
    text = "kept %s\n" % secrets.token_hex(8)
    start_server(hub, "wendy", image="demo", gpus=0)
    token = hub.user_token("wendy")
    put = hub.through_proxy(
        "PUT",
        "wendy",
        "api/contents/kept.txt",
        token,
        json={"type": "file", "format": "text", "content": text},
    )
    assert put.status_code in (200, 201), put.text
    first = pod_of(cluster, hub.namespace, "wendy")
    claim = next(
        v["persistentVolumeClaim"]["claimName"]
        for v in first["spec"]["volumes"]
        if v["name"] == "workspace"
    )
    # the claim is bound to one of the node's disks, and the file is on that disk
    volume = cluster.get_json("pvc", claim, "-n", hub.namespace)["spec"]["volumeName"]
    disk = Path(cluster.get_json("pv", volume)["spec"]["hostPath"]["path"])
    assert (disk / "kept.txt").read_text() == text

    hub.stop_server("wendy")
    assert (
        cluster.kubectl(
            "get", "pod", first["metadata"]["name"], "-n", hub.namespace, check=False
        ).returncode
        != 0
    )
    assert cluster.get_json("pvc", claim, "-n", hub.namespace)["status"]["phase"] == "Bound"

    start_server(hub, "wendy", image="demo-second", gpus=0)
    second = pod_of(cluster, hub.namespace, "wendy")
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    assert second["spec"]["containers"][0]["image"] == test_image["demo-second"]["image"]
    token = hub.user_token("wendy")
    got = hub.through_proxy("GET", "wendy", "api/contents/kept.txt", token)
    assert got.status_code == 200, got.text
    assert got.json()["content"] == text
    hub.stop_server("wendy")


def test_mig_server_sees_only_its_slice(node_cluster, hub):
    cluster, node, host = node_cluster
    start_server(hub, "mia", image="demo-mig", gpus=1)
    pod = pod_of(cluster, hub.namespace, "mia")
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    assert {k: v for k, v in limits.items() if k.startswith("nvidia.com/")} == {MIG_RESOURCE: "1"}
    assert answers(hub, "mia")["started"]
    assigned = kubelet_assigned(pod)
    slices = [m.uuid for gpu in host.gpus for m in gpu.migs if m.name.endswith(" 1g.10gb")]
    assert assigned == {MIG_RESOURCE: slices}
    parent = next(gpu.uuid for gpu in host.gpus if any(m.uuid == slices[0] for m in gpu.migs))
    seen = nvml_inside(cluster, pod)
    # the MIG instance comes with its parent GPU, and with none of the parent's other instances
    assert seen["visible"] == slices[0]
    assert seen["uuids"] == [parent] and seen["migs"] == slices, seen
    hub.stop_server("mia")


def test_time_sliced_replicas_share_one_gpu(node_cluster):
    """Two pods on nvidia.com/gpu.shared replicas (NVIDIA's plugin's name) see the same GPU."""
    cluster, node, host = node_cluster
    namespace = "shared-" + secrets.token_hex(3)
    cluster.kubectl("create", "namespace", namespace)
    cluster.wait_for(lambda: cluster._sa_ready(namespace), "the default service account", 30)
    image = os.environ.get("GPUSPAWNER_TEST_IMAGE") or "gpuspawner/singleuser:offline"
    names = ["replica-a", "replica-b"]
    for name in names:
        container = {
            "name": "main",
            "image": image,
            "imagePullPolicy": "Never",
            "command": ["sleep", "infinity"],
            "resources": {"limits": {"nvidia.com/gpu.shared": "1"}},
            "securityContext": {"runAsUser": 1000, "allowPrivilegeEscalation": False},
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": 0},
        }
        cluster.apply(pod)
    for name in names:
        cluster.kubectl(
            "wait", "--for=condition=Ready", "pod/" + name, "-n", namespace, "--timeout=120s"
        )
    shared_gpu = [gpu.uuid for gpu in host.gpus if not gpu.mig][-1]
    replicas = set()
    for name in names:
        pod = cluster.get_json("pod", name, "-n", namespace)
        ids = kubelet_assigned(pod)["nvidia.com/gpu.shared"]
        assert len(ids) == 1 and ids[0].startswith(shared_gpu + "::"), ids
        replicas.update(ids)
        seen = nvml_inside(cluster, pod)
        assert seen["visible"] == shared_gpu and seen["uuids"] == [shared_gpu], seen
    assert len(replicas) == 2
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")
