"""The shared lifecycle's pure helpers."""

from gpuspawner.lifecycle.base import holder_key, of_scope
from gpuspawner.policy.allocation import Holding
from gpuspawner.policy.inventory import Gpu


def test_a_hub_records_only_its_own_users_holdings():
    ours = Holding(holder_key("gpst1", 7), "", (Gpu("GPU-a"),), owner="ann")
    other_hub = Holding(holder_key("gpst2", 7), "", (Gpu("GPU-b"),), owner="ann")
    unknown_name = Holding("someone", "", (Gpu("GPU-c"),))  # a legacy label no user of ours has
    assert of_scope([ours, other_hub, unknown_name], "gpst1") == [ours]
    assert of_scope([ours, other_hub], "gpst") == []  # a scope is a whole prefix, not a start


def docker_spawner():
    import types

    from traitlets.config import Config

    from gpuspawner.docker import GPUDockerSpawner

    config = Config()
    config.GPUDockerSpawner.images = {"demo": {"image": "org/demo:1.0"}}
    config.GPUDockerSpawner.inventory = [{"uuid": "GPU-s0", "name": "NVIDIA A100"}]
    return GPUDockerSpawner(
        user=types.SimpleNamespace(name="ann", id=3, groups=[], url="/user/ann/"),
        orm_spawner=types.SimpleNamespace(name="", user_options={}, server=None),
        config=config,
    )


def kube_spawner():
    import types

    from gpuspawner.kube import KubeGPUSpawner

    user = types.SimpleNamespace(name="ann", id=3, url="/user/ann/", escaped_name="ann", groups=[])
    orm = types.SimpleNamespace(user_options={}, server=None, name="")
    images = {"demo": {"image": "org/demo:1.0"}}
    return KubeGPUSpawner(_mock=True, user=user, orm_spawner=orm, images=images, namespace="jhub")


async def test_one_saved_state_key_and_the_old_ones_still_load(offline_kubeconfig):
    spawner = docker_spawner()
    spawner.load_state({"gpu_uuids": ["GPU-s0"]})  # what the Docker backend saved before
    assert [gpu.uuid for gpu in spawner.held_gpus] == ["GPU-s0"]
    state = spawner.get_state()
    assert state["held_gpus"] == [{"uuid": "GPU-s0", "name": "GPU"}] and "gpu_uuids" not in state
    again = docker_spawner()
    again.load_state(state)
    assert again.held_gpus == spawner.held_gpus
    again.clear_state()
    assert again.held_gpus == () and "held_gpus" not in again.get_state()

    kube = kube_spawner()
    kube.load_state({"gpus": 2})  # a count, what the Kubernetes backend saved before
    assert [gpu.uuid for gpu in kube.held_gpus] == [
        "%s/nvidia.com/gpu#%d" % (kube.pod_name, i) for i in (0, 1)
    ]
    assert kube.gpu_count == 2 and kube.get_state()["held_gpus"][0]["resource"] == "nvidia.com/gpu"


def test_the_catalog_and_profiles_are_parsed_again_once_a_setting_is_replaced():
    spawner = docker_spawner()
    first = spawner.catalog
    assert spawner.catalog is first  # read several times a spawn, parsed once
    spawner.images = {"demo": {"image": "org/demo:2.0"}, "more": {"image": "org/more:1.0"}}
    assert [(i.key, i.image) for i in spawner.catalog] == [
        ("demo", "org/demo:2.0"), ("more", "org/more:1.0"),
    ]  # fmt: skip
    assert spawner.profile_set == ()
    spawner.profiles = {"lab": {"display_name": "Lab", "image": "more", "gpus": 0}}
    assert [(p.key, p.image) for p in spawner.profile_set] == [("lab", "more")]
    spawner.allow_unpinned_images = True
    spawner.images = {"demo": {"image": "org/demo:latest"}}
    assert [i.image for i in spawner.catalog] == ["org/demo:latest"]
