"""Bad gpuspawner configuration stops the hub at start with the reason."""

import subprocess
import sys

import pytest
from traitlets.config import Config

from gpuspawner.config import check_config
from gpuspawner.errors import ConfigError


def config(**settings):
    c = Config()
    c.GPUDockerSpawner.images = {"demo": {"image": "org/demo:1.0"}}
    c.GPUDockerSpawner.inventory = [{"uuid": "GPU-1"}]
    for key, value in settings.items():
        setattr(c.GPUDockerSpawner, key, value)
    return c


def test_good_config_passes():
    check_config(config())


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"images": {"demo": {"image": "org/demo:latest"}}}, "is not pinned"),
        ({"images": {"demo": {"image": "org/demo"}}}, "is not pinned"),
        ({"images": {}}, "catalog (images) is empty"),
        ({"gpus": [{"uuid": "0"}]}, "not a GPU UUID"),
        ({"gpus": [{"uuid": "GPU-1"}, {"uuid": "GPU-1"}]}, "listed twice"),
        ({"gpu_quota_groups": {"staff": -1}}, "whole number of GPUs"),
        ({"gpu_quota": -1}, "0 or more"),
        ({"default_image": "nope"}, "default_image 'nope'"),
        ({"container_user": "0"}, "non-root"),
        ({"container_user": "root:root"}, "non-root"),
        ({"gpu_mode": "magic"}, "gpu_mode"),
    ],
)
def test_bad_config_refused_with_reason(settings, words):
    with pytest.raises(ConfigError) as error:
        check_config(config(**settings))
    assert words in str(error.value)


def test_unpinned_allowed_when_asked():
    check_config(config(images={"demo": {"image": "org/demo:latest"}}, allow_unpinned_images=True))


def test_hub_refuses_to_start_with_an_unpinned_image(tmp_path):
    """The runnable config ends with check_config: a real `jupyterhub` exits with the reason."""
    bad = tmp_path / "bad_config.py"
    bad.write_text(
        "c = get_config()\n"
        "c.GPUDockerSpawner.images = {'demo': {'image': 'org/demo:latest'}}\n"
        "c.GPUDockerSpawner.inventory = []\n"
        "from gpuspawner.config import check_config\n"
        "check_config(c)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "jupyterhub", "-f", str(bad), "--JupyterHub.port=0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "image 'org/demo:latest' is not pinned" in result.stderr + result.stdout


def test_the_inventory_under_its_old_name_still_works_and_warns(caplog):
    from gpuspawner.docker import GPUDockerSpawner

    c = Config()
    c.GPUDockerSpawner.images = {"demo": {"image": "org/demo:1.0"}}
    c.GPUDockerSpawner.gpus = [{"uuid": "GPU-old", "name": "Old name"}]
    with caplog.at_level("WARNING"):
        spawner = GPUDockerSpawner(config=c)
    assert [gpu.uuid for gpu in spawner.gpu_inventory()] == ["GPU-old"]
    assert (
        "GPUDockerSpawner.gpus is deprecated in gpuspawner 0.x, use GPUDockerSpawner.inventory"
        in caplog.text
    )
    with pytest.raises(ConfigError, match=r"gpus\[1\]: GPU GPU-old is listed twice"):
        check_config(config(gpus=[{"uuid": "GPU-old"}, {"uuid": "GPU-old"}]))
