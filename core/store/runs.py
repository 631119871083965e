"""Queries on runs: creating one for a claimed item, reading, and state changes.

A state change is one conditional UPDATE naming the states the run may be in,
so one that lost a race changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.engine import Connection

from launch_tui.core.model import TERMINAL_RUN_STATES, Run, RunState
from launch_tui.core.store import rows
from launch_tui.core.store.prepared import Prepared
from launch_tui.core.store.schema import jobs, queues, runs

_ADD = Prepared(runs.insert().values(
    id=bindparam("run_id"), item_id=bindparam("item_id"), queue_id=bindparam("queue_id"),
    job_id=bindparam("job_id"), version=bindparam("version"), agent=bindparam("agent"),
    state=str(RunState.QUEUED), spec=bindparam("spec"), timestamps=bindparam("timestamps"),
    created_at=bindparam("now"), updated_at=bindparam("now"),
))
_LOAD = Prepared(rows.run_select().where(runs.c.id == bindparam("run_id")))
_HEAD = Prepared(
    select(runs.c.id, runs.c.item_id, runs.c.state, runs.c.agent, runs.c.timestamps,
           queues.c.project,
           queues.c.name.label("queue"), jobs.c.name.label("job"))
    .select_from(runs.join(queues, runs.c.queue_id == queues.c.id)
                 .join(jobs, runs.c.job_id == jobs.c.id))
    .where(runs.c.id == bindparam("run_id"))
)

# Conditional updates by shape (columns set, states allowed), each prepared once.
_TRANSITIONS: dict[tuple[Any, ...], Prepared] = {}


def add(conn: Connection, *, run_id: str, item_id: int, queue_id: int, job_id: int,
        version: int, agent: str, spec: dict[str, Any], timestamps: dict[str, float],
        now: float) -> None:
    """Insert a run in state `queued`."""
    _ADD.execute(conn, run_id=run_id, item_id=item_id, queue_id=queue_id, job_id=job_id,
                 version=version, agent=agent, spec=spec, timestamps=timestamps, now=now)


def load(conn: Connection, run_id: str) -> Run | None:
    row = _LOAD.first(conn, run_id=run_id)
    return None if row is None else rows.to_run(row)


def head(conn: Connection, run_id: str) -> Any | None:
    """id, item_id, state, timestamps, project, queue and job of a run (None: no such
    run): what a state change needs, without decoding the spec."""
    return _HEAD.first(conn, run_id=run_id)


def orphaned(conn: Connection, project: str, queue_names: Sequence[str],
             agents_gone: Sequence[str]) -> list[Run]:
    """Unfinished runs of the given queues whose agents are gone, oldest first."""
    if not agents_gone:
        return []
    query = rows.run_select().where(
        queues.c.project == project,
        queues.c.name.in_(list(queue_names)),
        runs.c.agent.in_(list(agents_gone)),
        runs.c.state.not_in([str(s) for s in TERMINAL_RUN_STATES]),
    ).order_by(runs.c.created_at)
    return [rows.to_run(r) for r in conn.execute(query).all()]


def owned_by_others(conn: Connection, run_ids: Iterable[str], agent: str) -> set[str]:
    """Those of `run_ids` that another agent has now (one was taken over)."""
    ids = sorted(set(run_ids))
    if not ids:
        return set()
    query = select(runs.c.id).where(runs.c.id.in_(ids), runs.c.agent != agent)
    return set(conn.execute(query).scalars())


def reassign(conn: Connection, run_id: str, old: str, new: str, now: float) -> bool:
    """Give a run to another agent, unless a third one took it first."""
    result = conn.execute(update(runs).where(runs.c.id == run_id, runs.c.agent == old)
                          .values(agent=new, updated_at=now))
    return result.rowcount == 1


def unfinished_of(conn: Connection, agent: str) -> list[Run]:
    """An agent's runs that have not reached a terminal state, oldest first."""
    query = rows.run_select().where(
        runs.c.agent == agent,
        runs.c.state.not_in([str(s) for s in TERMINAL_RUN_STATES]),
    ).order_by(runs.c.created_at)
    return [rows.to_run(r) for r in conn.execute(query).all()]


def transition_returning(conn: Connection, run_id: str, allowed_from: Iterable[RunState],
                         values: dict[str, Any], owner: str | None = None) -> Any | None:
    """Set `values` on a run if its state is one of `allowed_from` (and, given an
    `owner`, if that agent still has it), and return its row as the update left it;
    None when it was not (or there is no such run), and nothing changed. Returning
    the row spares the caller a second read."""
    states = tuple(sorted(str(s) for s in allowed_from))
    shape = (tuple(sorted(values)), states, owner is not None)
    query = _TRANSITIONS.get(shape)
    if query is None:
        where = [runs.c.id == bindparam("w_id"), or_(*(runs.c.state == s for s in states))]
        if owner is not None:
            where.append(runs.c.agent == bindparam("w_agent"))
        query = _TRANSITIONS[shape] = Prepared(
            update(runs)
            .where(*where)
            .values({k: bindparam(f"v_{k}", type_=runs.c[k].type) for k in values})
            .returning(*runs.c)
        )
    params = {f"v_{k}": v for k, v in values.items()}
    if owner is not None:
        params["w_agent"] = owner
    return query.first(conn, w_id=run_id, **params)


def set_details(conn: Connection, run_id: str, values: dict[str, Any],
                owner: str | None = None) -> bool:
    """Set columns that are not the state (given an `owner`, only while that agent
    has the run); False when there is no such run or it is another agent's."""
    query = update(runs).where(runs.c.id == run_id)
    if owner is not None:
        query = query.where(runs.c.agent == owner)
    return conn.execute(query.values(**values)).rowcount > 0


def agent_of(conn: Connection, run_id: str) -> tuple[bool, str | None]:
    """Whether the run exists, and the agent that has it."""
    row = conn.execute(select(runs.c.agent).where(runs.c.id == run_id)).first()
    return (row is not None, row.agent if row is not None else None)


def load_many(conn: Connection, run_ids: Sequence[str], chunk: int = 500) -> dict[str, Run]:
    """The named runs that exist, by id (an `IN` per `chunk` ids)."""
    found: dict[str, Run] = {}
    ids = list(dict.fromkeys(run_ids))
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        for row in conn.execute(rows.run_select().where(runs.c.id.in_(part))):
            found[row.id] = rows.to_run(row)
    return found
