"""A Kubernetes API stand-in on 127.0.0.1 for tests: kmock's emulator with its gaps
closed (tests/kube/emulator.py), served from a thread of its own.

The server runs its own asyncio loop in a background thread so that both this
process (sync or async tests) and agent subprocesses can reach it over TCP with the
real `kubernetes` client. Every state change happens on that loop; the accessors here
marshal onto it, so tests and the harness kubelet never race the HTTP handlers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import yaml

from tests.kube.emulator import BY_PLURAL, Event, StandInEmulator

T = TypeVar("T")
TOKEN = "standin-token"


class KubeStandIn:
    """`start()`, `.url`, `write_kubeconfig()`, then the real client works against it.

    `.requests` records every resource request as (verb, api_group, resource,
    subresource) in kube verbs, for comparing a backend's calls against an RBAC Role.
    """

    def __init__(self) -> None:
        self.emulator = StandInEmulator()
        self.url = ""
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: aiohttp.web.ServerRunner | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> KubeStandIn:
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._serve, args=(ready,),
                                        name="kube-standin", daemon=True)
        self._thread.start()
        ready.result(timeout=30)
        return self

    def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._up())
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        loop.run_forever()
        loop.run_until_complete(self._down())
        loop.close()

    async def _up(self) -> None:
        await self.emulator.__aenter__()
        server = aiohttp.web.Server(self.emulator)
        self._runner = aiohttp.web.ServerRunner(server, shutdown_timeout=2.0)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def _down(self) -> None:
        self.emulator.closing = True
        self.emulator.poke()  # open watches and log streams see `closing` and end
        await asyncio.sleep(0.05)
        if self._runner is not None:
            await self._runner.cleanup()
        await self.emulator.__aexit__(None, None, None)

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=15)
        self._loop = self._thread = None

    def __enter__(self) -> KubeStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------- marshalling

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the stand-in is not started"
        return self._loop

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn` on the server's loop (directly when already on it)."""
        try:
            if asyncio.get_running_loop() is self._loop:
                return fn(*args, **kwargs)
        except RuntimeError:
            pass

        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    # ------------------------------------------------------------ kubeconfig

    def write_kubeconfig(self, path: str | Path, namespace: str = "default",
                         context: str = "standin",
                         contexts: dict[str, str] | None = None) -> Path:
        """A kubeconfig with one cluster and user, `context` (current) in `namespace`,
        plus one more context per `contexts` entry (name → namespace)."""
        path = Path(path)
        every = {context: namespace, **(contexts or {})}
        doc = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": TOKEN}}],
            "contexts": [{"name": name, "context": {"cluster": "standin", "user": "standin",
                                                     "namespace": ns}}
                         for name, ns in every.items()],
            "current-context": context,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    # ------------------------------------------------------ direct accessors

    @property
    def requests(self) -> list[tuple[str, str, str, str]]:
        return list(self.emulator.verb_log)

    @property
    def resource_version(self) -> int:
        return self.emulator.rv

    def get(self, kind_plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object as stored, or None."""
        return self.call(self.emulator.find, BY_PLURAL[kind_plural], namespace, name)

    def list(self, kind_plural: str, namespace: str | None = None,
             label_selector: str | None = None) -> list[dict[str, Any]]:
        return self.call(self.emulator.list_objects, BY_PLURAL[kind_plural], namespace,
                         label_selector)

    def create(self, kind_plural: str, namespace: str | None,
               body: dict[str, Any]) -> dict[str, Any]:
        return self.call(self.emulator.create_object, BY_PLURAL[kind_plural], namespace, body)

    def patch(self, kind_plural: str, namespace: str | None, name: str,
              patch: dict[str, Any] | list[Any]) -> dict[str, Any]:
        """A merge patch (or a JSON patch, given a list) of the whole object."""
        ct = "application/json-patch+json" if isinstance(patch, list) \
            else "application/merge-patch+json"
        return self.call(self.emulator.patch_object, BY_PLURAL[kind_plural], namespace,
                         name, patch, ct)

    def patch_status(self, kind_plural: str, namespace: str | None, name: str,
                     status: dict[str, Any]) -> dict[str, Any]:
        """Merge `status` into the object's status (a MODIFIED watch event)."""
        return self.call(self.emulator.patch_object, BY_PLURAL[kind_plural], namespace,
                         name, {"status": status}, "application/strategic-merge-patch+json",
                         True)

    def put_status(self, kind_plural: str, namespace: str | None, name: str,
                   status: dict[str, Any]) -> dict[str, Any]:
        """Replace the object's status outright (a MODIFIED watch event)."""
        def put() -> dict[str, Any]:
            obj = self.emulator.get_object(BY_PLURAL[kind_plural], namespace, name)
            obj["status"] = status
            obj["metadata"].pop("resourceVersion", None)
            return self.emulator.replace_object(BY_PLURAL[kind_plural], namespace, name, obj,
                                                status_only=True)
        return self.call(put)

    def delete(self, kind_plural: str, namespace: str | None, name: str,
               propagation: str | None = "Background") -> dict[str, Any]:
        return self.call(self.emulator.delete_object, BY_PLURAL[kind_plural], namespace,
                         name, propagation)

    def expire_history(self) -> None:
        """Make every resourceVersion handed out so far too old: a watch from one of
        them gets `410 Gone` (an ERROR event with a Status of code 410, Expired)."""
        self.call(self.emulator.expire_history)

    def append_log(self, namespace: str, pod: str, container: str, line: str,
                   ts_ns: int | None = None) -> None:
        def add() -> None:
            self.emulator.logs.append(namespace, pod, container, line, ts_ns)
            self.emulator.poke()
        self.call(add)

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call `listener(event)` on the server loop after every change."""
        self.call(self.emulator.listeners.append, listener)
