#!/usr/bin/env bash
# The PostgreSQL the ledger tests use: Debian's postgresql, cluster 15/main on 127.0.0.1:5432,
# a role and database gpuspawner/gpuspawner_test. Idempotent; run as root. Exports nothing:
# it prints the URL the tests read (gpuspawner/testing/databases.py has the same fixed default), the only
# line on its stdout; what it does goes to stderr.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

URL=postgresql://gpuspawner:gpuspawner@127.0.0.1:5432/gpuspawner_test

# installing postgresql-15 creates the cluster 15/main
ensure_commands pg_ctlcluster:postgresql /usr/lib/postgresql/15/bin/postgres:postgresql-15 >&2
[ -d /etc/postgresql/15/main ] ||
    die "PostgreSQL's cluster 15/main is missing: pg_createcluster 15 main"
if ! pg_lsclusters --no-header | awk '$1 == 15 && $2 == "main" {print $4}' | grep -q online; then
    say "postgres: starting cluster 15/main" >&2
    pg_ctlcluster 15 main start
fi
for _ in $(seq 1 30); do
    su postgres -c "psql -qtAc 'SELECT 1'" >/dev/null 2>&1 && break
    sleep 1
done
psql_admin() { su postgres -c "psql -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
if [ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = 'gpuspawner'")" != 1 ]; then
    say "postgres: creating role gpuspawner" >&2
    psql_admin "CREATE ROLE gpuspawner LOGIN PASSWORD 'gpuspawner' CREATEDB"
fi
if [ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = 'gpuspawner_test'")" != 1 ]; then
    say "postgres: creating database gpuspawner_test" >&2
    psql_admin "CREATE DATABASE gpuspawner_test OWNER gpuspawner"
fi
echo "$URL"
