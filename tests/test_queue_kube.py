"""The fair queue on Kubernetes, against the real control plane with kwok's GPU nodes
(tests/test_kube_cluster.py's cluster): with a queue timeout the hub counts the nodes' GPUs,
so a spawn that would not fit waits in the hub's line without creating a pod, and its pod
is created once a GPU is given back."""

import asyncio
import time

import pytest
import test_kube_cluster as kube_tests

# tests/test_kube_cluster.py's control plane and spawner factory, as fixtures here
cluster, namespace, make_spawner = kube_tests.cluster, kube_tests.namespace, kube_tests.make_spawner
messages, pod_of, spawn = kube_tests.messages, kube_tests.pod_of, kube_tests.spawn

pytestmark = pytest.mark.kubernetes


@pytest.fixture(autouse=True)
def this_modules_cluster(cluster):
    """The fixture imported here is an instance of this module's, with a control plane of its
    own: kubespawner loads its client configuration once per process, so load it again (from
    the $KUBECONFIG the fixture set) for this module's spawners, and after them."""
    from kubespawner import clients

    clients.load_config.cache_clear()
    yield
    clients.load_config.cache_clear()


def pods_of(cluster, spawner) -> list[str]:
    items = cluster.get_json("pods", "-n", spawner.namespace)["items"]
    return [p["metadata"]["name"] for p in items]


async def test_a_spawn_that_would_not_fit_waits_without_a_pod(cluster, make_spawner):
    queue = {"gpu_queue_timeout": 120, "gpu_quota": 8, "max_gpus_per_server": 8}
    big = [make_spawner(user="big%d" % i, **queue) for i in range(2)]
    for spawner in big:  # the cluster's two 8-GPU A100 nodes, full
        await spawn(spawner, image="demo", gpus=8)
    wanda = make_spawner(user="wanda", **queue)
    waiting = asyncio.ensure_future(spawn(wanda, image="demo", gpus=1))
    deadline = time.monotonic() + 20
    while not any("in line" in m for m in messages(wanda)) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert [m for m in messages(wanda) if "in line" in m][-1] == (
        "1st in line for 1 GPU; 2 servers hold them"
    )
    await asyncio.sleep(1)
    assert wanda.pod_name not in pods_of(cluster, wanda)  # no pod while it waits
    assert not waiting.done()

    await big[0].stop(now=True)  # 8 GPUs back: wanda, the head, gets a pod that runs
    url = await asyncio.wait_for(waiting, 60)
    pod = pod_of(cluster, wanda)
    assert pod["status"]["phase"] == "Running" and url.startswith("http://")
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
