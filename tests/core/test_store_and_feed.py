"""The embedded store's file, its schema guard, and the cross-process change feed."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from launch_tui.core.errors import StoreError
from launch_tui.core.events import ItemEnqueued, QueueChanged
from launch_tui.core.service import LaunchService
from tests.core.conftest import REPO


@pytest.mark.sqlite_only
async def test_database_file_is_private_and_in_wal_mode(service: LaunchService,
                                                        home: Path) -> None:
    db = home / "launch.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    conn = sqlite3.connect(db)
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    conn.close()


@pytest.mark.sqlite_only
async def test_grouped_writes_keep_their_savepoint_journals_in_memory(
        service: LaunchService) -> None:
    # Concurrent writes share one transaction, each in a savepoint; with SQLite's
    # default temp store every such transaction created and deleted a temporary file.
    modes = await asyncio.gather(*(service._store.write(
        lambda c: c.exec_driver_sql("PRAGMA temp_store").scalar()) for _ in range(4)))
    assert modes == [2, 2, 2, 2]  # 2: MEMORY


@pytest.mark.sqlite_only  # the file itself; tests/core/test_migrations.py covers both stores
async def test_newer_schema_is_refused(service: LaunchService, home: Path) -> None:
    await service.close()
    conn = sqlite3.connect(home / "launch.db")
    conn.execute("update launch_meta set value='99' where key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 99, newer than this launch-tui"):
        await LaunchService.open(home=home)


async def test_subscribe_sees_changes_from_another_process(service: LaunchService,
                                                           home: Path) -> None:
    seen: list[object] = []

    async def watch() -> None:
        async for ev in service.subscribe():
            seen.append(ev)
            if isinstance(ev, QueueChanged) and ev.queue == "from-child":
                return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.1)
    code = ("import asyncio\nfrom core.service import LaunchService\n"
            "async def m():\n"
            f"    s = await LaunchService.open(home={str(home)!r})\n"
            "    await s.create_queue('from-child', 'local-process')\n"
            "    await s.close()\n"
            "asyncio.run(m())\n")
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], cwd=REPO, check=True)
    await asyncio.wait_for(watcher, timeout=10)
    assert any(isinstance(e, QueueChanged) and e.queue == "from-child" for e in seen)


async def test_subscribe_in_process_is_immediate_and_ordered(service: LaunchService,
                                                             code_dir: Path) -> None:
    await service.create_code_job(code_dir, "python train.py", name="t")
    await service.create_queue("q", "local-process")
    got: list[ItemEnqueued] = []

    async def watch() -> None:
        async for ev in service.subscribe():
            if isinstance(ev, ItemEnqueued):
                got.append(ev)
                if len(got) == 3:
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.05)
    ids = [(await service.enqueue("t", "q")).id for _ in range(3)]
    await asyncio.wait_for(watcher, timeout=5)
    assert [e.item_id for e in got] == ids
    assert [e.seq for e in got] == sorted(e.seq for e in got)


@pytest.mark.sqlite_only
async def test_a_new_store_has_small_pages_and_an_old_one_keeps_its_own(tmp_path: Path) -> None:
    async def page_size(service: LaunchService) -> int:
        return int(await service._store.read(
            lambda c: c.exec_driver_sql("PRAGMA page_size").scalar()))

    new = await LaunchService.open(home=tmp_path / "new")
    await new.create_queue("q", "local-process")
    assert await page_size(new) == 1024
    await new.close()
    # A file with SQLite's default pages, as earlier versions made their stores.
    old_home = tmp_path / "old"
    old_home.mkdir()
    with contextlib.closing(sqlite3.connect(old_home / "launch.db")) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
    old = await LaunchService.open(home=old_home)
    await old.create_queue("q", "local-process")
    assert [q.name for q in await old.list_queues()] == ["q"]
    assert await page_size(old) == 4096
    await old.close()
