"""The CUDA-vs-driver rule (pure), and the hub hiding and refusing images the driver cannot run."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuspawner.policy.cuda import (
    MINOR_VERSION_MINIMUM_DRIVER,
    DriverCuda,
    check_image_cuda,
    compatible,
    driver_tuple,
    parse_cuda,
)

# (image CUDA, driver version, driver's CUDA, minor-version verdict, strict verdict)
TABLE = [
    # same version, older images, older majors: always fine
    ("12.2", "535.104.05", (12, 2), True, True),
    ("12.1", "535.104.05", (12, 2), True, True),
    ("12.0", "535.104.05", (12, 2), True, True),
    ("11.8", "535.104.05", (12, 2), True, True),
    ("11.0", "550.54.15", (12, 4), True, True),
    ("12.8", "570.86.10", (12, 8), True, True),
    ("12.8", "575.51.03", (12, 9), True, True),
    ("12.8", "580.65.06", (13, 0), True, True),
    ("12.9", "580.82.07", (13, 0), True, True),
    # newer minor of the same major: minor-version compatibility from the major's first driver
    ("12.8", "535.104.05", (12, 2), True, False),
    ("12.8", "525.60.13", (12, 0), True, False),
    ("12.6", "530.30.02", (12, 1), True, False),
    ("12.9", "550.54.15", (12, 4), True, False),
    ("11.8", "470.82.01", (11, 4), True, False),
    ("11.8", "450.80.02", (11, 0), True, False),
    ("13.1", "580.65.06", (13, 0), True, False),
    # ... but not below that first driver
    ("11.8", "450.36.06", (11, 0), False, False),
    ("12.8", "525.0", (12, 0), False, False),
    ("13.1", "580.40", (13, 0), False, False),
    # a newer major never runs
    ("12.8", "470.82.01", (11, 4), False, False),
    ("12.0", "470.199.02", (11, 8), False, False),
    ("13.0", "575.51.03", (12, 9), False, False),
    ("13.0", "535.104.05", (12, 2), False, False),
    # a major with no known minor-version rule is judged strictly
    ("14.1", "700.1", (14, 0), False, False),
    ("14.0", "700.1", (14, 0), True, True),
    ("10.2", "440.33.01", (10, 1), False, False),
    # the driver's version unknown (configured CUDA only): its major is trusted
    ("12.8", "", (12, 2), True, False),
    ("13.0", "", (12, 9), False, False),
    ("11.8", "", (11, 0), True, False),
]


@pytest.mark.parametrize("image, version, supported, minor_ok, strict_ok", TABLE)
def test_the_table(image, version, supported, minor_ok, strict_ok):
    driver = DriverCuda(supported, version)
    assert compatible(parse_cuda(image), driver, "minor-version") is minor_ok
    assert compatible(parse_cuda(image), driver, "strict") is strict_ok
    for mode, ok in (("minor-version", minor_ok), ("strict", strict_ok)):
        sentence = check_image_cuda("pytorch-2.9", image, driver, mode)
        assert (sentence is None) is ok


def test_the_sentence_names_driver_limit_image_and_the_fix():
    driver = DriverCuda((12, 2), "535.104.05")
    assert check_image_cuda("pytorch-2.9", "12.8", driver, "strict") == (
        "This server's driver 535.104.05 supports CUDA up to 12.2; image 'pytorch-2.9' needs CUDA"
        " 12.8."
        " Pick another image, or ask an admin for a driver that supports CUDA 12.8."
    )
    assert check_image_cuda("pytorch-2.9", "12.8", DriverCuda((11, 4), "470.82.01")) == (
        "This server's driver 470.82.01 supports CUDA up to 11.4; image 'pytorch-2.9' needs CUDA"
        " 12.8."
        " Pick another image, or ask an admin for a driver that supports CUDA 12.8."
    )
    assert check_image_cuda("old", "11.8", DriverCuda((11, 0), "450.36.06")) == (
        "This server's driver 450.36.06 supports CUDA up to 11.0; image 'old' needs CUDA 11.8."
        " Pick another image, or ask an admin for a driver 450.80.02 or newer."
    )
    assert check_image_cuda("next", "13.0", DriverCuda((12, 9))) == (
        "This server's driver supports CUDA up to 12.9; image 'next' needs CUDA 13.0."
        " Pick another image, or ask an admin for a driver that supports CUDA 13.0."
    )


def test_unknown_driver_or_image_without_cuda_is_not_judged():
    assert check_image_cuda("x", "12.8", None) is None
    assert check_image_cuda("x", "", DriverCuda((11, 0), "450.36.06")) is None


@pytest.mark.parametrize("text", ["12", "12.8.1", "v12.8", "", "12.x", " "])
def test_bad_cuda_versions(text):
    with pytest.raises(ValueError, match="looks like '12.8'"):
        parse_cuda(text)


@pytest.mark.parametrize("text", ["", "535.", "r535", "535.104.05.1", "latest"])
def test_bad_driver_versions(text):
    with pytest.raises(ValueError, match="looks like '535.104.05'"):
        driver_tuple(text)


def test_driver_versions_compare_as_numbers():
    assert driver_tuple("525.105.17") > driver_tuple("525.60.13")
    assert driver_tuple("535.54") > driver_tuple("525.60.13")
    assert driver_tuple("1000.1") > driver_tuple("999.99.99")


def test_unknown_mode():
    with pytest.raises(ValueError, match="minor-version, strict"):
        compatible((12, 8), DriverCuda((12, 2)), "loose")


versions = st.tuples(st.integers(9, 14), st.integers(0, 9))
drivers = st.builds(
    DriverCuda,
    versions,
    st.one_of(
        st.just(""), st.tuples(st.integers(400, 700), st.integers(0, 200)).map("%d.%d".__mod__)
    ),
)


@given(versions, drivers)
def test_strict_is_never_looser_and_not_newer_always_runs(image, driver):
    strict = compatible(image, driver, "strict")
    assert strict <= compatible(image, driver, "minor-version")
    assert strict == (image <= driver.cuda)


@given(versions, drivers)
def test_a_newer_major_never_runs_and_minor_compat_needs_a_known_major(image, driver):
    if compatible(image, driver, "minor-version") and image > driver.cuda:
        assert image[0] == driver.cuda[0] and image[0] in MINOR_VERSION_MINIMUM_DRIVER


@given(versions, versions, drivers)
def test_an_older_image_runs_wherever_a_newer_one_does(a, b, driver):
    older, newer = sorted((a, b))
    for mode in ("strict", "minor-version"):
        if compatible(newer, driver, mode):
            assert compatible(older, driver, mode)


# --- the Docker backend's hook: hidden from the form, refused through the API ---

CATALOG = {
    "pytorch-2.9": {"image": "org/pytorch-notebook:2.9.1-cuda12.8", "cuda": "12.8"},
    "next": {"image": "org/next:1.0-cuda13.0", "cuda": "13.0"},
    "cpu": {"image": "org/cpu:1.0"},
}


def make_spawner(**settings):
    import types

    from traitlets.config import Config

    from gpuspawner.docker import GPUDockerSpawner

    config = Config()
    config.GPUDockerSpawner.images = CATALOG
    config.GPUDockerSpawner.inventory = []
    for key, value in settings.items():
        setattr(config.GPUDockerSpawner, key, value)
    return GPUDockerSpawner(
        user=types.SimpleNamespace(name="ana", groups=[], url="/user/ana/"),
        orm_spawner=types.SimpleNamespace(name="", user_options={}, server=None),
        hub=types.SimpleNamespace(
            public_host="", api_url="http://127.0.0.1:8081/hub/api", base_url="/hub/"
        ),
        config=config,
    )


def test_configured_driver_hides_and_refuses_what_it_cannot_run():
    from gpuspawner.lifecycle.refusal import SpawnRefused

    spawner = make_spawner(driver_cuda_version="12.2", driver_version="535.104.05")
    assert [i.key for i in spawner.offered_images()] == ["pytorch-2.9", "cpu"]
    with pytest.raises(SpawnRefused) as refused:
        spawner.choose({"image": "next"})
    assert refused.value.status_code == 400
    assert refused.value.jupyterhub_message.startswith(
        "This server's driver 535.104.05 supports CUDA up to 12.2; image 'next' needs CUDA 13.0."
    )
    assert spawner.choose({"image": "pytorch-2.9"}).image.key == "pytorch-2.9"


def test_strict_mode_also_refuses_newer_minors():
    spawner = make_spawner(driver_cuda_version="12.2", cuda_compatibility="strict")
    assert [i.key for i in spawner.offered_images()] == ["cpu"]


@pytest.fixture
def fresh_hub_process():
    """A hub process that has not asked NVML about the driver yet (and forgets it after)."""
    from gpuspawner.lifecycle.shared import reset_shared_state

    reset_shared_state()
    yield
    reset_shared_state()


def test_without_nvml_or_configuration_nothing_is_hidden(monkeypatch, fresh_hub_process):
    from gpuspawner import nvml

    def no_nvml():
        raise nvml.NvmlUnavailable("No NVIDIA driver was found here.")

    monkeypatch.setattr(nvml, "driver_info", no_nvml)
    assert [i.key for i in make_spawner().offered_images()] == ["pytorch-2.9", "next", "cpu"]


# With a driver to ask (the simulated NVML, no monkeypatching): tests/gpuhost/test_gpuhost_cuda.py.


@pytest.mark.parametrize(
    "setting, value", [("driver_cuda_version", "12"), ("driver_version", "r535")]
)
def test_bad_driver_settings_stop_the_hub(setting, value):
    from traitlets import TraitError

    with pytest.raises(TraitError, match=setting):
        make_spawner(**{setting: value})


@pytest.mark.docker
def test_hub_form_and_api_leave_out_an_image_the_driver_cannot_run(hub_factory, test_image):
    images = dict(
        test_image,
        next={"image": test_image["demo"]["image"], "display_name": "Next", "cuda": "13.0"},
    )
    hub = hub_factory(images=images, driver_cuda_version="12.2")
    hub.create_user("cuda-user")
    form = hub.spawn_form(hub.login("cuda-user"), "cuda-user")
    assert 'value="demo"' in form and 'value="next"' not in form
    response = hub.spawn("cuda-user", options={"image": "next"})
    assert response.status_code == 400
    assert response.json()["message"] == (
        "This server's driver supports CUDA up to 12.2; image 'next' needs CUDA 13.0."
        " Pick another image, or ask an admin for a driver that supports CUDA 13.0."
    )
