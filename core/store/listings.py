"""Paged listings of runs and items: each page is a range of an index, read in order.

Runs are listed newest first, by (created_at, id) descending. A page continues
below the last key of the one before, `(created_at, id) < key`, which is a range
of the index that serves the filter (ix_runs_newest; ix_runs_queue_newest for
one queue; ix_runs_state_newest for one state), so the newest 50 of 100,000
runs cost what the newest 50 of 100 do. Several states are several ranges: their
keys are merged and only the page's rows are read whole.

Items still waiting (pending, leased) come first, in take order: queue by queue
in name order, (priority, seq, id) within a queue (ix_items_claim, one range per
queue and state). Items done with (claimed, failed, cancelled) follow, newest
first, by (created_at, id) like runs (ix_items_history). An item key says which
part it is from: ("waiting", queue, priority, seq, id) or ("history", created_at, id).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, Table, or_, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause

from launch_tui.core.model import ItemState, QueueItem, Run, RunState
from launch_tui.core.store import items as items_db
from launch_tui.core.store import rows
from launch_tui.core.store.schema import items, jobs, queues, runs

RunKey = tuple[float, str]  # (created_at, id)
ItemKey = tuple[Any, ...]  # ("waiting", queue, priority, seq, id) | ("history", created_at, id)

WAITING = (ItemState.PENDING, ItemState.LEASED)
_FETCH_CHUNK = 500  # ids per `IN (...)` when a merged page is read whole


def runs_page(conn: Connection, project: str, *, queue_id: int | None,
              states: Iterable[RunState] | None, agent: str | None, since: float | None,
              before: RunKey | None, limit: int | None) -> list[Run]:
    """Runs of a project (or of one of its queues), newest first, created at or after
    `since` and below `before`; at most `limit`."""

    def where(query: Select[Any]) -> Select[Any]:
        if queue_id is not None:
            query = query.where(runs.c.queue_id == queue_id)  # scope() checked the project
        else:
            query = query.where(queues.c.project == project)
        if agent is not None:
            query = query.where(runs.c.agent == agent)
        return _range(query, runs, since, before)

    found = _newest_first(conn, runs, where, _parts(states), limit)
    return [rows.to_run(r) for r in found]


def items_page(conn: Connection, project: str, *, queue_id: int | None,
               states: Iterable[ItemState | str] | None, since: float | None,
               after: ItemKey | None, limit: int | None) -> list[QueueItem]:
    """Items of a project (or of one of its queues) in the given states, created at or
    after `since`: the waiting ones in take order, then the others newest first;
    continuing after the item key `after`, at most `limit`. Pending items carry their
    place in their queue."""
    wanted = set(ItemState) if states is None else {ItemState(s) for s in states}
    waiting = [s for s in WAITING if s in wanted]
    history = [s for s in ItemState if s in wanted and s not in WAITING]
    out: list[QueueItem] = []
    before = None
    if after is not None and after[0] == "history":
        before = (after[1], after[2])
    elif waiting:
        out = _waiting(conn, project, queue_id, waiting, since, after, limit)
    left = None if limit is None else limit - len(out)
    if history and left != 0:

        def where(query: Select[Any]) -> Select[Any]:
            if queue_id is not None:
                query = query.where(items.c.queue_id == queue_id)
            else:
                query = query.where(queues.c.project == project)
            return _range(query, items, since, before)

        found = _newest_first(conn, items, where, [str(s) for s in history], left)
        out.extend(rows.to_item(r) for r in found)
    return out


def _parts(states: Iterable[RunState] | None) -> list[str | None]:
    return [None] if states is None else sorted({str(s) for s in states})


def _range(query: Select[Any], table: Table, since: float | None,
           before: tuple[float, Any] | None) -> Select[Any]:
    if since is not None:
        query = query.where(table.c.created_at >= since)
    if before is not None:
        # A row value: SQLite and PostgreSQL read it as one range of the index.
        query = query.where(tuple_(table.c.created_at, table.c.id) < tuple_(*before))
    return query


def _listed(table: Table, *columns: Any) -> Select[Any]:
    """A select of runs or items joined to their queue and job (by default with the
    names `rows.to_run` and `rows.to_item` read)."""
    columns = columns or (table, queues.c.name.label("queue_name"),
                          queues.c.project.label("project"), jobs.c.name.label("job_name"))
    # `+ 0`: the join must not go through an index on the listed table's queue_id, or
    # SQLite's planner starts from the project's queues and sorts every one of their
    # rows (USE TEMP B-TREE) instead of reading the newest-first index in order.
    joined: FromClause = table.join(queues, table.c.queue_id + 0 == queues.c.id)
    return select(*columns).select_from(joined.join(jobs, table.c.job_id == jobs.c.id))


def _newest_first(conn: Connection, table: Table, where: Any,
                  states: Sequence[str | None], limit: int | None) -> list[Any]:
    """Rows of `table` that `where` keeps, in any of `states` (None: any state),
    newest first by (created_at, id). One state is one index range, read as it comes.
    Several are a range each of their (created_at, id) keys, merged in Python, and
    then the page's rows by id: an `IN` on the state would make the database sort
    every match."""
    newest = (table.c.created_at.desc(), table.c.id.desc())
    if len(states) == 1 or limit is None:
        query = where(_listed(table)).order_by(*newest)
        if states != [None]:
            query = query.where(or_(*(table.c.state == s for s in states)))
        if limit is not None:
            query = query.limit(limit)
        return list(conn.execute(query).all())
    keys = where(_listed(table, table.c.created_at, table.c.id))
    ranges = [conn.execute(keys.where(table.c.state == s).order_by(*newest).limit(limit)).all()
              for s in states]
    ids = [k.id for k in itertools.islice(heapq.merge(*ranges, reverse=True), limit)]
    by_id: dict[Any, Any] = {}
    for start in range(0, len(ids), _FETCH_CHUNK):
        chunk = ids[start:start + _FETCH_CHUNK]
        by_id.update((r.id, r) for r in conn.execute(_listed(table).where(
            table.c.id.in_(chunk))))
    return [by_id[i] for i in ids]


def _waiting(conn: Connection, project: str, queue_id: int | None, states: list[ItemState],
             since: float | None, after: ItemKey | None, limit: int | None
             ) -> list[QueueItem]:
    """Waiting items queue by queue (names in code-point order, as Python compares
    them, so the key's queue compares alike on every database), each queue's from
    ix_items_claim ranges in (priority, seq, id) order."""
    scope = select(queues.c.id, queues.c.name)
    scope = (scope.where(queues.c.id == queue_id) if queue_id is not None
             else scope.where(queues.c.project == project))
    out: list[QueueItem] = []
    for qid, name in sorted(conn.execute(scope).all(), key=lambda q: q.name):
        key = None
        if after is not None:
            if name < after[1]:
                continue
            if name == after[1]:
                key = (after[2], after[3], after[4])
        left = None if limit is None else limit - len(out)
        if left == 0:
            break
        ranges = []
        for state in states:
            query = rows.item_select().where(items.c.queue_id == qid,
                                             items.c.state == str(state))
            if since is not None:
                query = query.where(items.c.created_at >= since)
            if key is not None:
                query = query.where(tuple_(*items_db.TAKE_ORDER) > tuple_(*key))
            query = query.order_by(*items_db.TAKE_ORDER)
            ranges.append(conn.execute(query if left is None else query.limit(left)).all())
        place = None
        for r in itertools.islice(heapq.merge(*ranges, key=lambda r: (r.priority, r.seq, r.id)),
                                  left):
            pos = None
            if r.state == ItemState.PENDING:
                # The place is the queue's: counted where a page starts inside a
                # queue, and for each item when `since` left older ones out between.
                place = (place + 1 if place is not None and since is None
                         else items_db.position(conn, qid, r.priority, r.seq, r.id))
                pos = place
            out.append(rows.to_item(r, pos))
    return out
