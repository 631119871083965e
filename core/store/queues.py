"""Queries on the queues table (and the pending-item counts a queue snapshot carries)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from launch_tui.core.model import ItemState, Queue
from launch_tui.core.store import rows
from launch_tui.core.store.prepared import Prepared
from launch_tui.core.store.schema import items, queues

_FIND = Prepared(select(queues).where(queues.c.project == bindparam("project"),
                                      queues.c.name == bindparam("name")))


def find(conn: Connection, project: str, name: str) -> Any | None:
    """The queue's row (by the unique (project, name) index), or None."""
    return _FIND.first(conn, project=project, name=name)


def find_many(conn: Connection, project: str, names: Sequence[str]) -> dict[str, Any]:
    """The named queues of a project that exist, by name."""
    found = (find(conn, project, n) for n in dict.fromkeys(names))
    return {r.name: r for r in found if r is not None}


def names(conn: Connection, project: str) -> list[str]:
    return list(conn.scalars(select(queues.c.name).where(queues.c.project == project)).all())


def add(conn: Connection, project: str, name: str, resource: str, config: dict[str, Any],
        now: float) -> bool:
    """Insert a queue; False when the project already has one of that name (the
    caller's transaction is then unusable and must be abandoned)."""
    try:
        conn.execute(
            queues.insert().values(
                project=project, name=name, resource=resource, config=config,
                created_at=now, updated_at=now,
            )
        )
    except IntegrityError:
        return False
    return True


def set_config(conn: Connection, queue_id: int, resource: str, config: dict[str, Any],
               updated_at: float) -> None:
    conn.execute(
        update(queues).where(queues.c.id == queue_id)
        .values(resource=resource, config=config, updated_at=updated_at)
    )


def snapshot(conn: Connection, row: Row[Any]) -> Queue:
    pending = conn.scalar(
        select(func.count()).where(items.c.queue_id == row.id, items.c.state == ItemState.PENDING)
    )
    return rows.to_queue(row, pending or 0)


def in_project(conn: Connection, project: str) -> list[Queue]:
    """A project's queues by name, each with its number of pending items."""
    pending = dict(
        conn.execute(
            select(items.c.queue_id, func.count())
            .where(items.c.state == ItemState.PENDING)
            .group_by(items.c.queue_id)
        ).all()
    )
    result = conn.execute(
        select(queues).where(queues.c.project == project).order_by(queues.c.name)
    )
    return [rows.to_queue(r, pending.get(r.id, 0)) for r in result]


def set_held(conn: Connection, queue_id: int, held_at: float | None, reason: str | None
             ) -> bool:
    """Hold (held_at set) or resume (None) a queue: a conditional UPDATE from the other
    state, so two people holding at once find one of them lost (False)."""
    was_held = queues.c.held_at.is_(None) if held_at is not None else queues.c.held_at.isnot(None)
    return conn.execute(
        update(queues).where(queues.c.id == queue_id, was_held)
        .values(held_at=held_at, hold_reason=reason)
    ).rowcount > 0


def bare_in_project(conn: Connection, project: str) -> list[Queue]:
    """A project's queues without their pending counts (which cost a pass over the
    pending items): for callers that need only config and hold."""
    return [rows.to_queue(r) for r in conn.execute(
        select(queues).where(queues.c.project == project))]
