#!/usr/bin/env bash
# What tests/lab needs beyond the Python test venv, on a fresh machine (run as root):
# Debian's Chromium, the Python packages of the lab tests in the venv whose python is $1,
# the JupyterLab extension built into gpuspawner/labextension, and the extension's own
# checks (eslint, stylelint, prettier, types generated from the shared JSON schema, jest),
# which fail this script when they fail.
# Idempotent; heavy things are cached under ~/.cache/gpuspawner (npm cache, built extension,
# a stamp per source tree that passed the checks), so an unchanged tree costs about a second.
#
#   bash scripts/setup-lab.sh "$VENV/bin/python"
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PY=${1:?usage: setup-lab.sh VENV_PYTHON}
EXT=$ROOT/labextension
OUT=$ROOT/gpuspawner/labextension
SCHEMA=$ROOT/gpuspawner/lab/schema
started=$SECONDS

[ -x "$PY" ] || die "$PY is not an executable python"
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")  # the build runs in another folder

# 1. Chromium for the browser tests (Playwright drives it; it never downloads a browser)
ensure_commands chromium:chromium
say "lab: chromium: $(chromium --version 2>/dev/null | head -n 1)"

# 2. the lab tests' Python packages, in the test venv
if "$PY" -c 'import playwright, pytest_jupyter, jupyterlab, ipykernel, jupyter_client, hypothesis' \
        2>/dev/null; then
    say "lab: python packages: present"
else
    say "lab: installing the lab tests' python packages into $(dirname "$(dirname "$PY")")"
    "$PY" -m pip install -q "playwright>=1.40" "pytest-jupyter[server]>=0.10" "jupyterlab>=4.0,<5" \
        "ipykernel>=6.5" "jupyter-client>=8" "hypothesis>=6.100"
fi

# hash_files DIR PATH...: one short hash of the files under PATH... (relative to DIR)
hash_files() {
    local dir=$1
    shift
    (cd "$dir" && find "$@" \( -name node_modules -o -name lib -o -name coverage \) -prune \
        -o -type f ! -name .eslintcache ! -name .stylelintcache ! -name tsconfig.tsbuildinfo \
        ! -name .build-hash -print0 |
        sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}

# node_modules as package-lock.json says, installed again only when the lock file changes
ensure_node_modules() {
    local lock stamp=$EXT/node_modules/.gpuspawner-lock
    lock=$(sha256sum "$EXT/package-lock.json" | cut -c1-16)
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock" ] && return 0
    ensure_commands npm:npm node:nodejs
    say "lab: npm ci (cache $CACHE/npm) with node $(node --version)"
    (cd "$EXT" && npm ci --prefer-offline --loglevel=error >/dev/null)
    echo "$lock" >"$stamp"
}

# 3. the JupyterLab extension, rebuilt only when its sources change
hash=$(hash_files "$EXT" package.json package-lock.json tsconfig.json install.json .npmrc \
    src style schema)
stamp=$EXT/.build-hash
builds=$CACHE/labextension-builds
if [ -f "$OUT/package.json" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
    say "lab: labextension: up to date ($hash)"
elif [ -f "$builds/$hash/package.json" ]; then
    say "lab: labextension: from the cache ($hash)"
    rm -rf "$OUT" && mkdir -p "$OUT" && cp -a "$builds/$hash/." "$OUT/"
    echo "$hash" >"$stamp"
else
    ensure_node_modules
    say "lab: labextension: building ($hash)"
    # jupyter-builder comes with JupyterLab, in the venv
    (cd "$EXT" && PATH="$(dirname "$PY"):$PATH" npm run --silent build:prod >/dev/null)
    [ -f "$OUT/static/style.js" ] || die "the labextension build left no $OUT/static/style.js"
    mkdir -p "$builds" && rm -rf "${builds:?}/$hash" && cp -a "$OUT" "$builds/$hash"
    # keep the three newest builds
    ls -1t "$builds" | tail -n +4 | while read -r old; do rm -rf "${builds:?}/$old"; done
    echo "$hash" >"$stamp"
fi

# 4. the extension's checks: `npm run lint:check` (src/api.ts generated from the schema,
#    stylelint, prettier, eslint) and `npm test` (jest), run again only when what they read
#    changes
checks=$CACHE/labextension-checks
check_hash=$(hash_files "$EXT" . | cut -c1-8)$(hash_files "$SCHEMA" . | cut -c1-8)
if [ -f "$checks/$check_hash" ]; then
    say "lab: lint and unit tests: passed before ($check_hash)"
else
    ensure_node_modules
    say "lab: lint (npm run lint:check) and unit tests (npm test) ($check_hash)"
    (cd "$EXT" && npm run --silent lint:check) || die "the labextension's lint failed (above)"
    (cd "$EXT" && npm test --silent -- --ci) || die "the labextension's unit tests failed (above)"
    mkdir -p "$checks" && date -u +%FT%TZ >"$checks/$check_hash"
    # keep the stamps of the last twenty trees
    ls -1t "$checks" | tail -n +21 | while read -r old; do rm -f "${checks:?}/$old"; done
fi
say "lab: ready in $((SECONDS - started)) s"
