"""Which store the suite runs on, and throwaway PostgreSQL databases.

The suite runs on the embedded SQLite store by default, and on PostgreSQL with
`pytest --store postgres` (or LAUNCH_TUI_TEST_STORE=postgres). On PostgreSQL
every test gets a database of its own on the server that
`scripts/test-services.sh` started (its URL in LAUNCH_TUI_TEST_PG), dropped
when the test ends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import make_url

STORES = ("sqlite", "postgres")


def server_url() -> str:
    url = os.environ.get("LAUNCH_TUI_TEST_PG")
    if not url:
        raise RuntimeError(
            "LAUNCH_TUI_TEST_PG is not set: start the test PostgreSQL with "
            "`scripts/test-services.sh start` and eval \"$(scripts/test-services.sh env)\".")
    return url


def _admin():  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(server_url(), autocommit=True)


def create_database() -> str:
    """A new empty database on the test server; returns its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with _admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url()).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    with _admin() as conn:
        # FORCE: a process the test left behind must not keep the database alive.
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def postgres_database() -> Iterator[str]:
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)
