"""Queries on queue items: adding, reading in take order, claiming, and state changes.

Every state change is one conditional UPDATE that names the states it may start
from (and, for leases, who must hold them), so a change that lost a race to
another process changes nothing and the caller can say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from launch_tui.core.model import ItemState, QueueItem
from launch_tui.core.store import rows
from launch_tui.core.store.schema import items, queues


async def add(conn: AsyncConnection, *, queue_id: int, job_id: int, version: int,
              config_overrides: dict[str, Any], resource_overrides: dict[str, Any],
              template_values: dict[str, Any], priority: int, now: float) -> int:
    """Insert a pending item; return its number."""
    result = await conn.execute(
        items.insert().values(
            queue_id=queue_id, job_id=job_id, version=version,
            config_overrides=config_overrides, resource_overrides=resource_overrides,
            template_values=template_values, priority=priority, state=ItemState.PENDING,
            created_at=now, updated_at=now,
        )
    )
    return int(result.inserted_primary_key[0])


async def load(conn: AsyncConnection, item_id: int) -> QueueItem | None:
    """One item; a pending one carries its 1-based place in its queue's take order."""
    row = (await conn.execute(rows.item_select().where(items.c.id == item_id))).first()
    if row is None:
        return None
    position = None
    if row.state == ItemState.PENDING:
        ahead = await conn.scalar(
            select(func.count()).where(
                items.c.queue_id == row.queue_id,
                items.c.state == ItemState.PENDING,
                or_(
                    items.c.priority < row.priority,
                    and_(items.c.priority == row.priority, items.c.id < row.id),
                ),
            )
        )
        position = (ahead or 0) + 1
    return rows.to_item(row, position)


async def listing(conn: AsyncConnection, project: str, queue_id: int | None,
                  states: Iterable[ItemState | str] | None, limit: int | None
                  ) -> list[QueueItem]:
    """Items by queue name, then in take order (priority, then first in first out);
    pending ones numbered by their place in their queue."""
    query = rows.scoped(rows.item_select(), project, items.c.queue_id, queue_id)
    if states is not None:
        query = query.where(items.c.state.in_([str(s) for s in states]))
    query = query.order_by(queues.c.name, items.c.priority, items.c.id)
    if limit is not None:
        query = query.limit(limit)
    out: list[QueueItem] = []
    counters: dict[str, int] = {}
    for r in (await conn.execute(query)).all():
        position = None
        if r.state == ItemState.PENDING:
            counters[r.queue_name] = counters.get(r.queue_name, 0) + 1
            position = counters[r.queue_name]
        out.append(rows.to_item(r, position))
    return out


async def claim_next_pending(conn: AsyncConnection, queue_id: int, *, skip_locked: bool
                             ) -> int | None:
    """The item a queue gives out next: the first pending one by (priority, number).

    With `skip_locked` (PostgreSQL) the row stays locked until the transaction ends
    and concurrent claimers pass over it; SQLite needs no lock, as its write
    transactions already run one at a time (BEGIN IMMEDIATE). The caller then
    leases the item with `transition(... allowed_from={pending} ...)`.
    """
    query = (
        select(items.c.id)
        .where(items.c.queue_id == queue_id, items.c.state == ItemState.PENDING)
        .order_by(items.c.priority, items.c.id)
        .limit(1)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    return await conn.scalar(query)


async def leased(conn: AsyncConnection, *, by: str | None = None,
                 expired_before: float | None = None) -> list[QueueItem]:
    """Leased items, of one agent and/or with a lease that ran out before a time."""
    query = rows.item_select().where(items.c.state == ItemState.LEASED)
    if by is not None:
        query = query.where(items.c.leased_by == by)
    if expired_before is not None:
        query = query.where(items.c.lease_expires < expired_before)
    return [rows.to_item(r) for r in (await conn.execute(query)).all()]


async def transition(conn: AsyncConnection, item_id: int, allowed_from: Iterable[ItemState],
                     values: dict[str, Any], *, leased_by: str | None = None,
                     lease_expired_before: float | None = None) -> bool:
    """Set `values` on an item if it is in one of `allowed_from` (and, if given, leased
    by `leased_by`, with a lease that ran out before `lease_expired_before`).
    False when it was not, and nothing changed."""
    query = update(items).where(
        items.c.id == item_id, items.c.state.in_([str(s) for s in allowed_from])
    )
    if leased_by is not None:
        query = query.where(items.c.leased_by == leased_by)
    if lease_expired_before is not None:
        query = query.where(items.c.lease_expires < lease_expired_before)
    return (await conn.execute(query.values(**values))).rowcount > 0


async def renew_lease(conn: AsyncConnection, item_id: int, agent: str, expires: float) -> bool:
    """Extend a lease `agent` holds; False when it holds none on the item."""
    result = await conn.execute(
        update(items)
        .where(items.c.id == item_id, items.c.state == ItemState.LEASED,
               items.c.leased_by == agent)
        .values(lease_expires=expires)
    )
    return result.rowcount > 0
