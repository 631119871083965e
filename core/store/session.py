"""The store session the domain modules share: engines, transactions, and appending events.

`tx()` is a write transaction (BEGIN IMMEDIATE on SQLite) and runs the `on_commit`
hook once it has committed, so in-process subscribers wake at once; `read()` is a
plain connection for queries. `emit()` appends events inside the caller's
transaction, which is what makes the events table a faithful change feed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

from sqlalchemy.engine import Row as _Row
from sqlalchemy.ext.asyncio import AsyncConnection

from launch_tui.core.events import Event
from launch_tui.core.store import engine, eventlog

# What domain modules name in their signatures, so none of them imports SQLAlchemy.
Conn: TypeAlias = AsyncConnection
Row: TypeAlias = _Row[Any]


class Store:
    """One database: a read engine and a write engine sharing a pool, and a clock."""

    def __init__(self, url: str, *, clock: Callable[[], float]) -> None:
        self.url = url
        self._clock = clock
        self._read_engine, self._write_engine = engine.create_engines(url)
        # SQLite serialises writers at BEGIN IMMEDIATE; PostgreSQL needs row locks
        # that concurrent claimers skip instead of waiting on.
        self.skip_locked = not engine.is_sqlite(self._read_engine)
        self.on_commit: Callable[[], None] = lambda: None

    async def prepare(self) -> None:
        await engine.prepare(self._read_engine, self._write_engine, self.url)

    async def dispose(self) -> None:
        await self._read_engine.dispose()

    def now(self) -> float:
        return self._clock()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Conn]:
        async with self._write_engine.begin() as conn:
            yield conn
        self.on_commit()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Conn]:
        async with self._read_engine.connect() as conn:
            yield conn

    async def emit(self, conn: Conn, *evs: Event) -> None:
        """Append events in the caller's transaction, all stamped with one time."""
        await eventlog.append(conn, self.now(), evs)
