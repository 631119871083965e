"""Queries on the agents table: one row per agent name, rewritten when it (re)starts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from launch_tui.core.model import Agent, AgentStatus
from launch_tui.core.store import rows
from launch_tui.core.store.schema import agents


async def find(conn: AsyncConnection, name: str) -> Row[Any] | None:
    return (await conn.execute(select(agents).where(agents.c.name == name))).first()


async def load(conn: AsyncConnection, name: str) -> Agent:
    return rows.to_agent((await conn.execute(select(agents).where(agents.c.name == name))).one())


async def put(conn: AsyncConnection, name: str, values: dict[str, Any], *, exists: bool
              ) -> None:
    """Write an agent's row: insert it, or replace the one a previous life left."""
    if exists:
        await conn.execute(update(agents).where(agents.c.name == name).values(**values))
    else:
        await conn.execute(agents.insert().values(name=name, **values))


async def heartbeat(conn: AsyncConnection, name: str, status: AgentStatus, running: int,
                    at: float) -> None:
    await conn.execute(
        update(agents).where(agents.c.name == name)
        .values(status=status, running=running, heartbeat_at=at)
    )


async def every(conn: AsyncConnection) -> list[Agent]:
    result = await conn.execute(select(agents).order_by(agents.c.name))
    return [rows.to_agent(r) for r in result]
