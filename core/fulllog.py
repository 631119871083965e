"""Reading a run's complete output from where its backend keeps it.

The store holds a bounded rate of each run's output; when a run printed faster
than that, its stored log carries a marker and the backend (a local run's
`output.jsonl`) still has every line. This reads them through the backend's own
`logs()`, on the machine that has them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from launch_tui.core import registry
from launch_tui.core.backend import BackendContext, LogChunk, RunHandle
from launch_tui.core.errors import ConflictError
from launch_tui.core.model import Run
from launch_tui.core.settings import Settings


async def full_output(settings: Settings, run: Run) -> AsyncIterator[LogChunk]:
    resource = str(run.spec.get("resource", ""))
    if not run.handle:
        raise ConflictError(
            f"run: {run.id} never reached its {resource} backend; its stored log is all "
            "there is."
        )
    ctx = BackendContext(home=settings.home, artifacts=settings.artifacts,
                         settings=settings.backends.get(resource, {}))
    backend = registry.create_backend(resource, ctx)
    handle = RunHandle.from_dict(run.handle)
    where = backend.output_location(handle)
    if where is None:
        raise ConflictError(
            f"run: {run.id}'s {resource} backend keeps no full copy of its output; its "
            "stored log is all there is."
        )
    if not await asyncio.to_thread(os.path.exists, where):
        raise ConflictError(
            f"run: {run.id}'s full output ({where}) is not on this machine (the run ran "
            "on another host, or its files were cleaned up)."
        )
    async for chunk in backend.logs(handle, follow=False):
        yield chunk
