#!/usr/bin/env bash
# The PostgreSQL the ledger tests use: Debian's postgresql, cluster 15/main on 127.0.0.1:5432,
# a role and database gpuspawner/gpuspawner_test. Idempotent; run as root. Exports nothing:
# it prints the URL the tests read (tests/databases.py has the same fixed default).
set -euo pipefail

URL=postgresql://gpuspawner:gpuspawner@127.0.0.1:5432/gpuspawner_test
say() { printf '==> postgres: %s\n' "$*" >&2; }

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /etc/postgresql/15/main ]; then
    [ "$(id -u)" = 0 ] || { echo "error: install postgresql (apt-get install postgresql) or run as root" >&2; exit 1; }
    say "installing postgresql with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if ! pg_lsclusters --no-header | awk '$1 == 15 && $2 == "main" {print $4}' | grep -q online; then
    say "starting cluster 15/main"
    pg_ctlcluster 15 main start
fi
for _ in $(seq 1 30); do
    su postgres -c "psql -qtAc 'SELECT 1'" >/dev/null 2>&1 && break
    sleep 1
done
psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = 'gpuspawner'")" != 1 ]; then
    say "creating role gpuspawner"
    psql_admin "CREATE ROLE gpuspawner LOGIN PASSWORD 'gpuspawner' CREATEDB"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = 'gpuspawner_test'")" != 1 ]; then
    say "creating database gpuspawner_test"
    psql_admin "CREATE DATABASE gpuspawner_test OWNER gpuspawner"
fi
echo "$URL"
