"""Users' secrets on Kubernetes, against a real control plane (pods on kwok's nodes).

A spawn of a user with secrets creates (then replaces) one Secret in the servers'
namespace, labelled as the hub labels its objects, and the pod names each secret by
``valueFrom.secretKeyRef``: the value is in the Secret only, never in the pod's spec.
"""

import asyncio
import base64
import json
import os
import secrets
import zlib
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet

from gpuspawner.lifecycle.base import apply_gpu_options
from gpuspawner.lifecycle.shared import reset_shared_state
from gpuspawner.testing import kube_cluster
from gpuspawner.usage.secrets import SecretStore, reset_stores

pytestmark = pytest.mark.kubernetes

REQUIRE = os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1"
IMAGES = {"demo": {"image": "gpuspawner/singleuser:offline", "display_name": "Demo"}}
KEY = Fernet.generate_key().decode()
HF_TOKEN = "hf_" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = kube_cluster.missing_binaries()
    if missing:
        reason = "needs the control plane binaries %s: run `bash scripts/setup-kube.sh`" % (
            ", ".join(missing)
        )
        if REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = kube_cluster.start_cluster(tmp_path_factory.mktemp("kube") / "cluster")
    from kubernetes_asyncio.config import kube_config
    from kubespawner import clients

    before = os.environ.get("KUBECONFIG"), kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    os.environ["KUBECONFIG"] = kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(cluster.kubeconfig)
    # kubespawner loads its client configuration once per process: an earlier module's
    # cluster (still running, session-scoped) must not be the one these spawners talk to
    clients.load_config.cache_clear()
    yield cluster
    cluster.stop()
    if before[0] is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = before[0]
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = before[1]
    clients.load_config.cache_clear()  # the next module's spawners load their own again


@pytest.fixture
def namespace(cluster):
    name = "t-" + secrets.token_hex(3)
    cluster.kubectl("create", "namespace", name)
    cluster.wait_for(lambda: cluster._sa_ready(name), "the default service account of " + name, 30)
    return name


@pytest.fixture
async def make_spawner(cluster, namespace, tmp_path):
    from gpuspawner.kube import KubeGPUSpawner

    made = []

    def make(user):
        person = SimpleNamespace(
            name=user, id=zlib.crc32(user.encode()), url="/user/%s/" % user, escaped_name=user,
            groups=[],
        )  # fmt: skip
        spawner = KubeGPUSpawner(
            _mock=True,
            user=person,
            orm_spawner=SimpleNamespace(user_options={}, server=None, name=""),
            namespace=namespace,
            images=IMAGES,
            storage_pvc_ensure=False,
            start_timeout=60,
            k8s_api_request_timeout=10,
            usage_db_url="sqlite:///%s" % (tmp_path / "usage.sqlite"),
            secrets_keys=[KEY],
        )
        made.append(spawner)
        return spawner

    yield make
    for spawner in made:
        if spawner.pod_reflector and spawner.pod_reflector.pods.get(
            "%s/%s" % (spawner.namespace, spawner.pod_name)
        ):
            await spawner.stop(now=True)
    await KubeGPUSpawner._stop_all_reflectors()
    reset_shared_state()
    reset_stores()


async def spawn(spawner):
    spawner.user_options = {"image": "demo", "gpus": 0}
    apply_gpu_options(spawner, spawner.user_options)
    return await asyncio.wait_for(spawner.start(), 90)


def secret_env_entries(pod: dict) -> dict:
    return {e["name"]: e for e in pod["spec"]["containers"][0].get("env", [])}


async def test_the_pod_names_the_users_secret_and_never_holds_the_value(
    cluster, make_spawner, namespace, tmp_path
):
    store = SecretStore("sqlite:///%s" % (tmp_path / "usage.sqlite"), [KEY])
    store.set("ann", "HF_TOKEN", HF_TOKEN)
    store.set("ann", "WANDB_API_KEY", "wandb-value-0001")

    ann = make_spawner("ann")
    await spawn(ann)
    secret = cluster.get_json("secret", "gpuspawner-secrets-ann", "-n", namespace)
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "HF_TOKEN": HF_TOKEN,
        "WANDB_API_KEY": "wandb-value-0001",
    }
    labels = secret["metadata"]["labels"]
    assert labels["hub.jupyter.org/username"] == "ann"
    assert labels["app.kubernetes.io/managed-by"] == "gpuspawner"
    assert labels["app"] == "jupyterhub"  # the hub's common labels
    pod = cluster.get_json("pod", ann.pod_name, "-n", namespace)
    env = secret_env_entries(pod)
    assert env["HF_TOKEN"] == {
        "name": "HF_TOKEN",
        "valueFrom": {
            "secretKeyRef": {"name": "gpuspawner-secrets-ann", "key": "HF_TOKEN", "optional": True}
        },
    }
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "WANDB_API_KEY"
    assert HF_TOKEN not in json.dumps(pod) and "wandb-value-0001" not in json.dumps(pod)
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "void"  # the locks still apply

    # another user: no Secret, no reference
    bob = make_spawner("bob")
    await spawn(bob)
    bob_pod = cluster.get_json("pod", bob.pod_name, "-n", namespace)
    assert "HF_TOKEN" not in secret_env_entries(bob_pod)
    names = [s["metadata"]["name"] for s in cluster.get_json("secrets", "-n", namespace)["items"]]
    assert "gpuspawner-secrets-bob" not in names

    # a change reaches the next spawn: the Secret is replaced, a deleted one is gone
    await ann.stop(now=True)
    store.set("ann", "HF_TOKEN", HF_TOKEN + "-new")
    store.delete("ann", "WANDB_API_KEY")
    await spawn(ann)
    secret = cluster.get_json("secret", "gpuspawner-secrets-ann", "-n", namespace)
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {
        "HF_TOKEN": HF_TOKEN + "-new"
    }
    pod = cluster.get_json("pod", ann.pod_name, "-n", namespace)
    assert "WANDB_API_KEY" not in secret_env_entries(pod)
    assert "HF_TOKEN" in secret_env_entries(pod)

    # no secrets left: the next spawn removes the Secret
    await ann.stop(now=True)
    store.delete("ann", "HF_TOKEN")
    await spawn(ann)
    names = [s["metadata"]["name"] for s in cluster.get_json("secrets", "-n", namespace)["items"]]
    assert "gpuspawner-secrets-ann" not in names
    store.dispose()


async def test_a_hub_that_may_not_update_secrets_replaces_the_users_secret(
    cluster, make_spawner, namespace, tmp_path
):
    """z2jh's hub Role lets it create and delete Secrets, not update them: a changed secret
    still reaches the next spawn (the Secret is deleted and made again)."""
    from kubernetes_asyncio.config import kube_config
    from kubespawner import clients

    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "hub", "namespace": namespace},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "persistentvolumeclaims", "events", "secrets"],
                    "verbs": ["get", "list", "watch", "create", "delete"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "hub", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hub"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "hub"}],
        },
    )
    store = SecretStore("sqlite:///%s" % (tmp_path / "usage.sqlite"), [KEY])
    store.set("cleo", "HF_TOKEN", HF_TOKEN)
    make_spawner("cleo")  # kubespawner loads its configuration once: before the switch
    await kube_config.load_kube_config(config_file=str(cluster.hub_kubeconfig))
    clients._client_cache.clear()
    try:
        cleo = make_spawner("cleo")
        await spawn(cleo)
        await cleo.stop(now=True)
        store.set("cleo", "HF_TOKEN", HF_TOKEN + "-rotated")
        await spawn(cleo)
    finally:
        await kube_config.load_kube_config(config_file=str(cluster.kubeconfig))
        clients._client_cache.clear()
    secret = cluster.get_json("secret", "gpuspawner-secrets-cleo", "-n", namespace)
    assert base64.b64decode(secret["data"]["HF_TOKEN"]).decode() == HF_TOKEN + "-rotated"
    store.dispose()
