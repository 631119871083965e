"""Queries on the agents table: one row per agent name, rewritten when it (re)starts,
deleted long after it was last heard of (retention)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Select, bindparam, delete, exists, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from launch_tui.core.model import TERMINAL_RUN_STATES, Agent, AgentFence, AgentStatus
from launch_tui.core.store import rows
from launch_tui.core.store.prepared import Prepared
from launch_tui.core.store.schema import agents, runs

_HEARTBEAT = Prepared(update(agents).where(agents.c.name == bindparam("agent")).values(
    status=bindparam("status"), running=bindparam("running"), heartbeat_at=bindparam("at")))


def find(conn: Connection, name: str, *, lock: bool = False) -> Row[Any] | None:
    """The agent's row; with `lock`, locked until the transaction ends (PostgreSQL:
    two processes starting under one name then take turns; SQLite's writer
    already serialises them)."""
    query = select(agents).where(agents.c.name == name)
    return conn.execute(query.with_for_update() if lock else query).first()


def load(conn: Connection, name: str) -> Agent:
    return rows.to_agent(conn.execute(select(agents).where(agents.c.name == name)).one())


def put(conn: Connection, name: str, values: dict[str, Any], *, exists: bool) -> bool:
    """Write an agent's row: insert it, or replace the one a previous life left.
    False when the row to insert was inserted by another process meanwhile (the
    transaction must then be abandoned: PostgreSQL refuses its further statements)."""
    if exists:
        conn.execute(update(agents).where(agents.c.name == name).values(**values))
        return True
    try:
        conn.execute(agents.insert().values(name=name, **values))
    except IntegrityError:
        return False
    return True


def heartbeat(conn: Connection, name: str, status: AgentStatus, running: int, at: float
              ) -> None:
    _HEARTBEAT.execute(conn, agent=name, status=str(status), running=running, at=at)


def holds(conn: Connection, fence: AgentFence) -> Row[Any] | None:
    """The agent's row if the process `fence` names still holds the name, else None.
    On PostgreSQL the row is share-locked until the transaction ends, so another
    process cannot take the name between this check and the writes it guards."""
    return conn.execute(select(agents).where(
        agents.c.name == fence.name, agents.c.host == fence.host, agents.c.pid == fence.pid,
        agents.c.started_at == fence.started_at,
    ).with_for_update(read=True)).first()


def stale(conn: Connection, before: float) -> list[str]:
    """Agents that did not stop cleanly and have not heartbeaten since `before`."""
    result = conn.execute(select(agents.c.name).where(
        agents.c.heartbeat_at < before, agents.c.status != str(AgentStatus.STOPPED)))
    return [r.name for r in result]


def every(conn: Connection) -> list[Agent]:
    result = conn.execute(select(agents).order_by(agents.c.name))
    return [rows.to_agent(r) for r in result]


def prune_gone(conn: Connection, *, before: float, limit: int) -> tuple[int, bool]:
    """Delete up to `limit` agents that have not heartbeaten since `before` and own no
    unfinished run. Return (deleted, done)."""
    deleted = conn.execute(delete(agents).where(agents.c.name.in_(_gone(before).limit(limit))))
    return deleted.rowcount, deleted.rowcount < limit


def count_gone(conn: Connection, *, before: float) -> int:
    return conn.scalar(select(func.count()).select_from(_gone(before).subquery())) or 0


def _gone(before: float) -> Select[tuple[str]]:
    # An agent that still owns an unfinished run keeps its row: that row is what tells
    # another agent of the queue the run is orphaned and may be taken over.
    unfinished = exists().where(runs.c.agent == agents.c.name,
                                runs.c.state.not_in([str(s) for s in TERMINAL_RUN_STATES]))
    return select(agents.c.name).where(agents.c.heartbeat_at < before, ~unfinished)
