"""Bringing a database to HEAD with Alembic, inside the store's write transaction.

Imported only when a database is not at HEAD (see `engine.prepare`): this is the one
module that imports Alembic. No env.py: the Alembic `Config` is built here, its
script location this package, and the migration context runs on the connection the
store's writer already holds, in its transaction. Both stores' DDL is transactional,
so an upgrade that fails leaves nothing half done.
"""

from __future__ import annotations

import time
from pathlib import Path

from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import select
from sqlalchemy.engine import Connection

from launch_tui.core.errors import StoreError
from launch_tui.core.settings import DEFAULT_PROJECT
from launch_tui.core.store import location, schema
from launch_tui.core.store.migrations import HEAD, REVISIONS, VERSION_TABLE

# PostgreSQL: processes preparing one database take turns on this transaction-scoped
# advisory lock ("launch" + 2; eventlog's append lock is + 1).
_LOCK = 0x6C61756E63680002

# Adopting a database made before migrations (launch_meta schema_version 1, no
# version table): releases of that time added these to schema version 1 without
# a migration, and dropped the retired indexes, so such a database may lack the
# former and hold the latter. Afterwards it has revision 0001's shape.
_ADDED_COLUMNS = (("items", "attempt", "INTEGER NOT NULL DEFAULT 0"),)
_ADDED_INDEXES = (
    "ix_items_lease ON items (state, lease_expires)",
    "ix_items_history ON items (state, created_at, id)",
    "ix_runs_newest ON runs (created_at, id)",
    "ix_runs_queue_newest ON runs (queue_id, created_at, id)",
    "ix_runs_state_newest ON runs (state, created_at, id)",
    "ix_runs_updated ON runs (updated_at, id)",
)
_RETIRED_INDEXES = ("ix_runs_created", "ix_runs_state")


def script() -> ScriptDirectory:
    """The revision scripts of this package, through a Config built in code."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    return ScriptDirectory.from_config(config)


def upgrade(conn: Connection, where: str) -> None:
    """Bring the database to HEAD in the caller's write transaction on `conn`: create an
    empty one, adopt one made before migrations, upgrade an older one. Refuse one that
    is not ours, or was made by a newer launch-tui, without changing it (StoreError).

    Processes doing this at once take turns: on SQLite the caller holds the writer's
    BEGIN IMMEDIATE and flock; on PostgreSQL the advisory lock below. Whoever comes
    second re-reads everything after the lock and finds the work done."""
    if conn.dialect.name == "postgresql":
        # A statement timeout (`[store] statement_timeout_s`) is for everyday queries:
        # it must cut neither the wait for another process's upgrade nor an upgrade.
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
        # Held until the transaction ends. Each statement after it reads what the
        # previous holder committed (READ COMMITTED, the store's isolation level).
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_LOCK})")
    names = set(conn.dialect.get_table_names(conn))
    meta = (dict(conn.execute(select(schema.meta.c.key, schema.meta.c.value)).all())
            if schema.meta.name in names else {})
    location.refuse_foreign(where, names, meta)
    current: tuple[str, ...] = tuple(
        conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalars()
    ) if VERSION_TABLE in names else ()
    refuse_newer(where, current)
    if current == (HEAD,):
        return  # another process upgraded it while we waited for the lock
    scripts = script()
    context = MigrationContext.configure(conn, opts={
        "script": scripts,
        "fn": lambda heads, _context: scripts._upgrade_revs(HEAD, heads),
    })
    if names and not current:
        _adopt(conn)
        context.stamp(scripts, REVISIONS[0])
    with Operations.context(context):  # what the scripts' `op` stands for
        context.run_migrations()
    if not names:
        conn.execute(schema.meta.insert(), [
            {"key": "app", "value": schema.APP_MARKER},
            {"key": "schema_version", "value": str(schema.SCHEMA_VERSION)},
        ])
        conn.execute(schema.projects.insert().values(name=DEFAULT_PROJECT,
                                                     created_at=time.time()))


def refuse_newer(where: str, revisions: tuple[str, ...]) -> None:
    newer = [r for r in revisions if r not in REVISIONS]
    if newer:
        raise StoreError(
            f"store: {where} was made by a newer launch-tui (schema revision "
            f"{', '.join(newer)}; this version knows up to {HEAD}); upgrade launch-tui.")


def _adopt(conn: Connection) -> None:
    """Give a database made before migrations revision 0001's shape (each added column
    has a default, so no data needs rewriting)."""
    for table, column, ddl in _ADDED_COLUMNS:
        if column not in {c["name"] for c in conn.dialect.get_columns(conn, table)}:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")
    for index in _ADDED_INDEXES:
        conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {index}")
    for name in _RETIRED_INDEXES:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
