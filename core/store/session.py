"""The store session the domain modules share: one writer thread, a few reader threads,
and appending events.

`await store.write(fn, *args)` runs `fn(conn, *args)` as one transaction on the
store's single writer thread (BEGIN IMMEDIATE on SQLite) and returns its result
once it has committed; the `on_commit` hook then runs on the event loop, so
in-process subscribers wake at once. Control writes go before bulk ones
(`bulk=True`: run output); control writes waiting together share one commit,
each in its own savepoint (see `threads`). `await store.read(fn, *args)` runs
`fn` in a transaction on a reader thread. Every function in `core/store/*.py` is
a plain function of a connection, and a domain command is one such function (a
closure) handed to `write`: one hop to the database thread and one back, however
many statements it runs. `emit()` adds events to the caller's transaction (they
are written just before it commits), which is what makes the events table a
faithful change feed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, TypeAlias, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.engine import Row as _Row

from launch_tui.core.events import Event
from launch_tui.core.model import JobVersion
from launch_tui.core.store import engine, eventlog
from launch_tui.core.store.checkpoint import Checkpointer
from launch_tui.core.store.threads import DbWorkers

# What domain modules name in their signatures, so none of them imports SQLAlchemy.
Conn: TypeAlias = Connection
Row: TypeAlias = _Row[Any]
T = TypeVar("T")

READERS = 4
WRITE_GROUP = 64  # control writes waiting together commit together (see threads)
_CACHE_MAX = 4096


class Store:
    """One database: a writer thread, reader threads, a clock, and caches of rows that
    never change."""

    def __init__(self, url: str, *, clock: Callable[[], float], readers: int = READERS,
                 statement_timeout_s: float | None = None,
                 idle_in_transaction_timeout_s: float | None = None) -> None:
        self.url = url
        self._clock = clock
        read_engine, write_engine = engine.create_engines(
            url, statement_timeout_s=statement_timeout_s,
            idle_in_transaction_timeout_s=idle_in_transaction_timeout_s)
        # Time comes from the database where other machines share it (PostgreSQL):
        # writes read the database's `now()` as they begin (every CLOCK_READING_S),
        # and every time the store stamps or compares is this machine's clock
        # corrected by the last such reading. SQLite is one machine's file, and its
        # clock is the only clock.
        self._db_clock = not engine.is_sqlite(read_engine)
        # The database's clock minus this machine's. Only the machine's error is taken
        # out: a clock the caller shifted on purpose (the demo and tests age data that
        # way) keeps its shift relative to the database's time.
        self._skew = 0.0
        self._next_reading = 0.0  # time.monotonic() of the next reading
        # SQLite serialises writers at BEGIN IMMEDIATE; PostgreSQL needs row locks
        # that concurrent claimers skip instead of waiting on.
        self.skip_locked = not engine.is_sqlite(read_engine)
        self.on_commit: Callable[[], None] = lambda: None
        self._checkpointer = (
            Checkpointer(read_engine.raw_connection) if engine.is_sqlite(read_engine) else None)
        self._writer = DbWorkers("launch-store-writer", 1, write_engine.connect, gated=True,
                                 group=WRITE_GROUP, begin_sql=engine.begin_sql(write_engine),
                                 lock_path=engine.writer_lock_path(url),
                                 on_begin=self._begin_events,
                                 before_commit=self._flush_events,
                                 after_commit=self._checkpointer and self._checkpointer.committed)
        self._readers = DbWorkers("launch-store-reader", readers, read_engine.connect,
                                  begin_sql=engine.begin_sql(read_engine))
        # Rows that never change once written: job versions by (job_id, version), and
        # jobs by (project, name) (jobs are never renamed or deleted).
        self._versions: dict[tuple[int, int], JobVersion] = {}
        self._jobs: dict[tuple[str, str], Any] = {}
        # What the running write emitted and learnt (rows to cache once committed),
        # and the thread it runs on; events of the transaction's finished jobs.
        self._events: list[tuple[float, Event]] = []
        self._learnt: list[Callable[[], None]] = []
        self._writing: int | None = None
        self._tx_events: list[tuple[float, Event]] = []

    async def prepare(self) -> None:
        """Bring the schema to the newest revision (creating it on an empty database);
        refuse a database that is not ours or newer."""
        await engine.prepare(self.read, self.write, self.url)
        if self._db_clock:
            # A process that only reads (a TUI) still shows ages by the database's clock.
            await self.read(self._measure_skew)

    def _measure_skew(self, conn: Conn) -> None:
        self._skew = _skew(eventlog.db_now(conn))

    async def dispose(self) -> None:
        """Finish queued work, close every connection and end the threads."""
        await asyncio.gather(self._writer.stop(), self._readers.stop())
        thread = self._checkpointer.stop() if self._checkpointer else None
        if thread is not None:
            await asyncio.to_thread(thread.join)

    def now(self) -> float:
        """The time to stamp and compare with: on PostgreSQL, the database's time (this
        machine's clock corrected by the last reading, to within CLOCK_TOLERANCE_S)."""
        return self._clock() + self._skew

    async def write(self, fn: Callable[..., T], *args: Any, bulk: bool = False) -> T:
        """`fn(conn, *args)` in one write transaction on the writer thread."""
        return await self._writer.submit(self._in_write, (fn, args), bulk=bulk,
                                         deliver=self._committed)

    def _in_write(self, conn: Conn, fn: Callable[..., T], args: tuple[Any, ...]
                  ) -> tuple[T, list[Callable[[], None]]]:
        # Only the writer thread runs this, so the buffers need no lock.
        self._events, self._learnt = [], []
        self._writing = threading.get_ident()
        try:
            result = fn(conn, *args)
            # The job succeeded: its events are written with the transaction's others
            # just before it commits (`_flush_events`); a job that failed leaves none.
            self._tx_events.extend(self._events)
            return result, self._learnt
        finally:
            self._events, self._learnt, self._writing = [], [], None

    def _begin_events(self, conn: Conn) -> None:
        self._tx_events = []  # nothing from a transaction that failed may carry over
        if self._db_clock and time.monotonic() >= self._next_reading:
            # Clocks drift by milliseconds a day: a reading every few seconds of
            # writing keeps leases and heartbeats right and costs no round trip per
            # transaction.
            self._skew = _skew(eventlog.db_now(conn))
            self._next_reading = time.monotonic() + CLOCK_READING_S

    def _flush_events(self, conn: Conn) -> None:
        events, self._tx_events = self._tx_events, []
        eventlog.append(conn, events)

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(conn, *args)` in one read transaction on a reader thread."""
        return await self._readers.submit(fn, args, bulk=False, deliver=_deliver)

    def _committed(self, future: asyncio.Future[Any], outcome: Any,
                   exc: BaseException | None) -> None:
        result = None
        if exc is None:
            result, learnt = outcome
            for remember in learnt:  # now known to be committed
                remember()
            self.on_commit()
        _deliver(future, result, exc)

    def emit(self, conn: Conn, *evs: Event) -> None:
        """Append events in the caller's write transaction, all stamped with one time.
        They are written when the transaction's function returns, before it commits."""
        now = self.now()
        self._events.extend((now, e) for e in evs)

    # ------------------------------------------------------------------ caches

    def cached_version(self, job_id: int, number: int) -> JobVersion | None:
        return self._versions.get((job_id, number))

    def cache_version(self, job_id: int, version: JobVersion) -> None:
        """Remember a version read in the current transaction. Inside a write, only
        once it has committed: a version written by this very transaction that then
        rolls back must not outlive it (its job id could be given to another job)."""
        self._learn(lambda: _put(self._versions, (job_id, version.version), version))

    def cached_job(self, project: str, name: str) -> Any | None:
        """A jobs row (id, project, name, kind, created_at) seen before, or None."""
        return self._jobs.get((project, name))

    def cache_job(self, row: Any) -> None:
        self._learn(lambda: _put(self._jobs, (row.project, row.name), row))

    def _learn(self, remember: Callable[[], None]) -> None:
        if self._writing == threading.get_ident():
            self._learnt.append(remember)
        else:
            remember()


# Clocks that agree with the database's this closely are taken to agree: the reading
# itself is this coarse (a round trip; `now()` is when the transaction began), and
# stamps then stay in step with this machine's clock, log lines' times included.
CLOCK_TOLERANCE_S = 0.25
CLOCK_READING_S = 5.0  # how often writes read the database's clock


def _skew(db_now: float) -> float:
    skew = db_now - time.time()
    return 0.0 if abs(skew) < CLOCK_TOLERANCE_S else skew


def _put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value


def _deliver(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.done():
        return  # cancelled while it ran
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
