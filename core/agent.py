"""The agent: claims queue items, builds, submits, supervises, streams logs.

One asyncio component, hosted headless by `launch-tui agent` or inside the TUI.
It wakes as soon as an item is enqueued (through the service's change feed:
in-memory for the same process, the events table for others) and otherwise
polls. Each run is its own task, so a failure in one never stops the agent.

Restart safety: agent names are stable, so an agent started again under the
same name first returns its unacknowledged leases to the queue, then picks up
each run it owned: a run the backend still knows is re-attached (logs keep
streaming from where the store left off), a run that never reached the backend
is started now (submission is idempotent on the run id), and a run whose
process died meanwhile is marked crashed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from launch_tui.core import registry, resolve, sdk
from launch_tui.core.backend import Backend, BackendContext, BuildResult, RunHandle, RunStatus
from launch_tui.core.errors import (
    BackendError,
    BuildError,
    ConflictError,
    LaunchError,
    ValidationError,
)
from launch_tui.core.events import ItemEnqueued, ItemStateChanged, RunStateChanged
from launch_tui.core.model import (
    AgentStatus,
    ErrorStage,
    ItemState,
    LogStream,
    QueueItem,
    Run,
    RunSpec,
    RunState,
)
from launch_tui.core.service import LaunchService

log = logging.getLogger("launch_tui.agent")

FAIL_TAIL_LINES = 10
LOG_FLUSH_S = 0.25
LOG_FLUSH_LINES = 500


def default_agent_name(queues: Sequence[str]) -> str:
    """Stable across restarts on one host, so a restarted agent re-attaches its runs."""
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"{host[:40]}-{'-'.join(queues)}"[:128]


@dataclass
class _ActiveRun:
    run_id: str
    task: asyncio.Task[None] | None = None
    handle: RunHandle | None = None
    backend: Backend | None = None
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=FAIL_TAIL_LINES)
    )


class LaunchAgent:
    def __init__(
        self,
        service: LaunchService,
        queues: Sequence[str],
        *,
        name: str | None = None,
        project: str | None = None,
        max_jobs: int = 1,
        poll_interval_s: float | None = None,
        event_driven: bool = True,
        heartbeat_s: float = 5.0,
        status_interval_s: float = 0.5,
        cancel_grace_s: float = 10.0,
    ) -> None:
        if not queues:
            raise ValidationError("queues: an agent needs at least one queue (-q).", field="queues")
        self.service = service
        self.queues = list(dict.fromkeys(queues))
        self.name = name or default_agent_name(self.queues)
        self.project = service.project_or_default(project)
        self.max_jobs = max_jobs
        self.poll_interval_s = (
            poll_interval_s if poll_interval_s is not None else service.settings.poll_interval_s
        )
        self.event_driven = event_driven
        self.heartbeat_s = heartbeat_s
        self.status_interval_s = status_interval_s
        self.cancel_grace_s = cancel_grace_s
        self.status = AgentStatus.STOPPED
        self._active: dict[str, _ActiveRun] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._backends: dict[str, Backend] = {}
        self._builders: dict[str, Any] = {}
        self._next_queue = 0
        self._stopped = asyncio.Event()
        self._side_tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Register, re-attach to runs from a previous life, and start working."""
        await self.service.register_agent(
            self.name, self.queues, project=self.project, max_jobs=self.max_jobs
        )
        self.status = AgentStatus.POLLING
        await self._log(
            f"started on queue{'s' if len(self.queues) > 1 else ''} {', '.join(self.queues)} "
            f"(max {self.max_jobs} job{'s' if self.max_jobs > 1 else ''}, "
            f"{'event-driven' if self.event_driven else 'polling'}, "
            f"poll every {self.poll_interval_s:g}s)"
        )
        await self._reattach()
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name=f"agent-{self.name}-claim"),
            asyncio.create_task(self._heartbeat_loop(), name=f"agent-{self.name}-heartbeat"),
            asyncio.create_task(self._watch_feed(), name=f"agent-{self.name}-feed"),
        ]

    async def run(self) -> None:
        """Start and serve until `stop()` is called."""
        await self.start()
        await self._stopped.wait()

    async def stop(self, *, cancel_runs: bool = False) -> None:
        """Stop claiming and supervising. Runs keep going on their backend unless
        `cancel_runs`; an agent started again under the same name re-attaches them."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        self.status = AgentStatus.STOPPING
        with contextlib.suppress(LaunchError):
            await self.service.agent_heartbeat(self.name, self.status, len(self._active))
        if cancel_runs:
            await asyncio.gather(
                *(self._cancel(a) for a in list(self._active.values())), return_exceptions=True
            )
            await asyncio.gather(
                *(a.task for a in self._active.values() if a.task), return_exceptions=True
            )
        for task in self._tasks:
            task.cancel()
        for active in list(self._active.values()):
            if active.task:
                active.task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(
            *(a.task for a in self._active.values() if a.task), return_exceptions=True
        )
        self.status = AgentStatus.STOPPED
        with contextlib.suppress(LaunchError):
            await self._log("stopped" + ("" if cancel_runs else
                                         f" ({len(self._active)} run(s) left running)"))
            await self.service.agent_heartbeat(self.name, self.status, 0)
        self._stopped.set()

    @property
    def running(self) -> int:
        return len(self._active)

    # ------------------------------------------------------------------ claiming

    def _queue_order(self) -> list[str]:
        """Round robin: start after the queue served last."""
        n = self._next_queue % len(self.queues)
        return self.queues[n:] + self.queues[:n]

    async def _claim_loop(self) -> None:
        while not self._stopping:
            claimed = False
            if len(self._active) < self.max_jobs:
                try:
                    order = self._queue_order()
                    item = await self.service.claim(self.name, order, project=self.project)
                except LaunchError as exc:
                    await self._log(f"cannot claim: {exc}", level="error")
                    item = None
                except Exception as exc:  # the store hiccuped: log, back off, go on
                    log.exception("claim failed")
                    await self._log(f"claim failed: {exc!r}", level="error")
                    item = None
                if item is not None:
                    claimed = True
                    self._next_queue = (self.queues.index(item.queue) + 1) % len(self.queues)
                    await self._take(item)
            if claimed:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval_s):  # not wait_for: see subscribe
                    await self._wake.wait()

    async def _take(self, item: QueueItem) -> None:
        await self._log(f"claimed item #{item.id} ({item.job_ref}, {item.priority}) "
                        f"from queue {item.queue}")
        try:
            run = await self.service.acknowledge(item.id, self.name)
        except ValidationError as exc:
            await self._log(f"item #{item.id} failed before it ran: {exc}", level="error")
            return
        except ConflictError as exc:
            await self._log(f"lost the lease on item #{item.id}: {exc}", level="warning")
            return
        self._start_run(run, resume=False)

    def _start_run(self, run: Run, *, resume: bool) -> None:
        active = _ActiveRun(run.id)
        self._active[run.id] = active
        if run.handle:
            active.handle = RunHandle.from_dict(run.handle)
        if run.state == RunState.STOPPING:
            active.cancel_requested.set()
        active.task = asyncio.create_task(self._run_task(run, active, resume),
                                          name=f"run-{run.id}")
        self.status = AgentStatus.RUNNING

    async def _run_task(self, run: Run, active: _ActiveRun, resume: bool) -> None:
        try:
            await self._execute(run, active, resume)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an unexpected backend error: fail this run only
            log.exception("run %s failed in the agent", run.id)
            await self._finish(run.id, RunState.FAILED, reason=f"agent error: {exc!r}",
                               error_stage=ErrorStage.AGENT, error_message=repr(exc))
        finally:
            self._active.pop(run.id, None)
            if not self._active and not self._stopping:
                self.status = AgentStatus.POLLING
            self._wake.set()  # a slot is free

    # ------------------------------------------------------------------ one run

    def _context(self, resource: str) -> BackendContext:
        s = self.service.settings
        return BackendContext(home=s.home, artifacts=s.artifacts,
                              settings=s.backends.get(resource, {}))

    def _backend(self, resource: str) -> Backend:
        if resource not in self._backends:
            self._backends[resource] = registry.create_backend(resource, self._context(resource))
        return self._backends[resource]

    def _builder(self, resource: str) -> Any:
        if resource not in self._builders:
            self._builders[resource] = registry.create_builder(resource, self._context(resource))
        return self._builders[resource]

    async def _advance(self, run_id: str, state: RunState, **kw: Any) -> bool:
        """Move a run forward; False if someone asked it to stop meanwhile."""
        try:
            await self.service.set_run_state(run_id, state, **kw)
            return True
        except ConflictError:
            return False

    async def _execute(self, run: Run, active: _ActiveRun, resume: bool) -> None:
        spec = RunSpec.from_dict(run.spec)
        try:
            backend = self._backend(spec.resource)
        except BackendError as exc:
            await self._finish(run.id, RunState.FAILED, reason=str(exc),
                               error_stage=ErrorStage.AGENT, error_message=str(exc))
            return
        active.backend = backend
        if active.handle is None and resume:
            active.handle = await backend.find(run.id)
        if active.handle is None:
            built = await self._build(run, active, spec)
            if built is None:
                return
            spec, build = built
            if active.cancel_requested.is_set():
                await self._finish(run.id, RunState.STOPPED, reason="cancelled before it started")
                return
            if not await self._advance(run.id, RunState.STARTING, reason="submitting"):
                await self._finish(run.id, RunState.STOPPED, reason="cancelled before it started")
                return
            try:
                handle = await backend.submit(spec, build)
            except (BackendError, BuildError, ValidationError) as exc:
                await self._log(f"run {run.id} could not start: {exc}", level="error",
                                run_id=run.id)
                await self._finish(run.id, RunState.FAILED, reason=str(exc),
                                   error_stage=ErrorStage.RUN, error_message=str(exc))
                return
            active.handle = handle
            await self.service.update_run(run.id, handle=handle.to_dict())
            await self._log(f"submitted run {run.id} to {spec.resource}", run_id=run.id)
        else:
            await self._log(f"re-attached to run {run.id} on {spec.resource}", run_id=run.id)
            if run.state == RunState.STOPPING:
                self._spawn(self._cancel(active))
        await self._supervise(run, active, backend)

    async def _build(
        self, run: Run, active: _ActiveRun, spec: RunSpec
    ) -> tuple[RunSpec, BuildResult] | None:
        if not await self._advance(run.id, RunState.BUILDING, reason="preparing"):
            await self._finish(run.id, RunState.STOPPED, reason="cancelled before it started")
            return None
        try:
            builder = self._builder(spec.resource)
        except BackendError as exc:
            await self._finish(run.id, RunState.FAILED, reason=str(exc),
                               error_stage=ErrorStage.AGENT, error_message=str(exc))
            return None
        build_lines: list[tuple[float, LogStream, str]] = []

        async def build_log(line: str) -> None:
            active.tail.append(line)
            build_lines.append((time.time(), LogStream.BUILD, line))
            if len(build_lines) >= 50:
                await self.service.append_logs(run.id, build_lines[:])
                build_lines.clear()

        started = time.monotonic()
        try:
            result: BuildResult = await builder.build(spec, build_log)
        except BuildError as exc:
            await self.service.append_logs(run.id, build_lines)
            message = str(exc)
            await self._log(f"build of run {run.id} failed: {message}", level="error",
                            run_id=run.id)
            await self._finish(run.id, RunState.FAILED, reason="build failed",
                               error_stage=ErrorStage.BUILD, error_message=message)
            return None
        await self.service.append_logs(run.id, build_lines)
        # The tail quoted when the run fails is the run's own output, not the build's.
        active.tail.clear()
        took = time.monotonic() - started
        what = "cache hit" if result.cached else f"built in {took:.1f}s"
        await self._log(f"run {run.id}: build stage {what}"
                        + (f" (commit {result.commit[:12]})" if result.commit else ""),
                        run_id=run.id)
        environment = {**spec.environment, "build": result.details,
                       "build_cached": result.cached}
        if result.commit:
            environment["commit"] = result.commit
        image = result.image or spec.image
        macros = {"image_uri": image} if image else {}
        spec = replace(
            spec,
            image=image,
            environment=environment,
            resource_args=resolve.fill_macros(spec.resource_args, macros),
        )
        await self.service.update_run(run.id, spec=spec, reason=what)
        return spec, result

    async def _supervise(self, run: Run, active: _ActiveRun, backend: Backend) -> None:
        assert active.handle is not None
        handle = active.handle
        skip = await self.service.output_line_count(run.id)
        pump = asyncio.create_task(self._pump_logs(run.id, active, backend, handle, skip))
        state = run.state
        status: RunStatus
        try:
            while True:
                status = await backend.status(handle)
                if status.state.terminal:
                    break
                if status.state == RunState.RUNNING and state in (
                    RunState.QUEUED, RunState.BUILDING, RunState.STARTING
                ):
                    if await self._advance(run.id, RunState.RUNNING, reason=status.reason):
                        state = RunState.RUNNING
                        await self._log(f"run {run.id} is running", run_id=run.id)
                await asyncio.sleep(self.status_interval_s)
            # Let the log pump drain what the run wrote before it ended.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump), timeout=10)
        finally:
            if not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
        await self._conclude(run.id, active, status)
        # Backends that keep finished resources around (docker containers) free them
        # only now, after the result and the logs are safely stored.
        try:
            await backend.cleanup(handle)
        except LaunchError as exc:
            await self._log(f"could not clean up run {run.id}: {exc}", level="warning",
                            run_id=run.id)

    async def _conclude(self, run_id: str, active: _ActiveRun, status: RunStatus) -> None:
        final = status.state
        reason = status.reason
        if active.cancel_requested.is_set() and final != RunState.FINISHED:
            final, reason = RunState.STOPPED, reason or "cancelled by user"
        if final == RunState.FAILED:
            tail = "\n".join(active.tail)
            message = (reason or f"exit code {status.exit_code}") + (
                f"; last output:\n{tail}" if tail else ""
            )
            await self._finish(run_id, final, reason=reason, exit_code=status.exit_code,
                               error_stage=ErrorStage.RUN, error_message=message)
        elif final == RunState.CRASHED:
            await self._finish(run_id, final, reason=reason, exit_code=status.exit_code,
                               error_stage=ErrorStage.RUN, error_message=reason)
        else:
            await self._finish(run_id, final, reason=reason, exit_code=status.exit_code)

    async def _finish(self, run_id: str, state: RunState, **kw: Any) -> None:
        try:
            await self.service.set_run_state(run_id, state, **kw)
        except ConflictError:
            return  # already terminal
        detail = kw.get("reason") or ""
        level = "info" if state in (RunState.FINISHED, RunState.STOPPED) else "error"
        await self._log(f"run {run_id} {state}" + (f": {detail}" if detail else ""),
                        level=level, run_id=run_id)

    async def _pump_logs(
        self, run_id: str, active: _ActiveRun, backend: Backend, handle: RunHandle, skip: int
    ) -> None:
        """Copy the run's output into the store in batches; helper lines become metrics.

        A batch is stored once it is LOG_FLUSH_S old even if the job then goes quiet,
        so a line followed by silence still shows up live.
        """
        lines: list[tuple[float, LogStream, str]] = []
        metrics: list[tuple[int, float, dict[str, float]]] = []
        last_flush = time.monotonic()
        flush_lock = asyncio.Lock()  # batches are stored whole and in order

        async def flush() -> None:
            nonlocal last_flush
            async with flush_lock:
                # Taken before the writes: the pump keeps appending meanwhile.
                batch, records = lines[:], metrics[:]
                lines.clear()
                metrics.clear()
                last_flush = time.monotonic()
                if batch:
                    await self.service.append_logs(run_id, batch)
                if records:
                    await self.service.record_metrics(run_id, records)

        async def flush_when_quiet() -> None:
            while True:
                await asyncio.sleep(LOG_FLUSH_S)
                if (lines or metrics) and time.monotonic() - last_flush >= LOG_FLUSH_S:
                    # Shielded: a stop never abandons a batch half-stored.
                    await asyncio.shield(flush())

        ticker = asyncio.create_task(flush_when_quiet())
        try:
            async for chunk in backend.logs(handle, follow=True):
                if skip:
                    skip -= 1  # already stored before an agent restart
                    continue
                record = sdk.parse_line(chunk.text) if chunk.stream == LogStream.STDOUT else None
                if record is not None:
                    metrics.append((int(record.get("step", 0)), float(record.get("ts", chunk.ts)),
                                    record["values"]))
                else:
                    lines.append((chunk.ts, chunk.stream, chunk.text))
                    active.tail.append(chunk.text)
                if len(lines) >= LOG_FLUSH_LINES or time.monotonic() - last_flush > LOG_FLUSH_S:
                    await flush()
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await flush()

    async def _cancel(self, active: _ActiveRun) -> None:
        active.cancel_requested.set()
        if active.handle is None or active.backend is None:
            return  # not submitted yet: _execute sees the flag before submitting
        await self._log(f"stopping run {active.run_id} (grace {self.cancel_grace_s:g}s)",
                        run_id=active.run_id)
        try:
            await active.backend.cancel(active.handle, self.cancel_grace_s)
        except LaunchError as exc:
            await self._log(f"could not stop run {active.run_id}: {exc}", level="error",
                            run_id=active.run_id)

    # ------------------------------------------------------------------ restart

    async def _reattach(self) -> None:
        for run in await self.service.agent_runs(self.name):
            if run.handle is None and run.state in (RunState.QUEUED, RunState.BUILDING):
                await self._log(f"resuming run {run.id}, interrupted before it was submitted",
                                run_id=run.id)
            self._start_run(run, resume=True)

    # ------------------------------------------------------------------ background

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:
            try:
                await self.service.agent_heartbeat(self.name, self.status, len(self._active))
            except Exception as exc:
                log.warning("heartbeat failed: %r", exc)
            await asyncio.sleep(self.heartbeat_s)

    async def _watch_feed(self) -> None:
        """Wake on new items for our queues; act on stop requests for our runs."""
        queues = set(self.queues)
        while not self._stopping:
            try:
                async for ev in self.service.subscribe():
                    if isinstance(ev, RunStateChanged):
                        if ev.state == RunState.STOPPING and ev.run_id in self._active:
                            self._spawn(self._cancel(self._active[ev.run_id]))
                    elif not self.event_driven:
                        continue
                    elif isinstance(ev, ItemEnqueued) and ev.queue in queues:
                        self._wake.set()
                    elif (isinstance(ev, ItemStateChanged) and ev.queue in queues
                          and ev.state == ItemState.PENDING):
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("change feed failed, retrying: %r", exc)
                await asyncio.sleep(1)

    # ------------------------------------------------------------------ misc

    def _spawn(self, coro: Any) -> None:
        """Fire-and-forget, but keep a reference so the task is not garbage-collected."""
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _log(self, message: str, *, level: str = "info", run_id: str | None = None) -> None:
        log.log(logging.getLevelName(level.upper()), "%s: %s", self.name, message)
        try:
            await self.service.agent_log(self.name, message, level=level, run_id=run_id)
        except Exception as exc:
            log.warning("could not record agent log line: %r", exc)
