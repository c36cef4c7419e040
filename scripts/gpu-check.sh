#!/usr/bin/env bash
# The gpu-marked tests (`pytest -m gpu`: the real NVML, the lab sampler, "Verify CUDA" with
# torch) on a machine with a real NVIDIA GPU and driver. It needs no Docker engine and no
# network: bring the few wheels it lacks from a machine that has PyPI.
#
#   bash scripts/gpu-check.sh --download DIR [PYTHON_VERSION]   # where PyPI is: fetch the wheels
#   bash scripts/gpu-check.sh [--wheels DIR] [PYTEST ARGS...]   # on the GPU machine
#
# It refuses to run against the simulated NVML of tools/gpuhost.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
NEEDS=(pytest requests jupyter_server jupyter_client ipykernel nvidia-ml-py)

case "${1:-}" in
--download)
    version=${3:-$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
    "$PY" -m pip download -q --only-binary=:all: --python-version "$version" \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_28_x86_64 --platform any -d "$2" "${NEEDS[@]}"
    echo "wheels for Python $version in $2: copy them and this checkout to the GPU machine"
    exit 0
    ;;
--wheels)
    "$PY" -m pip install -q --no-index --find-links "$2" "${NEEDS[@]}"
    shift 2
    ;;
esac

"$PY" - <<'EOF'
import ctypes, sys
try:
    lib = ctypes.CDLL("libnvidia-ml.so.1")
except OSError as e:
    sys.exit("no NVIDIA driver here (%s): this check is for a machine with a GPU" % e)
if hasattr(lib, "simnvmlVersion"):
    sys.exit("libnvidia-ml.so.1 is the simulated NVML (tools/gpuhost): unset LD_LIBRARY_PATH")
EOF
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L
cd "$ROOT"
PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH} exec "$PY" -m pytest -m gpu -p no:cacheprovider \
    tests/lab/test_lab_gpu.py "$@"
