"""What every part of the facade shares: settings, the store, the change feed, and
the domain modules behind it, each made (and imported) on first use.

The clock, run ids, host name and pid are looked up in this module at call time:
tui/demo.py replaces them here to seed a reproducible world.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from launch_tui.core import redact
from launch_tui.core.feed import Feed
from launch_tui.core.ids import new_run_id
from launch_tui.core.listings import Listings
from launch_tui.core.settings import Settings, load_settings
from launch_tui.core.store.session import Store

if TYPE_CHECKING:
    from launch_tui.core.agents import Agents
    from launch_tui.core.catalog import Catalog, JobVersionResult
    from launch_tui.core.dispatch import Dispatch
    from launch_tui.core.output import Output
    from launch_tui.core.queues import Queues
    from launch_tui.core.snapshot_blobs import SnapshotBlobs
    from launch_tui.core.surgery import Surgery

Config = dict[str, Any] | None  # an optional JSON object: config, schema, args or values


class Parts:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store = Store(settings.store_url, clock=lambda: time.time(),
                            readers=settings.store.pool_size,
                            statement_timeout_s=settings.store.statement_timeout_s,
                            idle_in_transaction_timeout_s=(
                                settings.store.idle_in_transaction_timeout_s))
        self._feed = Feed(self._store)
        self._store.on_commit = self._feed.wake
        self._listings = Listings(self._store, settings)

    @classmethod
    async def open(cls, store: str | None = None, home: Path | str | None = None) -> Self:
        svc = cls(load_settings(Path(home) if home else None, store))
        try:
            await svc._store.prepare()
        except BaseException:
            await svc._store.dispose()
            raise
        return svc

    async def close(self) -> None:
        if not self._feed.closed:
            self._feed.close()
            await self._store.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def artifacts(self) -> Path:
        return self.settings.artifacts

    def project_or_default(self, project: str | None) -> str:
        return project or self.settings.default_project

    # The domain modules.

    @functools.cached_property
    def _snapshots(self) -> SnapshotBlobs:
        from launch_tui.core.snapshot_blobs import SnapshotBlobs

        return SnapshotBlobs(self._store, self.settings.artifacts)

    @functools.cached_property
    def _catalog(self) -> Catalog:
        from launch_tui.core.catalog import Catalog

        return Catalog(self._store, self.settings, self._snapshots)

    @functools.cached_property
    def _queues(self) -> Queues:
        from launch_tui.core.queues import Queues

        return Queues(self._store, self.settings, self._catalog)

    @functools.cached_property
    def _surgery(self) -> Surgery:
        from launch_tui.core.surgery import Surgery

        return Surgery(self._store, self.settings, self._catalog)

    @functools.cached_property
    def _dispatch(self) -> Dispatch:
        from launch_tui.core.dispatch import Dispatch

        return Dispatch(self._store, self.settings, new_run_id=lambda: new_run_id())

    @functools.cached_property
    def _output(self) -> Output:
        from launch_tui.core.output import Output

        return Output(self._store)

    @functools.cached_property
    def _agents(self) -> Agents:
        from launch_tui.core.agents import Agents

        return Agents(self._store, self.settings, hostname=lambda: socket.gethostname(),
                      pid=lambda: os.getpid())


def shown(result: JobVersionResult) -> JobVersionResult:
    """A new job version as people see it: secrets masked."""
    return dataclasses.replace(result, version=redact.version(result.version))
