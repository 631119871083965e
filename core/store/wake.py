"""What the change feed's wake-ups from other processes have in common: one source
per event loop and database (an inotify watch of an SQLite file, a PostgreSQL
LISTEN connection), made by its first subscriber, shared by every subscriber in
the process, and closed with its last one."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Hashable
from typing import Self

# For each kind of source: event loop -> key (the database) -> its source.
Registry = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, "SharedWake"]]


class SharedWake:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: set[asyncio.Event] = set()
        self._users = 0
        self._registry: Registry | None = None
        self._key: Hashable = None

    @classmethod
    def shared(cls, registry: Registry, key: Hashable,
               make: Callable[[asyncio.AbstractEventLoop], Self]) -> Self:
        """The running loop's source for `key`, made with `make(loop)` on first use
        (whatever `make` raises, nothing is registered)."""
        loop = asyncio.get_running_loop()
        sources = registry.setdefault(loop, {})
        source = sources.get(key)
        if source is None:
            source = make(loop)
            source._registry, source._key = registry, key
            sources[key] = source
        source._users += 1
        return source  # type: ignore[return-value]

    def release(self) -> None:
        """One subscriber is done; the last one closes the source."""
        self._users -= 1
        if self._users > 0:
            return
        sources = self._registry.get(self._loop, {}) if self._registry is not None else {}
        if sources.get(self._key) is self:
            del sources[self._key]
        self._close()

    def _close(self) -> None:
        raise NotImplementedError

    def add(self, waiter: asyncio.Event) -> None:
        self._waiters.add(waiter)

    def discard(self, waiter: asyncio.Event) -> None:
        self._waiters.discard(waiter)

    def wake_all(self) -> None:
        for waiter in self._waiters:
            waiter.set()
