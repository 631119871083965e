"""Engine set-up: SQLite (WAL, 0600, BEGIN IMMEDIATE for writes) or PostgreSQL (psycopg),
and preparing a database: bringing its schema to the newest revision (`migrations`),
refusing one that is not ours.
What cannot be a store is refused first, before anything touches it (`location`).

The engines are plain synchronous SQLAlchemy Core engines used only from the
store's own threads (see `threads`), each of which keeps one connection; hence
no pool. Writes go through `write_engine`, whose transactions start with BEGIN
IMMEDIATE on SQLite so two processes claiming items serialise at BEGIN instead
of failing at COMMIT with "database is locked".
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.pool import NullPool

from launch_tui.core.errors import StoreError
from launch_tui.core.store import (
    connect_errors,
    jsoncodec,
    location,
    migrations,
    pgparams,
    schema,
)

_WRITE = "launch_write"
BUSY_TIMEOUT_MS = 60_000
# Pages of a new SQLite store, in bytes (SQLite's default is 4,096). A commit writes
# every page it changed, whole, to the WAL, and a dispatch changes a row or an index
# entry on each of some thirty pages (items, runs, events and their indexes): with
# 1 KiB pages a lifecycle (enqueue, claim, finish) wrote 49 KiB instead of 143 KiB,
# and one claimer ran 13 % faster. Log output, written in large batches, is stored
# about 15 % slower (benchmarks/README.md). Fixed when the file is created: a store
# made with other pages keeps them.
PAGE_SIZE = 1024


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def begin_sql(engine: Engine) -> str | None:
    """How the store's threads begin a transaction on this engine's driver (None: the
    driver begins one itself, as psycopg does)."""
    if not is_sqlite(engine):
        if engine.get_execution_options().get(_WRITE):
            return None
        # A read is one snapshot, as on SQLite: at PostgreSQL's default READ COMMITTED
        # each statement sees its own, and a listing made of two statements (waiting
        # items, then the others) showed an item claimed in between twice. psycopg has
        # begun the transaction; this is its first statement.
        return "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
    return "BEGIN IMMEDIATE" if engine.get_execution_options().get(_WRITE) else "BEGIN DEFERRED"


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def sqlite_file(url: str) -> Path | None:
    """The database file an SQLite URL names (None: PostgreSQL, or in memory)."""
    return _sqlite_path(url)


def writer_lock_path(url: str) -> str | None:
    """The file the writers of all processes lock around each write transaction
    (SQLite files only; PostgreSQL takes row locks)."""
    path = _sqlite_path(url)
    return None if path is None else f"{path}-writer.lock"


def create_engines(url: str, *, statement_timeout_s: float | None = None,
                   idle_in_transaction_timeout_s: float | None = None
                   ) -> tuple[Engine, Engine]:
    """Return (read_engine, write_engine); they differ only in how transactions begin.
    A URL or path that cannot be a store is refused (StoreError) before anything is
    created or opened."""
    location.parse(url)
    path = _sqlite_path(url)
    if path is not None:
        location.check_sqlite_path(path)
        if not path.exists():
            # Create the file ourselves so it is 0600 from the first byte.
            location.create_sqlite_file(path)
        engine = create_engine(url, poolclass=NullPool,
                               connect_args={"timeout": BUSY_TIMEOUT_MS / 1000},
                               json_serializer=jsoncodec.dumps,
                               json_deserializer=jsoncodec.loads)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's "begin" event, not the driver, decide how transactions start.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # Before WAL mode: only a database that has no pages yet takes it (see
            # PAGE_SIZE); an existing one keeps its own.
            cur.execute(f"PRAGMA page_size={PAGE_SIZE}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            # Savepoint journals (the writer's group commit puts each job in a
            # savepoint) and RETURNING's rows stay in memory: with temp files, SQLite
            # created and deleted a file in /var/tmp for every grouped transaction.
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.close()

        @event.listens_for(engine, "engine_connect")
        def _on_engine_connect(conn: Connection) -> None:
            if conn.get_execution_options().get(_WRITE):
                # The store checkpoints on a thread of its own (see `checkpoint`), so
                # the writer never pays for the fsyncs at the end of a checkpoint.
                conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                    "PRAGMA wal_autocheckpoint=0")

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # The store's threads begin transactions on the driver themselves (see
            # `threads`); SQLAlchemy's own begin, when a statement goes through it,
            # joins the transaction already open.
            dbapi_conn = conn.connection.dbapi_connection
            if dbapi_conn is not None and not dbapi_conn.in_transaction:
                mode = "IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "DEFERRED"
                dbapi_conn.execute(f"BEGIN {mode}")

    else:
        # libpq parameters, defaults and one-sentence connection errors: `pgparams`,
        # `connect_errors`. (SQLite has no statement timeout.)
        engine = create_engine(url, poolclass=NullPool, connect_args=pgparams.connect_args(url),
                               json_serializer=jsoncodec.dumps,
                               json_deserializer=jsoncodec.loads)
        connect_errors.install(engine, url)
        pgparams.set_session_timeouts(
            engine, statement_timeout_s=statement_timeout_s,
            idle_in_transaction_timeout_s=idle_in_transaction_timeout_s)
    return engine, engine.execution_options(**{_WRITE: True})


async def prepare(read: Callable[..., Awaitable[Any]], write: Callable[..., Awaitable[Any]],
                  url: str) -> None:
    """Bring the database to the newest schema revision (creating it when empty); refuse
    one that is not ours or is newer. `read` and `write` are the store's.

    Fast path: one read on a reader thread says the database is ours and at HEAD, and
    that is all (without importing Alembic, and without the write lock). Otherwise
    `migrations.runner` does the rest on the writer thread, under the write lock."""
    path = _sqlite_path(url)
    if path is not None:
        # Read-only first: a file that is not ours is refused before the writer's
        # connection switches it to WAL, and before its permissions change.
        await asyncio.to_thread(location.check_ours, path)
        # Tighten permissions on files made by older versions or other tools.
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if p.exists():
                os.chmod(p, 0o600)
    try:
        try:
            if await read(_at_head):
                return
        except DatabaseError as exc:
            if not _no_such_table(exc):
                raise
        await write(_prepare, url)
    except DatabaseError as exc:
        reason = " ".join(str(exc.orig).split())  # drivers' messages span lines
        if isinstance(exc, OperationalError):
            if "locked" in reason:
                raise StoreError(f"store: {_where(url)} is locked by another program.") from exc
            raise StoreError(f"store: cannot open {_where(url)} ({reason}).") from exc
        raise StoreError(f"store: {_where(url)} is not a launch-tui database ({reason}).") from exc
    except OSError as exc:
        raise StoreError(f"store: cannot open {_where(url)} ({exc}).") from exc


# Ours and at HEAD: exactly one row, (app marker, schema_version, revision) as
# `migrations.runner` leaves them; anything else goes the slow way, which says why.
_AT_HEAD = (f"SELECT a.value, s.value, v.version_num FROM {schema.meta.name} a, "
            f"{schema.meta.name} s, {migrations.VERSION_TABLE} v "
            "WHERE a.key = 'app' AND s.key = 'schema_version'")
_HEAD_ROW = (schema.APP_MARKER, str(schema.SCHEMA_VERSION), migrations.HEAD)


def _at_head(conn: Connection) -> bool:
    return conn.exec_driver_sql(_AT_HEAD).all() == [_HEAD_ROW]


def _no_such_table(exc: DatabaseError) -> bool:
    """An empty database, or one made before migrations (no version table)."""
    # PostgreSQL: undefined_table; SQLite says so in words.
    return (getattr(exc.orig, "sqlstate", None) == "42P01"
            or "no such table" in str(exc.orig))


def _prepare(conn: Connection, url: str) -> None:
    from launch_tui.core.store.migrations import runner  # imports Alembic: only when needed

    runner.upgrade(conn, _where(url))


def _where(url: str) -> str:
    path = _sqlite_path(url)
    return str(path) if path is not None else connect_errors.shown_url(url)
