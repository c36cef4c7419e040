#!/usr/bin/env bash
# The Prometheus server the GPU-idle culling tests query (tests/test_prometheus_culling.py):
# Debian's prometheus package, installed without its recommends and never started as a
# service (each test starts its own server, on a free port, scraping stand-in DCGM
# exporters). Idempotent; installing needs root. Prints the binary's path, the only line
# on its stdout (test.sh exports it as GPUSPAWNER_PROMETHEUS); what it does goes to stderr.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

if ! command -v prometheus >/dev/null 2>&1; then
    is_root || die "prometheus is missing: apt-get install --no-install-recommends prometheus"
    say "installing prometheus with apt (without recommends)" >&2
    apt-get update -qq >&2
    # the package's own service is not started (each test starts its own server): a
    # policy-rc.d that refuses (101) tells invoke-rc.d so, for this install only
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus \
        >/dev/null
fi
binary=$(command -v prometheus)
say "prometheus: $("$binary" --version 2>&1 | head -n 1)" >&2
echo "$binary"
