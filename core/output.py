"""A run's output: its log lines (stdout, stderr, build and agent lines) and the
metric records it reported. Each stored batch is announced by one event per run,
so watchers fetch new lines instead of receiving them one by one.

Output is written as bulk work: the store runs it after waiting control writes
(claims, state changes, heartbeats), so a log flood never delays them. The
agent's collector sends many runs' output as one `append_output` call, bounded
in size, which is one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from launch_tui.core.agents import check_fence
from launch_tui.core.errors import RunTaken
from launch_tui.core.events import Event, RunLogAppended, RunMetricsLogged
from launch_tui.core.model import (
    AgentFence,
    LogLine,
    LogStream,
    MetricRecord,
    OutputBatch,
    OutputLine,
)
from launch_tui.core.store import output as output_db
from launch_tui.core.store import runs as runs_db
from launch_tui.core.store.session import Conn, Store

SMALL_BATCH = 200  # lines: an append_logs batch up to this size is a control write


class Output:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def append_output(self, batches: Sequence[OutputBatch],
                            fence: AgentFence | None = None, *, bulk: bool = True
                            ) -> set[str]:
        """Store what many runs produced in one transaction: one RunLogAppended per run
        that got lines, one RunMetricsLogged per run that got metric records.

        With a `fence` (an agent's write), the lines of runs another agent has taken
        over meanwhile are not stored (that agent stores them now); their ids are
        returned."""
        batches = [b for b in batches if b.lines or b.metrics]
        if not batches:
            return set()
        store = self._store

        def tx(conn: Conn) -> set[str]:
            nonlocal batches
            check_fence(conn, fence)  # a process that lost its agent name writes nothing
            taken: set[str] = set()
            if fence is not None:
                taken = runs_db.owned_by_others(conn, (b.run_id for b in batches), fence.name)
                batches = [b for b in batches if b.run_id not in taken]
            evs: list[Event] = [
                RunLogAppended(run_id=run_id, first_id=first, last_id=last, lines=n)
                for run_id, first, last, n in output_db.add_lines(
                    conn, [(b.run_id, b.lines) for b in batches])
            ]
            output_db.add_metrics(conn, [(b.run_id, b.metrics) for b in batches if b.metrics])
            for b in batches:
                if b.metrics:
                    step, _, values = b.metrics[-1][:3]
                    evs.append(RunMetricsLogged(run_id=b.run_id, step=step, values=values))
            store.emit(conn, *evs)
            return taken

        return await store.write(tx, bulk=bulk)

    async def append_logs(self, run_id: str, lines: Sequence[OutputLine],
                          fence: AgentFence | None = None) -> None:
        """Store a batch of (timestamp, stream, text[, source]) lines and announce it with
        one event. A small batch (a build's lines, which the agent stores every few
        dozen) goes with the control writes: behind every run's output, as bulk, it
        would hold up the run it belongs to for seconds under a log flood. With a
        `fence` (an agent's write), RunTaken and nothing stored when another agent
        has the run now."""
        if not lines:
            return
        taken = await self.append_output([OutputBatch(run_id, tuple(lines))], fence,
                                         bulk=len(lines) > SMALL_BATCH)
        if taken and fence is not None:
            _, owner = await self._store.read(runs_db.agent_of, run_id)
            raise RunTaken(run_id, owner, fence.name)

    async def record_metrics(self, run_id: str,
                             records: Sequence[tuple[int, float, dict[str, float]]]) -> None:
        if records:
            await self.append_output([OutputBatch(run_id, metrics=tuple(records))])

    async def run_logs(self, run_id: str, *, after: int, limit: int,
                       streams: Iterable[LogStream | str] | None) -> list[LogLine]:
        return await self._store.read(
            lambda conn: output_db.logs(conn, run_id, after=after, limit=limit, streams=streams))

    async def output_line_counts(self, run_id: str) -> dict[str | None, int]:
        """How many lines of the run's own output there were, per source (None: a run's
        one stream): stored log lines, metric records, and the lines gap markers say
        were not stored.

        An agent re-attaching after a restart skips this many lines of each source in
        the backend's replay.
        """
        return await self._store.read(output_db.count_output, run_id)

    async def output_line_count(self, run_id: str) -> int:
        """All sources' lines together (see output_line_counts)."""
        return sum((await self.output_line_counts(run_id)).values())

    async def tail_logs(self, run_id: str, lines: int) -> list[LogLine]:
        return await self._store.read(output_db.tail, run_id, lines)

    async def run_metrics(self, run_id: str) -> list[MetricRecord]:
        return await self._store.read(output_db.metrics, run_id)
