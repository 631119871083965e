"""One run under an agent: build, submit, supervise, store output, conclude.

`RunRunner` holds what every run of one agent shares (the port, the backends
and builders it has loaded, timings) and `execute()` takes a run from `queued`
to exactly one terminal state. Each run is its own task in the agent, so a
failure here ends that run only. Its output travels to the store through
`pump.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from launch_tui.core import registry, resolve
from launch_tui.core.agent.output import OutputCollector
from launch_tui.core.agent.port import AgentPort
from launch_tui.core.agent.pump import ActiveRun, await_output, pump_output
from launch_tui.core.backend import (
    Backend,
    BackendContext,
    Builder,
    BuildResult,
    RunStatus,
)
from launch_tui.core.errors import (
    BackendError,
    BuildError,
    ConflictError,
    FencedOut,
    LaunchError,
    RunTaken,
    ValidationError,
)
from launch_tui.core.model import (
    AgentFence,
    ErrorStage,
    JobKind,
    LogStream,
    Run,
    RunSpec,
    RunState,
)

BUILD_FLUSH_LINES = 50

AgentLogFn = Callable[..., Awaitable[None]]


@dataclass
class Built:
    """A finished build, not yet recorded: the caller stores its spec with the next
    state change, and its log lines and note once the run is submitted."""

    spec: RunSpec
    result: BuildResult
    lines: list[tuple[float, LogStream, str]]  # the build's lines not stored yet
    note: str  # the agent log line saying how the build went


class RunRunner:
    def __init__(
        self,
        port: AgentPort,
        log: AgentLogFn,
        *,
        cancel_grace_s: float,
        fence: Callable[[], AgentFence | None] = lambda: None,
        on_fenced: Callable[[FencedOut], Awaitable[None]] | None = None,
        on_taken: Callable[[str], Awaitable[None]] | None = None,
        agent: str | None = None,
    ) -> None:
        self.port = port
        self.agent = agent
        self._log = log
        self._fence = fence
        self._on_fenced = on_fenced
        self.cancel_grace_s = cancel_grace_s
        self._backends: dict[str, Backend] = {}
        self._builders: dict[str, Builder] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self.output = OutputCollector(
            lambda batches: port.append_output(batches, self._fence()), on_fenced=self._fenced,
            on_taken=on_taken,
        )

    # ------------------------------------------------------------------ targets

    def _context(self, resource: str) -> BackendContext:
        s = self.port.settings
        return BackendContext(home=s.home, artifacts=s.artifacts,
                              settings=s.backends.get(resource, {}), agent=self.agent)

    def _backend(self, resource: str) -> Backend:
        if resource not in self._backends:
            self._backends[resource] = registry.create_backend(resource, self._context(resource))
        return self._backends[resource]

    def _builder(self, resource: str) -> Builder:
        if resource not in self._builders:
            self._builders[resource] = registry.create_builder(resource, self._context(resource))
        return self._builders[resource]

    # ------------------------------------------------------------------ states

    async def _append_logs(self, run_id: str,
                           lines: Sequence[tuple[float, LogStream | str, str]]) -> None:
        """Store lines of the run outside its output stream (the build's, the agent's
        notes): RunTaken when another agent has the run now."""
        await self.port.append_logs(run_id, lines, fence=self._fence())

    async def _fenced(self, exc: FencedOut) -> None:
        if self._on_fenced is not None:
            await self._on_fenced(exc)

    async def _advance(self, run_id: str, state: RunState, **kw: object) -> bool:
        """Move a run forward; False if someone asked it to stop meanwhile. RunTaken
        (raised on, to the run's task) when another agent has taken the run over."""
        try:
            await self.port.set_run_state(run_id, state, fence=self._fence(),
                                          **kw)  # type: ignore[arg-type]
            return True
        except FencedOut as exc:
            await self._fenced(exc)
            return False
        except RunTaken:
            raise
        except ConflictError:
            return False

    async def finish(self, run_id: str, state: RunState, **kw: object) -> None:
        """Record the run's one terminal state; a run that already ended keeps its own.
        RunTaken when another agent has the run now (the end is that agent's to write)."""
        try:
            await self.port.set_run_state(run_id, state, fence=self._fence(),
                                          **kw)  # type: ignore[arg-type]
        except FencedOut as exc:
            await self._fenced(exc)
            return
        except RunTaken:
            raise
        except ConflictError:
            return  # already terminal
        detail = kw.get("reason") or ""
        level = "info" if state in (RunState.FINISHED, RunState.STOPPED) else "error"
        await self._log(f"run {run_id} {state}" + (f": {detail}" if detail else ""),
                        level=level, run_id=run_id)

    async def _fail(self, run_id: str, stage: ErrorStage, message: str,
                    reason: str | None = None) -> None:
        await self.finish(run_id, RunState.FAILED, reason=reason or message, error_stage=stage,
                          error_message=message)

    # ------------------------------------------------------------------ one run

    async def execute(self, run: Run, active: ActiveRun, resume: bool) -> None:
        spec = RunSpec.from_dict(run.spec)
        try:
            backend = self._backend(spec.resource)
        except BackendError as exc:
            await self._fail(run.id, ErrorStage.AGENT, str(exc))
            return
        active.backend = backend
        if active.handle is None and resume:
            active.handle = await backend.find(run.id, spec)
            if active.handle is not None:
                # Found by the target (its agent died before recording the handle):
                # record it now, so the next agent to resume it need not search.
                await self.port.update_run(run.id, handle=active.handle.to_dict(),
                                           fence=self._fence())
            elif run.state not in (RunState.QUEUED, RunState.BUILDING):
                # Its agent died while submitting it (or after): whether it started is
                # unknown, and submitting again could run it twice.
                await self._vanished(run, spec)
                return
        if active.handle is None:
            built = await self._build(run, active, spec)
            if built is None:
                return
            spec = built.spec
            if active.cancel_requested.is_set():
                await self._append_logs(run.id, built.lines)
                await self._log(built.note, run_id=run.id)
                await self.finish(run.id, RunState.STOPPED, reason="cancelled before it started")
                return
            # The resolved spec goes in with the state change: a restarted agent that
            # finds the run `starting` knows what was built for it. What the build
            # printed is stored beside it, before submit: an agent that dies while
            # submitting leaves the build's log to whoever takes the run over. Handed
            # to the store together (both control writes: see Output.append_logs),
            # they commit as one transaction when the writer finds them both waiting.
            advanced, _ = await asyncio.gather(
                self._advance(run.id, RunState.STARTING, reason="submitting", spec=spec),
                self._append_logs(run.id, built.lines),
            )
            if not advanced:
                await self._log(built.note, run_id=run.id)
                await self.finish(run.id, RunState.STOPPED, reason="cancelled before it started")
                return
            try:
                handle = await backend.submit(spec, built.result)
            except (BackendError, BuildError, ValidationError) as exc:
                await self._log(built.note, run_id=run.id)
                await self._log(f"run {run.id} could not start: {exc}", level="error",
                                run_id=run.id)
                await self._fail(run.id, ErrorStage.RUN, str(exc))
                return
            active.handle = handle
            # Committed together as one transaction, not three that each wait their
            # turn under a log flood.
            await asyncio.gather(
                self._log(built.note, run_id=run.id),
                self.port.update_run(run.id, handle=handle.to_dict(), fence=self._fence()),
                self._log(f"submitted run {run.id} to {spec.resource}", run_id=run.id),
            )
        else:
            await self._log(f"re-attached to run {run.id} on {spec.resource}", run_id=run.id)
            if run.state == RunState.STOPPING:
                self.spawn(self.cancel(active))
        await self._supervise(run, active, backend)

    async def _vanished(self, run: Run, spec: RunSpec) -> None:
        """End a resumed run that was being started but that the target has no trace of."""
        if run.state == RunState.STOPPING:
            await self.finish(run.id, RunState.STOPPED,
                              reason="cancelled while its agent was starting it; the agent "
                                     "stopped before it started")
            return
        await self.finish(run.id, RunState.CRASHED,
                          reason=f"its agent stopped while starting it, and {spec.resource} "
                                 "has no trace of it here")

    async def _build(self, run: Run, active: ActiveRun, spec: RunSpec) -> Built | None:
        # The move to `building` commits while the build begins: waiting for it
        # first put a store round trip (2 ms, more under load) on every dispatch.
        # Its outcome is known before anything about the build is recorded, so a run
        # cancelled meanwhile still never starts: its build is abandoned.
        advancing = asyncio.ensure_future(
            self._advance(run.id, RunState.BUILDING, reason="preparing"))
        build_lines: list[tuple[float, LogStream, str]] = []

        async def build_log(line: str) -> None:
            active.tail.append(line)
            build_lines.append((time.time(), LogStream.BUILD, line))
            if len(build_lines) >= BUILD_FLUSH_LINES:
                await self._append_logs(run.id, build_lines[:])
                build_lines.clear()

        async def build(builder: Builder) -> tuple[BuildResult, float]:
            started = time.monotonic()
            await self._ensure_snapshot(spec, build_log)
            return await builder.build(spec, build_log), time.monotonic() - started

        try:
            building = asyncio.ensure_future(build(self._builder(spec.resource)))
            unavailable = None
        except BackendError as exc:  # no builder for the resource
            building, unavailable = None, exc
        try:
            advanced = await advancing
        except BaseException:
            if building is not None:
                building.cancel()
            raise
        if not advanced:
            if building is not None:
                await _abandon(building)
            await self.finish(run.id, RunState.STOPPED, reason="cancelled before it started")
            return None
        if building is None:
            await self._fail(run.id, ErrorStage.AGENT, str(unavailable))
            return None
        try:
            result, took = await building
        except BuildError as exc:
            await self._append_logs(run.id, build_lines)
            await self._log(f"build of run {run.id} failed: {exc}", level="error",
                            run_id=run.id)
            await self._fail(run.id, ErrorStage.BUILD, str(exc), reason="build failed")
            return None
        # The tail quoted when the run fails is the run's own output, not the build's.
        active.tail.clear()
        what = "cache hit" if result.cached else f"built in {took:.1f}s"
        note = (f"run {run.id}: build stage {what}"
                + (f" (commit {result.commit[:12]})" if result.commit else ""))
        # The run's record shows what was built; the backend gets `result` itself.
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
        return Built(spec, result, build_lines, note)

    async def _ensure_snapshot(self, spec: RunSpec, log: Callable[[str], Awaitable[None]]
                               ) -> None:
        """A code job's snapshot on this machine before its builder looks for it there
        (`BackendContext.snapshot_dir`): fetched from the store when it was made on
        another machine. Builders and backends never see the store."""
        digest = spec.source.get("snapshot") if spec.kind is JobKind.CODE else None
        if not digest:
            return
        try:
            fetched = await self.port.ensure_snapshot(str(digest), f"{spec.job}:v{spec.version}")
        except BuildError:
            raise
        except LaunchError as exc:  # the artifacts directory is not writable, …
            raise BuildError(str(exc)) from exc
        if fetched:
            await log(f"source: fetched code snapshot {str(digest)[:12]} from the store")

    async def _supervise(self, run: Run, active: ActiveRun, backend: Backend) -> None:
        assert active.handle is not None
        handle = active.handle
        skip = await self.port.output_line_counts(run.id)
        pump = asyncio.create_task(pump_output(self.output, active, backend, handle, skip))
        state = run.state
        status = RunStatus(RunState.CRASHED, "the backend stopped reporting the run")
        waiting_on: str | None = None
        stage: str | None = run.reason if run.state == RunState.RUNNING else None
        try:
            # The backend says when something changes (pushed where it can be).
            async for status in backend.watch(handle):
                if (status.state == RunState.STARTING and status.reason
                        and status.reason != waiting_on):
                    # Why it has not started yet (a cluster's "Unschedulable: 0/3 nodes
                    # …", an image still pulling): on the run, for people to see.
                    waiting_on = status.reason
                    await self.port.update_run(run.id, reason=status.reason, fence=self._fence())
                    await self._log(f"run {run.id} waits: {status.reason}", run_id=run.id)
                if status.state == RunState.RUNNING and state in (
                    RunState.QUEUED, RunState.BUILDING, RunState.STARTING
                ):
                    if await self._advance(run.id, RunState.RUNNING, reason=status.reason):
                        state = RunState.RUNNING
                        stage = status.reason
                        await self._log(f"run {run.id} is running"
                                        + (f": {stage}" if stage else ""), run_id=run.id)
                elif (status.state == RunState.RUNNING and state == RunState.RUNNING
                      and status.reason and status.reason != stage):
                    # The stage of a running run where the target tells it (SageMaker's
                    # Downloading, Training, Uploading): on the run, once per change.
                    stage = status.reason
                    await self.port.update_run(run.id, reason=status.reason, fence=self._fence())
                    await self._log(f"run {run.id}: {status.reason}", run_id=run.id)
            if not status.state.terminal:
                status = RunStatus(RunState.CRASHED, "the backend stopped reporting the run")
            await await_output(pump, active, self._append_logs)
            if not pump.cancelled() and pump.exception() is not None:
                await self._log(f"reading the output of run {run.id} failed: "
                                f"{pump.exception()!r}", level="error", run_id=run.id)
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

    async def _conclude(self, run_id: str, active: ActiveRun, status: RunStatus) -> None:
        final = status.state
        reason = status.reason
        if active.cancel_requested.is_set() and final != RunState.FINISHED:
            final, reason = RunState.STOPPED, reason or "cancelled by user"
        if final == RunState.FAILED:
            tail = "\n".join(active.tail)
            message = (reason or f"exit code {status.exit_code}") + (
                f"; last output:\n{tail}" if tail else ""
            )
            await self.finish(run_id, final, reason=reason, exit_code=status.exit_code,
                              error_stage=ErrorStage.RUN, error_message=message)
        elif final == RunState.CRASHED:
            await self.finish(run_id, final, reason=reason, exit_code=status.exit_code,
                              error_stage=ErrorStage.RUN, error_message=reason)
        else:
            await self.finish(run_id, final, reason=reason, exit_code=status.exit_code)

    async def cancel(self, active: ActiveRun) -> None:
        active.cancel_requested.set()
        if active.handle is None or active.backend is None:
            return  # not submitted yet: execute() sees the flag before submitting
        await self._log(f"stopping run {active.run_id} (grace {self.cancel_grace_s:g}s)",
                        run_id=active.run_id)
        try:
            await active.backend.cancel(active.handle, self.cancel_grace_s)
        except LaunchError as exc:
            await self._log(f"could not stop run {active.run_id}: {exc}", level="error",
                            run_id=active.run_id)

    def spawn(self, coro: Awaitable[None]) -> None:
        """Fire-and-forget, but keep a reference so the task is not garbage-collected."""
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)


async def _abandon(task: asyncio.Future[object]) -> None:
    """Cancel `task` and wait for it to unwind; what it returned or raised is not wanted."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved: it ended before the cancel reached it
