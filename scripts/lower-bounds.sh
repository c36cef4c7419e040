#!/usr/bin/env bash
# The Docker and Kubernetes spec and spawner tests against the LOWEST dockerspawner,
# jupyterhub-kubespawner and docker (docker-py) that pyproject.toml allows; the rest of the
# suite runs against the highest (what pip installs). The three are installed once, without
# their dependencies, into a cached directory put in front of the test venv's packages.
#
#   bash scripts/lower-bounds.sh [python]     (default: the test venv's python)
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
python="${1:-$VENV/bin/python}"
pins=$("$python" - <<'PY'
import re
import tomllib

extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
lowest = {}
for requirement in extras["docker"] + extras["kubernetes"]:
    found = re.match(r"(dockerspawner|jupyterhub-kubespawner|docker)\s*>=\s*([0-9.]+)", requirement)
    if found:
        lowest[found.group(1)] = found.group(2)
print(" ".join("%s==%s" % pin for pin in sorted(lowest.items())))
PY
)
dir="$CACHE/lower-bounds/$(echo "$pins" | sha256sum | cut -c1-12)"
if [ ! -d "$dir" ]; then
    say "installing the lowest supported versions: $pins"
    rm -rf "$dir.tmp"
    "$python" -m pip install -q --no-deps --target "$dir.tmp" $pins
    mv "$dir.tmp" "$dir"
fi
found=$(PYTHONPATH="$dir" "$python" -c \
    "import docker, dockerspawner, kubespawner; print(dockerspawner.__version__, kubespawner.__version__, docker.__version__)")
say "lower bounds in use (dockerspawner, kubespawner, docker): $found"
PYTHONPATH="$dir" "$python" -m pytest -q -p no:cacheprovider \
    tests/test_docker_spec.py tests/test_docker_create.py tests/test_docker_spawner.py \
    tests/test_kube_objects.py tests/test_kube_parity.py tests/test_kube_cuda.py tests/test_kube_policy.py \
    tests/test_config.py
