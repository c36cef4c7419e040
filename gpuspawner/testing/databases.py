"""The ledger's databases for tests: a sqlite file, and a fresh database on a real PostgreSQL.

PostgreSQL comes from scripts/setup-postgres.sh (Debian's postgresql, cluster 15/main);
GPUSPAWNER_TEST_POSTGRES overrides the URL of its test database.
"""

import os
import secrets

import pytest

POSTGRES_URL = os.environ.get(
    "GPUSPAWNER_TEST_POSTGRES", "postgresql://gpuspawner:gpuspawner@127.0.0.1:5432/gpuspawner_test"
)
REQUIRE = os.environ.get("GPUSPAWNER_REQUIRE_DOCKER") == "1"


def fresh_postgres_database():
    """Create a database of our own on the test server; returns (url, drop)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    try:
        admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            name = "gpst_%s" % secrets.token_hex(4)
            connection.execute(text("CREATE DATABASE %s" % name))
    except Exception as e:
        reason = "needs PostgreSQL at %s (bash scripts/setup-postgres.sh): %s" % (POSTGRES_URL, e)
        if REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)

    def drop():
        with admin.connect() as connection:
            connection.execute(text("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name))
        admin.dispose()

    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    return url, drop
