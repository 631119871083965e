"""Queries on queue items: adding, reading in take order, claiming, and state changes.

Every state change is one conditional UPDATE that names the states it may start
from (and, for leases, who must hold them), so a change that lost a race to
another process changes nothing and the caller can say so.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import bindparam, func, literal_column, or_, select, tuple_, update
from sqlalchemy.engine import Connection

from launch_tui.core.model import ItemState, QueueItem
from launch_tui.core.store import rows
from launch_tui.core.store.prepared import Prepared
from launch_tui.core.store.schema import items, queues

# States in the hot-path statements are SQL literals, not parameters: PostgreSQL plans
# a prepared statement with parameters generically, and a generic plan cannot tell
# the few pending or leased items from the 300,000 claimed ones (it scans), so it
# would plan every claim afresh instead.
_PENDING = literal_column(f"'{ItemState.PENDING}'")
_LEASED = literal_column(f"'{ItemState.LEASED}'")

_ADD = Prepared(items.insert().values(
    queue_id=bindparam("queue_id"), job_id=bindparam("job_id"), version=bindparam("version"),
    config_overrides=bindparam("config_overrides"),
    resource_overrides=bindparam("resource_overrides"),
    template_values=bindparam("template_values"), priority=bindparam("priority"),
    state=str(ItemState.PENDING), created_at=bindparam("now"), updated_at=bindparam("now"),
    seq=bindparam("now"),
).returning(items.c.id))

# The take order: priority, then place (seq), then number. A row value: SQLite and
# PostgreSQL read it as one range of ix_items_claim.
TAKE_ORDER = (items.c.priority, items.c.seq, items.c.id)

_AHEAD = (
    items.c.queue_id == bindparam("queue_id"),
    items.c.state == _PENDING,
    tuple_(*TAKE_ORDER) < tuple_(bindparam("priority"), bindparam("seq"), bindparam("item_id")),
)
_POSITION = Prepared(select(func.count()).where(*_AHEAD))
# Counting reads every item ahead: an enqueue counts only up to this many, so a sweep
# enqueued onto a long queue does not cost a count of the whole backlog per item
# (its writes would grow with the square of the sweep) while holding the writer.
# At 1,000, items enqueued onto a backlog spent a seventh of the writer's time
# counting (benchmarks/claim_throughput.py, 1 claimer); `placed` counts the rest
# on a reader, for the one enqueue a person is shown.
NEAR = 100
_POSITION_NEAR = Prepared(select(func.count()).select_from(
    select(literal_column("1")).where(*_AHEAD).limit(NEAR).subquery()))

# ix_items_claim (queue_id, state, priority, seq, id) answers this without sorting.
_NEXT = (
    select(items)
    .where(items.c.queue_id == bindparam("queue_id"), items.c.state == _PENDING)
    .order_by(*TAKE_ORDER)
    .limit(1)
)
_NEXT_PENDING = Prepared(_NEXT)
# PostgreSQL: the row stays locked until the transaction ends and concurrent claimers
# pass over it. SQLite needs no lock, as its write transactions already run one at a
# time (BEGIN IMMEDIATE).
_NEXT_PENDING_LOCKED = Prepared(_NEXT.with_for_update(skip_locked=True, of=items))

# The same, for a queue named by project and name, with the queue's columns (q_*)
# beside the item's: one statement for claim_run's common case. The plan: the queue
# by its unique index, then ix_items_claim, in order, no sort. The queue's id is a
# scalar subquery, not only the join: PostgreSQL then knows it as one value before
# it reads items and walks the index in order; joined alone, it read every pending
# item of the queue and sorted them (70 ms with 50,000 waiting).
# A held queue has no id here, so nothing of it is taken.
_QUEUE_ID = (select(queues.c.id)
             .where(queues.c.project == bindparam("project"),
                    queues.c.name == bindparam("queue"), queues.c.held_at.is_(None))
             .scalar_subquery())
_NEXT_BY_NAME = (
    select(items, queues.c.resource.label("q_resource"), queues.c.config.label("q_config"),
           queues.c.created_at.label("q_created_at"),
           queues.c.updated_at.label("q_updated_at"))
    .select_from(items.join(queues, items.c.queue_id == queues.c.id))
    .where(items.c.queue_id == _QUEUE_ID, items.c.state == _PENDING)
    .order_by(*TAKE_ORDER)
    .limit(1)
)
_NEXT_PENDING_BY_NAME = Prepared(_NEXT_BY_NAME)
_NEXT_PENDING_BY_NAME_LOCKED = Prepared(_NEXT_BY_NAME.with_for_update(skip_locked=True,
                                                                      of=items))

# ix_items_lease (state, lease_expires): visits only leases that ran out.
_ANY_EXPIRED = Prepared(select(items.c.id).where(
    items.c.state == _LEASED, items.c.lease_expires < bindparam("now")).limit(1))

_RENEW = Prepared(update(items).where(
    items.c.id == bindparam("item_id"), items.c.state == _LEASED,
    items.c.leased_by == bindparam("agent"),
).values(lease_expires=bindparam("expires")))

# Conditional updates by shape (columns set, states allowed, extra conditions): a
# handful of shapes, each prepared once.
_TRANSITIONS: dict[tuple[Any, ...], Prepared] = {}


def add(conn: Connection, *, queue_id: int, job_id: int, version: int,
        config_overrides: dict[str, Any], resource_overrides: dict[str, Any],
        template_values: dict[str, Any], priority: int, now: float) -> int:
    """Insert a pending item; return its number."""
    return int(_ADD.scalar(
        conn, queue_id=queue_id, job_id=job_id, version=version,
        config_overrides=config_overrides, resource_overrides=resource_overrides,
        template_values=template_values, priority=priority, now=now,
    ))


def retry(conn: Connection, item_id: int, max_retries: int, now: float
          ) -> tuple[int, int, int] | None:
    """Enqueue a copy of an item for another attempt, if it has retries left:
    (new item number, its attempt, its priority rank), else None."""
    row = conn.execute(select(items).where(items.c.id == item_id)).first()
    if row is None or row.attempt >= max_retries:
        return None
    new_id = add(conn, queue_id=row.queue_id, job_id=row.job_id, version=row.version,
                 config_overrides=row.config_overrides,
                 resource_overrides=row.resource_overrides,
                 template_values=row.template_values, priority=row.priority, now=now)
    conn.execute(update(items).where(items.c.id == new_id).values(attempt=row.attempt + 1))
    return new_id, row.attempt + 1, row.priority


def position(conn: Connection, queue_id: int, priority: int, seq: float, item_id: int) -> int:
    """The 1-based place of a pending item in its queue's take order."""
    ahead = _POSITION.scalar(conn, queue_id=queue_id, priority=priority, seq=seq,
                             item_id=item_id)
    return (ahead or 0) + 1


def near_position(conn: Connection, queue_id: int, priority: int, seq: float, item_id: int
                  ) -> int | None:
    """`position`, or None if NEAR or more items are ahead (`load` counts them all)."""
    ahead = _POSITION_NEAR.scalar(conn, queue_id=queue_id, priority=priority, seq=seq,
                                  item_id=item_id) or 0
    return None if ahead >= NEAR else ahead + 1


def load(conn: Connection, item_id: int) -> QueueItem | None:
    """One item; a pending one carries its 1-based place in its queue's take order."""
    row = conn.execute(rows.item_select().where(items.c.id == item_id)).first()
    if row is None:
        return None
    place = None
    if row.state == ItemState.PENDING:
        place = position(conn, row.queue_id, row.priority, row.seq, row.id)
    return rows.to_item(row, place)


def claim_next_pending(conn: Connection, queue_id: int, *, skip_locked: bool) -> int | None:
    """The number of the item a queue gives out next: the first pending one by
    (priority, number), locked on PostgreSQL (see `next_pending`). The caller then
    leases it with `transition(... allowed_from={pending} ...)`."""
    row = next_pending(conn, queue_id, skip_locked=skip_locked)
    return None if row is None else int(row.id)


def next_pending(conn: Connection, queue_id: int, *, skip_locked: bool) -> Any | None:
    """The items row a queue gives out next (with `skip_locked`: locked until the
    transaction ends, and passed over by concurrent claimers)."""
    query = _NEXT_PENDING_LOCKED if skip_locked else _NEXT_PENDING
    return query.first(conn, queue_id=queue_id)


def next_pending_in(conn: Connection, project: str, queue: str, *, skip_locked: bool
                    ) -> Any | None:
    """Like `next_pending`, for a queue given by name; the row also carries the queue's
    resource, config, created_at and updated_at (as q_resource, q_config, ...)."""
    query = _NEXT_PENDING_BY_NAME_LOCKED if skip_locked else _NEXT_PENDING_BY_NAME
    return query.first(conn, project=project, queue=queue)


def any_lease_expired(conn: Connection, now: float) -> bool:
    """Whether some lease ran out before `now` (one index probe)."""
    return _ANY_EXPIRED.first(conn, now=now) is not None


def leased(conn: Connection, *, by: str | None = None, expired_before: float | None = None
           ) -> list[QueueItem]:
    """Leased items, of one agent and/or with a lease that ran out before a time."""
    query = rows.item_select().where(items.c.state == ItemState.LEASED)
    if by is not None:
        query = query.where(items.c.leased_by == by)
    if expired_before is not None:
        # ix_items_lease (state, lease_expires): only expired leases are visited.
        query = query.where(items.c.lease_expires < expired_before)
    return [rows.to_item(r) for r in conn.execute(query).all()]


def transition(conn: Connection, item_id: int, allowed_from: Iterable[ItemState],
               values: dict[str, Any], *, leased_by: str | None = None,
               lease_expired_before: float | None = None) -> bool:
    """Set `values` on an item if it is in one of `allowed_from` (and, if given, leased
    by `leased_by`, with a lease that ran out before `lease_expired_before`).
    False when it was not, and nothing changed."""
    states = tuple(sorted(str(s) for s in allowed_from))
    shape = (tuple(sorted(values)), states, leased_by is not None,
             lease_expired_before is not None)
    query = _TRANSITIONS.get(shape)
    if query is None:
        stmt = update(items).where(
            items.c.id == bindparam("w_id"), or_(*(items.c.state == s for s in states)))
        if leased_by is not None:
            stmt = stmt.where(items.c.leased_by == bindparam("w_leased_by"))
        if lease_expired_before is not None:
            stmt = stmt.where(items.c.lease_expires < bindparam("w_expired_before"))
        stmt = stmt.values({k: bindparam(f"v_{k}", type_=items.c[k].type) for k in values})
        query = _TRANSITIONS[shape] = Prepared(stmt)
    return query.execute(
        conn, w_id=item_id, w_leased_by=leased_by, w_expired_before=lease_expired_before,
        **{f"v_{k}": v for k, v in values.items()},
    ) > 0


def renew_lease(conn: Connection, item_id: int, agent: str, expires: float) -> bool:
    """Extend a lease `agent` holds; False when it holds none on the item."""
    return _RENEW.execute(conn, item_id=item_id, agent=agent, expires=expires) > 0


def refs(conn: Connection, item_id: int) -> tuple[int, int]:
    """The ids of an item's queue and job (a QueueItem names them, not their ids)."""
    row = conn.execute(select(items.c.queue_id, items.c.job_id)
                       .where(items.c.id == item_id)).one()
    return int(row.queue_id), int(row.job_id)


def edge_pending(conn: Connection, queue_id: int, *, last: bool) -> Any | None:
    """The first (or last) pending item row of a queue in take order."""
    order = [c.desc() for c in TAKE_ORDER] if last else list(TAKE_ORDER)
    return conn.execute(select(items).where(items.c.queue_id == queue_id,
                                            items.c.state == _PENDING)
                        .order_by(*order).limit(1)).first()


def move_pending(conn: Connection, item_id: int, queue_id: int, values: dict[str, Any]) -> bool:
    """Set `values` (priority, seq, queue_id, …) on an item that is still pending in the
    queue `queue_id`: one conditional UPDATE, so an agent that took it meanwhile wins
    and nothing changes (False). On PostgreSQL a claim holds the row locked; this
    waits for it and then finds the item no longer pending."""
    return conn.execute(
        update(items).where(items.c.id == item_id, items.c.state == _PENDING,
                            items.c.queue_id == queue_id).values(values)
    ).rowcount > 0
