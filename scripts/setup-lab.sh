#!/usr/bin/env bash
# What tests/lab needs beyond the Python test venv, on a fresh machine (run as root):
# Debian's Chromium, the Python packages of the lab tests in the venv whose python is $1,
# and the JupyterLab extension built into gpuspawner/labextension.
# Idempotent; heavy things are cached under ~/.cache/gpuspawner (npm cache, built extension).
#
#   bash scripts/setup-lab.sh "$VENV/bin/python"
set -euo pipefail

PY=${1:?usage: setup-lab.sh VENV_PYTHON}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/gpuspawner
EXT=$ROOT/labextension
OUT=$ROOT/gpuspawner/labextension
started=$SECONDS

say() { printf '==> lab: %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
apt_install() {
    [ "$(id -u)" = 0 ] || die "need $* from apt: run as root, or apt-get install $*"
    say "installing $* with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

[ -x "$PY" ] || die "$PY is not an executable python"

# 1. Chromium for the browser tests (Playwright drives it; it never downloads a browser)
if [ -x /usr/bin/chromium ]; then
    say "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
else
    apt_install chromium
fi

# 2. the lab tests' Python packages, in the test venv
if "$PY" -c 'import playwright, pytest_jupyter, jupyterlab, ipykernel, jupyter_client, hypothesis' \
        2>/dev/null; then
    say "python packages: present"
else
    say "installing the lab tests' python packages into $("$PY" -c 'import sys; print(sys.prefix)')"
    "$PY" -m pip install -q "playwright>=1.40" "pytest-jupyter[server]>=0.10" "jupyterlab>=4.0,<5" \
        "ipykernel>=6.5" "jupyter-client>=8" "hypothesis>=6.100"
fi

# 3. the JupyterLab extension, rebuilt only when its sources change
sources_hash() {
    (cd "$EXT" && find package.json package-lock.json tsconfig.json install.json .npmrc src style schema \
        -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}
hash=$(sources_hash)
stamp=$EXT/.build-hash
builds=$CACHE/labextension-builds
if [ -f "$OUT/package.json" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
    say "labextension: up to date ($hash)"
elif [ -f "$builds/$hash/package.json" ]; then
    say "labextension: from the cache ($hash)"
    rm -rf "$OUT" && mkdir -p "$OUT" && cp -a "$builds/$hash/." "$OUT/"
    echo "$hash" >"$stamp"
else
    command -v npm >/dev/null 2>&1 || apt_install nodejs npm
    say "labextension: npm ci (cache $CACHE/npm) and build with node $(node --version)"
    (cd "$EXT" && npm ci --prefer-offline --loglevel=error >/dev/null)
    # jupyter-builder comes with JupyterLab, in the venv
    (cd "$EXT" && PATH="$(dirname "$PY"):$PATH" npm run --silent build:prod >/dev/null)
    [ -f "$OUT/static/style.js" ] || die "the labextension build left no $OUT/static/style.js"
    mkdir -p "$builds" && rm -rf "${builds:?}/$hash" && cp -a "$OUT" "$builds/$hash"
    # keep the three newest builds
    ls -1t "$builds" | tail -n +4 | while read -r old; do rm -rf "${builds:?}/$old"; done
    echo "$hash" >"$stamp"
fi
say "ready in $((SECONDS - started)) s"
