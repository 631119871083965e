"""Push notifications for local-process runs: files that change, processes that end.

The supervisor records everything a run does as files in its run directory
(job.json and exit.json by atomic rename, output.jsonl by appends), so the
agent needs to be told two things only: "a file in this run directory changed"
and "this process has exited". This module owns both, per event loop:

* ONE inotify instance (the `inotify_simple` package, a thin ctypes wrapper)
  registered with `loop.add_reader`, with a watch per run directory that
  someone waits on, shared and reference-counted. inotify reports the
  supervisor's writes whoever started it, so a restarted agent that re-attaches
  is told exactly as the agent that submitted the run.
* a pidfd (`os.pidfd_open`) per process someone waits for, also registered with
  `loop.add_reader`. A supervisor killed with SIGKILL writes no file; its pidfd
  still becomes readable, and only once the process has really exited (no race
  with /proc). pidfd_open works for processes that are not our children, e.g.
  those the fork server or a previous agent started.

No threads and no timers: a run that does nothing costs nothing. Why not a
socket served by the supervisor: the run directory is the record a restarted
agent reads anyway, and it stays readable after the supervisor is gone.

Where inotify or pidfd_open is unavailable (not Linux, the per-user inotify
limits reached), `Subscription.degraded` is set and callers poll with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import Callable
from pathlib import Path

from launch_tui.backends.local_rundir import proc_start_time

try:
    from inotify_simple import INotify, flags
except ImportError:  # pragma: no cover - not Linux, or the package is missing
    INotify = None  # type: ignore[assignment,misc]

EXITED = "<process exited>"  # what a subscription reports when a followed process ends
EVERYTHING = "<anything>"  # the event queue overflowed, or the directory went away

# Appends to output.jsonl, atomic renames of the JSON records, the directory's removal.
_MASK = (
    (flags.MODIFY | flags.MOVED_TO | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR)
    if INotify is not None
    else 0
)

_BY_LOOP: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RunEvents] = (
    weakref.WeakKeyDictionary()
)


class RunEvents:
    """The one inotify instance and the pidfds of one event loop, and who waits on them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        if INotify is None:
            raise OSError("inotify is not available")
        self.loop = loop
        self._inotify = INotify(nonblocking=True)
        self._dirs: dict[int, set[Subscription]] = {}  # watch descriptor -> subscribers
        # (pid, start time) -> its pidfd and who waits
        self._procs: dict[tuple[int, int | None], _ProcWatch] = {}
        loop.add_reader(self._inotify.fileno(), self._on_inotify)

    @classmethod
    def current(cls) -> RunEvents | None:
        """The running loop's instance, made on first use; None if inotify is unavailable."""
        loop = asyncio.get_running_loop()
        events = _BY_LOOP.get(loop)
        if events is None:
            try:
                events = cls(loop)
            except OSError:
                return None  # e.g. max_user_instances reached: callers poll instead
            _BY_LOOP[loop] = events
        return events

    def subscribe(self, directory: Path, names: frozenset[str]) -> Subscription:
        """Be told when one of `names` in `directory` changes (and of followed processes)."""
        sub = Subscription(self, names)
        try:
            sub.wd = self._inotify.add_watch(directory, _MASK)
        except OSError:
            sub.degraded = True  # no such directory, or out of watches
        else:
            self._dirs.setdefault(sub.wd, set()).add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub.wd is None:
            return
        subs = self._dirs.get(sub.wd)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._dirs[sub.wd]
                with contextlib.suppress(OSError):  # already gone with its directory
                    self._inotify.rm_watch(sub.wd)
        sub.wd = None

    def _on_inotify(self) -> None:
        try:
            events = self._inotify.read(timeout=0)
        except OSError:
            return
        for event in events:
            if event.mask & flags.Q_OVERFLOW:
                # Events were dropped: everyone looks again.
                for subs in list(self._dirs.values()):
                    for sub in list(subs):
                        sub._notify(EVERYTHING)
                continue
            subs = self._dirs.get(event.wd)
            if not subs:
                continue
            if event.mask & flags.IGNORED:
                # The directory is gone (or moved): its watch no longer reports anything.
                del self._dirs[event.wd]
                for sub in list(subs):
                    sub.wd = None
                    sub.degraded = True
                    sub._notify(EVERYTHING)
                continue
            name = EVERYTHING if event.mask & (flags.DELETE_SELF | flags.MOVE_SELF) else event.name
            for sub in list(subs):
                sub._notify(name)

    def watch_process(
        self, pid: int, start_time: int | None, callback: Callable[[], None]
    ) -> Callable[[], None] | None:
        """Call `callback` once the process ends; returns a function that stops waiting.

        None when pidfds are unavailable. A process already gone (or a recycled
        pid) is reported at once, from the loop.
        """
        key = (pid, start_time)
        watch = self._procs.get(key)
        if watch is None:
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                self.loop.call_soon(callback)
                return _nothing
            except (OSError, AttributeError):
                return None
            # Opened first, compared second: the pidfd then names the process we checked.
            if start_time is not None and proc_start_time(pid) != start_time:
                os.close(pidfd)
                self.loop.call_soon(callback)
                return _nothing
            watch = _ProcWatch(pidfd)
            self._procs[key] = watch
            self.loop.add_reader(pidfd, self._on_exit, key, watch)
        watch.callbacks.add(callback)

        def stop() -> None:
            watch.callbacks.discard(callback)
            if not watch.callbacks and self._procs.get(key) is watch:
                watch.close(self.loop)
                del self._procs[key]

        return stop

    def _on_exit(self, key: tuple[int, int | None], watch: _ProcWatch) -> None:
        if self._procs.get(key) is watch:
            del self._procs[key]
        watch.close(self.loop)
        for callback in list(watch.callbacks):
            callback()


def _nothing() -> None:
    return None


class _ProcWatch:
    def __init__(self, pidfd: int) -> None:
        self.pidfd: int | None = pidfd
        self.callbacks: set[Callable[[], None]] = set()

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.pidfd is not None:
            if not loop.is_closed():
                loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None


class Subscription:
    """One waiter's view: which of its files changed, and whether its process ended.

    Use as: check the state, `await wait()`, check again. Changes that happen
    while the caller checks are kept for the next `wait()`, so none is missed.
    """

    def __init__(self, events: RunEvents, names: frozenset[str]) -> None:
        self.events = events
        self.names = names
        self.wd: int | None = None
        # Set when something could not be watched: the caller must poll (with back-off).
        self.degraded = False
        self._fired: set[str] = set()
        self._event = asyncio.Event()
        self._followed: tuple[int, int | None] | None = None
        self._stop_following: Callable[[], None] | None = None

    def _notify(self, name: str) -> None:
        if name in self.names or name in (EXITED, EVERYTHING):
            self._fired.add(name)
            self._event.set()

    def follow(self, process: tuple[int, int | None] | None) -> None:
        """Also wake up when this process (pid, start time) exits; None follows nothing."""
        if process == self._followed:
            return
        if self._stop_following is not None:
            self._stop_following()
            self._stop_following = None
        self._followed = process
        if process is not None:
            stop = self.events.watch_process(*process, lambda: self._notify(EXITED))
            if stop is None:
                self.degraded = True
            self._stop_following = stop

    async def wait(self, at_most_s: float | None = None) -> set[str]:
        """What fired since the last call (waiting for something first); {} after at_most_s."""
        if not self._fired:
            if at_most_s is None:
                await self._event.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(at_most_s):
                        await self._event.wait()
        fired, self._fired = self._fired, set()
        self._event.clear()
        return fired

    def close(self) -> None:
        self.follow(None)
        self.events._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backoff:
    """Poll intervals for degraded waiting: fast at first, slower while nothing changes."""

    def __init__(self, first: float = 0.1, ceiling: float = 2.0) -> None:
        self.first, self.ceiling = first, ceiling
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.ceiling, self.delay * 1.5)
        return delay

    def reset(self) -> None:
        self.delay = self.first
