#!/usr/bin/env bash
# Python lint, as the test command runs it: ruff (its rules in pyproject.toml) and flake8
# (setup.cfg, the same line length and rule families), over everything that is Python.
#   bash scripts/lint.sh [PYTHON]     # PYTHON: an interpreter with the test extra installed
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"
python=${1:-$VENV/bin/python}
paths=(gpuspawner tests benchmarks tools jupyterhub_config.py)
existing=()
for path in "${paths[@]}"; do [ -e "$path" ] && existing+=("$path"); done

"$python" -m ruff check --quiet "${existing[@]}" || die "ruff found the problems above"
"$python" -m flake8 "${existing[@]}" || die "flake8 found the problems above"
say "lint: ruff and flake8 clean (${existing[*]})"
