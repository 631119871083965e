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
import contextlib
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence

from launch_tui.core.agent.port import AgentPort
from launch_tui.core.agent.pump import ActiveRun
from launch_tui.core.agent.runner import RunRunner
from launch_tui.core.backend import RunHandle
from launch_tui.core.dispatch import ClaimResult
from launch_tui.core.errors import FencedOut, LaunchError, RunTaken, ValidationError
from launch_tui.core.events import (
    ItemEnqueued,
    ItemMoved,
    ItemStateChanged,
    QueueChanged,
    RunStateChanged,
)
from launch_tui.core.model import (
    AgentFence,
    AgentStatus,
    ErrorStage,
    ItemState,
    QueueItem,
    Run,
    RunState,
)

log = logging.getLogger("launch_tui.agent")

# A background loop that fails is restarted after a back-off that doubles up to
# RESTART_MAX_S; one that fails RESTART_LIMIT times within RESTART_WINDOW_S stops
# the agent with status `error` rather than let it run half-alive.
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
RESTART_LIMIT = 5
RESTART_WINDOW_S = 120.0


class AgentFailed(LaunchError):
    """The agent stopped itself because one of its loops kept failing."""


def default_agent_name(queues: Sequence[str]) -> str:
    """Stable across restarts on one host, so a restarted agent re-attaches its runs."""
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"{host[:40]}-{'-'.join(queues)}"[:128]


class LaunchAgent:
    def __init__(
        self,
        port: AgentPort,
        queues: Sequence[str],
        *,
        name: str | None = None,
        project: str | None = None,
        max_jobs: int = 1,
        poll_interval_s: float | None = None,
        event_driven: bool = True,
        heartbeat_s: float | None = None,
        cancel_grace_s: float = 10.0,
    ) -> None:
        if not queues:
            raise ValidationError("queues: an agent needs at least one queue (-q).", field="queues")
        self.port = port
        settings = port.settings
        self.queues = list(dict.fromkeys(queues))
        self.name = name or default_agent_name(self.queues)
        self.project = project or settings.default_project
        self.max_jobs = max_jobs
        self.poll_interval_s = (
            poll_interval_s if poll_interval_s is not None else settings.poll_interval_s
        )
        self.event_driven = event_driven
        # Beat well within the liveness window others judge us by (`[agent] stale_s`):
        # a window shorter than the beat would make a live agent look gone.
        self.heartbeat_s = (heartbeat_s if heartbeat_s is not None
                            else min(5.0, settings.agent_stale_s / 3))
        self._stale_s = settings.agent_stale_s
        self.status = AgentStatus.STOPPED
        self._fence: AgentFence | None = None  # set by start(): who holds the name
        self._lost = False  # the name was taken by another process: write nothing more
        self._runner = RunRunner(port, self._log, cancel_grace_s=cancel_grace_s,
                                 fence=lambda: self._fence, on_fenced=self._lose_name,
                                 on_taken=self._run_taken, agent=self.name)
        self._active: dict[str, ActiveRun] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._next_queue = 0
        self._stopped = asyncio.Event()
        self.failure: str | None = None  # why the agent stopped itself, if it did

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Register, re-attach to runs from a previous life, and start working."""
        registered = await self.port.register_agent(
            self.name, self.queues, project=self.project, max_jobs=self.max_jobs
        )
        self._fence = AgentFence.of(registered)
        self.status = AgentStatus.POLLING
        await self._log(
            f"started on queue{'s' if len(self.queues) > 1 else ''} {', '.join(self.queues)} "
            f"(max {self.max_jobs} job{'s' if self.max_jobs > 1 else ''}, "
            f"{'event-driven' if self.event_driven else 'polling'}, "
            f"poll every {self.poll_interval_s:g}s)"
        )
        await self._reattach()
        self._tasks = [
            asyncio.create_task(self._supervised("claim", self._claim_loop),
                                name=f"agent-{self.name}-claim"),
            asyncio.create_task(self._supervised("heartbeat", self._heartbeat_loop),
                                name=f"agent-{self.name}-heartbeat"),
            asyncio.create_task(self._supervised("change feed", self._watch_feed),
                                name=f"agent-{self.name}-feed"),
            asyncio.create_task(self._supervised("pruning", self._prune_loop),
                                name=f"agent-{self.name}-prune"),
        ]

    async def run(self) -> None:
        """Start and serve until `stop()` is called; raise AgentFailed if it stopped itself."""
        await self.start()
        await self.wait()

    async def wait(self) -> None:
        """Until the agent has stopped; AgentFailed if it stopped because of a fault."""
        await self._stopped.wait()
        if self.failure is not None:
            raise AgentFailed(f"agent: {self.name} stopped: {self.failure}")

    async def _supervised(self, what: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one of the agent's loops; restart it with back-off when it fails."""
        delay = RESTART_FIRST_S
        failures: list[float] = []
        while not self._stopping:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                now = time.monotonic()
                failures = [t for t in failures if now - t < RESTART_WINDOW_S] + [now]
                log.exception("agent %s: the %s loop failed", self.name, what)
                if len(failures) >= RESTART_LIMIT:
                    self.failure = (f"the {what} loop failed {len(failures)} times in "
                                    f"{RESTART_WINDOW_S:g}s; last error: {exc!r}")
                    await self._log(self.failure, level="error")
                    # Not awaited here: stop() cancels this very task.
                    asyncio.get_running_loop().create_task(self.stop())
                    return
                await self._log(f"the {what} loop failed ({exc!r}); restarting it in "
                                f"{delay:g}s", level="error")
                await asyncio.sleep(delay)
                delay = min(RESTART_MAX_S, delay * 2)

    async def stop(self, *, cancel_runs: bool = False) -> None:
        """Stop claiming and supervising. Runs keep going on their backend unless
        `cancel_runs`; an agent started again under the same name re-attaches them."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        self.status = AgentStatus.STOPPING
        if not self._lost:
            with contextlib.suppress(LaunchError):
                await self.port.agent_heartbeat(self.name, self.status, len(self._active),
                                                self._fence)
        if cancel_runs:
            await asyncio.gather(
                *(self._runner.cancel(a) for a in list(self._active.values())),
                return_exceptions=True,
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
        await self._runner.output.stop()
        self.status = AgentStatus.STOPPED if self.failure is None else AgentStatus.ERROR
        with contextlib.suppress(Exception):  # the store may be what failed
            await self._log("stopped" + ("" if cancel_runs else
                                         f" ({len(self._active)} run(s) left running)"))
            if not self._lost:  # the row is another process's now
                await self.port.agent_heartbeat(self.name, self.status, 0, self._fence)
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
        polled = False  # woken by the fallback timer, not by a change
        while not self._stopping:
            again = False
            if len(self._active) < self.max_jobs:
                result: ClaimResult | None = None
                try:
                    order = self._queue_order()
                    result = await self.port.claim_run(self.name, order, project=self.project,
                                                       fence=self._fence, probe=polled)
                except FencedOut as exc:
                    await self._lose_name(exc)
                    return
                except LaunchError as exc:
                    await self._log(f"cannot claim: {exc}", level="error")
                except Exception as exc:  # the store hiccuped: log, back off, go on
                    log.exception("claim failed")
                    await self._log(f"claim failed: {exc!r}", level="error")
                if result is not None:
                    for item_id, message in result.refused:
                        await self._log(f"item #{item_id} failed before it ran: {message}",
                                        level="error")
                    # Refusals end a claim early: look again at once.
                    again = bool(result.refused)
                    if result.run is not None:
                        again = True
                        self._take(result.run, result.item)
            if again:
                continue
            self._wake.clear()
            polled = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval_s):  # not wait_for: see subscribe
                    await self._wake.wait()
                    polled = False

    def _take(self, run: Run, item: QueueItem | None) -> None:
        self._next_queue = (self.queues.index(run.queue) + 1) % len(self.queues)
        priority = f", {item.priority}" if item is not None else ""
        # Logged by the run's task, not here: the next claim need not wait for it.
        self._start_run(run, resume=False, note=f"claimed item #{run.item_id} ({run.job_ref}"
                        f"{priority}) from queue {run.queue} as run {run.id}")

    def _start_run(self, run: Run, *, resume: bool, note: str | None = None) -> None:
        active = ActiveRun(run.id)
        self._active[run.id] = active
        if run.handle:
            active.handle = RunHandle.from_dict(run.handle)
        if run.state == RunState.STOPPING:
            active.cancel_requested.set()
        active.task = asyncio.create_task(self._run_task(run, active, resume, note),
                                          name=f"run-{run.id}")
        self.status = AgentStatus.RUNNING

    async def _run_task(self, run: Run, active: ActiveRun, resume: bool,
                        note: str | None = None) -> None:
        try:
            try:
                if note is not None:
                    # Not awaited: the store commits it with the run's move to `building`
                    # (one transaction for both) instead of one after the other.
                    self._runner.spawn(self._log(note, run_id=run.id))
                await self._runner.execute(run, active, resume)
            except (asyncio.CancelledError, RunTaken):
                raise
            except Exception as exc:  # a bug or an unexpected backend error: fail this run only
                log.exception("run %s failed in the agent", run.id)
                await self._runner.finish(run.id, RunState.FAILED,
                                          reason=f"agent error: {exc!r}",
                                          error_stage=ErrorStage.AGENT, error_message=repr(exc))
        except RunTaken as exc:  # a write about the run found another agent has it
            await self._run_taken(run.id, exc.owner)
        finally:
            self._active.pop(run.id, None)
            if not self._active and not self._stopping:
                self.status = AgentStatus.POLLING
            self._wake.set()  # a slot is free

    # ------------------------------------------------------------------ restart

    async def _reattach(self) -> None:
        for run in await self.port.agent_runs(self.name):
            if run.handle is None and run.state in (RunState.QUEUED, RunState.BUILDING):
                await self._log(f"resuming run {run.id}, interrupted before it was submitted",
                                run_id=run.id)
            self._start_run(run, resume=True)

    # ------------------------------------------------------------------ background

    async def _heartbeat_loop(self) -> None:
        # When this agent's heartbeats began to go through without a break (monotonic;
        # None: the last one failed). A break longer than a few beats means this agent
        # could not reach the store, and neither, maybe, could anyone: every agent's
        # heartbeat then looks stale at once (a database restart, a writer holding
        # the lock). Others are judged gone only after a whole liveness window of
        # this agent's own unbroken heartbeats, in which a live one has beaten too.
        streak: float | None = None
        last_ok = 0.0
        while not self._stopping:
            try:
                await self.port.agent_heartbeat(self.name, self.status, len(self._active),
                                                self._fence)
            except FencedOut as exc:
                await self._lose_name(exc)
                return
            except Exception as exc:
                log.warning("heartbeat failed: %r", exc)
                streak = None
            else:
                now = time.monotonic()
                if streak is None or now - last_ok > max(self._stale_s / 2,
                                                         2 * self.heartbeat_s):
                    if last_ok and self._active:
                        # Cut off for a while (stopped, or the store was out of reach):
                        # another agent may have taken over runs of ours meanwhile.
                        await self._let_go_of_taken_runs()
                    streak = now
                last_ok = now
                if now - streak >= self._stale_s:
                    await self._take_over()
            await asyncio.sleep(self.heartbeat_s)

    async def _take_over(self) -> None:
        """Adopt the runs of this agent's queues whose agents died (stopped heartbeating
        without a clean stop): re-attached where the target still has them, otherwise
        reported crashed by the backend."""
        try:
            runs = await self.port.take_over_runs(self.name, self.queues, project=self.project,
                                                  fence=self._fence)
        except FencedOut as exc:
            await self._lose_name(exc)
            return
        except Exception as exc:
            log.warning("taking over orphaned runs failed: %r", exc)
            return
        for run in runs:
            if run.id not in self._active:
                await self._log(f"taking over run {run.id} ({run.state}) from an agent that "
                                "stopped heartbeating", level="warning", run_id=run.id)
                self._start_run(run, resume=True)

    async def _let_go_of_taken_runs(self) -> None:
        try:
            ours = {run.id for run in await self.port.agent_runs(self.name)}
        except Exception as exc:
            log.warning("checking which runs are still ours failed: %r", exc)
            return
        for run_id in [r for r in self._active if r not in ours]:
            # Not among our unfinished runs: taken, or one of ours that has just ended
            # and is being cleaned up (that one is left to finish).
            with contextlib.suppress(Exception):
                owner = (await self.port.get_run(run_id)).agent
                if owner != self.name:
                    await self._run_taken(run_id, owner)

    async def _run_taken(self, run_id: str, owner: str | None = None) -> None:
        """Another agent (`owner`, looked up when not given) took this run over while
        this one was cut off from the store or stopped (it judged this agent gone):
        stop supervising it at once, without changing it or storing more of its
        output, and say so in this agent's log."""
        active = self._active.get(run_id)
        if active is None or active.taken:
            return
        active.taken = True
        self._runner.output.discard(run_id)
        if active.task is not None and active.task is not asyncio.current_task():
            active.task.cancel()  # (from the run's own task, it is ending already)
        if owner is None:
            with contextlib.suppress(Exception):
                owner = (await self.port.get_run(run_id)).agent
        await self._log(f"run {run_id} was taken over by {owner or 'another agent'} while this "
                        "agent was cut off from the store or stopped; it no longer "
                        "supervises it", level="warning")

    async def _lose_name(self, exc: FencedOut) -> None:
        """Another process holds this agent's name now (this one was stopped or cut off
        for longer than the liveness window): stop supervising at once, leave the runs
        to the new holder, and say so."""
        if self._lost:
            return
        self._lost = True
        self.failure = str(exc)
        log.error("%s", exc)
        with contextlib.suppress(Exception):
            await self.port.agent_log(self.name, str(exc), level="error")
        asyncio.get_running_loop().create_task(self.stop())

    async def _watch_feed(self) -> None:
        """Wake on new items for our queues; act on stop requests for our runs."""
        queues = set(self.queues)
        while not self._stopping:
            try:
                async for ev in self.port.subscribe():
                    if isinstance(ev, RunStateChanged):
                        if ev.state == RunState.STOPPING and ev.run_id in self._active:
                            self._runner.spawn(self._runner.cancel(self._active[ev.run_id]))
                    elif not self.event_driven:
                        continue
                    elif isinstance(ev, ItemEnqueued) and ev.queue in queues:
                        self._wake.set()
                    elif (isinstance(ev, ItemStateChanged) and ev.queue in queues
                          and ev.state == ItemState.PENDING):
                        self._wake.set()
                    elif isinstance(ev, (QueueChanged, ItemMoved)) and ev.queue in queues:
                        # A queue resumed, or an item moved here or to the top.
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("change feed failed, retrying: %r", exc)
                await asyncio.sleep(1)

    async def _prune_loop(self) -> None:
        """Now and then, delete the history the retention settings no longer keep (see
        core/retention.py). Every agent of a store does it: deletes are idempotent, so
        agents pruning at the same time only share the work."""
        every_s = self.port.settings.retention.prune_every_minutes * 60
        if every_s <= 0:
            return  # left to `launch-tui gc`
        while not self._stopping:
            # Jittered, so agents started together (a fleet restart) do not prune together.
            await asyncio.sleep(every_s * random.uniform(0.5, 1.5))
            try:
                report = await self.port.prune()
            except Exception as exc:  # never a reason to stop the agent: try next time
                log.warning("pruning failed: %r", exc)
                continue
            if any(report.tables().values()):
                log.info("%s: pruned %s in %.1fs", self.name, report.tables(), report.seconds)

    # ------------------------------------------------------------------ misc

    async def _log(self, message: str, *, level: str = "info", run_id: str | None = None) -> None:
        log.log(logging.getLevelName(level.upper()), "%s: %s", self.name, message)
        try:
            await self.port.agent_log(self.name, message, level=level, run_id=run_id)
        except Exception as exc:
            log.warning("could not record agent log line: %r", exc)
