"""Queries on a run's output: log lines and metric records."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from launch_tui.core.model import LogLine, LogStream, MetricRecord
from launch_tui.core.store import rows
from launch_tui.core.store.schema import run_logs, run_metrics


async def add_logs(conn: AsyncConnection, run_id: str,
                   lines: Sequence[tuple[float, LogStream | str, str]]) -> list[int]:
    """Insert (timestamp, stream, text) lines; return their ids."""
    result = await conn.execute(
        run_logs.insert().returning(run_logs.c.id),
        [{"run_id": run_id, "ts": ts, "stream": str(stream), "text": text}
         for ts, stream, text in lines],
    )
    return [r[0] for r in result.all()]


async def logs(conn: AsyncConnection, run_id: str, *, after: int, limit: int,
               streams: Iterable[LogStream | str] | None) -> list[LogLine]:
    query = select(run_logs).where(run_logs.c.run_id == run_id, run_logs.c.id > after)
    if streams is not None:
        query = query.where(run_logs.c.stream.in_([str(s) for s in streams]))
    result = await conn.execute(query.order_by(run_logs.c.id).limit(limit))
    return [rows.to_log(r) for r in result]


async def tail(conn: AsyncConnection, run_id: str, lines: int) -> list[LogLine]:
    """The last `lines` log lines, oldest first."""
    result = await conn.execute(
        select(run_logs).where(run_logs.c.run_id == run_id)
        .order_by(run_logs.c.id.desc()).limit(lines)
    )
    return [rows.to_log(r) for r in reversed(result.all())]


async def count_output(conn: AsyncConnection, run_id: str) -> int:
    """Lines the run itself printed (stdout and stderr) plus the metric records it sent."""
    lines = await conn.scalar(
        select(func.count()).where(
            run_logs.c.run_id == run_id,
            run_logs.c.stream.in_([str(LogStream.STDOUT), str(LogStream.STDERR)]),
        )
    )
    records = await conn.scalar(select(func.count()).where(run_metrics.c.run_id == run_id))
    return (lines or 0) + (records or 0)


async def add_metrics(conn: AsyncConnection, run_id: str,
                      records: Sequence[tuple[int, float, dict[str, float]]]) -> None:
    await conn.execute(
        run_metrics.insert(),
        [{"run_id": run_id, "step": s, "ts": ts, "values": v} for s, ts, v in records],
    )


async def metrics(conn: AsyncConnection, run_id: str) -> list[MetricRecord]:
    result = await conn.execute(
        select(run_metrics).where(run_metrics.c.run_id == run_id).order_by(run_metrics.c.id)
    )
    return [rows.to_metric(r) for r in result]
