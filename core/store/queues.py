"""Queries on the queues table (and the pending-item counts a queue snapshot carries)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from launch_tui.core.model import ItemState, Queue
from launch_tui.core.store import rows
from launch_tui.core.store.schema import items, queues


async def find(conn: AsyncConnection, project: str, name: str) -> Row[Any] | None:
    return (
        await conn.execute(
            select(queues).where(queues.c.project == project, queues.c.name == name)
        )
    ).first()


async def names(conn: AsyncConnection, project: str) -> list[str]:
    return list(
        (await conn.scalars(select(queues.c.name).where(queues.c.project == project))).all()
    )


async def add(conn: AsyncConnection, project: str, name: str, resource: str,
              config: dict[str, Any], now: float) -> bool:
    """Insert a queue; False when the project already has one of that name (the
    caller's transaction is then unusable and must be abandoned)."""
    try:
        await conn.execute(
            queues.insert().values(
                project=project, name=name, resource=resource, config=config,
                created_at=now, updated_at=now,
            )
        )
    except IntegrityError:
        return False
    return True


async def set_config(conn: AsyncConnection, queue_id: int, resource: str,
                     config: dict[str, Any], updated_at: float) -> None:
    await conn.execute(
        update(queues).where(queues.c.id == queue_id)
        .values(resource=resource, config=config, updated_at=updated_at)
    )


async def snapshot(conn: AsyncConnection, row: Row[Any]) -> Queue:
    pending = await conn.scalar(
        select(func.count()).where(items.c.queue_id == row.id, items.c.state == ItemState.PENDING)
    )
    return rows.to_queue(row, pending or 0)


async def in_project(conn: AsyncConnection, project: str) -> list[Queue]:
    """A project's queues by name, each with its number of pending items."""
    pending = dict(
        (
            await conn.execute(
                select(items.c.queue_id, func.count())
                .where(items.c.state == ItemState.PENDING)
                .group_by(items.c.queue_id)
            )
        ).all()
    )
    result = await conn.execute(
        select(queues).where(queues.c.project == project).order_by(queues.c.name)
    )
    return [rows.to_queue(r, pending.get(r.id, 0)) for r in result]
