"""Every JSON route's real responses against the one schema of the server extension's JSON.

The schema (gpuspawner/lab/schema/api.schema.json) is what the JupyterLab
extension's TypeScript types are generated from (labextension/src/api.ts), so
a payload that changes here without the schema fails these tests, and a schema
change shows up in the front end's types and its jest tests. The responses
come from a real Jupyter server: pytest-jupyter's jp_fetch, with GPU cards read
through the stand-in driver of lab_fakes (which can also fail a field or lose a
GPU on cue), and a ``jupyter lab`` process whose pynvml loads the simulated
libnvidia-ml.so.1 of tools/gpuhost (scripts/setup-gpuhost.sh builds it).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import secrets
import sys
import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest
from lab_fakes import GIB, FakeDevice, FakeDriver
from lab_helpers import HUB_GAVE_NO_GPU, HUB_SET_A_DEADLINE, needs_no_driver
from lab_server import start_lab
from referencing import Registry
from referencing.jsonschema import DRAFT7

from gpuspawner.lab.handlers import ROUTES
from gpuspawner.nvml import pynvml

SCHEMA = json.loads(files("gpuspawner.lab").joinpath("schema", "api.schema.json").read_text())
REGISTRY = Registry().with_resource(SCHEMA["$id"], DRAFT7.create_resource(SCHEMA))
JSON_ROUTES = ["/".join(parts) for parts, _ in ROUTES if parts[0] == "api"]
H100 = "NVIDIA H100 80GB HBM3"


def validator(route: str) -> jsonschema.Draft7Validator:
    pointer = route.replace("~", "~0").replace("/", "~1")
    return jsonschema.Draft7Validator(
        {"$ref": f"{SCHEMA['$id']}#/properties/{pointer}"},
        registry=REGISTRY,
        format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
    )


def problems(route: str, payload) -> list[str]:
    """What the schema says is wrong with ``payload``, one line per error; [] when valid."""
    return sorted(
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator(route).iter_errors(payload)
    )


def get(fetch, route: str):
    response = fetch("gpuspawner", *route.split("/"))
    assert response.code == 200, (route, response.code)
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


def test_the_schema_is_a_draft_7_schema_shipped_in_the_package():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_the_schema_names_exactly_the_json_routes():
    assert sorted(SCHEMA["properties"]) == sorted(JSON_ROUTES)
    assert sorted(SCHEMA["required"]) == sorted(JSON_ROUTES)


@needs_no_driver
@pytest.mark.parametrize(
    "gpu_environ", [{}, HUB_GAVE_NO_GPU, HUB_SET_A_DEADLINE],
    ids=["no-driver", "hub-gave-none", "deadline"], indirect=True,
)
@pytest.mark.parametrize("route", JSON_ROUTES)
def test_responses_without_a_gpu_match_the_schema(gpu_environ, fetch, route):
    payload = get(fetch, route)
    assert problems(route, payload) == []
    if route == "api/gpus":
        assert payload["available"] is False and payload["reason"]


TWO_GPUS = {"NVIDIA_VISIBLE_DEVICES": "GPU-aaaa1111,GPU-bbbb2222", "GPU_LIMIT": "2"}
MIG = {"NVIDIA_VISIBLE_DEVICES": "MIG-cccc3333,MIG-dddd4444", "GPU_LIMIT": "2"}
MISSING = {"NVIDIA_VISIBLE_DEVICES": "GPU-ffff0000", "GPU_LIMIT": "1"}


@pytest.fixture
def driver(monkeypatch):
    """Two whole GPUs (one running this process) and one in MIG mode with two instances."""
    mig = [FakeDevice("MIG-cccc3333", H100 + " MIG 1g.10gb", memory_total=10 * GIB),
           FakeDevice("MIG-dddd4444", H100 + " MIG 1g.10gb", memory_total=10 * GIB)]
    return FakeDriver(monkeypatch, [
        FakeDevice("GPU-aaaa1111", H100, processes=[(os.getpid(), 2 * GIB), (999999, None)]),
        FakeDevice("GPU-bbbb2222", H100, memory_used=40 * GIB),
        FakeDevice("GPU-eeee5555", H100, mig=mig),
    ])


def gpu_payloads(fetch, sampler, driver, host_pids: bool) -> dict[str, object]:
    """api/gpus twice (a second sample after a field failed and a GPU was lost), the history."""
    sampler.host_pids = host_pids
    first = get(fetch, "api/gpus")
    driver.fail("nvmlDeviceGetPowerUsage", pynvml.NVML_ERROR_NO_PERMISSION)
    driver.fail("nvmlDeviceGetMemoryInfo_v2", pynvml.NVML_ERROR_GPU_IS_LOST, uuid="GPU-bbbb2222")
    sampler.sample_once()
    return {"first": first, "second": get(fetch, "api/gpus"), "history": get(fetch, "api/history")}


@pytest.mark.parametrize("host_pids", [True, False], ids=["host-pids", "in-a-container"])
@pytest.mark.parametrize(
    "gpu_environ", [TWO_GPUS, MIG, MISSING], ids=["two-gpus", "mig", "missing"], indirect=True
)
def test_responses_with_gpus_match_the_schema(gpu_environ, fetch, sampler, driver, host_pids):
    payloads = gpu_payloads(fetch, sampler, driver, host_pids)
    assert problems("api/gpus", payloads["first"]) == []
    assert problems("api/gpus", payloads["second"]) == []
    assert problems("api/history", payloads["history"]) == []
    second = payloads["second"]
    if second["available"]:
        assert {gpu["uuid"] for gpu in second["gpus"]} == set(payloads["history"]["gpus"])
        assert all(gpu["errors"] for gpu in second["gpus"])  # each failed in some way
    else:
        assert "not visible" in second["reason"] and second["driver"] is not None


# -- the schema is strict: a payload that changes shape is refused --------------------------

MAPS = {("errors",), ("gpus",)}  # objects keyed by field name / GPU UUID, not records


def records(node, path=()) -> Iterator[tuple[tuple, dict]]:
    """Every JSON object in ``node`` that is a record (fixed keys), with its path."""
    if isinstance(node, dict):
        if path[-1:] not in MAPS:
            yield path, node
        for key, value in node.items():
            yield from records(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from records(value, (*path, index))


def scalars(node, path=()) -> Iterator[tuple]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from scalars(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from scalars(value, (*path, index))
    else:
        yield path


def at(node, path):
    for key in path:
        node = node[key]
    return node


def assert_every_change_is_refused(payloads: dict[str, object]) -> None:
    """A field dropped, added or retyped anywhere in these valid responses fails validation."""
    payloads = copy.deepcopy(payloads)
    payloads["history"]["gpus"] = {  # a record of history points only where it has some
        uuid: points for uuid, points in payloads["history"]["gpus"].items() if points
    }
    checked = 0
    for name, payload in payloads.items():
        route = "api/history" if name == "history" else "api/gpus"
        assert problems(route, payload) == []
        for path, record in records(payload):
            for key in record:
                dropped = copy.deepcopy(payload)
                del at(dropped, path)[key]
                where = "/".join(map(str, (*path, key)))
                assert problems(route, dropped), f"{route} without /{where}"
            added = copy.deepcopy(payload)
            at(added, path)["unexpected"] = 1
            where = "/".join(map(str, path))
            assert problems(route, added), f"{route} with a new field in /{where}"
            checked += 1
        for path in scalars(payload):
            retyped = copy.deepcopy(payload)
            at(retyped, path[:-1])[path[-1]] = {"retyped": True}
            where = "/".join(map(str, path))
            assert problems(route, retyped), f"{route} with /{where} retyped"
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("gpu_environ", [TWO_GPUS, MIG], ids=["two-gpus", "mig"], indirect=True)
def test_a_changed_payload_breaks_the_schema(gpu_environ, fetch, sampler, driver):
    assert_every_change_is_refused(gpu_payloads(fetch, sampler, driver, host_pids=True))


# -- a jupyter lab process on the simulated GPU host ----------------------------------------

SIMSTATE = Path(__file__).resolve().parents[3] / "tools" / "gpuhost" / "simstate.py"


@pytest.fixture
def simulated_host():
    """A simulated GPU host of this test's own (8 A100s, the last in MIG mode), removed after."""
    if os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1":
        assert SIMSTATE.is_file(), SIMSTATE
    elif not SIMSTATE.is_file():
        pytest.skip(f"no {SIMSTATE}")
    simstate = sys.modules.get("simstate")  # tests/gpuhost may have loaded it
    if simstate is None:
        spec = importlib.util.spec_from_file_location("simstate", SIMSTATE)
        simstate = sys.modules["simstate"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(simstate)
    try:
        lib = simstate.lib_dir() / "libnvidia-ml.so.1"
        assert lib.is_file(), lib
        host = simstate.SimHost.create("schema-" + secrets.token_hex(4))
    except (AssertionError, FileNotFoundError, PermissionError) as e:
        if os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1":
            raise
        pytest.skip(f"no simulated GPU host (bash scripts/setup-gpuhost.sh): {e}")
    yield simstate, host
    host.remove()


def lab_json(lab, route: str, ready=lambda payload: True, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        status, body = lab.get("gpuspawner/" + route)
        assert status == 200, (route, status, body[:200])
        payload = json.loads(body)
        if ready(payload) or time.monotonic() > deadline:
            return payload
        time.sleep(0.3)


def seen_the_process(snapshot) -> bool:
    """The first GPU's process is in the snapshot (named, or counted inside a container)."""
    if not snapshot["gpus"]:
        return False
    gpu = snapshot["gpus"][0]
    return bool(gpu["processes"] or gpu["other_processes"]["count"])


def test_a_lab_on_the_simulated_gpu_host_answers_by_the_schema(tmp_path, simulated_host):
    simstate, host = simulated_host
    whole, other, *_ = host.allocatable()
    migs = [uuid for uuid in host.allocatable() if uuid.startswith("MIG-")][:2]
    given = [whole, other, *migs]
    env = dict(host.env(), NVIDIA_VISIBLE_DEVICES=",".join(given), GPU_LIMIT=str(len(given)),
               GPUSPAWNER_GPU_UUIDS=",".join(given))
    lab = start_lab(tmp_path, env=env)
    try:
        host.update(whole, util_gpu=91, memory_used=40 * simstate.GIB)
        host.set_processes(whole, [(lab.process.pid, 2 * simstate.GIB)])
        first = lab_json(lab, "api/gpus", seen_the_process)
        assert [gpu["uuid"] for gpu in first["gpus"]] == given, first
        host.fail(whole, "nvmlDeviceGetPowerUsage", simstate.NO_PERMISSION)
        host.lose(other)
        second = lab_json(lab, "api/gpus", lambda p: p["gpus"][1]["lost"])
        history = lab_json(lab, "api/history", lambda h: len(h["gpus"].get(whole, [])) > 1)
    finally:
        lab.stop()
    payloads = {"first": first, "second": second, "history": history}
    assert problems("api/gpus", first) == []
    assert problems("api/gpus", second) == []
    assert problems("api/history", history) == []
    assert second["gpus"][0]["errors"] == {"power": "no permission to read power"}
    assert second["gpus"][1]["lost"] is True
    assert seen_the_process(first)
    assert first["gpus"][2]["mig_parent_uuid"] and first["gpus"][2]["utilization"] is None
    assert_every_change_is_refused(payloads)
