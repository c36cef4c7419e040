#!/usr/bin/env bash
# Run a hub on http://127.0.0.1:8000 with gpuspawner's Docker backend, sqlite and a
# demo login. Builds a single-user image first, only when its inputs changed (a hash of the
# project's sources and images/ is a label of the image):
#   - where Docker can pull the PyTorch base image: the real PyTorch-CUDA image
#     (images/Dockerfile, gpuspawner/pytorch-notebook:2.9.1-cuda12.8);
#   - otherwise (no registry): the CPU-only demo image without PyTorch
#     (images/build-offline.sh, gpuspawner/demo-singleuser:offline), and the hub's catalog
#     offers only it.
# GPUSPAWNER_DEMO_IMAGE=name:tag skips the build and uses that image. Other settings:
# README "Run a hub" and jupyterhub_config.py.
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

PYTORCH_BASE=${GPUSPAWNER_PYTORCH_BASE:-pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime}
PYTORCH_IMAGE=gpuspawner/pytorch-notebook:2.9.1-cuda12.8
DEMO_IMAGE=gpuspawner/demo-singleuser:offline   # not the test suite's gpuspawner/singleuser:*
LABEL=gpuspawner.demo-inputs
started=$SECONDS
mkdir -p .hub

# follow PID LOG [PATTERN [WIDTH]]: while PID runs, show LOG's new lines (those matching the
# awk PATTERN, default all; cut at WIDTH characters), indented, and while LOG is quiet,
# every 15 s its last line
follow() {
    local pid=$1 log=$2 pattern=${3:-.} width=${4:-1000} shown=0 lines waited=0 quiet=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        waited=$((waited + 1)) quiet=$((quiet + 1))
        lines=$(wc -l <"$log")
        if [ "$lines" -gt "$shown" ]; then
            sed -n "$((shown + 1)),${lines}p" "$log" | grep -vxF "$DEMO_IMAGE" |
                awk -v p="$pattern" -v w="$width" '$0 ~ p { print "    " substr($0, 1, w) }' || true
            shown=$lines quiet=0
        elif [ $((quiet % 15)) = 0 ]; then
            printf '    ... %d s: %s\n' "$waited" "$(busy_with "$log")"
        fi
    done
    sed -n "$((shown + 1)),\$p" "$log" | grep -vxF "$DEMO_IMAGE" |
        awk -v p="$pattern" -v w="$width" '$0 ~ p { print "    " substr($0, 1, w) }' || true
    wait "$pid"
}

# what a quiet step is busy with: the last line of its log, or of the build log written last
busy_with() {
    local newest
    newest=$(ls -t "$1" "$CACHE"/build/logs/*.log 2>/dev/null | head -n 1 || true)
    if [ "$newest" = "$1" ] || [ -z "$newest" ]; then
        tail -n 1 "$1" | tr -d '\r' | sed 's/^ *//' | cut -c1-100 |
            sed 's/\(.*editable.*started\)$/\1 (npm builds the JupyterLab extension)/'
    else
        printf '%s: %s' "$(basename "$newest" .log)" \
            "$(tail -n 1 "$newest" | tr -d '\r' | sed 's/^ *//' | cut -c1-90)"
    fi
}

# pip with its own progress lines (the full output in a log file, shown when pip fails); the
# project's editable build runs npm for the JupyterLab extension, which pip keeps quiet
pip_with_progress() {
    local logfile=$1 pid
    shift
    PYTHONUNBUFFERED=1 "$VENV/bin/python" -m pip "$@" --disable-pip-version-check \
        --progress-bar off >"$logfile" 2>&1 &
    pid=$!
    local progress='^(Collecting|Building|Installing|Successfully|Obtaining|  Preparing|  Building)'
    if ! follow "$pid" "$logfile" "$progress" 120; then
        tail -n 30 "$logfile" >&2
        die "pip failed (full log: $logfile)"
    fi
}

# the hub's virtualenv: gpuspawner[docker], installed again only when pyproject.toml changed
hub_venv() {
    local stamp=$VENV/.gpuspawner-run-hub want
    want=$(sha256sum pyproject.toml | cut -c1-16)
    if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x "$VENV/bin/jupyterhub" ] &&
        "$VENV/bin/python" -c 'import gpuspawner.docker, dockerspawner' 2>/dev/null; then
        say "virtualenv: $VENV has gpuspawner[docker]"
        return 0
    fi
    [ -x "$VENV/bin/python" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
    say "installing gpuspawner[docker] into $VENV (a minute or two on a fresh clone)"
    pip_with_progress .hub/pip-install.log install --upgrade pip
    pip_with_progress .hub/pip-install.log install -e "$ROOT[docker]"
    echo "$want" >"$stamp"
}

# a short hash of what goes into the single-user image: the project's package (its Python,
# the JupyterLab extension's sources, the server config), images/ and the base image's name
image_inputs() {
    {
        find pyproject.toml gpuspawner jupyter-config images labextension \
            \( -name node_modules -o -name lib -o -name coverage -o -name __pycache__ \
            -o -path gpuspawner/labextension -o -path images/wheelhouse \) -prune \
            -o -type f ! -name '.*cache' ! -name tsconfig.tsbuildinfo ! -name .build-hash \
            -print0 | sort -z | xargs -0 sha256sum
        echo "$1"
    } | sha256sum | cut -c1-12
}

# the image's inputs label ("" when the image is not there)
inputs_of() {
    docker image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$1" 2>/dev/null || true
}

wheel() {
    say "building gpuspawner's wheel (with the JupyterLab extension)" >&2
    build_wheel
}

# remove the image that held this tag before a rebuild, when nothing else uses it
drop_old() {
    local old=$1
    [ -n "$old" ] || return 0
    [ "$(docker image inspect --format '{{.Id}}' "$2" 2>/dev/null)" = "$old" ] && return 0
    docker image rm "$old" >/dev/null 2>&1 || true
}

build_pytorch() {
    local hash=$1 old
    old=$(image_id "$PYTORCH_IMAGE")
    say "single-user image: building $PYTORCH_IMAGE from $PYTORCH_BASE (docker build's output below)"
    rm -f images/wheelhouse/gpuspawner-*.whl
    cp "$(wheel)" images/wheelhouse/
    docker build --build-arg "BASE=$PYTORCH_BASE" --label "$LABEL=$hash" \
        -t "$PYTORCH_IMAGE" images/ 2>&1 | sed -u 's/^/    /' || die "docker build failed"
    rm -f images/wheelhouse/gpuspawner-*.whl
    drop_old "$old" "$PYTORCH_IMAGE"
}

# the image's id ("" when there is none)
image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# put the inputs label on an image (a metadata-only build: no layer is added)
label_image() {
    local image=$1 hash=$2 unlabelled
    unlabelled=$(image_id "$image")
    docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0
    printf 'FROM %s\n' "$image" |
        docker build -q --label "$LABEL=$hash" -t "$image" - >.hub/label.log 2>&1 ||
        { cat .hub/label.log >&2; die "could not label $image"; }
    drop_old "$unlabelled" "$image"
}

# build-offline.sh with its progress lines as they come and, while a step is quiet (pip,
# debootstrap, docker build), every 15 s that step's last log line
build_demo() {
    local hash=$1 old whl log=.hub/build-offline.log pid
    old=$(image_id "$DEMO_IMAGE")
    ensure_commands debootstrap:debootstrap
    whl=$(wheel)
    say "single-user image: building $DEMO_IMAGE (CPU only, without PyTorch: for trying the hub)"
    GPUSPAWNER_CACHE=$CACHE bash images/build-offline.sh --tag "$DEMO_IMAGE" --wheel "$whl" \
        >"$log" 2>&1 &
    pid=$!
    follow "$pid" "$log" ||
        { tail -n 30 "$log" >&2; die "building the demo image failed (log: $log)"; }
    label_image "$DEMO_IMAGE" "$hash"
    drop_old "$old" "$DEMO_IMAGE"
}

ensure_docker
ensure_proxy
hub_venv

image=${GPUSPAWNER_DEMO_IMAGE:-}
offline=0
if [ -z "$image" ]; then
    pytorch_hash=$(image_inputs "$PYTORCH_BASE")
    demo_hash=$(image_inputs offline)
    if [ "$(inputs_of "$PYTORCH_IMAGE")" = "$pytorch_hash" ]; then
        image=$PYTORCH_IMAGE
        say "single-user image: $image (built from these sources)"
    elif [ "$(inputs_of "$DEMO_IMAGE")" = "$demo_hash" ]; then
        image=$DEMO_IMAGE offline=1
        say "single-user image: $image (built from these sources; CPU only, without PyTorch)"
    else
        if [ -n "$(inputs_of "$DEMO_IMAGE")$(inputs_of "$PYTORCH_IMAGE")" ]; then
            say "single-user image: the sources changed since it was built; building it again"
        fi
        say "single-user image: trying to pull $PYTORCH_BASE for the PyTorch image;" \
            "where no registry answers, the CPU-only demo image is built instead"
        if timeout 900 docker pull "$PYTORCH_BASE" 2>.hub/pull.log | sed -u 's/^/    /'; then
            build_pytorch "$pytorch_hash"
            image=$PYTORCH_IMAGE
        else
            say "no registry reachable from this Docker engine (its answer: .hub/pull.log):" \
                "building the CPU-only demo image from the package index and Debian's mirror"
            build_demo "$demo_hash"
            image=$DEMO_IMAGE offline=1
        fi
    fi
fi
docker image inspect "$image" >/dev/null 2>&1 || die "image $image is not on this Docker host"

if [ -z "${GPUSPAWNER_ADMIN_PASSWORD:-}" ]; then
    [ -s .hub/admin_password ] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > .hub/admin_password)
    GPUSPAWNER_ADMIN_PASSWORD=$(cat .hub/admin_password)
fi
export GPUSPAWNER_ADMIN_PASSWORD
# containers reach the hub on Docker's bridge: its gateway (docker0)
if [ -z "${GPUSPAWNER_HUB_CONNECT_IP:-}" ]; then
    gateway=$(docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}}{{end}}' \
        2>/dev/null || true)
    [ -n "$gateway" ] || gateway=$(ip -4 -o addr show docker0 2>/dev/null | awk '{print $4}' |
        cut -d/ -f1 || true)
    [ -n "$gateway" ] || gateway=172.17.0.1
    addresses=$(ip -4 -o addr 2>/dev/null || true)
    grep -qF " $gateway/" <<<"$addresses" || die "containers reach the hub on" \
        "Docker's bridge, but $gateway (its gateway) is no address of this host (no docker0):" \
        "set GPUSPAWNER_HUB_CONNECT_IP to an address of this host that containers can reach"
    GPUSPAWNER_HUB_CONNECT_IP=$gateway
fi
export GPUSPAWNER_DEMO_IMAGE=$image GPUSPAWNER_HUB_CONNECT_IP
if [ "$offline" = 1 ]; then
    export GPUSPAWNER_OFFLINE=1
    say "catalog: only $image (no registry: the PyTorch images cannot be built or pulled here)"
fi
say "ready to start in $((SECONDS - started)) s"
say "hub: http://127.0.0.1:${GPUSPAWNER_PORT:-8000}  (any user name, password ${GPUSPAWNER_DEMO_PASSWORD:-gpu-demo}, in group students; user 'admin', password in .hub/admin_password, in group staff)"
say "containers reach the hub at $GPUSPAWNER_HUB_CONNECT_IP; state in $ROOT/.hub"
cd .hub
exec "$VENV/bin/jupyterhub" -f "$ROOT/jupyterhub_config.py"
