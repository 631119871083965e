"""The change feed: every event any process wrote, in order, as it is written.

Subscribers tail the events table by sequence number. Commits made through this
process's store wake them at once (the store's `on_commit` hook); changes from
other processes are seen at the next short poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from launch_tui.core.events import Event
from launch_tui.core.store import eventlog
from launch_tui.core.store.session import Store

_BATCH = 500


class Feed:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiters: set[asyncio.Event] = set()
        self.closed = False

    def wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    def close(self) -> None:
        """End every subscription (each returns after its current wait)."""
        self.closed = True
        self.wake()

    async def last_event_seq(self) -> int:
        return await self._store.read(eventlog.last_seq)

    async def events_after(self, seq: int, limit: int = _BATCH) -> list[Event]:
        return await self._store.read(eventlog.after, seq, limit)

    async def subscribe(self, after: int | None, poll_s: float) -> AsyncIterator[Event]:
        """Every event after `after` (default: from now on), as it is written by any process.

        Changes made through this service object wake subscribers at once; changes
        from other processes are seen within `poll_s`.
        """
        last = await self.last_event_seq() if after is None else after
        wake = asyncio.Event()
        self._waiters.add(wake)
        try:
            while not self.closed:
                wake.clear()
                batch = await self.events_after(last)
                for ev in batch:
                    last = ev.seq
                    yield ev
                if len(batch) >= _BATCH:
                    continue
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # cancellation that races with the event being set, hanging shutdown.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll_s):
                        await wake.wait()
        finally:
            self._waiters.discard(wake)
