"""Queries on runs: creating one for a claimed item, reading, and state changes.

A state change is one conditional UPDATE naming the states the run may be in,
so one that lost a race changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from launch_tui.core.model import TERMINAL_RUN_STATES, Run, RunState
from launch_tui.core.store import rows
from launch_tui.core.store.schema import runs


async def add(conn: AsyncConnection, *, run_id: str, item_id: int, queue_id: int, job_id: int,
              version: int, agent: str, spec: dict[str, Any], timestamps: dict[str, float],
              now: float) -> None:
    """Insert a run in state `queued`."""
    await conn.execute(
        runs.insert().values(
            id=run_id, item_id=item_id, queue_id=queue_id, job_id=job_id, version=version,
            agent=agent, state=RunState.QUEUED, spec=spec, timestamps=timestamps,
            created_at=now, updated_at=now,
        )
    )


async def load(conn: AsyncConnection, run_id: str) -> Run | None:
    row = (await conn.execute(rows.run_select().where(runs.c.id == run_id))).first()
    return None if row is None else rows.to_run(row)


async def listing(conn: AsyncConnection, project: str, queue_id: int | None,
                  states: Iterable[RunState] | None, agent: str | None, limit: int | None
                  ) -> list[Run]:
    """Newest first."""
    query = rows.scoped(rows.run_select(), project, runs.c.queue_id, queue_id)
    if states is not None:
        query = query.where(runs.c.state.in_([str(s) for s in states]))
    if agent is not None:
        query = query.where(runs.c.agent == agent)
    query = query.order_by(runs.c.created_at.desc(), runs.c.id)
    if limit is not None:
        query = query.limit(limit)
    return [rows.to_run(r) for r in (await conn.execute(query)).all()]


async def unfinished_of(conn: AsyncConnection, agent: str) -> list[Run]:
    """An agent's runs that have not reached a terminal state, oldest first."""
    query = rows.run_select().where(
        runs.c.agent == agent,
        runs.c.state.not_in([str(s) for s in TERMINAL_RUN_STATES]),
    ).order_by(runs.c.created_at)
    return [rows.to_run(r) for r in (await conn.execute(query)).all()]


async def transition(conn: AsyncConnection, run_id: str, allowed_from: Iterable[RunState],
                     values: dict[str, Any]) -> bool:
    """Set `values` on a run if its state is one of `allowed_from`; False when it was
    not (or there is no such run), and nothing changed."""
    result = await conn.execute(
        update(runs)
        .where(runs.c.id == run_id, runs.c.state.in_([str(s) for s in allowed_from]))
        .values(**values)
    )
    return result.rowcount > 0


async def set_details(conn: AsyncConnection, run_id: str, values: dict[str, Any]) -> bool:
    """Set columns that are not the state; False when there is no such run."""
    result = await conn.execute(update(runs).where(runs.c.id == run_id).values(**values))
    return result.rowcount > 0
