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

ensure_docker() {
    if docker info >/dev/null 2>&1; then
        say "Docker engine: running ($(docker info --format '{{.ServerVersion}}'))"
        return 0
    fi
    ensure_commands docker:docker.io dockerd:docker.io
    is_root || die "the Docker engine is not running: start it (sudo systemctl start docker)"
    say "Docker engine: starting dockerd (log: $CACHE/dockerd.log)"
    (setsid dockerd >"$CACHE/dockerd.log" 2>&1 &)
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return 0
        sleep 1
    done
    die "dockerd did not come up; see $CACHE/dockerd.log"
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
