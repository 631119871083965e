"""Another process's commits wake a change-feed subscriber long before its fallback
poll would: through the watch of the SQLite files, or PostgreSQL's LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from launch_tui.core import dbwatch
from launch_tui.core.events import QueueChanged
from launch_tui.core.service import LaunchService
from launch_tui.core.store import listen

NEVER_S = 30.0  # a fallback poll that must not be what delivers the event


def _watches(store_kind: str) -> dict:  # type: ignore[type-arg]
    """This loop's watches of the store: inotify watches or LISTEN connections."""
    registry = dbwatch._BY_LOOP if store_kind == "sqlite" else listen._BY_LOOP
    return registry.get(asyncio.get_running_loop()) or {}


async def test_a_commit_by_another_process_wakes_a_subscriber_at_once(
        service: LaunchService, cli, store_kind: str) -> None:  # type: ignore[no-untyped-def]
    seen: list[QueueChanged] = []

    async def watch() -> None:
        async for ev in service.subscribe(poll_s=NEVER_S, watched_poll_s=NEVER_S):
            if isinstance(ev, QueueChanged) and ev.queue == "from-cli":
                seen.append(ev)
                return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)  # subscribed, and waiting
    assert _watches(store_kind), "the subscriber should watch the store"
    r = await asyncio.to_thread(cli, "queue", "create", "from-cli", "--resource",
                                "local-process")
    assert r.code == 0, r.err
    exited = time.monotonic()
    # Generous for a loaded machine, and still far below the fallback poll.
    await asyncio.wait_for(watcher, timeout=5)
    assert seen and time.monotonic() - exited < 5
    # The watch ends with its last subscriber.
    assert not _watches(store_kind)


async def test_without_the_watch_the_poll_delivers(service: LaunchService, home: Path,
                                                   cli) -> None:  # type: ignore[no-untyped-def]
    got = asyncio.Event()

    async def watch() -> None:
        async for ev in service.subscribe(poll_s=0.05, watch=False):
            if isinstance(ev, QueueChanged) and ev.queue == "polled":
                got.set()
                return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.1)
    assert not _watches("sqlite") and not _watches("postgres")
    r = await asyncio.to_thread(cli, "queue", "create", "polled", "--resource", "local-process")
    assert r.code == 0, r.err
    await asyncio.wait_for(watcher, timeout=5)
    assert got.is_set()
