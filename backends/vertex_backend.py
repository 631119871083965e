"""Runs as Vertex AI custom jobs, one per run, with `google-cloud-aiplatform`.

The custom job is the record. Vertex names jobs itself (`…/customJobs/NUMBER`), so
the run id travels in the job's labels (`launch-tui-run-id`): a submit first looks
for the run's job with ListCustomJobs and adopts it, and creates one only when
there is none; a restarted agent, or one taking the run over, finds it the same
way, and then follows it by the resource name stored in the run's handle.

Status comes from polling GetCustomJob with back-off (Vertex cannot push;
`watch`), riding out an outage of up to STATUS_OUTAGE_S. Each poll's job is kept,
so the run's log (`logs`) follows the same answers: launch-tui does not read Cloud
Logging, and says so in the log's first line, then shows the job's creation,
start, cancellation, end and error message as they happen (`vertex_api.history`).
Cancel is CancelCustomJob; Vertex stops the workers itself (the agent's grace is
not used), through JOB_STATE_CANCELLING to JOB_STATE_CANCELLED.

Settings (`[backends.vertex]` in settings.toml): `project`, `location` (defaults
for queues that set none), `api_endpoint`, `credentials_file`, `anonymous`,
`poll_max_s` (the slowest status poll, default 10) and `registry` (see
vertex_build). A queue config may set `project`, `location`, `api_endpoint` and
`builder.destination`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from launch_tui.backends import vertex_api as api
from launch_tui.backends import vertex_rules as rules
from launch_tui.backends.schemas import VERTEX
from launch_tui.core.backend import (
    NOTHING_BUILT,
    BackendBase,
    BackendContext,
    BuildResult,
    Lagging,
    LogChunk,
    RunHandle,
    RunStatus,
)
from launch_tui.core.errors import BackendError, ValidationError
from launch_tui.core.model import JobKind, LogStream, RunSpec, RunState

STATUS_OUTAGE_S = 300.0


class VertexBackend(BackendBase):
    """The `vertex` target resource."""

    name = "vertex"
    resource_schema: dict[str, Any] = VERTEX

    def __init__(self, ctx: BackendContext) -> None:
        self.ctx = ctx
        self._clients: dict[api.Target, api.Vertex] = {}
        self._lock = asyncio.Lock()
        ceiling = float(ctx.settings.get("poll_max_s") or 10.0)
        self.watch_poll_s = (min(0.5, ceiling), ceiling)
        # The last job each run's poll read, and a wake-up for its log's reader.
        self._seen: dict[str, Any] = {}
        self._changed: dict[str, asyncio.Event] = {}

    # ---------------------------------------------------------- where

    async def _vertex(self, target: api.Target) -> api.Vertex:
        async with self._lock:
            if target not in self._clients:
                self._clients[target] = await asyncio.to_thread(api.Vertex, target)
            return self._clients[target]

    def _target_of(self, handle: RunHandle) -> api.Target:
        data = handle.data
        return api.target(str(data["project"]), str(data["location"]), {}, self.ctx.settings,
                          endpoint=data.get("api_endpoint"))

    async def _call(self, what: str, target: api.Target, fn: Callable[..., Any],
                    *args: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args)
        except (BackendError, ValidationError):
            raise
        except Exception as exc:
            raise api.refused(what, target, exc) from exc

    # ---------------------------------------------------------- submit

    async def submit(self, spec: RunSpec, build: BuildResult = NOTHING_BUILT) -> RunHandle:
        as_given = spec.source.get("image") if spec.kind is JobKind.IMAGE else None
        image = build.image or spec.image or as_given
        project, location = rules.where(spec, self.ctx.settings)
        body = rules.custom_job_body(spec, str(image) if image else None)
        target = api.target(project, location, spec.queue_config, self.ctx.settings)
        job = await self._existing(target, spec.run_id)
        if job is None:
            vertex = await self._vertex(target)
            job = await self._call(f"create a custom job in {target.parent}", target,
                                   vertex.create, target.parent, body)
        return self._handle(spec.run_id, target, job.name)

    async def _existing(self, target: api.Target, run_id: str) -> Any | None:
        """The run's job if one was made already (a second submit, an agent restart)."""
        vertex = await self._vertex(target)
        jobs = await self._call(f"look for run {run_id}'s custom job in {target.parent}",
                                target, vertex.find, target.parent, rules.run_filter(run_id))
        return jobs[0] if jobs else None

    def _handle(self, run_id: str, target: api.Target, name: str) -> RunHandle:
        data: dict[str, Any] = {"job": name, "project": target.project,
                                "location": target.location}
        if target.api_endpoint:
            data["api_endpoint"] = target.api_endpoint
        return RunHandle(backend=self.name, run_id=run_id, data=data)

    # ---------------------------------------------------------- status

    async def job(self, handle: RunHandle) -> Any | None:
        """The run's custom job as Vertex has it now; None when it has none by that name."""
        target = self._target_of(handle)
        vertex = await self._vertex(target)
        name = str(handle.data["job"])
        try:
            job = await asyncio.to_thread(vertex.get, name)
        except Exception as exc:
            if api.code(exc) == 404:
                job = None
            else:
                raise api.refused(f"read custom job {name}", target, exc) from exc
        self._seen[handle.run_id] = job
        self._changed.setdefault(handle.run_id, asyncio.Event()).set()
        return job

    async def status(self, handle: RunHandle) -> RunStatus:
        job = await self.job(handle)
        if job is None:
            return RunStatus(RunState.CRASHED, f"Vertex AI has no custom job "
                                               f"{handle.data['job']} any more")
        return api.status_of(job)

    async def watch(self, handle: RunHandle) -> AsyncIterator[RunStatus]:
        """`BackendBase.watch`'s polling with back-off, riding out a passing outage."""
        delay, ceiling = self.watch_poll_s
        last: RunStatus | None = None
        failing_since: float | None = None
        try:
            while True:
                try:
                    current = await self.status(handle)
                    failing_since = None
                except BackendError:
                    failing_since = failing_since or time.monotonic()
                    if time.monotonic() - failing_since > STATUS_OUTAGE_S:
                        raise
                    await asyncio.sleep(ceiling)
                    continue
                if current != last:
                    if (last is None and current.state.terminal
                            and self._ran(handle) and current.state != RunState.STOPPED):
                        yield RunStatus(RunState.RUNNING)  # it ran before this first look
                    yield current
                    last = current
                    delay = self.watch_poll_s[0]
                if current.state.terminal:
                    return
                await asyncio.sleep(delay)
                delay = min(ceiling, delay * 1.5)
        finally:
            self._seen.pop(handle.run_id, None)
            event = self._changed.pop(handle.run_id, None)
            if event is not None:
                event.set()  # a log reader still waiting reads the job itself

    def _ran(self, handle: RunHandle) -> bool:
        job = self._seen.get(handle.run_id)
        return job is not None and bool(job.start_time)

    # ---------------------------------------------------------- logs

    async def logs(self, handle: RunHandle, follow: bool = True, *,
                   lagging: Lagging | None = None, stored: int = 0
                   ) -> AsyncIterator[LogChunk]:
        """The job's history as log lines (`vertex_api.history`), as the polls see it."""
        shown = 0
        event = self._changed.setdefault(handle.run_id, asyncio.Event())
        while True:
            event.clear()  # before reading: a poll that lands after this wakes the wait
            job = self._seen.get(handle.run_id)
            if job is None:
                job = await self._job_for_log(handle)
                if job is None:
                    yield LogChunk(LogStream.AGENT, f"[vertex] Vertex AI has no custom job "
                                   f"{handle.data['job']}", time.time())
                    return
            lines = api.history(job)
            for ts, text in lines[shown:]:
                yield LogChunk(LogStream.AGENT, text, ts)
            shown = max(shown, len(lines))
            if not follow or api.status_of(job).state.terminal:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), self.watch_poll_s[1])
            if not event.is_set() or self._changed.get(handle.run_id) is not event:
                # No poll came, or the watch ended: read the job here.
                self._seen.pop(handle.run_id, None)
                event = self._changed.setdefault(handle.run_id, asyncio.Event())

    async def _job_for_log(self, handle: RunHandle) -> Any | None:
        delay, ceiling = self.watch_poll_s
        failing_since = time.monotonic()
        while True:
            try:
                return await self.job(handle)
            except BackendError:
                if time.monotonic() - failing_since > STATUS_OUTAGE_S:
                    raise
                await asyncio.sleep(delay)
                delay = min(ceiling, delay * 1.5)

    def output_location(self, handle: RunHandle) -> str | None:
        job = str(handle.data.get("job") or "")
        return (f"Cloud Logging of project {handle.data.get('project')}: "
                f"resource.type=\"ml_job\" resource.labels.job_id=\"{api.job_id(job)}\"")

    # ---------------------------------------------------------- cancel, find

    async def cancel(self, handle: RunHandle, grace_s: float) -> None:
        """CancelCustomJob; Vertex stops the workers and ends the job CANCELLED."""
        target = self._target_of(handle)
        vertex = await self._vertex(target)
        name = str(handle.data["job"])
        try:
            await asyncio.to_thread(vertex.cancel, name)
        except Exception as exc:
            # 400 FAILED_PRECONDITION: it ended already; 404: it is gone. Nothing to stop.
            if api.code(exc) not in (400, 404):
                raise api.refused(f"cancel custom job {name}", target, exc) from exc

    async def find(self, run_id: str, spec: RunSpec | None = None) -> RunHandle | None:
        """The run's custom job, by its `launch-tui-run-id` label, where its queue runs."""
        if spec is None:
            return None  # the project and location are the queue's
        try:
            project, location = rules.where(spec, self.ctx.settings)
        except ValidationError:
            return None  # a queue that names no project never submitted anything
        target = api.target(project, location, spec.queue_config, self.ctx.settings)
        job = await self._existing(target, run_id)
        return None if job is None else self._handle(run_id, target, job.name)
