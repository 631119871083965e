"""Engine set-up: SQLite (WAL, 0600, BEGIN IMMEDIATE for writes) or PostgreSQL.

Writes go through `write_engine`, whose transactions start with BEGIN IMMEDIATE
on SQLite so two processes claiming items serialise at BEGIN instead of
failing at COMMIT with "database is locked".
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from launch_tui.core.errors import StoreError
from launch_tui.core.settings import DEFAULT_PROJECT
from launch_tui.core.store import schema

_WRITE = "launch_write"


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def create_engines(url: str) -> tuple[AsyncEngine, AsyncEngine]:
    """Return (read_engine, write_engine) sharing one connection pool."""
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Create the file ourselves so it is 0600 from the first byte.
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        engine = create_async_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # Let SQLAlchemy's "begin" event, not the driver, decide how transactions start.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn) -> None:  # type: ignore[no-untyped-def]
            mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
            conn.exec_driver_sql(f"BEGIN {mode}")

    else:
        engine = create_async_engine(url, pool_pre_ping=True)
    return engine, engine.execution_options(**{_WRITE: True})


async def prepare(engine: AsyncEngine, write_engine: AsyncEngine, url: str) -> None:
    """Create the schema on an empty database; refuse one that is not ours or is newer."""
    path = _sqlite_path(url)
    if path is not None:
        # Tighten permissions on files made by older versions or other tools.
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if p.exists():
                os.chmod(p, 0o600)
    try:
        async with write_engine.begin() as conn:
            names = set(await conn.run_sync(lambda c: c.dialect.get_table_names(c)))
            if not names:
                await conn.run_sync(schema.metadata.create_all)
                now = time.time()
                await conn.execute(
                    schema.meta.insert(),
                    [
                        {"key": "app", "value": schema.APP_MARKER},
                        {"key": "schema_version", "value": str(schema.SCHEMA_VERSION)},
                    ],
                )
                await conn.execute(
                    schema.projects.insert().values(name=DEFAULT_PROJECT, created_at=now)
                )
                return
            if "launch_meta" not in names:
                raise StoreError(
                    f"store: {_where(url)} is not a launch-tui database "
                    "(it has other tables and no launch_meta table)."
                )
            rows = dict((await conn.execute(select(schema.meta.c.key, schema.meta.c.value))).all())
    except DatabaseError as exc:
        if isinstance(exc, OperationalError) and "locked" in str(exc):
            raise StoreError(f"store: {_where(url)} is locked by another program.") from exc
        raise StoreError(
            f"store: {_where(url)} is not a launch-tui database ({exc.orig})."
        ) from exc
    except OSError as exc:
        raise StoreError(f"store: cannot open {_where(url)} ({exc}).") from exc
    if rows.get("app") != schema.APP_MARKER:
        raise StoreError(f"store: {_where(url)} is not a launch-tui database.")
    version = int(rows.get("schema_version", "0"))
    if version > schema.SCHEMA_VERSION:
        raise StoreError(
            f"store: {_where(url)} has schema version {version}, newer than this "
            f"launch-tui understands ({schema.SCHEMA_VERSION}); upgrade launch-tui."
        )


def _where(url: str) -> str:
    path = _sqlite_path(url)
    return str(path) if path is not None else make_url(url).render_as_string(hide_password=True)
