#!/usr/bin/env bash
# Make this machine a GPU host as far as software can: NVIDIA's Container Toolkit (built from
# its Go module at a pinned release) over a simulated driver. Idempotent and cached under
# ~/.cache/gpuspawner/gpuhost; a second run takes about a second.
#
#   bash scripts/setup-gpuhost.sh              # build what is missing, install the config,
#                                              # restart dockerd only if it lacks the hook on PATH
#   bash scripts/setup-gpuhost.sh --no-engine  # the same, leaving dockerd alone
#
# What it puts in place:
#   gpuhost/toolkit-<v>/bin   nvidia-container-runtime-hook, nvidia-container-runtime, nvidia-ctk
#   gpuhost/lib               libnvidia-ml.so.1: the simulated NVML (tools/gpuhost/nvml), compiled
#                             against nvml.h from the nvidia-nvml-dev wheel
#   gpuhost/bin               what dockerd gets on its PATH: the toolkit's binaries and the
#                             stand-in nvidia-container-cli (tools/gpuhost)
#   /etc/nvidia-container-runtime/config.toml   legacy mode, the CLI path = the stand-in
#   /var/lib/simnvml/hosts/default/state        the default inventory: 8 GPUs, one in MIG mode
# Real: the Docker engine, its nvidia device driver, NVIDIA's toolkit. Simulated: the CLI that
# needs a kernel driver, and NVML.
set -euo pipefail
source "$(dirname "$0")/common.sh"

TOOLKIT_VERSION=${GPUSPAWNER_NVIDIA_TOOLKIT_VERSION:-v1.17.8}
NVML_DEV_VERSION=${GPUSPAWNER_NVML_DEV_VERSION:-13.4.92}
GCACHE=$CACHE/gpuhost
TOOLKIT=$GCACHE/toolkit-$TOOLKIT_VERSION/bin
HEADERS=$GCACHE/nvml-dev-$NVML_DEV_VERSION/include
LIB=$GCACHE/lib
CONFIG=/etc/nvidia-container-runtime/config.toml
SRC=$ROOT/tools/gpuhost
PYTHON=${PYTHON:-$VENV/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
started=$SECONDS
mkdir -p "$GCACHE" "$GPUHOST_BIN" "$LIB"

# 1. NVIDIA's Container Toolkit from the Go module proxy
tools=(nvidia-container-runtime-hook nvidia-container-runtime nvidia-ctk)
missing=()
for t in "${tools[@]}"; do [ -x "$TOOLKIT/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -eq 0 ]; then
    say "NVIDIA Container Toolkit: present ($TOOLKIT_VERSION)"
else
    command -v go >/dev/null 2>&1 || PATH=/usr/local/go/bin:$PATH
    command -v go >/dev/null 2>&1 || die "needs Go (1.22 or newer) to build the NVIDIA Container Toolkit"
    ensure_commands gcc:gcc
    say "NVIDIA Container Toolkit $TOOLKIT_VERSION: building ${missing[*]}"
    pkgs=()
    for t in "${missing[@]}"; do
        pkgs+=("github.com/NVIDIA/nvidia-container-toolkit/cmd/$t@$TOOLKIT_VERSION")
    done
    # the runtime needs cgo (internal/cuda)
    GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build GOTOOLCHAIN=local CGO_ENABLED=1 \
        GOBIN=$TOOLKIT nice -n 19 go install -trimpath -ldflags "-s -w" "${pkgs[@]}"
fi

# 2. nvml.h from PyPI, and the simulated NVML built against it
if [ ! -f "$HEADERS/nvml.h" ]; then
    say "nvml.h: nvidia-nvml-dev $NVML_DEV_VERSION from PyPI"
    tmp=$(mktemp -d)
    PIP_FIND_LINKS='' "$PYTHON" -m pip download -q --no-deps --only-binary=:all: \
        "nvidia-nvml-dev==$NVML_DEV_VERSION" -d "$tmp"
    "$PYTHON" - "$tmp"/nvidia_nvml_dev-*.whl "$HEADERS" <<'EOF'
import sys, zipfile
from pathlib import Path
wheel, out = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    (name,) = [n for n in z.namelist() if n.endswith("/include/nvml.h")]
    out.mkdir(parents=True, exist_ok=True)
    (out / "nvml.h").write_bytes(z.read(name))
EOF
    rm -rf "$tmp"
fi
ensure_commands make:make gcc:gcc
stamp=$(cat "$SRC/nvml/simnvml.c" "$SRC/nvml/Makefile" "$HEADERS/nvml.h" | sha256sum | cut -c1-16)
if [ "$(cat "$LIB/.built" 2>/dev/null)" = "$stamp" ] && [ -f "$LIB/libnvidia-ml.so.1" ]; then
    say "simulated NVML: present ($LIB/libnvidia-ml.so.1)"
else
    say "simulated NVML: building $LIB/libnvidia-ml.so.1"
    make -s -C "$SRC/nvml" NVML_INCLUDE="$HEADERS" OUT="$LIB" >/dev/null
    echo "$stamp" >"$LIB/.built"
fi
echo "$LIB" >"$GCACHE/lib-dir"

# 3. the folder on dockerd's PATH: the toolkit and the stand-in CLI (copies, so a checkout
#    that moves or is deleted leaves the engine working)
for t in "${tools[@]}"; do ln -sfn "$TOOLKIT/$t" "$GPUHOST_BIN/$t"; done
for f in nvidia-container-cli simstate.py; do
    cmp -s "$SRC/$f" "$GPUHOST_BIN/$f" || install -m 0755 "$SRC/$f" "$GPUHOST_BIN/$f"
done

# 4. the toolkit's config: NVIDIA's defaults (nvidia-ctk), legacy mode, the stand-in as its CLI
if is_root; then
    want=$(mktemp)
    { "$GPUHOST_BIN/nvidia-ctk" config default --output="$want" &&
        "$GPUHOST_BIN/nvidia-ctk" config --config-file="$want" --in-place \
            --set nvidia-container-runtime.mode=legacy \
            --set nvidia-container-cli.path="$GPUHOST_BIN/nvidia-container-cli" \
            --set nvidia-container-runtime-hook.path="$GPUHOST_BIN/nvidia-container-runtime-hook" \
            --set nvidia-ctk.path="$GPUHOST_BIN/nvidia-ctk"; } >/dev/null 2>&1 ||
        die "nvidia-ctk could not write its config"
    if cmp -s "$want" "$CONFIG"; then
        say "$CONFIG: up to date (legacy mode, CLI: the stand-in)"
    else
        mkdir -p "$(dirname "$CONFIG")"
        install -m 0644 "$want" "$CONFIG"
        say "$CONFIG: written (legacy mode, CLI: the stand-in)"
    fi
    rm -f "$want"

    # 5. the default simulated host, unless one is there (tests may have changed its values)
    "$PYTHON" - "$SRC" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import simstate
host = simstate.SimHost(simstate.DEFAULT_HOST)
if not host.state_path.exists():
    simstate.SimHost.create(simstate.DEFAULT_HOST)
    print("==> simulated host: %s written (8 GPUs, one in MIG mode)" % host.state_path)
else:
    print("==> simulated host: %s present" % host.state_path)
EOF
    # hosts that test runs left behind (a run removes its own) and an old CLI log
    find /var/lib/simnvml/hosts -mindepth 1 -maxdepth 1 -type d -name 'test-*' -mmin +720 \
        -exec rm -rf {} + 2>/dev/null || true
    log=/var/lib/simnvml/cli.log
    if [ -f "$log" ] && [ "$(stat -c %s "$log")" -gt 20000000 ]; then mv "$log" "$log.1"; fi
else
    say "not root: $CONFIG and /var/lib/simnvml are left as they are"
fi

# 6. an engine whose PATH has the hook (moby registers its nvidia driver only then)
if [ "${1:-}" = --no-engine ]; then
    say "dockerd left alone (--no-engine)"
else
    ensure_docker
fi
say "GPU host ready in $((SECONDS - started)) s: LD_LIBRARY_PATH=$LIB for NVML on this host"
