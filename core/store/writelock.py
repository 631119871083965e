"""The lock a store's writer holds around each write transaction, and what a process
does so that it is never stopped while holding it.

On SQLite the writers of all processes take an exclusive flock on a file beside the
database for each transaction (see `threads`): a waiting writer sleeps in the kernel
and wakes the moment the lock is free. The other side of that: a process stopped
inside a transaction (SIGSTOP, a debugger, Ctrl-Z at the wrong moment) stops every
writer of the store until it continues or ends. SQLite's own write lock would do the
same; no other process can break either. Two things follow:

- `WriteLock` says so. A write that has waited WAIT_WARN_S for the lock logs a
  warning naming the process that holds it (from /proc/locks) and whether that
  process is stopped, and repeats it every WAIT_REPEAT_S while it waits.
- `quiesced` lets a process stop itself between transactions: it holds every gated
  writer of the process outside its transaction until the block ends. Ctrl-Z
  (SIGTSTP) on the agent, and on the app, stops the process inside it. A process's
  transactions are short (one call on the writer thread), so this waits for at most
  one of them.

PostgreSQL needs no file lock, but a process stopped inside a transaction holds its
row locks there too: its writer is gated the same way, and the server ends a session
idle in a transaction after `[store] idle_in_transaction_timeout_s` (`pgparams`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("launch_tui.store")

WAIT_WARN_S = 5.0  # a write waiting this long for the lock is reported
WAIT_REPEAT_S = 30.0  # and again this often while it still waits
QUIESCE_TIMEOUT_S = 5.0  # how long `quiesced` waits for a transaction in progress

try:
    from fcntl import LOCK_EX, LOCK_NB, LOCK_UN
    from fcntl import flock as _flock
except ImportError:  # not on this platform: SQLite's own busy handling alone
    _flock = None  # type: ignore[assignment]

HAVE_FLOCK = _flock is not None

# Gated locks of this process. `quiesced` holds _REGISTRY for its whole block, so a
# writer thread that starts meanwhile cannot register (and write) until it ends.
_REGISTRY = threading.Lock()
_GATED: weakref.WeakSet[WriteLock] = weakref.WeakSet()


class WriteLock:
    """Held around one write transaction: the writer's gate (when `gated`), then an
    exclusive flock on `path` (no file lock without a path). The file is opened on
    first use and stays open until `close`."""

    def __init__(self, path: str | None, *, gated: bool = False) -> None:
        self._path = path if HAVE_FLOCK else None
        self._fd: int | None = None
        self._gate = threading.Lock() if gated else None
        if gated:
            with _REGISTRY:
                _GATED.add(self)

    def __enter__(self) -> None:
        if self._gate is not None:
            self._gate.acquire()
        if self._path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                _flock(self._fd, LOCK_EX | LOCK_NB)
            except BlockingIOError:
                # Another process writes. Wait in the kernel, watched: a holder that
                # is stopped would otherwise make this wait without a word.
                token = _WATCH.waiting(self._path, self._fd)
                try:
                    _flock(self._fd, LOCK_EX)
                finally:
                    _WATCH.done(token)
        except BaseException:
            if self._gate is not None:
                self._gate.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._fd is not None:
                _flock(self._fd, LOCK_UN)
        finally:
            if self._gate is not None:
                self._gate.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def quiesced(timeout_s: float = QUIESCE_TIMEOUT_S) -> Iterator[bool]:
    """Hold every gated writer of this process between transactions for the block.
    Yields whether all were reached within `timeout_s` (False: one is still inside a
    transaction, most likely waiting for another process's lock)."""
    with _REGISTRY:
        taken: list[threading.Lock] = []
        deadline = time.monotonic() + timeout_s
        try:
            for lock in list(_GATED):
                gate = lock._gate
                assert gate is not None
                if gate.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    taken.append(gate)
            yield len(taken) == len(_GATED)
        finally:
            for gate in taken:
                gate.release()


@contextlib.contextmanager
def between_transactions() -> Iterator[None]:
    """`quiesced`, saying so when a write could not be reached (it still waits for
    another process's lock): for a process about to stop itself."""
    with quiesced() as reached:
        if not reached:
            log.warning("store: stopping while a write is still waiting for the store's "
                        "lock; other processes cannot write until this one continues.")
        yield


def stop_between_transactions() -> None:
    """Stop this process (SIGSTOP) the way Ctrl-Z would, but between write
    transactions: for SIGTSTP handlers of processes that write to a store."""
    with between_transactions():
        os.kill(os.getpid(), signal.SIGSTOP)
        # Here again after SIGCONT: the writers go on as the block ends.


# ---------------------------------------------------------------- who holds it


def lock_holder(fd: int) -> int | None:
    """The PID of the process holding a flock on the file open as `fd` (Linux's
    /proc/locks), or None when unknown."""
    st = os.fstat(fd)
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        # "3: FLOCK  ADVISORY  WRITE 8797 fd:01:1234 0 EOF"; "3: -> FLOCK ..." waits.
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == ident:
            with contextlib.suppress(ValueError):
                return int(fields[4])
    return None


def describe_process(pid: int) -> tuple[str, bool]:
    """(its name, whether it is stopped) from /proc; ("?", False) when unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?", False
    # "1234 (launch-tui) T …": the name may hold spaces and parentheses itself.
    name, _, rest = stat.partition(" (")[2].rpartition(")")
    state = rest.split()[0] if rest.split() else "?"
    return name or "?", state in ("T", "t")


def wait_message(path: str, waited_s: float, holder: int | None) -> str:
    """One sentence on a write waiting for the lock at `path`."""
    head = f"store: a write has waited {waited_s:.0f}s for the store's write lock ({path})"
    if holder is None:
        return f"{head}; another process holds it."
    what, stopped = describe_process(holder)
    if stopped:
        return (f"{head}: process {holder} ({what}) holds it and is stopped; writes "
                f"resume when it continues (fg, or kill -CONT {holder}) or ends.")
    return f"{head}: process {holder} ({what}) holds it."


@dataclasses.dataclass(slots=True)
class _Wait:
    path: str
    fd: int
    started: float  # time.monotonic()
    report_at: float  # time.monotonic() of the next report


class _LockWatch:
    """Reports writes that wait long for the lock; its thread runs only while one
    waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waits: dict[object, _Wait] = {}
        self._thread: threading.Thread | None = None

    def waiting(self, path: str, fd: int) -> object:
        token = object()
        now = time.monotonic()
        with self._cond:
            self._waits[token] = _Wait(path, fd, now, now + WAIT_WARN_S)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="launch-store-lockwatch",
                                                daemon=True)
                self._thread.start()
        return token

    def done(self, token: object) -> None:
        with self._cond:
            self._waits.pop(token, None)

    def _run(self) -> None:
        while True:
            due: list[tuple[str, int, float]] = []
            with self._cond:
                if not self._waits:
                    self._thread = None
                    return
                self._cond.wait(1.0)
                now = time.monotonic()
                for wait in self._waits.values():
                    if now >= wait.report_at:
                        wait.report_at = now + WAIT_REPEAT_S
                        due.append((wait.path, wait.fd, now - wait.started))
            for path, fd, waited in due:
                try:
                    holder = lock_holder(fd)
                except OSError:  # the waiting thread gave up and closed it meanwhile
                    holder = None
                log.warning("%s", wait_message(path, waited, holder))


_WATCH = _LockWatch()
