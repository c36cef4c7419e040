"""The Kubernetes backend's pure policy: GPU holdings read from pods, and the quota (no cluster)."""

from hypothesis import given
from hypothesis import strategies as st

from gpuspawner.kube.holdings import PodHolding, holdings_from_pods, quota_refusal
from gpuspawner.kube.messages import unschedulable_message
from gpuspawner.policy.quota import GpuLimit

DEFAULT = GpuLimit(1, "the default for every user")


def pod(name, user, server="", gpus=1, phase="Running", node="a100-0", resource=None):
    annotations = {"hub.jupyter.org/username": user}
    if server:
        annotations["hub.jupyter.org/servername"] = server
    if resource:
        annotations["gpuspawner.io/gpu-resource"] = resource
    return {
        "metadata": {"name": name, "labels": {"gpuspawner.io/gpus": str(gpus)}, "annotations": annotations},
        "spec": {"nodeName": node},
        "status": {"phase": phase},
    }


def test_holdings_from_pods():
    pods = [
        pod("jupyter-alice", "alice"),
        pod("jupyter-alice--train", "alice", "train", gpus=2, phase="Pending", node=None,
            resource="nvidia.com/mig-1g.10gb"),
        pod("jupyter-bob", "bob", phase="Succeeded"),
        {"metadata": {"name": "not-ours", "labels": {}, "annotations": {}}},
    ]
    assert holdings_from_pods(pods) == [
        PodHolding("alice", "", 1, "nvidia.com/gpu", "jupyter-alice", "a100-0"),
        PodHolding("alice", "train", 2, "nvidia.com/mig-1g.10gb", "jupyter-alice--train", ""),
    ]
    assert holdings_from_pods(pods)[1].holding().uuids == (
        "jupyter-alice--train/nvidia.com/mig-1g.10gb#0",
        "jupyter-alice--train/nvidia.com/mig-1g.10gb#1",
    )


def test_quota_counts_every_server_of_the_user():
    held = holdings_from_pods([pod("jupyter-alice--train", "alice", "train"), pod("jupyter-bob", "bob")])
    assert quota_refusal("alice", "eval", 1, DEFAULT, held) == (
        "You asked for 1 GPU, but your limit is 1 GPU at once (the default for every user) and you already"
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
        "You asked for 2 GPUs, but your limit is 1 GPU at once (the default for every user). Ask for at most 1."
    )


def test_unschedulable_message():
    pending = {
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."}],
        }
    }
    assert unschedulable_message(pending) == "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
    assert unschedulable_message({"status": {"phase": "Running"}}) is None
    assert unschedulable_message({"status": {"phase": "Pending", "conditions": []}}) is None


@given(
    holdings=st.lists(
        st.tuples(st.sampled_from(["alice", "bob"]), st.sampled_from(["", "a", "b", "c"]), st.integers(0, 4)),
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
    pods = [PodHolding(user, name, gpus, "nvidia.com/gpu", "p-%s-%s" % (user, name)) for user, name, gpus in holdings]
    others = sum(gpus for user, name, gpus in holdings if user == "alice" and name != server)
    refused = quota_refusal("alice", server, count, GpuLimit(limit, "test"), pods) is not None
    assert refused == (count > 0 and others + count > limit)
