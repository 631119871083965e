"""The facade's run commands: the agents' dispatch port (claims, leases, run state)
and what people read of runs (listings, logs, metrics).

The port (`claim_run`, `claim`, `acknowledge`, `agent_runs`, `take_over_runs`,
`set_run_state`) returns runs and items whole, secrets included, since a job needs
the real values; `get_run` and `list_runs` mask them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from launch_tui.core import redact
from launch_tui.core.facade.parts import Parts
from launch_tui.core.listings import PAGE, pages
from launch_tui.core.model import (
    AgentFence,
    ErrorStage,
    LogLine,
    LogStream,
    MetricRecord,
    OutputBatch,
    OutputLine,
    QueueItem,
    Run,
    RunSpec,
    RunState,
)

if TYPE_CHECKING:
    from launch_tui.core.backend import LogChunk
    from launch_tui.core.dispatch import ClaimResult


class RunCommands(Parts):
    async def claim_run(self, agent: str, queue_names: Sequence[str], *,
                        project: str | None = None, fence: AgentFence | None = None,
                        probe: bool = False) -> ClaimResult:
        """In one transaction, turn the next pending item of the first queue (in the given
        order) that has one into a queued run owned by `agent`. Items that no longer
        resolve against their queue fail on the way and are listed in `refused`."""
        return await self._dispatch.claim_run(agent, queue_names, project=project, fence=fence,
                                              probe=probe)

    async def claim(self, agent: str, queue_names: Sequence[str], *, project: str | None = None,
                    lease_s: float | None = None) -> QueueItem | None:
        """Lease the next pending item of the first queue (in the given order) that has one."""
        return await self._dispatch.claim(agent, queue_names, project=project, lease_s=lease_s)

    async def expire_leases(self) -> None:
        await self._dispatch.expire_leases()

    async def renew_lease(self, item_id: int, agent: str, lease_s: float | None = None) -> None:
        await self._dispatch.renew_lease(item_id, agent, lease_s)

    async def release(self, item_id: int, agent: str, reason: str = "released") -> None:
        await self._dispatch.release(item_id, agent, reason)

    async def fail_item(self, item_id: int, agent: str, stage: ErrorStage, message: str) -> None:
        await self._dispatch.fail_item(item_id, agent, stage, message)

    async def acknowledge(self, item_id: int, agent: str) -> Run:
        """Turn a lease into a run (ValidationError, and the item failed, if it no
        longer resolves against its queue's config)."""
        return await self._dispatch.acknowledge(item_id, agent)

    async def agent_runs(self, agent: str) -> list[Run]:
        """Runs an agent owns that have not ended (what it must re-attach to)."""
        return await self._dispatch.agent_runs(agent)

    async def take_over_runs(self, agent: str, queue_names: Sequence[str], *,
                             project: str | None = None, fence: AgentFence | None = None
                             ) -> list[Run]:
        """Give `agent` the unfinished runs of its queues whose agents are gone."""
        return await self._dispatch.take_over_runs(agent, queue_names, project=project,
                                                   fence=fence)

    async def set_run_state(
        self, run_id: str, state: RunState, *, reason: str | None = None,
        exit_code: int | None = None, error_stage: ErrorStage | None = None,
        error_message: str | None = None, handle: dict[str, Any] | None = None,
        spec: RunSpec | None = None, fence: AgentFence | None = None,
    ) -> Run:
        return await self._dispatch.set_run_state(
            run_id, state, reason=reason, exit_code=exit_code, error_stage=error_stage,
            error_message=error_message, handle=handle, spec=spec, fence=fence)

    async def update_run(
        self, run_id: str, *, handle: dict[str, Any] | None = None, spec: RunSpec | None = None,
        reason: str | None = None, fence: AgentFence | None = None,
    ) -> None:
        """Record details (backend handle, resolved spec) without changing state; an
        agent's write (fenced) only while it has the run (RunTaken when another does)."""
        await self._dispatch.update_run(run_id, handle=handle, spec=spec, reason=reason,
                                        fence=fence)

    # What people read of runs.

    async def get_run(self, run_id: str) -> Run:
        return redact.run(await self._dispatch.get_run(run_id))

    async def list_runs(
        self, queue: str | None = None, *, project: str | None = None,
        states: Iterable[RunState | str] | None = None, agent: str | None = None,
        limit: int | None = None, before: str | None = None, since: float | None = None,
    ) -> list[Run]:
        """Newest first; created at or after `since` (epoch seconds), older than the
        cursor `before` (`listings.cursor_of` the last run of the page before)."""
        return redact.each(
            await self._listings.list_runs(queue, project=project, states=states, agent=agent,
                                           limit=limit, before=before, since=since),
            redact.run)

    def run_pages(
        self, queue: str | None = None, *, project: str | None = None,
        states: Iterable[RunState | str] | None = None, agent: str | None = None,
        limit: int | None = None, since: float | None = None, page: int = PAGE,
    ) -> AsyncIterator[list[Run]]:
        """`list_runs` a page of `page` at a time, up to `limit` runs (None: all)."""
        states = None if states is None else tuple(states)
        return pages(lambda cursor, n: self.list_runs(
            queue, project=project, states=states, agent=agent, limit=n, before=cursor,
            since=since), limit, page)

    # Output.

    async def append_output(self, batches: Sequence[OutputBatch],
                            fence: AgentFence | None = None) -> set[str]:
        """Store the lines and metric records of many runs in one (bulk) transaction,
        announced by one RunLogAppended / RunMetricsLogged per run. Returns the runs
        whose lines were not stored because another agent has taken them over (only
        with a `fence`)."""
        return await self._output.append_output(batches, fence)

    async def append_logs(self, run_id: str, lines: Sequence[OutputLine],
                          fence: AgentFence | None = None) -> None:
        """Store a batch of (timestamp, stream, text[, source]) lines and announce it with
        one event; an agent's (fenced) batch only while it has the run (RunTaken)."""
        await self._output.append_logs(run_id, lines, fence)

    async def full_output(self, run_id: str) -> AsyncIterator[LogChunk]:
        """Every line the run printed, read from where its backend keeps them (the
        store may hold only part: see core/gaps.py). ConflictError when the backend
        keeps no copy or it is not on this machine."""
        from launch_tui.core import fulllog

        run = await self.get_run(run_id)
        async for chunk in fulllog.full_output(self.settings, run):
            yield chunk

    async def run_logs(self, run_id: str, *, after: int = 0, limit: int = 1000,
                       streams: Iterable[LogStream | str] | None = None) -> list[LogLine]:
        return await self._output.run_logs(run_id, after=after, limit=limit, streams=streams)

    async def output_line_count(self, run_id: str) -> int:
        """Lines of the run's own output the store accounts for (stored lines, metric
        records, lines gap markers stand for), all sources together."""
        return await self._output.output_line_count(run_id)

    async def output_line_counts(self, run_id: str) -> dict[str | None, int]:
        """The same per source (None: a run's one output stream); a re-attaching agent
        skips that many lines of each source of the backend's replay."""
        return await self._output.output_line_counts(run_id)

    async def tail_logs(self, run_id: str, lines: int = 200) -> list[LogLine]:
        return await self._output.tail_logs(run_id, lines)

    async def record_metrics(self, run_id: str,
                             records: Sequence[tuple[int, float, dict[str, float]]]) -> None:
        await self._output.record_metrics(run_id, records)

    async def run_metrics(self, run_id: str) -> list[MetricRecord]:
        return await self._output.run_metrics(run_id)
