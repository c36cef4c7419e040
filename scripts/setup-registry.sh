#!/usr/bin/env bash
# A local container registry on loopback, for the image-pull tests.
#
#   bash scripts/setup-registry.sh            # -> prints 127.0.0.1:5000 on its last line
#
# Idempotent: installs Debian's docker-registry (distribution 2.8) when missing, and
# starts it on 127.0.0.1:$GPUSPAWNER_REGISTRY_PORT (default 5000) unless a registry
# already answers there. Storage and log live under ~/.cache/gpuspawner/registry/.
# It never touches the Docker engine's configuration: dockerd trusts plain-HTTP
# registries on 127.0.0.0/8 by default, and this script only checks that it still does.
set -euo pipefail
source "$(dirname "$0")/common.sh"

PORT=${GPUSPAWNER_REGISTRY_PORT:-5000}
ADDRESS=127.0.0.1:$PORT
DIR=$CACHE/registry

answers() { curl -fs -o /dev/null --max-time 2 "http://$ADDRESS/v2/"; }

ensure_commands curl:curl docker-registry:docker-registry

if answers; then
    say "registry: already answering on $ADDRESS" >&2
else
    mkdir -p "$DIR/data"
    cat >"$DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: $ADDRESS
EOF
    # layers of images the tests deleted earlier (safe only while the registry is stopped)
    docker-registry garbage-collect --delete-untagged "$DIR/config.yml" >>"$DIR/registry.log" 2>&1 || true
    say "registry: starting docker-registry on $ADDRESS (log: $DIR/registry.log)" >&2
    (setsid docker-registry serve "$DIR/config.yml" >>"$DIR/registry.log" 2>&1 &
     echo $! >"$DIR/registry.pid")
    for _ in $(seq 1 50); do
        answers && break
        sleep 0.2
    done
    answers || die "the registry did not answer on $ADDRESS; see $DIR/registry.log"
fi

# dockerd pushes and pulls over plain HTTP only to registries it calls insecure;
# 127.0.0.0/8 is on that list unless the daemon configuration replaced it.
ensure_docker >&2
trusted=$(docker info --format '{{json .RegistryConfig.InsecureRegistryCIDRs}}{{json .RegistryConfig.IndexConfigs}}')
case "$trusted" in
    *127.0.0.0/8*|*"\"$ADDRESS\""*) ;;
    *) die "the Docker engine does not treat $ADDRESS as an insecure (HTTP) registry: add \"insecure-registries\": [\"$ADDRESS\"] to /etc/docker/daemon.json and restart dockerd" ;;
esac
echo "$ADDRESS"
