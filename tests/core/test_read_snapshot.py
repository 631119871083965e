"""A store read is one snapshot, on both stores.

A listing is sometimes several statements in one read (waiting items, then the
others). At PostgreSQL's default READ COMMITTED each statement saw its own
snapshot, so an item claimed between the two showed up twice (once waiting, once
claimed): seen in test_agent_takeover under CI load. Here a write commits between
a read's two statements, on purpose, and the read must not see it.
"""

from __future__ import annotations

import asyncio
import threading

from sqlalchemy import text

from launch_tui.core.service import LaunchService


async def test_a_write_between_two_statements_of_a_read_is_not_seen(
    service: LaunchService,
) -> None:
    await service.create_queue("q", "local-process", {})
    first_done = threading.Event()
    may_go_on = threading.Event()

    def read(conn) -> tuple[int, int]:  # type: ignore[no-untyped-def]
        count = text("SELECT count(*) FROM queues")
        before = int(conn.execute(count).scalar())
        first_done.set()
        assert may_go_on.wait(30)
        return before, int(conn.execute(count).scalar())

    reading = asyncio.ensure_future(service._store.read(read))
    assert await asyncio.to_thread(first_done.wait, 30)
    await service.create_queue("r", "local-process", {})  # commits meanwhile
    may_go_on.set()
    before, after = await reading
    assert (before, after) == (1, 1)
    assert len(await service.list_queues()) == 2  # a new read sees it
