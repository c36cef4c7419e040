#!/usr/bin/env bash
# Build the single-user server image offline, from package registries only.
#
#   bash images/build-offline.sh [--tag NAME:TAG] [--wheel PATH/gpuspawner-*.whl] [--rebuild]
#
# Stage A (slow, cached): a Debian bookworm root filesystem from debootstrap, wheels
#   downloaded on the host for its CPython 3.11, images/install-singleuser.sh run in a
#   chroot, then `docker import` as gpuspawner/singleuser-base:<hash12>, where the hash
#   covers install-singleuser.sh, requirements-singleuser.txt and this script. Skipped
#   when the engine has that tag; reloaded from ~/.cache/gpuspawner/images/ when the
#   engine lost it. --rebuild forces it.
# Stage B (fast, only with --wheel): images/Dockerfile FROM that base, installing the
#   project's wheel through the same install-singleuser.sh. Without --wheel the base is
#   tagged as the final image.
#
# Progress goes to stderr; a summary goes to stdout, whose last line is the final image
# name (default gpuspawner/singleuser:offline).
# Environment: GPUSPAWNER_CACHE (default ~/.cache/gpuspawner), DEBIAN_MIRROR (default:
# the bookworm mirror apt uses here), PYTHON (host python with pip, default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TAG=gpuspawner/singleuser:offline
WHEEL=
REBUILD=0
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) TAG="$2"; shift 2 ;;
        --wheel) WHEEL="$2"; shift 2 ;;
        --rebuild) REBUILD=1; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "build-offline: unknown argument: $1" >&2; exit 2 ;;
    esac
done

CACHE="${GPUSPAWNER_CACHE:-$HOME/.cache/gpuspawner}"
BUILD="$CACHE/build"
IMAGES="$CACHE/images"
PYTHON="${PYTHON:-python3}"
SUITE=bookworm
PY_VERSION=3.11.2          # bookworm's python3
mkdir -p "$BUILD" "$IMAGES" "$BUILD/logs"

log() { echo "build-offline: $*" >&2; }
say() { echo "$*"; }                                # summary lines, on stdout
die() { echo "build-offline: error: $*" >&2; exit 1; }
# run a noisy command with its output in a log file; show the end of it if it fails
quiet() {
    local name="$1"; shift
    local logfile="$BUILD/logs/$name.log"
    if ! "$@" >"$logfile" 2>&1; then
        tail -n 40 "$logfile" >&2
        die "$name failed (full log: $logfile)"
    fi
}

if [ -n "$WHEEL" ]; then
    [ -f "$WHEEL" ] || die "no such wheel: $WHEEL"
    case "$(basename "$WHEEL")" in gpuspawner-*.whl) ;; *) die "--wheel wants a gpuspawner-*.whl" ;; esac
    WHEEL="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
fi

# One build at a time per cache (parallel test runs share it).
exec 9>"$CACHE/build-offline.lock"
flock -n 9 || { log "waiting for another build-offline.sh to finish"; flock 9; }

# --- the Docker engine ----------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null; then
        log "starting dockerd (log: $CACHE/dockerd.log)"
        nohup dockerd >"$CACHE/dockerd.log" 2>&1 &
        for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    fi
    docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info)"
fi
# The docker CLI builds with buildx when it has it; without it, use the legacy builder.
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

# --- stage A: the base image ----------------------------------------------------------
HASH="$(cat "$here/install-singleuser.sh" "$here/requirements-singleuser.txt" "$here/build-offline.sh" \
        | sha256sum | cut -c1-12)"
BASE="gpuspawner/singleuser-base:$HASH"
TARBALL="$IMAGES/singleuser-base-$HASH.tar"

# The Debian mirror apt uses for bookworm (deb822 .sources or one-line .list files).
debian_mirror() {
    "$PYTHON" - "$SUITE" <<'EOF'
import glob, re, sys
suite = sys.argv[1]
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for para in re.split(r"\n\s*\n", open(path).read()):
        f = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", para, re.M))
        if "deb" in f.get("Types", "").split() and suite in f.get("Suites", "").split() \
                and f.get("Enabled", "yes").lower() != "no" and f.get("URIs"):
            print(f["URIs"].split()[0]); sys.exit(0)
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
            print(words[1]); sys.exit(0)
print("http://deb.debian.org/debian")
EOF
}

build_base() {
    local rootfs="$BUILD/rootfs-$HASH" wheels="$BUILD/wheels-$HASH" mirror
    command -v debootstrap >/dev/null || {
        log "installing debootstrap"
        quiet apt-install env DEBIAN_FRONTEND=noninteractive sh -c \
            'apt-get install -y debootstrap || { apt-get update && apt-get install -y debootstrap; }'
    }
    mirror="${DEBIAN_MIRROR:-$(debian_mirror)}"

    # Wheels for the image's python, fetched on the host: inside the chroot pip cannot
    # verify the index's certificate.
    log "downloading wheels for CPython $PY_VERSION (log: $BUILD/logs/pip-download.log)"
    rm -rf "$wheels"
    quiet pip-download env -u PIP_FIND_LINKS -u PIP_NO_INDEX "$PYTHON" -m pip download \
        --disable-pip-version-check --progress-bar off \
        --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 --platform any \
        -d "$wheels" -r "$here/requirements-singleuser.txt"

    log "debootstrap $SUITE from $mirror (log: $BUILD/logs/debootstrap.log)"
    rm -rf --one-file-system "$rootfs"
    quiet debootstrap debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$rootfs" "$mirror"

    log "running install-singleuser.sh in the chroot (log: $BUILD/logs/install-singleuser.log)"
    mkdir -p "$rootfs/tmp/singleuser"
    cp "$here/install-singleuser.sh" "$here/requirements-singleuser.txt" "$rootfs/tmp/singleuser/"
    cp -r "$wheels" "$rootfs/tmp/singleuser/wheelhouse"
    quiet install-singleuser chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 /bin/bash /tmp/singleuser/install-singleuser.sh \
        --python /usr/bin/python3 --wheelhouse /tmp/singleuser/wheelhouse

    # what an image does not need
    rm -rf "${rootfs:?}"/tmp/* "$rootfs"/var/tmp/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/root/.cache
    find "$rootfs/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null || true

    # ENV lines from the file install-singleuser.sh wrote
    local changes=() line
    while IFS= read -r line; do
        [ -n "$line" ] && changes+=(--change "ENV $line")
    done <"$rootfs/etc/gpuspawner/singleuser.env"
    changes+=(--change 'USER 1000' --change 'WORKDIR /home/jovyan/work'
              --change 'EXPOSE 8888' --change 'CMD ["jupyterhub-singleuser"]')

    log "docker import $BASE"
    tar --numeric-owner -C "$rootfs" -c . \
        | docker import "${changes[@]}" --message "gpuspawner single-user base $HASH" - "$BASE" >/dev/null
    rm -rf --one-file-system "$rootfs"
    # keep the wheels: stage B resolves the project's dependencies against them first
    mkdir -p "$CACHE/wheels" && cp -n "$wheels"/*.whl "$CACHE/wheels/" && rm -rf "$wheels"

    log "saving $BASE to $TARBALL"
    docker save -o "$TARBALL.part" "$BASE" && mv "$TARBALL.part" "$TARBALL"
    # keep the three newest base tarballs
    ls -1t "$IMAGES"/singleuser-base-*.tar 2>/dev/null | tail -n +4 | xargs -r rm -f
}

# Check that an image has the environment install-singleuser.sh wrote, and runs.
check_image() {
    local image="$1" env_file got line
    env_file="$(docker run --rm --entrypoint cat "$image" /etc/gpuspawner/singleuser.env)"
    got="$(docker image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$image")"
    while IFS= read -r line; do
        case "$line" in
            PATH=*) ;;   # the Dockerfile prepends the venv to the base image's PATH
            ?*) grep -qxF "$line" <<<"$got" || die "$image lacks ENV $line" ;;
        esac
    done <<<"$env_file"
    docker run --rm "$image" jupyterhub-singleuser --version >/dev/null \
        || die "$image: jupyterhub-singleuser --version failed"
}

start=$SECONDS
if [ "$REBUILD" = 0 ] && docker image inspect "$BASE" >/dev/null 2>&1; then
    say "stage A: $BASE cached in the engine ($((SECONDS - start)) s)"
elif [ "$REBUILD" = 0 ] && [ -f "$TARBALL" ]; then
    quiet docker-load docker load -i "$TARBALL"
    say "stage A: $BASE loaded from $TARBALL ($((SECONDS - start)) s)"
else
    build_base
    check_image "$BASE"
    say "stage A: $BASE built ($((SECONDS - start)) s)"
fi

# --- stage B: the project's wheel on top ----------------------------------------------
if [ -z "$WHEEL" ]; then
    [ "$TAG" = "$BASE" ] || docker tag "$BASE" "$TAG"
    say "stage B: no --wheel, $TAG is the base image"
else
    start=$SECONDS
    ctx="$BUILD/context"
    rm -rf "$ctx" && mkdir -p "$ctx/wheelhouse"
    cp "$here/Dockerfile" "$here/install-singleuser.sh" "$here/requirements-singleuser.txt" "$ctx/"
    cp "$WHEEL" "$ctx/wheelhouse/"

    # gpuspawner[lab]'s dependencies as wheels for the image's python: from the cached
    # stage A wheels when they suffice, else from the package index.
    dl=(env -u PIP_FIND_LINKS -u PIP_NO_INDEX "$PYTHON" -m pip download
        --disable-pip-version-check --progress-bar off
        --only-binary=:all: --python-version "$PY_VERSION" --implementation cp
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 --platform any
        -d "$ctx/wheelhouse" -c "$here/requirements-singleuser.txt" "${WHEEL}[lab]")
    if [ -d "$CACHE/wheels" ] && "${dl[@]}" --no-index --find-links "$CACHE/wheels" \
            >"$BUILD/logs/pip-download-wheel.log" 2>&1; then
        log "project dependencies resolved from the cached wheels"
    else
        log "resolving project dependencies from the package index"
        quiet pip-download-wheel "${dl[@]}"
        # remember them, so that the next build resolves without the index
        mkdir -p "$CACHE/wheels"
        find "$ctx/wheelhouse" -name '*.whl' ! -name 'gpuspawner-*' -exec cp -n {} "$CACHE/wheels/" \;
    fi
    # drop the wheels the base image already has installed (same name and version)
    docker run --rm --entrypoint python "$BASE" -m pip list --format=freeze 2>/dev/null \
        >"$BUILD/base-freeze.txt"
    "$PYTHON" - "$ctx/wheelhouse" "$BUILD/base-freeze.txt" <<'EOF'
import os, re, sys
wheelhouse, freeze = sys.argv[1], sys.argv[2]
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
have = set()
for line in open(freeze):
    if "==" in line:
        name, version = line.strip().split("==", 1)
        have.add((norm(name), version))
for f in os.listdir(wheelhouse):
    if f.endswith(".whl") and not f.startswith("gpuspawner-"):
        name, version = f.split("-")[:2]
        if (norm(name), version) in have:
            os.remove(os.path.join(wheelhouse, f))
EOF
    log "docker build $TAG FROM $BASE with $(ls "$ctx/wheelhouse" | tr '\n' ' ')"
    quiet docker-build docker build --build-arg BASE="$BASE" --build-arg ONLINE=0 \
        -t "$TAG" "$ctx"
    rm -rf "$ctx"
    check_image "$TAG"
    say "stage B: $TAG built from $BASE with $(basename "$WHEEL") ($((SECONDS - start)) s)"
fi

echo "$TAG"
