"""Waking on commits that other processes make to an SQLite store, without polling.

Every commit in WAL mode writes to `<db>-wal` (and a checkpoint to `<db>`), so
one inotify watch on the database's directory tells a process, within a
millisecond or so, that another process may have appended events. The change
feed then reads the events table as it would after a poll. One watch per event
loop and database, shared by every subscriber in the process.

PostgreSQL needs none of this (LISTEN/NOTIFY). Where inotify is unavailable
(not Linux, the per-user limit reached), `DbWatch.for_sqlite` returns None and
the feed keeps its poll.
"""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path

from launch_tui.core.store.wake import Registry, SharedWake

_BY_LOOP: Registry = weakref.WeakKeyDictionary()


class DbWatch(SharedWake):
    def __init__(self, loop: asyncio.AbstractEventLoop, db: Path) -> None:
        from inotify_simple import INotify, flags  # Linux only; imported when used

        super().__init__(loop)
        self._flags = flags
        self._names = {db.name, f"{db.name}-wal"}
        self._inotify = INotify(nonblocking=True)
        self._inotify.add_watch(db.parent, flags.MODIFY | flags.CREATE | flags.MOVED_TO)
        loop.add_reader(self._inotify.fileno(), self._on_events)

    @classmethod
    def for_sqlite(cls, db: Path) -> DbWatch | None:
        """The running loop's watch of `db`, made on first use; None where unavailable."""
        try:
            return cls.shared(_BY_LOOP, db, lambda loop: cls(loop, db))
        except (ImportError, OSError):
            return None

    def _close(self) -> None:
        self._loop.remove_reader(self._inotify.fileno())
        self._inotify.close()

    def _on_events(self) -> None:
        try:
            events = self._inotify.read(timeout=0)
        except OSError:
            return
        if any(e.name in self._names or e.mask & self._flags.Q_OVERFLOW for e in events):
            self.wake_all()
