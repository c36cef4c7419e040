# Shared steps of run-hub.sh and test.sh: each is idempotent and says what it did.
# shellcheck shell=bash

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/gpuspawner
VENV=${GPUSPAWNER_VENV:-$ROOT/.venv}
mkdir -p "$CACHE"

say() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

# apt packages that provide the given commands: ensure_commands cmd:package ...
ensure_commands() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    is_root || die "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
    say "installing ${missing[*]} with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The folder scripts/setup-gpuhost.sh fills with NVIDIA's container toolkit and the stand-in
# nvidia-container-cli. moby registers its "nvidia" device driver (what a DeviceRequest needs)
# only when nvidia-container-runtime-hook is on dockerd's PATH when the daemon starts.
GPUHOST_BIN=$CACHE/gpuhost/bin

# the PATH of the running dockerd (empty when it is not running or cannot be read)
dockerd_path() {
    local pid
    pid=$(cat /var/run/docker.pid 2>/dev/null) || return 0
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | sed -n 's/^PATH=//p'
}

# start_dockerd [ARG...]: dockerd with these arguments, the hook folder on PATH when it is built
start_dockerd() {
    local path=$PATH note=""
    if [ -x "$GPUHOST_BIN/nvidia-container-runtime-hook" ]; then
        path=$GPUHOST_BIN:$PATH note=", $GPUHOST_BIN on its PATH"
    fi
    say "Docker engine: starting dockerd ${*:+$* }(log: $CACHE/dockerd.log$note)"
    (PATH=$path setsid dockerd "$@" >>"$CACHE/dockerd.log" 2>&1 &)
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        sleep 1
    done
    die "dockerd did not come up; see $CACHE/dockerd.log"
}

# ensure_docker: a running engine; when the NVIDIA hook is built, one that has it on its PATH
# (a running dockerd without it is restarted, as root, and only then)
ensure_docker() {
    if docker info >/dev/null 2>&1; then
        if [ -x "$GPUHOST_BIN/nvidia-container-runtime-hook" ] &&
            ! dockerd_path | tr ':' '\n' | grep -qxF "$GPUHOST_BIN"; then
            if ! is_root; then
                say "note: cannot check or fix dockerd's PATH as $(id -un); GPU containers need $GPUHOST_BIN on it"
                return 0
            fi
            local pid args=()
            pid=$(cat /var/run/docker.pid)
            mapfile -d '' args <"/proc/$pid/cmdline"
            say "Docker engine: restarting dockerd (pid $pid) to put $GPUHOST_BIN on its PATH (its containers stop)"
            kill "$pid"
            for _ in $(seq 1 60); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 1
            done
            start_dockerd "${args[@]:1}"
        fi
        say "Docker engine: running ($(docker info --format '{{.ServerVersion}}'))"
        return 0
    fi
    ensure_commands docker:docker.io dockerd:docker.io
    is_root || die "the Docker engine is not running: start it (sudo systemctl start docker)"
    start_dockerd
}

ensure_proxy() {
    command -v configurable-http-proxy >/dev/null 2>&1 && return 0
    ensure_commands npm:npm
    say "installing configurable-http-proxy with npm"
    npm install -g --silent configurable-http-proxy >/dev/null
}

# ensure_venv EXTRAS: a virtualenv with this package installed in editable mode
ensure_venv() {
    [ -x "$VENV/bin/python" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
    say "installing gpuspawner[$1] into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e "$ROOT[$1]"
}

# build_wheel: the project's wheel (with the prebuilt JupyterLab extension) in $CACHE/dist
build_wheel() {
    rm -rf "$CACHE/dist"
    "$VENV/bin/python" -m pip wheel -q --no-deps -w "$CACHE/dist" "$ROOT" >/dev/null
    ls "$CACHE"/dist/gpuspawner-*.whl
}
