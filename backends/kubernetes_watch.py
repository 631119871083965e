"""One watch per namespace for all of launch-tui's Jobs and pods in it.

An informer, as controllers have: list the objects labelled with a run id, then
watch from the list's `resourceVersion`; a watch that times out resumes from the
last version seen, one answered `410 Gone` (history compacted) lists again.
Each run's supervisor reads the cached Job and pods of its run and is woken
when one of them changes, so a hundred runs cost two watch connections, not a
hundred polls.

The client blocks: each watch is read by a thread that hands events to the
event loop (`call_soon_threadsafe`); the loop alone touches the cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from launch_tui.backends.kubernetes_api import Cluster, api_message, status_code
from launch_tui.backends.kubernetes_manifest import LABEL_RUN

log = logging.getLogger(__name__)

WATCH_S = 60  # the server ends each watch after this; it resumes from the last version
RETRY_S = (0.5, 15.0)  # back-off between failed list/watch attempts
KINDS = ("jobs", "pods")


@dataclass
class RunView:
    """What the watch last saw of one run."""

    job: dict[str, Any] | None = None
    job_deleted: dict[str, Any] | None = None  # the Job's last state when it was deleted
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: int = 0
    version: int = 0  # counts changes; each reader waits for it to pass what it saw
    _waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def bump(self) -> None:
        self.version += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def changed_since(self, seen: int) -> asyncio.Future[None]:
        """A future done once the view changed after version `seen`."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.version != seen:
            waiter.set_result(None)
        else:
            self._waiters.append(waiter)
        return waiter


def _run_id(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_RUN)


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name"))


class NamespaceWatch:
    """The Jobs and pods of launch-tui runs in one namespace, kept current."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.runs: dict[str, RunView] = {}
        self.synced = {kind: asyncio.Event() for kind in KINDS}
        self.error: str | None = None  # the last failure, while the watch is failing
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._responses: dict[str, Any] = {}

    # ---------------------------------------------------------- subscribers

    @contextlib.asynccontextmanager
    async def follow(self, run_id: str) -> AsyncIterator[RunView]:
        """The run's view, kept current while the block runs; waits for the first list."""
        self._start()
        view = self.runs.setdefault(run_id, RunView())
        view.users += 1
        try:
            for kind in KINDS:
                await self.synced[kind].wait()
            yield view
        finally:
            view.users -= 1
            if view.users == 0 and view.job is None and not view.pods:
                self.runs.pop(run_id, None)
            if not any(v.users for v in self.runs.values()):
                self._shutdown()

    # ---------------------------------------------------------- the threads

    def _start(self) -> None:
        if self._threads:
            return
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        for event in self.synced.values():
            event.clear()
        for kind in KINDS:
            thread = threading.Thread(target=self._watch, args=(kind, self._stop),
                                      name=f"k8s-watch-{kind}-{self.namespace}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _shutdown(self) -> None:
        """Stop the watch threads: close their sockets so a blocked read returns now."""
        self._stop.set()
        self._threads = []
        for resp in list(self._responses.values()):
            with contextlib.suppress(Exception):
                sock = getattr(getattr(resp, "connection", None), "sock", None)
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(fn, *args)

    def _list_fn(self, kind: str) -> Callable[..., Any]:
        api = self.cluster.batch if kind == "jobs" else self.cluster.core
        return getattr(api, f"list_namespaced_{kind[:-1]}")

    def _watch(self, kind: str, stop: threading.Event) -> None:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.watch.watch import iter_resp_lines

        list_fn = self._list_fn(kind)
        version: str | None = None
        delay = RETRY_S[0]
        while not stop.is_set():
            try:
                if version is None:
                    body = self.cluster.call(list_fn, self.namespace, label_selector=LABEL_RUN)
                    version = str((body.get("metadata") or {}).get("resourceVersion") or "")
                    self._post(self._relisted, kind, body.get("items") or [])
                resp = list_fn(self.namespace, label_selector=LABEL_RUN, watch=True,
                               resource_version=version or None, timeout_seconds=WATCH_S,
                               allow_watch_bookmarks=True, _preload_content=False,
                               _request_timeout=(10, WATCH_S + 15))
                self._responses[kind] = resp
                try:
                    for line in iter_resp_lines(resp):
                        if stop.is_set():
                            return
                        if not line or not line.strip():
                            continue
                        event = json.loads(line)
                        obj = event.get("object") or {}
                        if event.get("type") == "ERROR":
                            if obj.get("code") == 410:  # too old: list again
                                version = None
                                break
                            raise RuntimeError(obj.get("message") or "watch error")
                        new = (obj.get("metadata") or {}).get("resourceVersion")
                        if new:
                            version = str(new)
                        if event.get("type") != "BOOKMARK":
                            self._post(self._event, kind, str(event.get("type")), obj)
                finally:
                    self._responses.pop(kind, None)
                    with contextlib.suppress(Exception):
                        resp.release_conn()
                delay = RETRY_S[0]
                self._post(self._failing, None)
            except ApiException as exc:
                if status_code(exc) == 410:
                    version = None
                    continue
                self._post(self._failing, f"{kind}: {api_message(exc)}")
                stop.wait(delay)
                delay = min(RETRY_S[1], delay * 2)
            except Exception as exc:  # a dropped connection, a server that went away
                if stop.is_set():
                    return
                log.debug("watch of %s in %s failed: %r", kind, self.namespace, exc)
                self._post(self._failing, f"{kind}: {exc}")
                stop.wait(delay)
                delay = min(RETRY_S[1], delay * 2)

    # ---------------------------------------------------------- on the loop

    def _failing(self, error: str | None) -> None:
        self.error = error

    def _relisted(self, kind: str, items: list[dict[str, Any]]) -> None:
        seen: dict[str, dict[str, dict[str, Any]]] = {}
        for obj in items:
            run = _run_id(obj)
            if run is not None:
                seen.setdefault(run, {})[_name(obj)] = obj
        for run_id, view in self.runs.items():
            mine = seen.get(run_id, {})
            if kind == "jobs":
                job = next(iter(mine.values()), None)
                if view.job is not None and job is None:
                    view.job_deleted = view.job  # it went while the watch was away
                view.job = job
            else:
                view.pods = dict(mine)
            view.bump()
        for run_id, objs in seen.items():
            if run_id not in self.runs:
                view = self.runs[run_id] = RunView()
                if kind == "jobs":
                    view.job = next(iter(objs.values()))
                else:
                    view.pods = dict(objs)
        self.synced[kind].set()

    def _event(self, kind: str, action: str, obj: dict[str, Any]) -> None:
        run = _run_id(obj)
        if run is None:
            return
        view = self.runs.setdefault(run, RunView())
        if kind == "jobs":
            if action == "DELETED":
                view.job_deleted = obj
                view.job = None
            else:
                view.job = obj
                view.job_deleted = None
        elif action == "DELETED":
            view.pods.pop(_name(obj), None)
        else:
            view.pods[_name(obj)] = obj
        view.bump()
        if not view.users and view.job is None and not view.pods:
            self.runs.pop(run, None)
