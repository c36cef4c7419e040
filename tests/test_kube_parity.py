"""KubeGPUSpawner's pod is plain KubeSpawner's pod plus the GPU server's parts (no cluster).

A hub configured as the zero-to-jupyterhub chart's hub config configures KubeSpawner (its
default values, with deploy/z2jh-values.yaml's ``singleuser.storage.type: none``) is given
to plain KubeSpawner and to KubeGPUSpawner; their pods must be equal but for the documented
additions. Then each setting kubespawner honours is checked to reach the pod.
"""

import copy
import types

import pytest
from kubernetes_asyncio import client as k8s
from traitlets import TraitError
from traitlets.config import Config

from gpuspawner.kube.objects import api_dict
from gpuspawner.lifecycle.refusal import SpawnRefused

RELEASE = "jhub"
IMAGE = "registry.example.org/pytorch-notebook:2.9.1-cuda12.8"
NODE_PURPOSE = {"key": "hub.jupyter.org/node-purpose", "operator": "In", "values": ["user"]}
USER_TOLERATIONS = [
    {"key": key, "operator": "Equal", "value": "user", "effect": "NoSchedule"}
    for key in ("hub.jupyter.org/dedicated", "hub.jupyter.org_dedicated")
]


def block_cloud_metadata():
    """The init container the chart's hub config adds (singleuser.cloudMetadata)."""
    return k8s.V1Container(
        name="block-cloud-metadata",
        image="quay.io/jupyterhub/k8s-network-tools:4.2.0",
        command=[
            "iptables",
            "--append",
            "OUTPUT",
            "--protocol",
            "tcp",
            "--destination",
            "169.254.169.254",
            "--destination-port",
            "80",
            "--jump",
            "DROP",
        ],  # fmt: skip
        security_context=k8s.V1SecurityContext(
            privileged=True, run_as_user=0, capabilities=k8s.V1Capabilities(add=["NET_ADMIN"])
        ),
        resources={},
    )


def z2jh_config(**spawner) -> Config:
    """What the chart's jupyterhub_config.py sets on KubeSpawner from its default values."""
    c = Config()
    ks = c.KubeSpawner
    ks.common_labels = {
        "app": "jupyterhub",
        "heritage": "jupyterhub",
        "chart": "jupyterhub-4.2.0",
        "release": RELEASE,
    }
    ks.namespace = RELEASE
    ks.start_timeout = 300
    ks.image_pull_policy = "IfNotPresent"
    ks.events_enabled = True
    ks.uid = 1000
    ks.fs_gid = 100
    ks.allow_privilege_escalation = False
    ks.mem_guarantee = "1G"
    ks.image = IMAGE
    ks.cmd = ["jupyterhub-singleuser"]
    ks.scheduler_name = RELEASE + "-user-scheduler"
    ks.node_affinity_preferred = [
        {"weight": 100, "preference": {"matchExpressions": [NODE_PURPOSE]}}
    ]
    ks.tolerations = copy.deepcopy(USER_TOLERATIONS)
    ks.init_containers = [block_cloud_metadata()]
    for name, value in spawner.items():
        setattr(ks, name, value)
    c.KubeGPUSpawner.images = {"pytorch-2.9": {"image": IMAGE, "display_name": "PyTorch 2.9"}}
    return c


def make(spawner_class, config: Config):
    user = types.SimpleNamespace(
        name="alice", id=7, url="/user/alice/", escaped_name="alice", groups=[]
    )
    orm = types.SimpleNamespace(user_options={}, server=None, name="")
    spawner = spawner_class(_mock=True, user=user, orm_spawner=orm, config=config)
    spawner.api_token = "token"
    return spawner


async def pods(config: Config) -> tuple[dict, dict]:
    """The pods plain KubeSpawner and KubeGPUSpawner (0 GPUs) build from ``config``."""
    from kubespawner import KubeSpawner

    from gpuspawner.kube import KubeGPUSpawner

    plain = make(KubeSpawner, config)
    await plain.load_user_options()
    gpu = make(KubeGPUSpawner, config)
    gpu.spawn_choice()
    await gpu.load_user_options()
    return api_dict(await plain.get_pod_manifest()), api_dict(await gpu.get_pod_manifest())


async def gpu_pod(**spawner) -> dict:
    return (await pods(z2jh_config(**spawner)))[1]


def server(pod: dict) -> dict:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return container


def env_of(pod: dict) -> dict:
    return {entry["name"]: entry for entry in server(pod)["env"]}


async def test_a_z2jh_pod_is_plain_kubespawners_plus_the_gpu_parts(offline_kubeconfig):
    plain, gpu = await pods(z2jh_config())
    expected = copy.deepcopy(plain)
    expected["metadata"]["labels"].update({"gpuspawner.io/gpus": "0", "gpuspawner.io/user-id": "7"})
    expected["metadata"]["annotations"].update(
        {"gpuspawner.io/gpu-resource": "nvidia.com/gpu", "gpuspawner.io/image": "pytorch-2.9"}
    )
    container = server(expected)
    # the GPU variables of a server without a GPU (lifecycle/env.py), in kubespawner's order
    added_env = {
        "GPU_LIMIT": "0",
        "GPUSPAWNER_GPU_UUIDS": "",
        "GPUSPAWNER_NO_GPU_REASON": "No GPU was requested for this server.",
        "NVIDIA_VISIBLE_DEVICES": "void",
    }
    names = sorted({e["name"] for e in container["env"]} | set(added_env))
    plain_env = {e["name"]: e for e in container["env"]}
    container["env"] = [plain_env.get(n) or {"name": n, "value": added_env[n]} for n in names]
    # quantities as strings (kubespawner gives numbers)
    for values in container["resources"].values():
        values.update({name: str(value) for name, value in values.items()})
    # the locks: not privileged, non-root, all capabilities dropped; the gid
    container["securityContext"].update(
        {
            "privileged": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "runAsGroup": 100,
        }
    )
    # the workspace claim and a memory-backed /dev/shm
    container["volumeMounts"] += [
        {"name": "workspace", "mountPath": "/home/jovyan/work"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    expected["spec"]["volumes"] += [
        {"name": "workspace", "persistentVolumeClaim": {"claimName": "gpuspawner-workspace-alice"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}},
    ]
    assert {k for k in env_of(gpu) if k.startswith("GPUSPAWNER_DEADLINE")} == set()
    assert gpu == expected
    # what the chart sets reaches both pods
    spec = gpu["spec"]
    assert [c["name"] for c in spec["initContainers"]] == ["block-cloud-metadata"]
    assert spec["initContainers"][0]["securityContext"]["capabilities"] == {"add": ["NET_ADMIN"]}
    assert spec["tolerations"] == USER_TOLERATIONS
    assert spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == [
        {"weight": 100, "preference": {"matchExpressions": [NODE_PURPOSE]}}
    ]
    assert spec["schedulerName"] == "jhub-user-scheduler"
    assert spec["restartPolicy"] == "OnFailure"
    assert server(gpu)["args"] == ["jupyterhub-singleuser"] and "command" not in server(gpu)


async def test_a_gpu_server_adds_its_gpu_parts_to_the_chart_settings(offline_kubeconfig):
    from gpuspawner.kube import KubeGPUSpawner

    config = z2jh_config(node_affinity_required=[{"matchExpressions": [NODE_PURPOSE]}])
    config.KubeGPUSpawner.gpu_product = "NVIDIA-L4"
    config.KubeGPUSpawner.extra_resource_limits = {"nvidia.com/gpu": "8"}  # not the admin's
    spawner = make(KubeGPUSpawner, config)
    spawner.spawn_choice()
    spawner.held_gpus = spawner.requested_gpus(2)
    pod = api_dict(await spawner.get_pod_manifest())
    spec = pod["spec"]
    assert spec["tolerations"] == USER_TOLERATIONS + [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    product = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-L4"]}
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchExpressions": [NODE_PURPOSE, product]}]
    }
    resources = server(pod)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "2"
    assert "NVIDIA_VISIBLE_DEVICES" not in env_of(pod) and env_of(pod)["GPU_LIMIT"]["value"] == "2"
    assert pod["metadata"]["labels"]["gpuspawner.io/gpus"] == "2"


async def test_environment_value_from_and_extra_container_config_env_reach_the_pod(
    offline_kubeconfig,
):
    secret = {"secretKeyRef": {"name": "hf", "key": "token"}}
    pod = await gpu_pod(
        environment={
            "HF_TOKEN": {"valueFrom": secret},
            "BASE": "/data",
            "CACHE": "$(BASE)/cache",
            "NVIDIA_VISIBLE_DEVICES": "all",
        },
        extra_container_config={
            "env": [{"name": "EXTRA", "value": "1"}, {"name": "BASE", "value": "/scratch"}],
            "workingDir": "/home/jovyan/work",
        },
    )
    env = env_of(pod)
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": secret}
    assert env["EXTRA"] == {"name": "EXTRA", "value": "1"}
    assert env["BASE"] == {"name": "BASE", "value": "/scratch"}  # the admin's entry, in place
    assert env["NVIDIA_VISIBLE_DEVICES"] == {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}
    assert "JUPYTERHUB_API_TOKEN" in env and "GPU_LIMIT" in env  # the hub's stay
    names = [e["name"] for e in server(pod)["env"]]
    assert names.index("BASE") < names.index("CACHE")  # a $(VAR) comes after VAR
    assert server(pod)["workingDir"] == "/home/jovyan/work"


async def test_each_kubespawner_setting_reaches_the_pod(offline_kubeconfig):
    hook = {"postStart": {"exec": {"command": ["sh", "-c", "echo started"]}}}
    sidecar = {"name": "sidecar", "image": "busybox:1.36", "command": ["sleep", "inf"]}
    term = {"labelSelector": {"matchLabels": {"a": "b"}}, "topologyKey": "kubernetes.io/hostname"}
    weighted = {"weight": 10, "podAffinityTerm": term}
    pod = await gpu_pod(
        image_pull_secrets=["registry-credentials"],
        lifecycle_hooks=hook,
        extra_containers=[sidecar],
        priority_class_name="jhub-default-priority",
        node_affinity_required=[{"matchExpressions": [NODE_PURPOSE]}],
        pod_affinity_required=[term],
        pod_affinity_preferred=[weighted],
        pod_anti_affinity_required=[term],
        pod_anti_affinity_preferred=[weighted],
        extra_pod_config={"dnsPolicy": "ClusterFirst", "enableServiceLinks": False},
    )
    spec = pod["spec"]
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert server(pod)["lifecycle"] == hook
    assert [c["name"] for c in spec["containers"]] == ["notebook", "sidecar"]
    assert spec["priorityClassName"] == "jhub-default-priority"
    affinity = spec["affinity"]
    assert affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] == {
        "nodeSelectorTerms": [{"matchExpressions": [NODE_PURPOSE]}]
    }
    for kind in ("podAffinity", "podAntiAffinity"):
        assert affinity[kind] == {
            "requiredDuringSchedulingIgnoredDuringExecution": [term],
            "preferredDuringSchedulingIgnoredDuringExecution": [weighted],
        }
    assert spec["dnsPolicy"] == "ClusterFirst" and spec["enableServiceLinks"] is False


async def test_internal_ssl_mounts_the_cert_secret(offline_kubeconfig):
    from gpuspawner.kube import KubeGPUSpawner

    spawner = make(KubeGPUSpawner, z2jh_config(secret_mount_path="/etc/jupyterhub/ssl/"))
    spawner.internal_ssl = True  # the hub sets it on each spawner from JupyterHub.internal_ssl
    spawner.spawn_choice()
    pod = api_dict(await spawner.get_pod_manifest())
    volume = {"name": "jupyterhub-internal-certs",
              "secret": {"secretName": "jupyter-alice", "defaultMode": 511}}  # fmt: skip
    assert volume in pod["spec"]["volumes"]
    assert {"name": "jupyterhub-internal-certs", "mountPath": "/etc/jupyterhub/ssl/"} in server(
        pod
    )["volumeMounts"]
    assert env_of(pod)["JUPYTERHUB_SSL_KEYFILE"]["value"] == "/etc/jupyterhub/ssl/ssl.key"


async def test_modify_pod_hook_gets_the_gpu_pod(offline_kubeconfig):
    from gpuspawner.kube import KubeGPUSpawner

    seen = []

    def hook(spawner, pod):
        seen.append(pod.metadata.labels["gpuspawner.io/gpus"])
        pod.metadata.labels["hooked"] = "yes"
        return pod

    spawner = make(KubeGPUSpawner, z2jh_config(modify_pod_hook=hook))
    spawner.spawn_choice()
    pod = await spawner.get_pod_manifest()
    # what KubeSpawner._start does with the manifest
    pod = spawner.modify_pod_hook(spawner, pod)
    assert seen == ["0"] and pod.metadata.labels["hooked"] == "yes"
    assert pod.spec.containers[0].security_context.run_as_non_root is True


async def test_a_default_profile_does_not_replace_the_catalog_image(offline_kubeconfig):
    profiles = [
        {
            "display_name": "Default",
            "default": True,
            "kubespawner_override": {"image": "jupyter/base-notebook:latest", "cpu_limit": 2},
        }
    ]
    pod = await gpu_pod(profile_list=profiles)
    assert server(pod)["image"] == IMAGE
    assert server(pod)["resources"]["limits"]["cpu"] == "2.0"  # the rest of the profile applies


async def test_storage_selector_reaches_the_claim(offline_kubeconfig):
    from gpuspawner.kube import KubeGPUSpawner

    selector = {"matchLabels": {"disk": "{username}"}}
    spawner = make(KubeGPUSpawner, z2jh_config(storage_selector=selector))
    claim = api_dict(spawner.get_pvc_manifest())
    assert claim["spec"]["selector"] == {"matchLabels": {"disk": "alice"}}


async def test_the_admins_extras_still_cannot_add_privileges_or_gpus(offline_kubeconfig):
    pod = await gpu_pod(
        container_security_context={
            "privileged": True,
            "runAsUser": 0,
            "capabilities": {"add": ["SYS_ADMIN"]},
        },
        extra_resource_limits={"nvidia.com/gpu": "4", "example.com/fpga": "1"},
    )
    security = server(pod)["securityContext"]
    assert security["privileged"] is False and security["runAsUser"] == 1000
    assert security["runAsNonRoot"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert server(pod)["resources"]["limits"] == {"example.com/fpga": "1"}
    # a static setting is refused at start-up, one from a profile when the server starts
    with pytest.raises(TraitError, match="extra_containers securityContext.privileged"):
        await gpu_pod(extra_containers=[{"name": "x", "securityContext": {"privileged": True}}])
    gpu_init = k8s.V1Container(name="i", resources={"limits": {"nvidia.com/gpu": "1"}})
    with pytest.raises(TraitError, match=r"init_containers resources \['nvidia.com/gpu'\]"):
        await gpu_pod(init_containers=[gpu_init])
    privileged = {"extra_pod_config": {"hostPID": True}}
    profile = [{"display_name": "p", "default": True, "kubespawner_override": privileged}]
    with pytest.raises(SpawnRefused, match="extra_pod_config.hostPID"):
        await gpu_pod(profile_list=profile)


def deploy_values() -> dict:
    import pathlib

    import yaml

    path = pathlib.Path(__file__).parent.parent / "deploy" / "z2jh-values.yaml"
    return yaml.safe_load(path.read_text())


async def test_the_deploy_values_give_the_chart_settings_to_the_pod(offline_kubeconfig):
    """deploy/z2jh-values.yaml's hub.config over the chart's hub config, as the chart loads it."""
    from gpuspawner.kube import KubeGPUSpawner

    values = deploy_values()
    config = z2jh_config()
    config.merge(Config(values["hub"]["config"]))
    config.JupyterHub.services = []
    config.JupyterHub.load_roles = []
    spawner = make(KubeGPUSpawner, config)
    spawner.spawn_choice()
    pod = api_dict(await spawner.get_pod_manifest())
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["block-cloud-metadata"]
    assert pod["spec"]["schedulerName"] == "jhub-user-scheduler"
    assert (
        server(pod)["image"]
        == values["hub"]["config"]["KubeGPUSpawner"]["images"]["pytorch-2.9"]["image"]
    )
    # every catalog image is pre-pulled on every node
    pulled = {"%s:%s" % (i["name"], i["tag"]) for i in values["prePuller"]["extraImages"].values()}
    assert {image.image for image in spawner.catalog} <= pulled
    # the admin service, as hub.extraConfig adds it
    exec(values["hub"]["extraConfig"]["gpuspawner-admin"], {"c": config})
    (service,) = config.JupyterHub.services
    assert service["name"] == "gpu-admin" and service["url"] == "http://hub:10101"
    assert {"port": 10101, "protocol": "TCP"} in values["hub"]["networkPolicy"]["ingress"][0][
        "ports"
    ]


async def test_the_pod_is_kubespawners_object_changed_only_where_the_gpu_parts_change_it(
    offline_kubeconfig,
):
    from gpuspawner.kube import KubeGPUSpawner

    config = z2jh_config(volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}])
    config.KubeGPUSpawner.gpu_product = "NVIDIA-L4"
    spawner = make(KubeGPUSpawner, config)
    spawner.spawn_choice()
    spawner.held_gpus = spawner.requested_gpus(1)
    pod = await spawner.get_pod_manifest()
    assert api_dict(pod) == await spawner.pod_manifest()  # what the pure builder says
    # what kubespawner left as dicts stays so, as for plain KubeSpawner (hooks may rely on it)
    (term,) = pod.spec.affinity.node_affinity.preferred_during_scheduling_ignored_during_execution
    assert term.preference == {"matchExpressions": [NODE_PURPOSE]}
    assert pod.spec.volumes[0].persistent_volume_claim == {"claimName": "d"}
    # what the GPU parts added is typed
    required = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    assert required.node_selector_terms[0].match_expressions[0].key == "nvidia.com/gpu.product"
    assert pod.spec.volumes[-1].empty_dir.medium == "Memory"
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"


async def test_the_claim_is_kubespawners_but_its_deprecated_class_annotation(offline_kubeconfig):
    from kubespawner import KubeSpawner

    from gpuspawner.kube import KubeGPUSpawner

    config = z2jh_config(
        storage_class="fast",
        storage_capacity="10Gi",
        storage_selector={"matchLabels": {"disk": "{username}"}},
        storage_extra_labels={"who": "{username}"},
        pvc_name_template="claim-{username}",
    )
    plain = api_dict(make(KubeSpawner, config).get_pvc_manifest())
    ours = api_dict(make(KubeGPUSpawner, config).get_pvc_manifest())
    del plain["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
    assert ours == plain
    assert ours["spec"]["storageClassName"] == "fast"
    # an empty class is the cluster's default class, not "no class"
    config.KubeSpawner.storage_class = ""
    assert (
        "storageClassName" not in api_dict(make(KubeGPUSpawner, config).get_pvc_manifest())["spec"]
    )


async def test_shared_gpu_resources_are_checked(offline_kubeconfig):
    """shared_gpu_resources names extended resources shared by at least 2 servers; a
    gpu_resource or gpu_profiles resource is a GPU resource or one of them."""
    from gpuspawner.kube import KubeGPUSpawner

    def spawner(**settings):
        config = z2jh_config()
        for name, value in settings.items():
            setattr(config.KubeGPUSpawner, name, value)
        return make(KubeGPUSpawner, config)

    assert spawner().shared_gpu_resources == {"nvidia.com/gpu.shared": 4}
    with pytest.raises(TraitError, match="'sliced' is not an extended resource name"):
        spawner(shared_gpu_resources={"sliced": 4})
    with pytest.raises(TraitError, match="is 1: a shared GPU is shared by at least 2 servers"):
        spawner(shared_gpu_resources={"nvidia.com/gpu.shared": 1})
    with pytest.raises(TraitError, match="'example.com/sliced' is not a GPU resource name"):
        spawner(gpu_resource="example.com/sliced")
    sliced = spawner(
        gpu_resource="example.com/sliced", shared_gpu_resources={"example.com/sliced": 3}
    )
    assert sliced.gpu_replicas("example.com/sliced") == 3
    assert sliced.gpu_replicas("nvidia.com/gpu") == 1
    with pytest.raises(TraitError, match=r"gpu_profiles\['pytorch-2.9'\]: 'example.com/other'"):
        spawner(gpu_profiles={"pytorch-2.9": {"resource": "example.com/other"}})
