"""Queries on the agents table: one row per agent name, rewritten when it (re)starts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.engine import Connection

from launch_tui.core.model import Agent, AgentFence, AgentStatus
from launch_tui.core.store import rows
from launch_tui.core.store.prepared import Prepared
from launch_tui.core.store.schema import agents

_HEARTBEAT = Prepared(update(agents).where(agents.c.name == bindparam("agent")).values(
    status=bindparam("status"), running=bindparam("running"), heartbeat_at=bindparam("at")))


def find(conn: Connection, name: str) -> Row[Any] | None:
    return conn.execute(select(agents).where(agents.c.name == name)).first()


def load(conn: Connection, name: str) -> Agent:
    return rows.to_agent(conn.execute(select(agents).where(agents.c.name == name)).one())


def put(conn: Connection, name: str, values: dict[str, Any], *, exists: bool) -> None:
    """Write an agent's row: insert it, or replace the one a previous life left."""
    if exists:
        conn.execute(update(agents).where(agents.c.name == name).values(**values))
    else:
        conn.execute(agents.insert().values(name=name, **values))


def heartbeat(conn: Connection, name: str, status: AgentStatus, running: int, at: float
              ) -> None:
    _HEARTBEAT.execute(conn, agent=name, status=str(status), running=running, at=at)


def holds(conn: Connection, fence: AgentFence) -> Row[Any] | None:
    """The agent's row if the process `fence` names still holds the name, else None."""
    return conn.execute(select(agents).where(
        agents.c.name == fence.name, agents.c.host == fence.host, agents.c.pid == fence.pid,
        agents.c.started_at == fence.started_at,
    )).first()


def stale(conn: Connection, before: float) -> list[str]:
    """Agents that did not stop cleanly and have not heartbeaten since `before`."""
    result = conn.execute(select(agents.c.name).where(
        agents.c.heartbeat_at < before, agents.c.status != str(AgentStatus.STOPPED)))
    return [r.name for r in result]


def every(conn: Connection) -> list[Agent]:
    result = conn.execute(select(agents).order_by(agents.c.name))
    return [rows.to_agent(r) for r in result]
