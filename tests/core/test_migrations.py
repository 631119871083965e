"""Schema revisions (core/store/migrations): what they make matches schema.py, processes
that open one database together all succeed, an older database is upgraded with its
data, a newer one is refused untouched. Each test runs on the suite's store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine

from launch_tui.core.service import LaunchService
from launch_tui.core.settings import DEFAULT_PROJECT
from launch_tui.core.store import migrations, schema
from launch_tui.core.store.migrations import runner
from tests.core.conftest import REPO


@pytest.fixture
def db(home: Path, store_url: str | None) -> Iterator[Engine]:
    """An engine on the test's store (home/launch.db on SQLite) for looking underneath."""
    engine = create_engine(store_url or f"sqlite:///{home / 'launch.db'}")
    try:
        yield engine
    finally:
        engine.dispose()


def _revision(db: Engine) -> list[str]:
    with db.connect() as conn:
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def _drift(db: Engine) -> list[Any]:
    """How the database differs from schema.py (empty: not at all)."""
    with db.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, schema.metadata)


def test_the_revision_list_is_the_scripts_chain() -> None:
    scripts = runner.script()
    assert scripts.get_heads() == [migrations.HEAD]
    chain = [s.revision for s in scripts.walk_revisions("base", "heads")]
    assert tuple(reversed(chain)) == migrations.REVISIONS


async def test_the_revisions_make_exactly_what_schema_py_declares(service: LaunchService,
                                                                  db: Engine) -> None:
    await service.close()
    assert _revision(db) == [migrations.HEAD]
    assert _drift(db) == []


# Each process imports everything first, says it is ready, and opens the store when
# the test says go, so the four really open the empty database at the same moment.
_OPEN_AT_ONCE = """
import asyncio, pathlib, sys, time
from launch_tui.core.service import LaunchService
here, n = pathlib.Path(sys.argv[1]), sys.argv[2]
(here / f"ready-{n}").touch()
while not (here / "go").exists():
    time.sleep(0.001)
async def main():
    svc = await LaunchService.open()
    try:
        print(",".join(p.name for p in await svc.list_projects()))
    finally:
        await svc.close()
asyncio.run(main())
"""


def test_four_processes_opening_an_empty_database_at_once_all_succeed(
        home: Path, tmp_path: Path, db: Engine) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT_ONCE, str(tmp_path), str(n)],
                              cwd=REPO, env=os.environ.copy(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for n in range(4)]
    try:
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("ready-*"))) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        (tmp_path / "go").touch()
        outcomes = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outcomes]
    assert [out.strip() for out, _ in outcomes] == [DEFAULT_PROJECT] * 4
    assert _revision(db) == [migrations.HEAD]
    with db.connect() as conn:
        assert conn.execute(text("SELECT name FROM projects")).scalars().all() == [
            DEFAULT_PROJECT]
        assert conn.execute(text("SELECT key, value FROM launch_meta")).all() == [
            ("app", schema.APP_MARKER), ("schema_version", str(schema.SCHEMA_VERSION))]


_UNDO_0004 = ("DROP INDEX ix_items_claim", "ALTER TABLE items DROP COLUMN seq",
              "CREATE INDEX ix_items_claim ON items (queue_id, state, priority, id)",
              "ALTER TABLE queues DROP COLUMN held_at",
              "ALTER TABLE queues DROP COLUMN hold_reason")


async def test_a_database_from_before_migrations_is_upgraded_with_its_data(
        service: LaunchService, home: Path, db: Engine, code_dir: Path) -> None:
    await service.create_code_job(code_dir, "python train.py", name="t")
    await service.create_queue("q", "local-process")
    first = await service.enqueue("t", "q")
    second = await service.enqueue("t", "q", priority="high")
    await service.close()
    # Make it what a release from before migrations left: no version table and none of
    # the later tables, and (as one that predates them) without the `attempt` column
    # and two newer indexes, but with an index that was retired since.
    with db.begin() as conn:
        for statement in ("DROP TABLE alembic_version", "DROP TABLE blob_chunks",
                          "DROP TABLE blobs", "ALTER TABLE run_logs DROP COLUMN source",
                          "ALTER TABLE run_metrics DROP COLUMN source",
                          "ALTER TABLE items DROP COLUMN attempt",
                          "DROP INDEX ix_runs_updated", "DROP INDEX ix_items_lease",
                          "CREATE INDEX ix_runs_state ON runs (state, id)", *_UNDO_0004):
            conn.execute(text(statement))
    assert "attempt" not in {c["name"] for c in inspect(db).get_columns("items")}

    svc = await LaunchService.open(home=home)
    try:
        items = await svc.list_items("q")
        assert [(i.id, i.state) for i in items] == [(second.id, "pending"),
                                                    (first.id, "pending")]
        assert [q.name for q in await svc.list_queues()] == ["q"]
        assert [j.name for j in await svc.list_jobs()] == ["t"]
    finally:
        await svc.close()
    assert _revision(db) == [migrations.HEAD]
    assert _drift(db) == []  # the attempt column and both indexes are back, ix_runs_state gone
    with db.connect() as conn:
        assert conn.execute(text("SELECT attempt FROM items ORDER BY id")).scalars().all() == [
            0, 0]
        assert conn.execute(text("SELECT value FROM launch_meta WHERE key = 'schema_version'")
                            ).scalar_one() == "1"


async def test_a_store_at_0002_gets_output_sources_and_keeps_its_output(
        service: LaunchService, db: Engine, home: Path, code_dir: Path) -> None:
    await service.create_code_job(code_dir, "python train.py", name="t")
    await service.create_queue("q", "local-process")
    item = await service.enqueue("t", "q")
    run = (await service.claim_run("agent-1", ["q"])).run
    assert run is not None and run.item_id == item.id
    await service.append_logs(run.id, [(1.0, "stdout", "one"), (2.0, "stderr", "two")])
    await service.record_metrics(run.id, [(1, 3.0, {"loss": 0.5})])
    await service.close()
    # What revision 0002 left: output tables without the `source` column.
    with db.begin() as conn:
        for table in ("run_logs", "run_metrics"):
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN source"))
        for statement in _UNDO_0004:
            conn.execute(text(statement))
        conn.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    assert "source" not in {c["name"] for c in inspect(db).get_columns("run_logs")}

    svc = await LaunchService.open(home=home)
    try:
        lines = await svc.run_logs(run.id)
        assert [(x.stream, x.text, x.source) for x in lines] == [
            ("stdout", "one", None), ("stderr", "two", None)]
        assert [(m.step, m.values, m.source) for m in await svc.run_metrics(run.id)] == [
            (1, {"loss": 0.5}, None)]
        assert await svc.output_line_counts(run.id) == {None: 3}
        # The new column takes what a run with several sources writes.
        await svc.append_logs(run.id, [(4.0, "stdout", "three", "pod-a")])
        assert (await svc.run_logs(run.id, after=lines[-1].id))[0].source == "pod-a"
        assert await svc.output_line_counts(run.id) == {None: 3, "pod-a": 1}
    finally:
        await svc.close()
    assert _revision(db) == [migrations.HEAD] == ["0004"]
    assert _drift(db) == []


async def test_a_store_at_0003_keeps_its_take_order_and_gets_queue_holds(
        service: LaunchService, db: Engine, home: Path, code_dir: Path) -> None:
    await service.create_code_job(code_dir, "python train.py", name="t")
    await service.create_queue("q", "local-process")
    first = await service.enqueue("t", "q")
    high = await service.enqueue("t", "q", priority="high")
    last = await service.enqueue("t", "q")
    await service.close()
    with db.begin() as conn:
        for statement in _UNDO_0004:
            conn.execute(text(statement))
        conn.execute(text("UPDATE alembic_version SET version_num = '0003'"))

    svc = await LaunchService.open(home=home)
    try:
        assert [i.id for i in await svc.list_items("q")] == [high.id, first.id, last.id]
        await svc.move_item(last.id, "top")
        assert [i.id for i in await svc.list_items("q")] == [last.id, high.id, first.id]
        assert (await svc.hold_queue("q")).held
    finally:
        await svc.close()
    assert _revision(db) == [migrations.HEAD]
    assert _drift(db) == []


def _fingerprint(db: Engine) -> tuple[object, ...]:
    """Every table's columns and indexes, and the rows that say what the database is."""
    with db.connect() as conn:
        insp = inspect(conn)
        shape = {t: ([c["name"] for c in insp.get_columns(t)],
                     sorted(str(i["name"]) for i in insp.get_indexes(t)))
                 for t in sorted(insp.get_table_names())}
        rows = {t: sorted(tuple(r) for r in conn.execute(text(f"SELECT * FROM {t}")))
                for t in ("alembic_version", "launch_meta", "projects", "queues")}
    return shape, rows


async def test_a_database_of_a_newer_revision_is_refused_untouched(
        service: LaunchService, cli, home: Path, db: Engine,  # type: ignore[no-untyped-def]
        store_url: str | None) -> None:
    await service.create_queue("q", "local-process")
    await service.close()
    with db.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    before = _fingerprint(db)

    r = cli("queue", "list", "--json")
    assert r.code == 1 and r.out == ""
    assert len(r.err.strip().splitlines()) == 1, r.err  # so no traceback either
    # A PostgreSQL URL is named with its driver and without its password.
    where = (re.escape(str(home / "launch.db")) if store_url is None
             else r"postgresql(\+psycopg)?://" + re.escape(
                 db.url.render_as_string(hide_password=True).split("://", 1)[1]))
    assert re.fullmatch(
        f"launch-tui: error: store: {where} was made by a newer launch-tui " + re.escape(
            f"(schema revision 9999; this version knows up to {migrations.HEAD}); "
            "upgrade launch-tui."), r.err.strip()), r.err
    assert _fingerprint(db) == before


def test_a_database_at_head_opens_without_importing_alembic(cli, home: Path) -> None:  # type: ignore[no-untyped-def]
    assert cli("items", "--json").code == 0  # creates the database
    # The fast path is one read; CLI start-up must not pay for importing Alembic.
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "launch_tui.tui.cli", "items", "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
        env={**os.environ, "LAUNCH_TUI_HOME": str(home)})
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "launch_tui.core.service" in imported
    assert not {m for m in imported if m.split(".")[0] in ("alembic", "mako")}
