#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs (as root: the Docker
# engine, debootstrap, Chromium, the proxy, NVIDIA's container toolkit over a simulated
# GPU driver, a Kubernetes control plane with a real node), lints, builds the offline
# single-user image, then runs every test against the real engine, hub, browser and database.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
started=$SECONDS

ensure_commands debootstrap:debootstrap ssh:openssh-client
ensure_venv test
# Python lint first (seconds): ruff with pyproject.toml, flake8 with setup.cfg
bash scripts/lint.sh "$VENV/bin/python"
# a GPU host as far as software can make one (NVIDIA's toolkit over a simulated driver); it
# starts dockerd with the toolkit's hook on its PATH, or restarts one that lacks it
bash scripts/setup-gpuhost.sh
ensure_proxy
say "setting up the JupyterLab extension's tests"
bash scripts/setup-lab.sh "$VENV/bin/python"

say "PostgreSQL for the ledger tests: $(bash scripts/setup-postgres.sh)"
export GPUSPAWNER_PROMETHEUS; GPUSPAWNER_PROMETHEUS=$(bash scripts/setup-prometheus.sh)  # GPU-idle culling tests
bash scripts/setup-kube.sh
bash scripts/setup-kube-node.sh; export GPUSPAWNER_REQUIRE_KUBE_NODE=1  # a real node beside kwok's
say "building the single-user image with this checkout's wheel"
wheel=$(build_wheel)
image=$(bash images/build-offline.sh --wheel "$wheel" | tail -n 1)
say "single-user image: $image (set up in $((SECONDS - started)) s)"

export GPUSPAWNER_TEST_REGISTRY; GPUSPAWNER_TEST_REGISTRY=$(bash scripts/setup-registry.sh | tail -n 1)
export GPUSPAWNER_TEST_IMAGE=$image GPUSPAWNER_REQUIRE_DOCKER=1
# the Docker/Kubernetes spec and spawner tests against the lowest supported spawner versions
bash scripts/lower-bounds.sh "$VENV/bin/python"
"$VENV/bin/python" -m pytest "$@"
