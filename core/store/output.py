"""Queries on a run's output: log lines and metric records, and deleting the output of
runs that ended long ago (retention)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from sqlalchemy import Select, Table, delete, func, select, tuple_, update
from sqlalchemy.engine import Connection

from launch_tui.core.gaps import GAP_PREFIX, gap_count
from launch_tui.core.model import (
    TERMINAL_RUN_STATES,
    LogLine,
    LogStream,
    MetricRecord,
    OutputLine,
    OutputMetric,
)
from launch_tui.core.store import jsoncodec, rows
from launch_tui.core.store.schema import meta, run_logs, run_metrics, runs

Line = OutputLine  # (ts, stream, text[, source])
Metric = OutputMetric  # (step, ts, values[, source])


# A stream's plain text: str() of a StrEnum member is a Python-level call, and a flood
# of output converts hundreds of thousands of them a minute.
_STREAM_TEXT: dict[object, str] = {stream: stream.value for stream in LogStream}


# Lines of several runs as one JSON array of [ts, stream, text, source, run id], in
# order. json_extract, not ->>: the operator needs SQLite 3.38, older than some
# distributions ship.
_SQLITE_INSERT_LINES = (
    f"INSERT INTO {run_logs.name} (run_id, ts, stream, text, source) "
    "SELECT json_extract(value, '$[4]'), json_extract(value, '$[0]'), "
    "json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]') "
    "FROM json_each(?) ORDER BY key"
)


def _storable(text: str) -> str:
    """The text with NUL characters as U+FFFD, like undecodable bytes: PostgreSQL's
    text cannot hold NUL (the whole batch would be refused) and SQLite's JSON
    functions would end the line there."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _source(entry: Line | Metric) -> str | None:
    return entry[3] if len(entry) > 3 else None  # type: ignore[misc]


_ROW_KEYS = ("ts", "stream", "text", "source")


def _row(line: Line) -> tuple[float, str, str, str | None]:
    """A line as stored: (ts, stream as plain text, text without NUL, source)."""
    return line[0], _STREAM_TEXT.get(line[1], line[1]), _storable(line[2]), _source(line)


def add_lines(conn: Connection, batches: Sequence[tuple[str, Sequence[Line]]]
              ) -> list[tuple[str, int, int, int]]:
    """Insert the lines of several runs; return (run id, first id, last id, lines) for
    each run that had some."""
    batches = [(run_id, lines) for run_id, lines in batches if lines]
    if not batches:
        return []
    if conn.dialect.name != "sqlite":
        params = [dict(zip(_ROW_KEYS, _row(line), strict=True), run_id=run_id)
                  for run_id, lines in batches for line in lines]
        return [_add_returning(conn, run_id, params_of)
                for run_id, params_of in _by_run(batches, params)]
    # One statement for all runs, their lines passed as one JSON array that SQLite
    # unpacks itself. Every statement releases and retakes the GIL, and with the
    # agent's event loop busy (a flood of output) on a loaded machine each retake
    # can wait for a thread the kernel preempted: an executemany, one retake per
    # row, took a minute for 16,000 lines instead of 60 ms (and SQLAlchemy's per-row
    # parameter processing cost 2-5x the insert on top). Nothing else inserts while
    # this transaction holds SQLite's write lock, and a new row's id is the largest
    # id plus one, so the lines get the next contiguous ids in order, each run's a
    # range (checked, not assumed).
    start = (conn.scalar(select(func.max(run_logs.c.id))) or 0) + 1
    rows = [(*_row(line), run_id) for run_id, lines in batches for line in lines]
    conn.exec_driver_sql(_SQLITE_INSERT_LINES, (jsoncodec.dumps(rows),))
    total = len(rows)
    end = conn.scalar(select(func.max(run_logs.c.id))) or 0
    if end != start + total - 1:
        result = conn.execute(
            select(run_logs.c.run_id, func.min(run_logs.c.id), func.max(run_logs.c.id),
                   func.count()).where(run_logs.c.id >= start).group_by(run_logs.c.run_id)
        )
        return [(r[0], r[1], r[2], r[3]) for r in result]
    out = []
    first = start
    for run_id, lines in batches:
        out.append((run_id, first, first + len(lines) - 1, len(lines)))
        first += len(lines)
    return out


def _by_run(batches: Sequence[tuple[str, Sequence[Line]]], params: list[dict[str, object]]
            ) -> list[tuple[str, list[dict[str, object]]]]:
    out, i = [], 0
    for run_id, lines in batches:
        out.append((run_id, params[i:i + len(lines)]))
        i += len(lines)
    return out


def _add_returning(conn: Connection, run_id: str, params: list[dict[str, object]]
                   ) -> tuple[str, int, int, int]:
    ids = [r[0] for r in conn.execute(run_logs.insert().returning(run_logs.c.id), params)]
    return run_id, min(ids), max(ids), len(ids)


def add_metrics(conn: Connection, batches: Sequence[tuple[str, Sequence[Metric]]]) -> None:
    """Insert the metric records of several runs (one executemany)."""
    params = [{"run_id": run_id, "step": r[0], "ts": r[1], "values": r[2],
               "source": _source(r)}
              for run_id, records in batches for r in records]
    if params:
        conn.execute(run_metrics.insert(), params)


def logs(conn: Connection, run_id: str, *, after: int, limit: int,
         streams: Iterable[LogStream | str] | None) -> list[LogLine]:
    query = select(run_logs).where(run_logs.c.run_id == run_id, run_logs.c.id > after)
    if streams is not None:
        query = query.where(run_logs.c.stream.in_([str(s) for s in streams]))
    result = conn.execute(query.order_by(run_logs.c.id).limit(limit))
    return [rows.to_log(r) for r in result]


def tail(conn: Connection, run_id: str, lines: int) -> list[LogLine]:
    """The last `lines` log lines, oldest first."""
    result = conn.execute(
        select(run_logs).where(run_logs.c.run_id == run_id)
        .order_by(run_logs.c.id.desc()).limit(lines)
    )
    return [rows.to_log(r) for r in reversed(result.all())]


def count_output(conn: Connection, run_id: str) -> dict[str | None, int]:
    """Per source (None: a run's one stream), the lines the run itself printed (stdout
    and stderr), the metric records it sent, and the lines that gap markers stand for
    (printed, but not stored). Sources with nothing are absent."""
    counts: dict[str | None, int] = {}
    lines = conn.execute(
        select(run_logs.c.source, func.count()).where(
            run_logs.c.run_id == run_id,
            run_logs.c.stream.in_([str(LogStream.STDOUT), str(LogStream.STDERR)]),
        ).group_by(run_logs.c.source)
    )
    records = conn.execute(
        select(run_metrics.c.source, func.count()).where(run_metrics.c.run_id == run_id)
        .group_by(run_metrics.c.source)
    )
    markers = conn.execute(
        select(run_logs.c.source, run_logs.c.text).where(
            run_logs.c.run_id == run_id,
            run_logs.c.stream == str(LogStream.AGENT),
            run_logs.c.text.startswith(GAP_PREFIX, autoescape=True),
        )
    )
    for source, n in [*lines, *records, *((s, gap_count(t)) for s, t in markers)]:
        if n:
            counts[source] = counts.get(source, 0) + n
    return counts


def metrics(conn: Connection, run_id: str) -> list[MetricRecord]:
    result = conn.execute(
        select(run_metrics).where(run_metrics.c.run_id == run_id).order_by(run_metrics.c.id)
    )
    return [rows.to_metric(r) for r in result]


# ---------------------------------------------------------------------- retention
#
# Runs are walked in the order they last changed (ix_runs_updated), from a mark kept
# in launch_meta: every ended run before the mark has had its output deleted, so a
# prune never looks at them again, however many there are. A run that has not ended
# is passed by; when it ends its `updated_at` moves past the mark, and it comes up
# again. The mark is per table, since logs and metrics are kept for different times.

OUTPUT_TABLES: dict[str, Table] = {"run_logs": run_logs, "run_metrics": run_metrics}
_START = (-1.0, "")


def prune_ended(conn: Connection, which: str, *, before: float, limit: int
                ) -> tuple[int, bool]:
    """Delete up to `limit` rows of `which` ("run_logs" or "run_metrics") that belong to
    runs which ended before `before`. Return (deleted, done): done when no such rows
    are left."""
    table = OUTPUT_TABLES[which]
    key = f"retention.{which}"
    mark = _mark(conn, key)
    changed = conn.execute(_changed_since(mark, before).limit(limit)).all()
    left, reached = limit, mark
    for run in changed:
        if run.state not in _TERMINAL:
            reached = (run.updated_at, run.id)  # passed by: see above
            continue
        oldest = (select(table.c.id).where(table.c.run_id == run.id)
                  .order_by(table.c.id).limit(left))
        left -= conn.execute(delete(table).where(table.c.id.in_(oldest))).rowcount
        if left <= 0:
            break  # this run may have more; the next batch starts with it again
        reached = (run.updated_at, run.id)
    if reached != mark:
        _set_mark(conn, key, reached)
    return limit - left, left > 0 and len(changed) < limit


def count_ended(conn: Connection, which: str, *, before: float) -> int:
    """What `prune_ended` would delete in all, without deleting."""
    table = OUTPUT_TABLES[which]
    changed = conn.execute(_changed_since(_mark(conn, f"retention.{which}"), before))
    ended = [r.id for r in changed if r.state in _TERMINAL]
    # Counted a slice of runs at a time through ix_run_logs_run / ix_run_metrics_run:
    # as one statement, SQLite would walk a state index and sort every ended run.
    return sum(conn.scalar(select(func.count()).select_from(table)
                           .where(table.c.run_id.in_(ended[i:i + 500]))) or 0
               for i in range(0, len(ended), 500))


_TERMINAL = [str(s) for s in TERMINAL_RUN_STATES]


def _changed_since(mark: tuple[float, str], before: float
                   ) -> Select[tuple[str, float, str]]:
    # The state is not a condition here: given one, SQLite walks a state index and
    # sorts every ended run, where this is a range of ix_runs_updated.
    return (
        select(runs.c.id, runs.c.updated_at, runs.c.state)
        .where(tuple_(runs.c.updated_at, runs.c.id) > tuple_(*mark),
               runs.c.updated_at < before)
        .order_by(runs.c.updated_at, runs.c.id)
    )


def _mark(conn: Connection, key: str) -> tuple[float, str]:
    value = conn.scalar(select(meta.c.value).where(meta.c.key == key))
    if value is None:
        return _START
    ts, run_id = json.loads(value)
    return float(ts), str(run_id)


def _set_mark(conn: Connection, key: str, mark: tuple[float, str]) -> None:
    value = json.dumps(list(mark))
    if not conn.execute(update(meta).where(meta.c.key == key).values(value=value)).rowcount:
        conn.execute(meta.insert().values(key=key, value=value))
