#!/usr/bin/env bash
# The Kubernetes control plane the kubernetes-marked tests start: etcd, kube-apiserver,
# kube-scheduler, kube-controller-manager, kubectl and kwok (fake nodes), built from source
# with Go from the Go module proxy. Idempotent: binaries are cached under
# ~/.cache/gpuspawner/kube/<versions>/bin and the Go caches under ~/.cache/gpuspawner/go, so
# a second run takes a second. Builds run at the lowest CPU priority.
#
#   bash scripts/setup-kube.sh          # build what is missing, print the bin directory
#
# The bin directory is also written to ~/.cache/gpuspawner/kube/bin-dir, where the tests
# (gpuspawner/testing/kube_cluster.py) look for it unless GPUSPAWNER_KUBE_BIN is set.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KUBE_VERSION=${GPUSPAWNER_KUBE_VERSION:-v1.33.13}
ETCD_VERSION=${GPUSPAWNER_ETCD_VERSION:-v3.5.21}
KWOK_VERSION=${GPUSPAWNER_KWOK_VERSION:-v0.7.0}

KCACHE=$CACHE/kube
BIN=$KCACHE/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION/bin
SRC=$KCACHE/src
export GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build GOFLAGS=-mod=mod GOTOOLCHAIN=local
export CGO_ENABLED=0
started=$SECONDS

build() { nice -n 19 go build -trimpath "$@"; }

command -v go >/dev/null 2>&1 || die "needs Go (1.24 or newer): apt-get install golang, or go.dev/dl"
mkdir -p "$BIN" "$SRC"

# 1. etcd: a wrapper module (plain `go install` refuses etcd's replace directives)
if [ -x "$BIN/etcd" ]; then
    say "kube: etcd: present ($ETCD_VERSION)"
else
    say "kube: etcd $ETCD_VERSION: building"
    d=$SRC/etcd-$ETCD_VERSION
    rm -rf "$d" && mkdir -p "$d" && cd "$d"
    go mod init local/etcd >/dev/null 2>&1
    nice -n 19 go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    build -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$BIN/etcd.tmp" "$BIN/etcd"
fi

# 2. Kubernetes: a wrapper module requiring k8s.io/kubernetes and replacing each staging
#    module (the `=> ./staging/` lines of its go.mod) by its published v0.x twin
components=(kube-apiserver kube-scheduler kube-controller-manager kubectl)
missing=()
for c in "${components[@]}"; do [ -x "$BIN/$c" ] || missing+=("$c"); done
if [ ${#missing[@]} -eq 0 ]; then
    say "kube: kubernetes: present ($KUBE_VERSION)"
else
    say "kube: kubernetes $KUBE_VERSION: building ${missing[*]} (a cold build takes tens of minutes)"
    staging=v0.${KUBE_VERSION#v1.}
    gomod=$(nice -n 19 go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
    [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBE_VERSION"
    d=$SRC/kubernetes-$KUBE_VERSION
    rm -rf "$d" && mkdir -p "$d" && cd "$d"
    {
        printf 'module local/kube\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBE_VERSION"
        grep -E '^[[:space:]]*k8s\.io/[^ ]+ => \./staging/' "$gomod" |
            awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
        printf ')\n'
    } >go.mod
    say "kube: replaced $(grep -c ' => ' go.mod) staging modules with $staging"
    pkgs=()
    for c in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c@$KUBE_VERSION"); done
    nice -n 19 go get -tool "${pkgs[@]}"
    vpkg=k8s.io/component-base/version
    cpkg=k8s.io/client-go/pkg/version
    minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
    ld="-s -w"
    for p in $vpkg $cpkg; do
        ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    for c in "${missing[@]}"; do
        t0=$SECONDS
        build -tags selinux,notest -ldflags "$ld" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
        mv "$BIN/$c.tmp" "$BIN/$c"
        say "kube: $c built in $((SECONDS - t0)) s"
    done
fi

# 3. kwok: the controller that plays kubelet for fake nodes
if [ -x "$BIN/kwok" ]; then
    say "kube: kwok: present ($KWOK_VERSION)"
else
    say "kube: kwok $KWOK_VERSION: building"
    GOBIN=$BIN nice -n 19 go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
fi

echo "$BIN" >"$KCACHE/bin-dir"
say "kube: ready in $((SECONDS - started)) s: $("$BIN/kube-apiserver" --version), etcd $ETCD_VERSION, kwok $KWOK_VERSION"
echo "$BIN"
