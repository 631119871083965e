"""Queries on the events table: appending, tailing, reading agents' log lines back, and
deleting the oldest events (retention)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.engine import Connection

from launch_tui.core.events import AgentLog, Event, decode
from launch_tui.core.store.prepared import Prepared
from launch_tui.core.store.schema import events

_APPEND = Prepared(events.insert().values(ts=bindparam("ts"), kind=bindparam("kind"),
                                          payload=bindparam("payload")))

# PostgreSQL: the channel writers notify after committing events, and the advisory
# lock that puts event sequence numbers in commit order (see `append`).
CHANNEL = "launch_tui_events"
_APPEND_LOCK = 0x6C61756E63680001  # "launch" + 1: any constant no other lock uses


def append(conn: Connection, evs: Sequence[tuple[float, Event]]) -> None:
    """Insert (time, event) pairs, in order, as the last statements of a transaction.

    Subscribers read "every event numbered above the last one I saw", which is only
    safe if no event can commit with a lower number than one already visible. SQLite
    has one writer at a time, so that holds. On PostgreSQL, sequence values are
    handed out before commit, so two transactions can commit out of order; the
    transaction-scoped advisory lock taken here, held until this transaction ends,
    makes event-writing transactions take their numbers and commit one at a time.
    The caller commits right after, so the lock is held for a moment only. With it,
    a NOTIFY, which PostgreSQL delivers to listeners when (and only if) it commits.
    """
    if not evs:
        return
    if conn.dialect.name == "postgresql":
        # One round trip for both: the notification is queued now and sent at commit.
        conn.exec_driver_sql(
            f"SELECT pg_advisory_xact_lock({_APPEND_LOCK}), pg_notify('{CHANNEL}', '')")
    _APPEND.executemany(conn, [{"ts": ts, "kind": e.kind, "payload": e.payload()}
                               for ts, e in evs])


def db_now(conn: Connection) -> float:
    """The database's time (PostgreSQL: the start of this transaction), in epoch seconds."""
    return float(conn.exec_driver_sql("SELECT extract(epoch FROM now())::float8").scalar_one())


def last_seq(conn: Connection) -> int:
    return conn.scalar(select(func.max(events.c.seq))) or 0


def after(conn: Connection, seq: int, limit: int) -> list[Event]:
    """Up to `limit` events with a sequence number above `seq`, oldest first."""
    result = conn.execute(
        select(events).where(events.c.seq > seq).order_by(events.c.seq).limit(limit)
    )
    out = []
    for r in result:
        ev = decode(r.seq, r.ts, r.kind, r.payload)
        if ev is not None:
            out.append(ev)
    return out


def agent_logs(conn: Connection, agent: str | None, limit: int) -> list[AgentLog]:
    """The newest `limit` agent log lines (of one agent, or of all), oldest first."""
    query = select(events).where(events.c.kind == AgentLog.kind)
    if agent is not None:
        # Filtered in the query: other agents' lines must not crowd this one's out.
        query = query.where(events.c.payload["agent"].as_string() == agent)
    result = conn.execute(query.order_by(events.c.seq.desc()).limit(limit))
    out = []
    for r in result:
        ev = decode(r.seq, r.ts, r.kind, r.payload)
        if isinstance(ev, AgentLog) and (agent is None or ev.agent == agent):
            out.append(ev)
    return list(reversed(out[:limit]))


# ---------------------------------------------------------------------- retention
#
# Events are deleted from the head of the table only: the oldest rows, in sequence
# order, up to the first one that is too young. There is no index on `ts`, and none
# is needed: sequence numbers follow time (up to clock skew between processes), so
# the head is where old events are, and stopping at the first young one means a
# prune that finds nothing to do reads one row, never the whole table.


def keep_bound(conn: Connection, keep: int) -> int:
    """The highest sequence number pruning may delete if the newest `keep` events are
    to stay (0 when there are no more than `keep`)."""
    if keep <= 0:
        return last_seq(conn)
    seq = conn.scalar(select(events.c.seq).order_by(events.c.seq.desc()).offset(keep).limit(1))
    return seq or 0


def prune_head(conn: Connection, *, bound: int, before: float, limit: int,
               kind: str | None = None) -> tuple[int, bool]:
    """Delete up to `limit` of the oldest events (of one kind, or of any) numbered up to
    `bound` and stamped before `before`, stopping at the first younger one. Return
    (deleted, done): done when nothing more is left to delete."""
    query = select(events.c.seq, events.c.ts).where(events.c.seq <= bound)
    if kind is not None:
        query = query.where(events.c.kind == kind)  # ix_events_kind
    head = conn.execute(query.order_by(events.c.seq).limit(limit)).all()
    old = list(itertools.takewhile(lambda r: r.ts < before, head))
    if not old:
        return 0, True
    # The `ts` condition again: on PostgreSQL a row numbered below the last one read
    # may have committed since (sequence numbers are taken before commit); it is new.
    stmt = delete(events).where(events.c.seq <= old[-1].seq, events.c.ts < before)
    if kind is not None:
        stmt = stmt.where(events.c.kind == kind)
    return conn.execute(stmt).rowcount, len(old) < limit


def count_head(conn: Connection, *, bound: int, before: float, kind: str | None = None,
               upto: int | None = None) -> tuple[int, int]:
    """What `prune_head` would delete in all, without deleting: (rows, last sequence
    number among them). `upto` further limits the sequence numbers counted."""
    young = select(events.c.seq).where(events.c.seq <= bound, events.c.ts >= before)
    count = select(func.count()).select_from(events)
    if kind is not None:
        young = young.where(events.c.kind == kind)
        count = count.where(events.c.kind == kind)
    stop = conn.scalar(young.order_by(events.c.seq).limit(1))
    last = bound if stop is None else stop - 1
    if upto is not None:
        last = min(last, upto)
    return conn.scalar(count.where(events.c.seq <= last)) or 0, last
