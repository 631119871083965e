"""Queries on the events table: appending, tailing, and reading agents' log lines back."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from launch_tui.core.events import AgentLog, Event, decode
from launch_tui.core.store.prepared import Prepared
from launch_tui.core.store.schema import events

_APPEND = Prepared(events.insert().values(ts=bindparam("ts"), kind=bindparam("kind"),
                                          payload=bindparam("payload")))


def append(conn: Connection, evs: Sequence[tuple[float, Event]]) -> None:
    """Insert (time, event) pairs, in order."""
    if evs:
        _APPEND.executemany(conn, [{"ts": ts, "kind": e.kind, "payload": e.payload()}
                                   for ts, e in evs])


def last_seq(conn: Connection) -> int:
    return conn.scalar(select(func.max(events.c.seq))) or 0


def after(conn: Connection, seq: int, limit: int) -> list[Event]:
    """Up to `limit` events with a sequence number above `seq`, oldest first."""
    result = conn.execute(
        select(events).where(events.c.seq > seq).order_by(events.c.seq).limit(limit)
    )
    out = []
    for r in result:
        ev = decode(r.seq, r.ts, r.kind, r.payload)
        if ev is not None:
            out.append(ev)
    return out


def agent_logs(conn: Connection, agent: str | None, limit: int) -> list[AgentLog]:
    """The newest `limit` agent log lines (of one agent, or of all), oldest first."""
    query = select(events).where(events.c.kind == AgentLog.kind)
    if agent is not None:
        # Filtered in the query: other agents' lines must not crowd this one's out.
        query = query.where(events.c.payload["agent"].as_string() == agent)
    result = conn.execute(query.order_by(events.c.seq.desc()).limit(limit))
    out = []
    for r in result:
        ev = decode(r.seq, r.ts, r.kind, r.payload)
        if isinstance(ev, AgentLog) and (agent is None or ev.agent == agent):
            out.append(ev)
    return list(reversed(out[:limit]))
