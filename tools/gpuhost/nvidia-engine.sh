#!/usr/bin/env bash
# A second Docker engine whose default runtime is NVIDIA's nvidia-container-runtime, as on a
# GPU host configured with `"default-runtime": "nvidia"` (the hub's "runtime-env" GPU mode).
# It has its own socket, data root, exec root, containerd and bridge, so the shared engine is
# untouched. Idempotent: `start` reuses a running one.
#
#   bash tools/gpuhost/nvidia-engine.sh start   # prints the DOCKER_HOST to use
#   bash tools/gpuhost/nvidia-engine.sh stop
#
# Needs root and scripts/setup-gpuhost.sh run before (the toolkit and the stand-in CLI).
set -euo pipefail
source "$(dirname "$0")/../../scripts/common.sh"

RUN=/run/gpuspawner-nvidia-engine
SOCKET=$RUN/docker.sock
DATA=$CACHE/gpuhost/nvidia-engine
BRIDGE=gpusim0
SUBNET_IP=${GPUSPAWNER_NVIDIA_ENGINE_BIP:-172.31.250.1/24}
export DOCKER_HOST=unix://$SOCKET

answers() { docker info >/dev/null 2>&1; }

case "${1:-start}" in
start)
    if answers; then
        echo "$DOCKER_HOST"
        exit 0
    fi
    is_root || die "starting a second Docker engine needs root"
    [ -x "$GPUHOST_BIN/nvidia-container-runtime" ] || die "run scripts/setup-gpuhost.sh first"
    mkdir -p "$RUN" "$DATA"
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$SUBNET_IP" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    # iptables stay the shared engine's: this one adds no rules (host <-> container traffic on
    # the bridge needs none)
    (PATH=$GPUHOST_BIN:$PATH setsid dockerd --host "$DOCKER_HOST" --data-root "$DATA/data" \
        --exec-root "$RUN/exec" --pidfile "$RUN/docker.pid" --bridge "$BRIDGE" \
        --iptables=false --ip-masq=false --ip-forward=false \
        --add-runtime "nvidia=$GPUHOST_BIN/nvidia-container-runtime" --default-runtime nvidia \
        >>"$DATA/dockerd.log" 2>&1 &)
    for _ in $(seq 1 60); do
        answers && { echo "$DOCKER_HOST"; exit 0; }
        sleep 1
    done
    die "the nvidia engine did not come up; see $DATA/dockerd.log"
    ;;
stop)
    pid=$(cat "$RUN/docker.pid" 2>/dev/null) || exit 0
    kill "$pid" 2>/dev/null || exit 0
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 1; done
    die "dockerd $pid (nvidia engine) did not stop"
    ;;
*)
    die "usage: $0 start|stop"
    ;;
esac
