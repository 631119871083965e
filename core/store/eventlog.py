"""Queries on the events table: appending, tailing, and reading agents' log lines back."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from launch_tui.core.events import AgentLog, Event, decode
from launch_tui.core.store.schema import events


async def append(conn: AsyncConnection, ts: float, evs: Sequence[Event]) -> None:
    await conn.execute(
        events.insert(), [{"ts": ts, "kind": e.kind, "payload": e.payload()} for e in evs]
    )


async def last_seq(conn: AsyncConnection) -> int:
    return (await conn.scalar(select(func.max(events.c.seq)))) or 0


async def after(conn: AsyncConnection, seq: int, limit: int) -> list[Event]:
    """Up to `limit` events with a sequence number above `seq`, oldest first."""
    result = await conn.execute(
        select(events).where(events.c.seq > seq).order_by(events.c.seq).limit(limit)
    )
    out = []
    for r in result:
        ev = decode(r.seq, r.ts, r.kind, r.payload)
        if ev is not None:
            out.append(ev)
    return out


async def agent_logs(conn: AsyncConnection, agent: str | None, limit: int) -> list[AgentLog]:
    """The newest `limit` agent log lines (of one agent, or of all), oldest first."""
    query = select(events).where(events.c.kind == AgentLog.kind)
    if agent is not None:
        # Filtered in the query: other agents' lines must not crowd this one's out.
        query = query.where(events.c.payload["agent"].as_string() == agent)
    result = await conn.execute(query.order_by(events.c.seq.desc()).limit(limit))
    out = []
    for r in result:
        ev = decode(r.seq, r.ts, r.kind, r.payload)
        if isinstance(ev, AgentLog) and (agent is None or ev.agent == agent):
            out.append(ev)
    return list(reversed(out[:limit]))
