"""Which stores a benchmark runs on, and a fresh store for every measurement.

Shared by claim_throughput.py, dispatch_latency.py and feed_wake.py (imported as a
sibling module: a script's own directory is first on sys.path).

    --stores sqlite,postgres     the default when a PostgreSQL server is known
                                 (--pg-url, else $LAUNCH_TUI_TEST_PG), else sqlite
    --stores sqlite              only the embedded store
    --stores postgresql://U:P@HOST:PORT/DB   PostgreSQL on that server
    --pg-url postgresql://...    the server `postgres` means

A measurement on SQLite gets a fresh home directory with its own database file;
one on PostgreSQL gets a database of its own, created on the server before it
(the role must be allowed to CREATE DATABASE) and dropped after it, whatever
happened. Either way the URL is passed explicitly, so a LAUNCH_TUI_STORE in the
environment does not change what is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from launch_tui.core.settings import sqlite_url


@dataclass(frozen=True)
class StoreKind:
    label: str  # "SQLite" / "PostgreSQL"
    server: str | None = None  # PostgreSQL: where databases are created

    @property
    def postgres(self) -> bool:
        return self.server is not None


@dataclass(frozen=True)
class Fresh:
    """One measurement's store: its URL and a scratch home directory."""
    url: str
    home: Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stores", default=None,
        help="comma-separated: sqlite, postgres, or a postgresql:// server URL "
             "(default: sqlite,postgres when a PostgreSQL server is known, else sqlite)")
    parser.add_argument(
        "--pg-url", default=os.environ.get("LAUNCH_TUI_TEST_PG"),
        help="PostgreSQL server to make throwaway databases on (default: $LAUNCH_TUI_TEST_PG)")


def chosen(args: argparse.Namespace) -> list[StoreKind]:
    spec = args.stores or ("sqlite,postgres" if args.pg_url else "sqlite")
    if not args.stores and not args.pg_url:
        print("benchmarks: no PostgreSQL server given (--pg-url or LAUNCH_TUI_TEST_PG): "
              "SQLite only", file=sys.stderr)
    kinds = []
    for word in (w.strip() for w in spec.split(",") if w.strip()):
        if word == "sqlite":
            kinds.append(StoreKind("SQLite"))
        elif word in ("postgres", "postgresql"):
            if not args.pg_url:
                raise SystemExit("benchmarks: --stores postgres needs --pg-url or "
                                 "LAUNCH_TUI_TEST_PG (a server whose role may CREATE DATABASE)")
            kinds.append(StoreKind("PostgreSQL", args.pg_url))
        elif word.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            kinds.append(StoreKind("PostgreSQL", word))
        else:
            raise SystemExit(f"benchmarks: unknown store {word!r} (sqlite, postgres or a "
                             "postgresql:// URL)")
    return kinds


def _admin_conninfo(server: str) -> str:
    return make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)


def _pg_execute(server: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(_admin_conninfo(server), autocommit=True) as conn:
        conn.execute(sql)


@contextlib.contextmanager
def fresh(kind: StoreKind) -> Iterator[Fresh]:
    """A new empty store of `kind` (and a scratch home), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="launch-bench-",
                                     dir=os.environ.get("BENCH_TMP")) as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        if kind.server is None:
            yield Fresh(sqlite_url(home / "launch.db"), home)
            return
        name = f"bench_{uuid.uuid4().hex[:12]}"
        _pg_execute(kind.server, f'CREATE DATABASE "{name}"')
        try:
            url = make_url(kind.server).set(database=name)
            yield Fresh(url.render_as_string(hide_password=False), home)
        finally:
            # FORCE: a child process a failed measurement left behind must not keep it.
            _pg_execute(kind.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settle_after_load(where: Fresh, *tables: str) -> None:
    """What a database does soon after a bulk load anyway, done before measuring, so
    it does not run in the middle of the samples (it did, in trials).

    PostgreSQL: VACUUM ANALYZE `tables` (autovacuum would). SQLite: a checkpoint of
    the write-ahead log. A seed of thousands of rows in a few large commits leaves
    all of them in the log, where a store that grew to that size over months was
    checkpointed all along; the store's first checkpoint after the seed would copy
    them back while the samples run.
    """
    if not where.url.startswith("postgresql"):
        import sqlite3
        from contextlib import closing

        from launch_tui.core.store.engine import sqlite_file

        with closing(sqlite3.connect(str(sqlite_file(where.url)), timeout=60)) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return
    import psycopg

    with psycopg.connect(_admin_conninfo(where.url), autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {', '.join(tables)}")


def server_version(kind: StoreKind) -> str:
    """"SQLite 3.40.1" / "PostgreSQL 15.18"."""
    if kind.server is None:
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    import psycopg

    with psycopg.connect(_admin_conninfo(kind.server)) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0].split()[0] if row else '?'}"


def durability(kind: StoreKind) -> str:
    """What a commit waits for on this store, to print beside the figures."""
    if kind.server is None:
        return "SQLite: WAL, synchronous=NORMAL (the engine's pragmas: no fsync per commit)"
    import psycopg

    with psycopg.connect(_admin_conninfo(kind.server)) as conn:
        values = {name: conn.execute(f"SHOW {name}").fetchone()
                  for name in ("fsync", "synchronous_commit", "full_page_writes")}
    settings = ", ".join(f"{k}={v[0] if v else '?'}" for k, v in values.items())
    return f"PostgreSQL server: {settings}, over TCP to 127.0.0.1"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"
