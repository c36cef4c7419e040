#!/usr/bin/env bash
# One real Kubernetes node for the kubernetes-marked tests, beside the kwok nodes: a kubelet
# of the control plane's version (built from the Go module proxy like scripts/setup-kube.sh),
# Debian's containerd and CNI plugins, a locally built pause image, and the project's device
# plugin (tools/kube-deviceplugin) that advertises a simulated GPU host's devices.
#
#   bash scripts/setup-kube-node.sh     # build/install what is missing, start the node's containerd
#
# Idempotent and cached: binaries under ~/.cache/gpuspawner/kube-node/<version>/bin, the Go
# caches under ~/.cache/gpuspawner/go. The node's containerd is its own daemon (socket, root and
# state below), so the Docker engine's containerd is left alone. What the tests need to find is
# written to ~/.cache/gpuspawner/kube-node/node.env (tests/kube_node.py reads it); each test
# session then starts the kubelet and the device plugin itself, joined to its own control plane.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

KUBE_VERSION=${GPUSPAWNER_KUBE_VERSION:-v1.33.13}
NCACHE=$CACHE/kube-node
BIN=$NCACHE/$KUBE_VERSION/bin
SRC=$CACHE/kube/src
RUN_DIR=/run/gpuspawner-node
CONTAINERD_ROOT=$NCACHE/containerd
CONTAINERD_CONFIG=$NCACHE/containerd.toml
CONTAINERD_SOCKET=$RUN_DIR/containerd.sock
CNI_BIN=/usr/lib/cni
PAUSE_IMAGE=docker.io/gpuspawner/pause:local
export GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build GOFLAGS=-mod=mod GOTOOLCHAIN=local
export CGO_ENABLED=0
started=$SECONDS

is_root || die "the test node needs root (containerd, network namespaces, mounts)"
command -v go >/dev/null 2>&1 || die "needs Go (1.24 or newer): apt-get install golang, or go.dev/dl"
ensure_commands containerd:containerd ctr:containerd runc:runc ip:iproute2 docker:docker.io
if [ ! -x "$CNI_BIN/bridge" ] || [ ! -x "$CNI_BIN/host-local" ] || [ ! -x "$CNI_BIN/loopback" ]; then
    say "kube-node: installing the CNI plugins with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containernetworking-plugins >/dev/null
fi
mkdir -p "$BIN" "$SRC" "$RUN_DIR" "$CONTAINERD_ROOT"

# 1. kubelet: the same wrapper module as setup-kube.sh (k8s.io/kubernetes with its staging
#    modules replaced by their published v0.x twins), so most packages come from the Go cache
if [ -x "$BIN/kubelet" ]; then
    say "kube-node: kubelet: present ($KUBE_VERSION)"
else
    say "kube-node: kubelet $KUBE_VERSION: building"
    t0=$SECONDS
    staging=v0.${KUBE_VERSION#v1.}
    gomod=$(nice -n 19 go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
    [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBE_VERSION"
    d=$SRC/kubelet-$KUBE_VERSION
    rm -rf "$d" && mkdir -p "$d" && cd "$d"
    {
        printf 'module local/kubelet\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$KUBE_VERSION"
        grep -E '^[[:space:]]*k8s\.io/[^ ]+ => \./staging/' "$gomod" |
            awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
        printf ')\n'
    } >go.mod
    nice -n 19 go get -tool "k8s.io/kubernetes/cmd/kubelet@$KUBE_VERSION"
    minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
    ld="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    nice -n 19 go build -trimpath -tags selinux,notest -ldflags "$ld" -o "$BIN/kubelet.tmp" k8s.io/kubernetes/cmd/kubelet
    mv "$BIN/kubelet.tmp" "$BIN/kubelet"
    say "kube-node: kubelet built in $((SECONDS - t0)) s"
fi

# 2. the project's device plugin and pause program, rebuilt when their sources change
build_tool() { # name: tools/<name> -> $BIN/<name>-<source hash>, linked as $BIN/<name>
    local name=$1 dir=$ROOT/tools/$1 hash
    hash=$(cat "$dir"/go.* "$dir"/*.go | sha256sum | cut -c1-12)
    if [ -x "$BIN/$name-$hash" ]; then
        say "kube-node: $name: present ($hash)"
    else
        say "kube-node: $name: building ($hash)"
        (cd "$dir" && nice -n 19 go build -trimpath -ldflags "-s -w" -o "$BIN/$name-$hash.tmp" .)
        mv "$BIN/$name-$hash.tmp" "$BIN/$name-$hash"
    fi
    ln -sfn "$name-$hash" "$BIN/$name"
}
build_tool kube-deviceplugin
build_tool kube-pause

# 3. the node's own containerd: CRI with runc v2, cgroupfs, the pause image built here, CNI
#    from Debian; restrict_oom_score_adj because this machine may itself be a container
cat >"$CONTAINERD_CONFIG.tmp" <<TOML
version = 2
root = "$CONTAINERD_ROOT"
state = "$RUN_DIR/containerd"
[grpc]
  address = "$CONTAINERD_SOCKET"
[ttrpc]
  address = "$CONTAINERD_SOCKET.ttrpc"
[debug]
  address = "$RUN_DIR/containerd-debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$RUN_DIR/cni"
TOML
mv "$CONTAINERD_CONFIG.tmp" "$CONTAINERD_CONFIG"
mkdir -p "$RUN_DIR/cni"

ctr_() { ctr --address "$CONTAINERD_SOCKET" -n k8s.io "$@"; }
if ctr_ version >/dev/null 2>&1; then
    say "kube-node: containerd: running ($CONTAINERD_SOCKET)"
else
    say "kube-node: containerd: starting (log: $NCACHE/containerd.log)"
    (setsid containerd --config "$CONTAINERD_CONFIG" >>"$NCACHE/containerd.log" 2>&1 &)
    for _ in $(seq 1 30); do
        ctr_ version >/dev/null 2>&1 && break
        sleep 1
    done
    ctr_ version >/dev/null 2>&1 || die "the node's containerd did not start; see $NCACHE/containerd.log"
fi

# 4. the pause image: the pause program alone in an image, through docker import/save
images=$(ctr_ images ls -q)
if grep -qxF "$PAUSE_IMAGE" <<<"$images"; then
    say "kube-node: pause image: present"
else
    say "kube-node: pause image: building"
    d=$(mktemp -d)
    cp "$(readlink -f "$BIN/kube-pause")" "$d/pause"
    tar -C "$d" -c pause | docker import --change 'ENTRYPOINT ["/pause"]' - "${PAUSE_IMAGE#docker.io/}" >/dev/null
    docker save "${PAUSE_IMAGE#docker.io/}" | ctr_ images import --no-unpack=false - >/dev/null
    rm -rf "$d"
fi

cat >"$NCACHE/node.env.tmp" <<ENV
GPUSPAWNER_NODE_BIN=$BIN
GPUSPAWNER_NODE_CONTAINERD_CONFIG=$CONTAINERD_CONFIG
GPUSPAWNER_NODE_CONTAINERD_SOCKET=$CONTAINERD_SOCKET
GPUSPAWNER_NODE_RUN_DIR=$RUN_DIR
GPUSPAWNER_NODE_CNI_BIN=$CNI_BIN
GPUSPAWNER_NODE_PAUSE_IMAGE=$PAUSE_IMAGE
GPUSPAWNER_NODE_VERSION=$KUBE_VERSION
ENV
mv "$NCACHE/node.env.tmp" "$NCACHE/node.env"
say "kube-node: ready in $((SECONDS - started)) s: $("$BIN/kubelet" --version), $(containerd --version | cut -d' ' -f2-3)"
