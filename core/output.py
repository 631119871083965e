"""A run's output: its log lines (stdout, stderr, build and agent lines) and the
metric records it reported. Each stored batch is announced by one event, so
watchers fetch new lines instead of receiving them one by one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from launch_tui.core.events import RunLogAppended, RunMetricsLogged
from launch_tui.core.model import LogLine, LogStream, MetricRecord
from launch_tui.core.store import output as output_db
from launch_tui.core.store.session import Store


class Output:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def append_logs(self, run_id: str,
                          lines: Sequence[tuple[float, LogStream | str, str]]) -> None:
        """Store a batch of (timestamp, stream, text) lines and announce it with one event."""
        if not lines:
            return
        async with self._store.tx() as conn:
            ids = await output_db.add_logs(conn, run_id, lines)
            await self._store.emit(
                conn,
                RunLogAppended(run_id=run_id, first_id=min(ids), last_id=max(ids),
                               lines=len(ids)),
            )

    async def run_logs(self, run_id: str, *, after: int, limit: int,
                       streams: Iterable[LogStream | str] | None) -> list[LogLine]:
        async with self._store.read() as conn:
            return await output_db.logs(conn, run_id, after=after, limit=limit, streams=streams)

    async def output_line_count(self, run_id: str) -> int:
        """How many lines of the run's own output are stored (log lines plus metric records).

        An agent re-attaching after a restart skips this many lines of the backend's replay.
        """
        async with self._store.read() as conn:
            return await output_db.count_output(conn, run_id)

    async def tail_logs(self, run_id: str, lines: int) -> list[LogLine]:
        async with self._store.read() as conn:
            return await output_db.tail(conn, run_id, lines)

    async def record_metrics(self, run_id: str,
                             records: Sequence[tuple[int, float, dict[str, float]]]) -> None:
        if not records:
            return
        async with self._store.tx() as conn:
            await output_db.add_metrics(conn, run_id, records)
            step, _, values = records[-1]
            await self._store.emit(conn, RunMetricsLogged(run_id=run_id, step=step,
                                                          values=values))

    async def run_metrics(self, run_id: str) -> list[MetricRecord]:
        async with self._store.read() as conn:
            return await output_db.metrics(conn, run_id)
