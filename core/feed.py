"""The change feed: every event any process wrote, in order, as it is written.

Subscribers tail the events table by sequence number (which the store keeps in
commit order, see `eventlog.append`, so reading "above the last one seen" never
skips an event). Commits made through this process's store wake them at once
(the store's `on_commit` hook). Commits of other processes wake them too: on
SQLite through an inotify watch on the database's files (`dbwatch`), on
PostgreSQL through LISTEN/NOTIFY (`store.listen`), each with a slow poll as a
fallback; where there is no watch (no inotify, the listening connection down),
they are seen at the next short poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from launch_tui.core.dbwatch import DbWatch
from launch_tui.core.events import Event
from launch_tui.core.store import engine, eventlog
from launch_tui.core.store.listen import PgListen
from launch_tui.core.store.session import Store

_BATCH = 500
WATCHED_POLL_S = 2.0  # the fallback poll of a subscriber whose store's files are watched
# After a file wake that found nothing new, look again after these pauses: inotify
# reports the write-ahead log's write a moment before the commit is visible to
# readers (the log's index is updated after it), and a writer preempted there
# must not leave the event to the fallback poll.
_RECHECK_S = (0.005, 0.05, 0.25)


class _FileWake(asyncio.Event):
    """What the database watch sets for one subscriber: it marks the wake as the
    file's (so an empty read is looked at again) and wakes the subscriber."""

    def __init__(self, wake: asyncio.Event) -> None:
        super().__init__()
        self._wake = wake

    def set(self) -> None:
        super().set()
        self._wake.set()


class Feed:
    def __init__(self, store: Store) -> None:
        self._store = store
        path = engine.sqlite_file(store.url)
        # The file the watch names: SQLite opens a symlink's target and puts its log
        # beside it.
        self._db: Path | None = None if path is None else path.resolve()
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

    async def subscribe(self, after: int | None, poll_s: float, *, watch: bool = True,
                        watched_poll_s: float = WATCHED_POLL_S) -> AsyncIterator[Event]:
        """Every event after `after` (default: from now on), as it is written by any process.

        Changes made through this service object wake subscribers at once; so do
        other processes' commits to a watched SQLite file (`watch`), with a poll
        every `watched_poll_s` as a fallback; without a watch, others' changes are
        seen within `poll_s`.
        """
        last = await self.last_event_seq() if after is None else after
        wake = asyncio.Event()
        file_wake = _FileWake(wake)
        self._waiters.add(wake)
        dbwatch: DbWatch | None = None
        listen: PgListen | None = None
        if watch and self._db is not None:
            dbwatch = DbWatch.for_sqlite(self._db)
            if dbwatch is not None:
                dbwatch.add(file_wake)
        elif watch and self._db is None:
            listen = PgListen.for_url(self._store.url)
            listen.add(wake)
        rechecks: list[float] = []
        try:
            while not self.closed:
                by_file = file_wake.is_set()
                wake.clear()
                file_wake.clear()
                batch = await self.events_after(last)
                for ev in batch:
                    last = ev.seq
                    yield ev
                if len(batch) >= _BATCH:
                    continue
                if batch:
                    rechecks = []
                elif by_file:
                    rechecks = list(_RECHECK_S)
                watched = dbwatch is not None or (listen is not None and listen.active)
                poll = watched_poll_s if watched else poll_s
                timeout = rechecks.pop(0) if rechecks else poll
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # cancellation that races with the event being set, hanging shutdown.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await wake.wait()
        finally:
            self._waiters.discard(wake)
            if dbwatch is not None:
                dbwatch.discard(file_wake)
                dbwatch.release()
            if listen is not None:
                listen.discard(wake)
                listen.release()
