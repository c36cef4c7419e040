"""The Kubernetes backend's pure policy: GPU holdings read from pods, and the quota (no cluster)."""

from hypothesis import given
from hypothesis import strategies as st

from gpuspawner.kube.holdings import gpu_totals, holdings_from_pods, node_products, pod_gpus
from gpuspawner.kube.messages import unschedulable_message
from gpuspawner.policy.allocation import GpuRequest, Grant, Holding, decide
from gpuspawner.policy.inventory import Gpu
from gpuspawner.policy.quota import GpuLimit

DEFAULT = GpuLimit(1, "the default for every user")


def quota_refusal(user, server, count, limit, holdings):
    """What the Kubernetes backend decides: the quota only (the scheduler judges capacity)."""
    devices = pod_gpus("p-%s-%s" % (user, server), "nvidia.com/gpu", count, "nvidia.com/gpu")
    outcome = decide(GpuRequest(user, server, count, limit, devices), None, holdings)
    if isinstance(outcome, Grant):
        assert outcome.gpus == devices
        return None
    assert outcome.reason == "quota"
    return outcome.message


def pod(name, user, server="", gpus=1, phase="Running", node="a100-0", resource=None):
    annotations = {"hub.jupyter.org/username": user}
    if server:
        annotations["hub.jupyter.org/servername"] = server
    if resource:
        annotations["gpuspawner.io/gpu-resource"] = resource
    return {
        "metadata": {
            "name": name,
            "labels": {"gpuspawner.io/gpus": str(gpus)},
            "annotations": annotations,
        },
        "spec": {"nodeName": node},
        "status": {"phase": phase},
    }


def test_the_memo_reads_only_new_pod_objects_and_gives_what_a_fresh_reading_gives():
    products = {"a100-0": "NVIDIA-A100-SXM4-80GB"}
    pods = {"a": pod("jupyter-a", "a"), "b": pod("jupyter-b", "b", gpus=2, node="t4-0")}
    memo: dict = {}
    first = holdings_from_pods(pods.values(), products, memo)
    assert first == holdings_from_pods(pods.values(), products)
    # the reflector replaces a changed pod's object: only that one is read again
    pods["b"] = pod("jupyter-b", "b", phase="Succeeded")
    pods["c"] = pod("jupyter-c", "c", server="x")
    kept = pods["a"]
    again = holdings_from_pods(pods.values(), products, memo)
    assert again == holdings_from_pods(pods.values(), products)
    assert again[0] is first[0] and [h.user for h in again] == ["a", "c"]
    # an object seen before is not read again: a change behind the memo's back goes unseen
    kept["metadata"]["labels"]["gpuspawner.io/gpus"] = "3"
    assert holdings_from_pods(pods.values(), products, memo) == again
    assert {key for key in memo if key != "products"} == {id(p) for p in pods.values()}
    assert memo[id(kept)][0] is kept
    # other node products (a new node listing): every pod is read again with them
    relabelled = holdings_from_pods(pods.values(), {"a100-0": "Tesla-T4"}, memo)
    assert relabelled == holdings_from_pods(pods.values(), {"a100-0": "Tesla-T4"})
    assert len(relabelled[0].gpus) == 3 and {g.name for g in relabelled[0].gpus} == {"Tesla-T4"}


def test_holdings_from_pods():
    pods = [
        pod("jupyter-alice", "alice"),
        pod(
            "jupyter-alice--train",
            "alice",
            "train",
            gpus=2,
            phase="Pending",
            node=None,
            resource="nvidia.com/mig-1g.10gb",
        ),
        pod("jupyter-bob", "bob", phase="Succeeded"),
        {"metadata": {"name": "not-ours", "labels": {}, "annotations": {}}},
    ]
    mig = "nvidia.com/mig-1g.10gb"
    assert holdings_from_pods(pods) == [
        Holding(
            "alice",
            "",
            (Gpu("jupyter-alice/nvidia.com/gpu#0", "nvidia.com/gpu", resource="nvidia.com/gpu"),),
            "pod jupyter-alice, on node a100-0",
        ),
        Holding(
            "alice",
            "train",
            tuple(Gpu("jupyter-alice--train/%s#%d" % (mig, i), mig, resource=mig) for i in (0, 1)),
            "pod jupyter-alice--train, waiting for a node",
        ),
    ]
    assert holdings_from_pods(pods)[1].uuids == (
        "jupyter-alice--train/nvidia.com/mig-1g.10gb#0",
        "jupyter-alice--train/nvidia.com/mig-1g.10gb#1",
    )


def test_a_gpu_is_typed_by_its_nodes_product_so_weights_apply():
    nodes = [
        {
            "metadata": {
                "name": "a100-0",
                "labels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            },
            "status": {"allocatable": {"nvidia.com/gpu": "8", "cpu": "64"}},
        },
        {"metadata": {"name": "cpu-0", "labels": {}}, "status": {"allocatable": {"cpu": "8"}}},
        {
            "metadata": {"name": "mig-0", "labels": {}},
            "status": {"allocatable": {"nvidia.com/mig-1g.10gb": "7"}},
        },
        {
            "metadata": {"name": "cordoned", "labels": {}},
            "spec": {"unschedulable": True},
            "status": {"allocatable": {"nvidia.com/gpu": "4"}},
        },
    ]
    assert node_products(nodes) == {"a100-0": "NVIDIA-A100-SXM4-80GB"}
    assert gpu_totals(nodes) == {"NVIDIA-A100-SXM4-80GB": 8, "nvidia.com/mig-1g.10gb": 7}
    running = pod("jupyter-ann", "ann", node="a100-0")
    (held,) = holdings_from_pods([running], node_products(nodes))
    assert [gpu.name for gpu in held.gpus] == ["NVIDIA-A100-SXM4-80GB"]
    # pending: the product it asked for, else its resource
    asked = pod("jupyter-bo", "bo", phase="Pending", node=None)
    asked["metadata"]["annotations"]["gpuspawner.io/gpu-product"] = "NVIDIA-L4"
    (pending,) = holdings_from_pods([asked], node_products(nodes))
    assert pending.gpus[0].name == "NVIDIA-L4"


def test_quota_counts_every_server_of_the_user():
    held = holdings_from_pods(
        [pod("jupyter-alice--train", "alice", "train"), pod("jupyter-bob", "bob")]
    )
    assert quota_refusal("alice", "eval", 1, DEFAULT, held) == (
        "You asked for 1 GPU, but your limit is 1 GPU at once (the default for every user) and"
        " you already"
        " hold 1 GPU on server 'train' (pod jupyter-alice--train, on node a100-0)."
        " Stop a server holding GPUs, or ask for at most 0."
    )
    assert quota_refusal("alice", "eval", 0, DEFAULT, held) is None
    # restarting the same server does not count its own old pod
    assert quota_refusal("alice", "train", 1, DEFAULT, held) is None
    assert quota_refusal("carol", "", 1, DEFAULT, held) is None
    assert quota_refusal("alice", "eval", 2, GpuLimit(3, "group 'staff'"), held) is None


def test_quota_without_holdings():
    assert quota_refusal("alice", "", 2, DEFAULT, []) == (
        "You asked for 2 GPUs, but your limit is 1 GPU at once (the default for every user). Ask"
        " for at most 1."
    )


def test_unschedulable_message():
    pending = {
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
                }
            ],
        }
    }
    assert (
        unschedulable_message(pending) == "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
    )
    assert unschedulable_message({"status": {"phase": "Running"}}) is None
    assert unschedulable_message({"status": {"phase": "Pending", "conditions": []}}) is None


@given(
    holdings=st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob"]),
            st.sampled_from(["", "a", "b", "c"]),
            st.integers(0, 4),
        ),
        max_size=8,
        unique_by=lambda t: (t[0], t[1]),
    ),
    server=st.sampled_from(["", "a", "b", "c", "d"]),
    count=st.integers(0, 8),
    limit=st.integers(0, 8),
)
def test_quota_refuses_exactly_when_the_users_other_servers_plus_the_request_exceed_the_limit(
    holdings, server, count, limit
):
    pods = [
        Holding(user, name, pod_gpus("p-%s-%s" % (user, name), "nvidia.com/gpu", gpus, "GPU"))
        for user, name, gpus in holdings
    ]
    others = sum(gpus for user, name, gpus in holdings if user == "alice" and name != server)
    refused = quota_refusal("alice", server, count, GpuLimit(limit, "test"), pods) is not None
    assert refused == (count > 0 and others + count > limit)


def test_a_shared_resources_pod_holds_slots_counted_one_nth():
    """A pod asking for a shared resource (time-sliced replicas) holds slots of a GPU shared
    by the number on its pod; the quota counts each as 1/N, so a quota of 1 takes 4 of them
    and no whole GPU more; a pod without the annotation (or with a bad one) holds whole GPUs."""
    from fractions import Fraction

    shared = pod("jupyter-sam", "sam", resource="nvidia.com/gpu.shared")
    shared["metadata"]["annotations"]["gpuspawner.io/gpu-shared-by"] = "4"
    (holding,) = holdings_from_pods([shared])
    (gpu,) = holding.gpus
    assert (gpu.resource, gpu.shared_by, holding.share) == (
        "nvidia.com/gpu.shared",
        4,
        Fraction(1, 4),
    )
    slots = [
        Holding("sam", s, pod_gpus("p-" + s, "nvidia.com/gpu.shared", 1, "T4", 4)) for s in "abc"
    ]
    assert quota_refusal("sam", "d", 0, DEFAULT, slots) is None
    fourth = pod_gpus("p-d", "nvidia.com/gpu.shared", 1, "T4", 4)
    outcome = decide(GpuRequest("sam", "d", 1, DEFAULT, fourth), None, slots)
    assert isinstance(outcome, Grant)
    assert quota_refusal("sam", "e", 1, DEFAULT, slots) is not None  # 3/4 + a whole GPU
    bad = pod("jupyter-tom", "tom", resource="nvidia.com/gpu.shared")
    bad["metadata"]["annotations"]["gpuspawner.io/gpu-shared-by"] = "four"
    assert holdings_from_pods([bad])[0].gpus[0].shared_by == 1


def test_shared_resources_are_gpu_resources_and_their_replicas_come_from_the_label():
    from gpuspawner.kube.nodes import is_gpu_resource, resource_replicas

    assert is_gpu_resource("nvidia.com/gpu.shared")
    assert not is_gpu_resource("example.com/sliced-gpu")
    assert is_gpu_resource("example.com/sliced-gpu", {"example.com/sliced-gpu": 3})
    nodes = [
        {"metadata": {"labels": {"nvidia.com/gpu.replicas": "4"}},
         "status": {"allocatable": {"nvidia.com/gpu.shared": "8"}}},
        {"metadata": {"labels": {"nvidia.com/gpu.replicas": "2"}},
         "status": {"allocatable": {"nvidia.com/gpu.shared": "4"}}},
        {"metadata": {"labels": {"nvidia.com/gpu.replicas": "x"}},
         "status": {"allocatable": {"example.com/sliced-gpu": "4"}}},
        {"metadata": {"labels": {}}, "status": {"allocatable": {"nvidia.com/gpu": "8"}}},
    ]  # fmt: skip
    wanted = ["nvidia.com/gpu.shared", "example.com/sliced-gpu"]
    assert resource_replicas(nodes, wanted) == {"nvidia.com/gpu.shared": 2}
    assert gpu_totals(nodes, ["example.com/sliced-gpu"]) == {
        "nvidia.com/gpu.shared": 12, "example.com/sliced-gpu": 4, "nvidia.com/gpu": 8}  # fmt: skip
