#!/usr/bin/env bash
# Run a hub on http://127.0.0.1:8000 with gpuspawner's Docker backend, sqlite and a
# demo login. Builds a single-user image first if none is there:
#   - where Docker can pull the PyTorch base image: the real PyTorch-CUDA image
#     (images/Dockerfile, gpuspawner/pytorch-notebook:2.9.1-cuda12.8);
#   - otherwise (no registry): the offline image (images/build-offline.sh).
# GPUSPAWNER_DEMO_IMAGE=name:tag skips the build and uses that image.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

PYTORCH_BASE=${GPUSPAWNER_PYTORCH_BASE:-pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime}
PYTORCH_IMAGE=gpuspawner/pytorch-notebook:2.9.1-cuda12.8

ensure_docker
ensure_proxy
ensure_venv docker

image=${GPUSPAWNER_DEMO_IMAGE:-}
if [ -z "$image" ]; then
    if docker image inspect "$PYTORCH_IMAGE" >/dev/null 2>&1; then
        image=$PYTORCH_IMAGE
        say "single-user image: $image (already built)"
    elif timeout 900 docker pull "$PYTORCH_BASE"; then
        say "single-user image: building $PYTORCH_IMAGE from $PYTORCH_BASE"
        cp "$(build_wheel)" images/wheelhouse/
        docker build --build-arg "BASE=$PYTORCH_BASE" -t "$PYTORCH_IMAGE" images/
        image=$PYTORCH_IMAGE
    else
        ensure_commands debootstrap:debootstrap
        say "single-user image: no registry reachable, building the offline image (CPU only)"
        image=$(bash images/build-offline.sh --wheel "$(build_wheel)" | tail -n 1)
    fi
fi
docker image inspect "$image" >/dev/null 2>&1 || die "image $image is not on this Docker host"

mkdir -p .hub
if [ -z "${GPUSPAWNER_ADMIN_PASSWORD:-}" ]; then
    [ -s .hub/admin_password ] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > .hub/admin_password)
    GPUSPAWNER_ADMIN_PASSWORD=$(cat .hub/admin_password)
fi
export GPUSPAWNER_ADMIN_PASSWORD
gateway=$(docker network inspect bridge --format '{{(index .IPAM.Config 0).Gateway}}' 2>/dev/null || true)
[ -n "$gateway" ] || gateway=$(ip -4 -o addr show docker0 | awk '{print $4}' | cut -d/ -f1)
export GPUSPAWNER_DEMO_IMAGE=$image GPUSPAWNER_HUB_CONNECT_IP=${GPUSPAWNER_HUB_CONNECT_IP:-$gateway}
say "hub: http://127.0.0.1:${GPUSPAWNER_PORT:-8000}  (any user name, password ${GPUSPAWNER_DEMO_PASSWORD:-gpu-demo}; user 'admin', password in .hub/admin_password)"
say "containers reach the hub at $GPUSPAWNER_HUB_CONNECT_IP; state in $ROOT/.hub"
cd .hub
exec "$VENV/bin/jupyterhub" -f "$ROOT/jupyterhub_config.py"
