"""One Docker event stream per backend, fanned out to the runs that wait on it.

`DockerBackend.watch()` needs to hear when a run's container starts and dies.
Rather than a stream and a blocked thread per run, `ContainerEvents` keeps one
`/events` connection, filtered to containers carrying the run label, read by
one thread (`iterate_in_thread`) and dispatched by container name to an
asyncio queue per subscriber. It connects when the first run subscribes and
closes when the last one leaves.

Two gaps are closed here rather than in every watcher:
- The daemon answers the `/events` request before it registers the listener,
  so an event in between would be lost; each connection asks for events
  `since` a moment before it was opened (the daemon replays them from its
  buffer). Duplicates are harmless: watchers re-read the container on `die`.
- When the stream breaks, it reconnects with back-off and sends every
  subscriber a `RESYNC`, since events may have been missed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from launch_tui.backends.docker_build import iterate_in_thread
from launch_tui.core.errors import BackendError, LaunchError

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

# The container actions a watcher acts on (the daemon filters out the rest).
ACTIONS = ("start", "die", "destroy")
RESYNC = "resync"  # not a Docker action: "re-read the state, events may have been missed"
# How far back a new connection asks the daemon to replay; covers the gap between
# the daemon's answer and its listener, and a little clock skew with a remote daemon.
REPLAY_S = 2.0


@dataclass(frozen=True)
class ContainerEvent:
    action: str  # one of ACTIONS, or RESYNC
    name: str  # the container's name
    attributes: dict[str, str] = field(default_factory=dict)  # labels, exitCode, …


class Subscription:
    """The events of one container, in the order the daemon sent them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.live = False  # set once the stream was connected for it
        self._queue: asyncio.Queue[ContainerEvent] = asyncio.Queue()

    def put(self, event: ContainerEvent) -> None:
        self._queue.put_nowait(event)

    async def next(self, wait_s: float | None = None) -> ContainerEvent | None:
        """The next event, or None when `wait_s` seconds pass first (None: no limit)."""
        try:
            async with asyncio.timeout(wait_s):
                return await self._queue.get()
        except TimeoutError:
            return None


class _Stream:
    """The blocking `/events` stream of one connection, closable from the loop even
    while its thread is still connecting (the daemon may be slow to answer)."""

    def __init__(self, open_stream: Callable[[], Any], on_open: Callable[[], None]) -> None:
        self._open = open_stream
        self._on_open = on_open
        self._lock = threading.Lock()
        self._stream: Any = None
        self._closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        stream = self._open()
        with self._lock:
            if self._closed:
                stream.close()
                return iter(())
            self._stream = stream
        self._on_open()
        return iter(stream)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()


class ContainerEvents:
    """The fan-out. `connections` counts the streams opened so far (one unless it broke)."""

    def __init__(
        self,
        client: Callable[[], Awaitable[docker.DockerClient]],
        label: str,
        backoff: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        self._client = client
        self._filters = {"type": ["container"], "label": [label], "event": list(ACTIONS)}
        self.backoff = backoff
        self.thread_name = f"docker-events-{id(self):x}"
        self.connections = 0
        self._subs: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stream: _Stream | None = None
        self._connected = False
        self._failures = 0  # connection attempts that failed before connecting
        self._error = ""  # the last one's sentence
        self._attempts = 0
        self._attempt = 0  # the current connection attempt; 0: none
        self._changed = asyncio.Event()  # pulsed when connected or a connection failed

    @contextlib.asynccontextmanager
    async def subscribe(self, name: str) -> AsyncIterator[Subscription]:
        """Events of container `name` from the moment this returns.

        Read the container's state only after entering: whatever happens from
        then on arrives here. Raises BackendError if the stream cannot connect.
        """
        sub = Subscription(name)
        self._subs.setdefault(name, set()).add(sub)
        try:
            task = self._task
            if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
                self._changed = asyncio.Event()  # bound to this loop
                self._task = asyncio.create_task(self._follow(), name="docker-events")
            await self._until_connected()
            sub.live = True
            yield sub
        finally:
            subs = self._subs.get(name, set())
            subs.discard(sub)
            if not subs:
                self._subs.pop(name, None)
            if not self._subs:
                self._stop()

    async def _until_connected(self) -> None:
        failures = self._failures
        while not self._connected:
            if self._failures > failures:
                raise BackendError(self._error)
            changed = self._changed
            await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _stop(self) -> None:
        # Nobody waits any more: close the stream (unblocking its thread) and the task.
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._attempt = 0
        self._connected = False

    async def _follow(self) -> None:
        delay = self.backoff[0]
        while True:
            self._attempts += 1
            self._attempt = self._attempts
            try:
                await self._read(self._attempt)
                error = "docker: the daemon closed its event stream."
            except asyncio.CancelledError:
                raise
            except LaunchError as exc:  # e.g. the daemon cannot be reached: says so already
                error = str(exc)
            except Exception as exc:  # anything else is retried too: watchers must not hang
                why = str(getattr(exc, "explanation", None) or exc).rstrip(".")
                error = f"docker: cannot follow the daemon's events: {why}."
            if self._connected:
                self._connected = False
                delay = self.backoff[0]  # it worked until now: retry soon
            else:
                self._failures += 1
                self._error = error
                self._notify()
            log.warning("%s Reconnecting in %.1f s.", error, delay)
            await asyncio.sleep(delay)
            delay = min(self.backoff[1], delay * 2)

    async def _read(self, attempt: int) -> None:
        """One connection: dispatch its events until it ends or fails."""
        loop = asyncio.get_running_loop()
        client = await self._client()
        since = f"{time.time() - REPLAY_S:.9f}"
        stream = _Stream(
            lambda: client.events(decode=True, filters=self._filters, since=since),
            lambda: loop.call_soon_threadsafe(self._on_connected, attempt),
        )
        self._stream = stream
        async for raw in iterate_in_thread(lambda: stream, name=self.thread_name):
            self._dispatch(raw)

    def _on_connected(self, attempt: int) -> None:
        if attempt != self._attempt:
            return  # a connection abandoned meanwhile (the fan-out stopped)
        self.connections += 1
        self._connected = True
        if self.connections > 1:
            # Reconnected: whatever happened while the stream was down is unknown.
            for subs in self._subs.values():
                for sub in subs:
                    if sub.live:
                        sub.put(ContainerEvent(RESYNC, sub.name))
        self._notify()

    def _dispatch(self, raw: dict[str, Any]) -> None:
        attributes = (raw.get("Actor") or {}).get("Attributes") or {}
        name = attributes.get("name", "")
        action = raw.get("Action") or raw.get("status") or ""
        for sub in self._subs.get(name, ()):
            sub.put(ContainerEvent(action, name, dict(attributes)))
