"""A run's output: every pod of its Job followed at once, one line stream per pod.

Each pod's log (`pods/log?follow=true&timestamps=true`) is read by a thread from
the moment its container started until it ended; the lines carry the pod's name
as their source, so the agent stores them labelled and a restarted agent skips,
per pod, what it stored already. A stream that drops while the container still
runs is opened again and the lines already read are skipped.

Logs are read with `_preload_content=False`: the v36 client returns preloaded
logs as the text "b'...'" (kubernetes-client/python#2596).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from launch_tui.backends.kubernetes_api import Cluster, status_code
from launch_tui.backends.kubernetes_watch import RunView
from launch_tui.core.backend import LogChunk
from launch_tui.core.model import LogStream

REOPEN_S = 1.0  # a dropped stream of a running container is opened again after this


def parse_line(raw: str) -> tuple[float, str]:
    """'2026-11-23T10:00:00.123456789Z text' -> (epoch seconds, 'text')."""
    stamp, _, text = raw.partition(" ")
    try:
        head, _, frac = stamp.rstrip("Z").partition(".")
        when = datetime.fromisoformat(head + "+00:00").timestamp()
        if frac:
            when += float("0." + frac[:9])
        return when, text
    except ValueError:
        return 0.0, raw


def container_started(pod: dict[str, Any], container: str) -> bool:
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        if c.get("name") == container:
            state = c.get("state") or {}
            return "running" in state or "terminated" in state
    return False


def container_ended(pod: dict[str, Any], container: str) -> bool:
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        if c.get("name") == container:
            return "terminated" in (c.get("state") or {})
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def main_container(pod: dict[str, Any]) -> str:
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    return str(containers[0].get("name") or "job")


class PodLogs:
    """Follows the pods of one run as they appear, until the run has ended and every
    started pod's stream has been read to its end."""

    def __init__(self, cluster: Cluster, namespace: str, view: RunView, follow: bool) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.view = view
        self.follow = follow
        self.queue: asyncio.Queue[tuple[str, LogChunk | None]] = asyncio.Queue(maxsize=10_000)
        self.readers: dict[str, threading.Thread] = {}
        self.done: set[str] = set()
        self.stop = threading.Event()
        self.loop = asyncio.get_running_loop()

    def _start_new(self) -> None:
        for name, pod in list(self.view.pods.items()):
            container = main_container(pod)
            if name not in self.readers and container_started(pod, container):
                thread = threading.Thread(target=self._read, args=(name, container),
                                          name=f"k8s-log-{name}", daemon=True)
                self.readers[name] = thread
                thread.start()

    def _put(self, item: tuple[str, LogChunk | None]) -> None:
        # Blocks the reader thread (not the loop) while the agent is behind.
        try:
            fut = asyncio.run_coroutine_threadsafe(self.queue.put(item), self.loop)
        except RuntimeError:  # the loop is closed
            return
        while True:
            try:
                fut.result(timeout=1.0)
                return
            except TimeoutError:
                if self.stop.is_set():
                    fut.cancel()
                    return
            except Exception:
                return

    def _read(self, pod: str, container: str) -> None:
        from kubernetes.watch.watch import iter_resp_lines

        read = 0
        try:
            while not self.stop.is_set():
                seen = 0
                try:
                    resp = self.cluster.core.read_namespaced_pod_log(
                        pod, self.namespace, container=container, follow=self.follow,
                        timestamps=True, _preload_content=False)
                except Exception as exc:
                    if status_code(exc) in (400, 404):
                        return  # the pod is gone, or never ran its container
                    raise
                try:
                    for raw in iter_resp_lines(resp):
                        if self.stop.is_set():
                            return
                        seen += 1
                        if seen <= read:
                            continue  # read before the stream dropped
                        read += 1
                        ts, text = parse_line(raw)
                        self._put((pod, LogChunk(LogStream.STDOUT, text, ts, source=pod)))
                finally:
                    with contextlib.suppress(Exception):
                        resp.release_conn()
                if not self.follow:
                    return
                pod_obj = self.view.pods.get(pod)
                if pod_obj is None or container_ended(pod_obj, container):
                    return
                self.stop.wait(REOPEN_S)
        except Exception:
            # A log that cannot be read must not stall the run's conclusion.
            return
        finally:
            self._put((pod, None))

    async def lines(self, ended: Callable[[], bool]) -> AsyncIterator[LogChunk]:
        """The run's lines as they come, until `ended()` and every stream is read."""
        seen = -1
        try:
            while True:
                self._start_new()
                finished = set(self.readers) <= self.done
                if finished and (ended() or not self.follow):
                    self._start_new()  # a pod that started at the very end
                    if set(self.readers) <= self.done:
                        return
                seen = self.view.version
                getter = asyncio.ensure_future(self.queue.get())
                changed = self.view.changed_since(seen)
                await asyncio.wait({getter, changed}, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if not getter.done():
                    getter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await getter
                    continue
                pod, chunk = getter.result()
                while True:
                    if chunk is None:
                        self.done.add(pod)
                    else:
                        yield chunk
                    try:
                        pod, chunk = self.queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
        finally:
            self.stop.set()
            # Readers blocked on a full queue are released by draining it.
            while not self.queue.empty():
                self.queue.get_nowait()
