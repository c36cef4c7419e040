"""The package's layout: old module paths still import (and warn), entry points load, and the
modules import each other without a loop."""

import ast
import importlib
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from gpuspawner._moved import MOVED

PACKAGE = Path(__file__).resolve().parents[1] / "gpuspawner"


def fresh_import(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter with every warning shown once."""
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_moved_module_imports_from_its_old_path_and_warns(old):
    new = MOVED[old]
    result = fresh_import(
        "import %s as m; print(sorted(n for n in dir(m) if not n.startswith('_')))" % old
    )
    assert result.returncode == 0, result.stderr
    assert "DeprecationWarning: %s has moved to %s" % (old, " and ".join(new)) in result.stderr
    assert result.stderr.count("DeprecationWarning") == 1


def test_a_moved_name_is_the_same_object():
    with pytest.warns(DeprecationWarning, match="gpuspawner.kubespec has moved"):
        old = importlib.import_module("gpuspawner.kubespec")
    from gpuspawner.kube import messages, nodes, objects

    assert old.pod_spec is objects.pod_spec
    assert old.cuda_verdicts is nodes.cuda_verdicts
    assert old.explain_unschedulable is messages.explain_unschedulable
    with pytest.raises(AttributeError):
        old.no_such_name  # noqa: B018


def test_names_of_the_old_backend_modules_still_resolve():
    result = fresh_import(
        "from gpuspawner.kube import holdings_from_pods, KubeGPUSpawner\n"
        "from gpuspawner.docker import holdings_from_containers, GPUDockerSpawner\n"
        "from gpuspawner.base import SpawnRefused, apply_gpu_options\n"
        "print(holdings_from_pods.__module__, holdings_from_containers.__module__,"
        " SpawnRefused.__module__)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "gpuspawner.kube.holdings",
        "gpuspawner.docker.spawner",
        "gpuspawner.lifecycle.refusal",
    ]
    # one warning per moved name, none for the spawner classes
    assert result.stderr.count("DeprecationWarning") == 3
    assert "KubeGPUSpawner has moved" not in result.stderr
    assert "GPUDockerSpawner has moved" not in result.stderr


def test_entry_points_load_the_spawners():
    spawners = {ep.name: ep for ep in entry_points(group="jupyterhub.spawners")}
    assert spawners["gpu-docker"].load().__name__ == "GPUDockerSpawner"
    assert spawners["gpu-kubernetes"].load().__name__ == "KubeGPUSpawner"


def test_the_pure_parts_import_without_the_engines():
    blocked = (
        "dockerspawner",
        "docker",
        "kubespawner",
        "kubernetes_asyncio",
        "jupyterhub",
        "sqlalchemy",
    )
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in %r: raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import gpuspawner.policy.allocation, gpuspawner.policy.budget, gpuspawner.policy.options\n"
        "import gpuspawner.policy.cuda, gpuspawner.docker.spec, gpuspawner.kube.objects\n"
        "import gpuspawner.kube.nodes, gpuspawner.kube.messages, gpuspawner.kube.holdings\n"
        "import gpuspawner.nvml, gpuspawner.lab.visible\n" % (blocked,)
    )
    result = fresh_import(code)
    assert result.returncode == 0, result.stderr


def module_imports(path: Path) -> set[str]:
    """The gpuspawner modules ``path`` imports, at module level or inside functions."""
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    if path.name == "__init__.py":
        name = package
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                candidate = "%s.%s" % (base, alias.name)
                found.add(candidate if module_path(candidate) else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("gpuspawner") and module_path(m) and m != name}


def module_path(name: str) -> Path | None:
    relative = Path(*name.split("."))
    for candidate in (
        PACKAGE.parent / relative.with_suffix(".py"),
        PACKAGE.parent / relative / "__init__.py",
    ):
        if candidate.exists():
            return candidate
    return None


def test_no_import_loop():
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
            ".__init__"
        )
        graph[name] = module_imports(path)
    loops = []

    def visit(node, trail):
        if node in trail:
            loops.append(trail[trail.index(node) :] + [node])
            return
        if node in done:
            return
        for target in sorted(graph.get(node, ())):
            visit(target, trail + [node])
        done.add(node)

    done: set[str] = set()
    for node in sorted(graph):
        visit(node, [])
    assert loops == []
