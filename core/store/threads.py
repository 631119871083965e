"""The threads a store's SQL runs on, each holding one long-lived connection.

A `DbWorkers` is a small set of threads (one for writes, a few for reads) that
take jobs from lanes and run each as one transaction on the thread's own
connection, then hand the result back to the event loop that asked. Lane 0
(control writes: claims, state changes, heartbeats) always goes first; lane 1
(bulk output) runs when lane 0 is empty, and also after every CONTROL_STREAK
control jobs in a row, so a steady stream of claims cannot starve logs forever.
A job in progress is never interrupted: callers keep bulk jobs bounded.

Group commit: when several control jobs are waiting, the writer runs up to
`group` of them in one transaction, each inside its own savepoint (a job that
fails rolls back alone), and commits once. A commit is what costs most (the
WAL write), so concurrent callers share it; each result is handed back only
after the commit, so no caller ever sees work that could still be lost.

Across processes (SQLite), the writer also takes an exclusive flock on a lock file
beside the database for each transaction: writers of other processes then wait
in the kernel and wake the moment it is free, where SQLite's busy handler would
sleep for milliseconds between retries. `writelock` has that lock, what is said
when a write waits long for it, and how a process stops itself between
transactions.

Why threads and not an asyncio driver: a transaction becomes one hop to a thread
and one back, instead of a hop per statement, and the event loop never waits on
SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection

from launch_tui.core.store import connect_errors
from launch_tui.core.store.writelock import WriteLock

log = logging.getLogger("launch_tui.store")

CONTROL_STREAK = 32  # control jobs in a row after which one waiting bulk job runs
TRANSIENT_RETRIES = 8  # new transactions for jobs PostgreSQL aborted (deadlock, serialization)
# SQLSTATEs of errors that mean "run the transaction again": serialization_failure,
# deadlock_detected.
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})

Deliver = Callable[[asyncio.Future[Any], Any, BaseException | None], None]


class _Job:
    __slots__ = ("args", "deliver", "fn", "future", "loop")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any],
                 deliver: Deliver) -> None:
        self.fn = fn
        self.args = args
        self.loop = loop
        self.future = future
        self.deliver = deliver


class DbWorkers:
    """Up to `size` threads, started on demand, each with its own connection."""

    def __init__(self, name: str, size: int, connect: Callable[[], Connection], *,
                 group: int = 1, begin_sql: str | None = None,
                 lock_path: str | None = None, gated: bool = False,
                 on_begin: Callable[[Connection], None] | None = None,
                 before_commit: Callable[[Connection], None] | None = None,
                 after_commit: Callable[[], None] | None = None) -> None:
        self._name = name
        self._size = size
        self._group = group
        # How a transaction starts (SQLite: BEGIN IMMEDIATE / DEFERRED); None: the
        # driver starts one by itself (psycopg).
        self._begin_sql = begin_sql
        # A file locked (flock) around each transaction, shared with other processes.
        self._lock_path = lock_path
        # The writer's transactions can be held off while the process stops itself
        # (`writelock.quiesced`).
        self._gated = gated
        # Run first and last in every transaction (the store collects the events its
        # jobs emit, and writes them in one statement just before the commit).
        self._on_begin = on_begin
        self._before_commit = before_commit
        self._after_commit = after_commit  # e.g. count commits towards a checkpoint
        self._connect = connect
        self._lanes: tuple[collections.deque[_Job], collections.deque[_Job]] = (
            collections.deque(), collections.deque())
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._streak = 0
        self._stopping = False
        self._exit_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], *, bulk: bool,
               deliver: Deliver) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        job = _Job(fn, args, loop, future, deliver)
        with self._cond:
            if not self._threads:
                self._stopping = False
            self._lanes[1 if bulk else 0].append(job)
            # Another thread when more jobs wait than threads are idle to take them
            # (a burst that finds one idle reader is not served by that one alone).
            waiting = len(self._lanes[0]) + len(self._lanes[1])
            if self._idle:
                self._cond.notify()
            if waiting > self._idle and len(self._threads) < self._size:
                thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def stop(self) -> asyncio.Future[None]:
        """Let the threads finish the jobs they have, close their connections and end;
        the future resolves once all have. Submitting again starts new threads."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if not self._threads:
                done.set_result(None)
                return done
            self._stopping = True
            self._exit_waiters.append((loop, done))
            self._cond.notify_all()
        return done

    def _take(self) -> list[_Job] | None:
        """The next jobs to run in one transaction (lock held): one bulk job, or up to
        `group` control jobs; None when the threads should end."""
        control, bulk = self._lanes
        while not control and not bulk:
            if self._stopping:
                return None
            self._idle += 1
            self._cond.wait()
            self._idle -= 1
        if control and not (bulk and self._streak >= CONTROL_STREAK):
            jobs = [control.popleft() for _ in range(min(self._group, len(control)))]
            self._streak = self._streak + len(jobs) if bulk else 0
            return jobs
        self._streak = 0
        return [bulk.popleft()]

    def _serve(self) -> None:
        me = threading.current_thread()
        conn: Connection | None = None
        lock = WriteLock(self._lock_path, gated=self._gated)
        waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        try:
            while True:
                with self._cond:
                    jobs = self._take()
                    if jobs is None and conn is None:
                        # Leave under the lock that saw the lanes empty, so a job
                        # submitted from now on starts a thread of its own.
                        self._threads.remove(me)
                        if not self._threads:
                            waiters, self._exit_waiters = self._exit_waiters, []
                        break
                if jobs is None:
                    conn = _close(conn)  # then look at the lanes once more
                    lock.close()
                    continue
                # A caller that gave up before its job started does not want it run.
                jobs = [j for j in jobs if not j.future.cancelled()]
                if jobs:
                    with lock:
                        conn = self._run(conn, jobs)
        except BaseException:
            _close(conn)
            lock.close()
            with self._cond:
                if me in self._threads:
                    self._threads.remove(me)
            log.exception("store: %s thread failed", self._name)
            raise
        for loop, done in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(_resolve, done)

    def _run(self, conn: Connection | None, jobs: list[_Job]) -> Connection | None:
        """Run `jobs` in one transaction and post their outcomes; return the connection
        to use next (None: open a new one). Jobs that PostgreSQL aborted to break a
        deadlock, or for a serialization failure, run again in a new transaction (a
        job is a function of the connection alone, so running it again is safe);
        only after TRANSIENT_RETRIES such attempts does the caller see the error."""
        for attempt in range(TRANSIENT_RETRIES + 1):
            conn, outcomes = self._attempt(conn, jobs)
            again = [job for job, _, exc in outcomes if _transient(exc)]
            if not again or attempt == TRANSIENT_RETRIES:
                _post(outcomes)
                break
            _post([o for o in outcomes if not _transient(o[2])])
            jobs = again
            # Two writers that deadlocked would likely meet again at once: stagger them.
            time.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
        return conn

    def _attempt(self, conn: Connection | None, jobs: list[_Job]
                 ) -> tuple[Connection | None, list[tuple[_Job, Any, BaseException | None]]]:
        """One transaction of `jobs`: the connection to use next, and each job's outcome."""
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            if conn is None:
                conn = self._connect()
            # Transactions are begun and ended on the driver itself (see `_end`): the
            # statement machinery costs more than BEGIN and COMMIT do.
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            if self._begin_sql:
                dbapi.execute(self._begin_sql)
            try:
                if self._on_begin is not None:
                    self._on_begin(conn)
                if len(jobs) == 1:
                    outcomes.append((jobs[0], jobs[0].fn(conn, *jobs[0].args), None))
                else:
                    self._run_savepoints(conn, dbapi, jobs, outcomes)
                if self._before_commit is not None:
                    self._before_commit(conn)
            except BaseException:
                _end(conn, dbapi, commit=False)
                raise
            _end(conn, dbapi, commit=True)
            if self._after_commit is not None:
                self._after_commit()
        except Exception as exc:
            # Nothing of this transaction was committed: each job that had not failed
            # on its own fails with what ended it: a lost connection or a cancelled
            # statement as one sentence (`connect_errors`).
            own = {id(job): e for job, _, e in outcomes if e is not None}
            return _usable(conn), [
                (job, None, connect_errors.translate(own.get(id(job), exc), conn))
                for job in jobs]
        return conn, outcomes

    @staticmethod
    def _run_savepoints(conn: Connection, dbapi: Any, jobs: list[_Job],
                        outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
        """Each job in a savepoint of the one transaction: a job that fails rolls back
        alone, the others still commit."""
        cursor = dbapi.cursor()
        try:
            for job in jobs:
                # Not released after the job: COMMIT releases them all, and a
                # statement per job saved is worth a deeper savepoint stack.
                cursor.execute("SAVEPOINT launch_job")
                try:
                    result = job.fn(conn, *job.args)
                except Exception as exc:
                    cursor.execute("ROLLBACK TO SAVEPOINT launch_job")
                    outcomes.append((job, None, exc))
                else:
                    outcomes.append((job, result, None))
        finally:
            cursor.close()


def _end(conn: Connection, dbapi: Any, *, commit: bool) -> None:
    """Commit or roll back the thread's transaction. A job that ran a statement through
    SQLAlchemy itself (not a `Prepared` one) made it begin its own transaction object
    on the same driver transaction; that object must end it, so SQLAlchemy agrees."""
    if conn.in_transaction():
        if commit:
            conn.commit()
        else:
            conn.rollback()
    elif commit:
        dbapi.commit()
    else:
        dbapi.rollback()


def _transient(exc: BaseException | None) -> bool:
    """Whether an error is PostgreSQL aborting a transaction that may simply run again.
    Statements run on the driver raise its errors; those run through SQLAlchemy wrap
    them (`orig`)."""
    if exc is None:
        return False
    orig = getattr(exc, "orig", None) or exc
    return getattr(orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


def _close(conn: Connection | None) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()


def _usable(conn: Connection | None) -> Connection | None:
    """The connection after a failed job, or None when it must be replaced (a lost
    server connection, or one SQLAlchemy invalidated, or a driver connection that
    says it is closed or broken)."""
    if conn is None:
        return None
    dbapi = None if conn.closed or conn.invalidated else conn.connection.dbapi_connection
    if dbapi is None or getattr(dbapi, "closed", False) or getattr(dbapi, "broken", False):
        return _close(conn)
    return conn


def _post(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    """Hand outcomes back to the event loops that asked: one wake-up per loop, however
    many jobs of the group were its own."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any, BaseException | None]]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].loop, []).append(outcome)
    for loop, mine in by_loop.items():
        try:
            loop.call_soon_threadsafe(_deliver_all, mine)
        except RuntimeError:
            log.debug("store: the event loop that asked for a job has closed")


def _deliver_all(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    for job, result, error in outcomes:
        try:
            job.deliver(job.future, result, error)
        except Exception as exc:  # one bad callback must not strand the other callers
            log.exception("store: delivering a result failed")
            if not job.future.done():
                job.future.set_exception(exc)


def _resolve(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
