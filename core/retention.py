"""Retention: deleting the history nobody needs any more, a small batch at a time.

This module owns the rules (what goes, and what never does); the SQL is in the
store modules (`eventlog.prune_head`, `output.prune_ended`, `agents.prune_gone`).
How long things are kept is `[retention]` in settings.toml (`settings.Retention`):

- events older than `events_days`; heartbeats and output notices (RunLogAppended,
  RunMetricsLogged), which announce what is kept elsewhere, older than
  `notice_days`. Never the newest `events_keep` events, and never an event younger
  than EVENTS_MIN_AGE_S: a subscriber reads every event after the last it saw,
  so one that fell behind by less than that still receives everything.
- log lines and metric records of runs that ended more than `logs_days` /
  `metrics_days` ago. Never a run's output while it has not ended, nor within
  OUTPUT_MIN_AGE_S of its end (output still in flight may be stored just after).
- agents not heard of for `agents_days` (at least AGENTS_MIN_AGE_S), unless they
  own a run that has not ended (their row is how another agent adopts it).
- code snapshot blobs no job version names, untouched for BLOBS_MIN_AGE_S: left by
  an upload that crashed or whose job was refused and could not take it back.
  Never one a version names (versions are never deleted).

Each batch is one bulk write (`store.write(fn, bulk=True)`): claims, state changes
and heartbeats waiting for the writer go before it, so a prune delays them by at
most the batch in progress. Deletes are idempotent and pick up wherever the data
is, so several agents pruning one store at the same time only share the work.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from launch_tui.core.errors import ValidationError
from launch_tui.core.events import AgentHeartbeat, RunLogAppended, RunMetricsLogged
from launch_tui.core.settings import Retention
from launch_tui.core.store import agents as agents_db
from launch_tui.core.store import blobs as blobs_db
from launch_tui.core.store import eventlog
from launch_tui.core.store import output as output_db
from launch_tui.core.store.session import Conn, Store

DAY_S = 86_400.0
EVENTS_MIN_AGE_S = DAY_S
OUTPUT_MIN_AGE_S = 3_600.0
AGENTS_MIN_AGE_S = DAY_S
BLOBS_MIN_AGE_S = 3_600.0  # far longer than any upload between two of its writes
BLOB_CHUNKS = 8  # chunks (about 1 MiB each) deleted per batch
NOTICE_KINDS = (AgentHeartbeat.kind, RunLogAppended.kind, RunMetricsLogged.kind)
BATCH = 1000


@dataclass(frozen=True)
class PruneReport:
    """What one prune deleted (or, with `dry_run`, would delete)."""

    events: int = 0  # rows of the events table, notices included
    notices: int = 0  # of which heartbeats and output notices
    run_logs: int = 0
    run_metrics: int = 0
    agents: int = 0
    blobs: int = 0  # code snapshots no job version names
    seconds: float = 0.0
    batches: int = 0  # write transactions it took
    dry_run: bool = False
    complete: bool = True  # False: the time budget ran out first; the next prune goes on

    def tables(self) -> dict[str, int]:
        """Rows per table."""
        return {"events": self.events, "run_logs": self.run_logs,
                "run_metrics": self.run_metrics, "agents": self.agents, "blobs": self.blobs}


@dataclass(frozen=True)
class Cutoffs:
    """Times before which each kind of history may go (floors applied)."""

    events: float
    notices: float
    logs: float
    metrics: float
    agents: float
    blobs: float

    @classmethod
    def of(cls, retention: Retention, now: float) -> Cutoffs:
        def before(days: float, floor: float) -> float:
            return now - max(days * DAY_S, floor)

        return cls(
            events=before(retention.events_days, EVENTS_MIN_AGE_S),
            notices=before(retention.notice_days, EVENTS_MIN_AGE_S),
            logs=before(retention.logs_days, OUTPUT_MIN_AGE_S),
            metrics=before(retention.metrics_days, OUTPUT_MIN_AGE_S),
            agents=before(retention.agents_days, AGENTS_MIN_AGE_S),
            blobs=now - BLOBS_MIN_AGE_S,
        )


Step = Callable[[Conn], tuple[int, bool]]


async def prune_once(
    store: Store, retention: Retention, *, batch: int = BATCH, budget_s: float | None = None,
    dry_run: bool = False, progress: Callable[[PruneReport], None] | None = None,
) -> PruneReport:
    """Delete what `retention` no longer keeps, `batch` rows per write transaction,
    until nothing is left or `budget_s` seconds are spent (then `complete` is False).
    `progress` is called with the counts so far after every batch."""
    if batch < 1:
        raise ValidationError("prune: batch must be at least 1.", field="batch")
    started = time.monotonic()
    cut = Cutoffs.of(retention, store.now())
    # Fixed for the whole prune: events written meanwhile only add to what is kept.
    bound = await store.read(eventlog.keep_bound, retention.events_keep)
    if dry_run:
        counts = await store.read(_count, cut, bound)
        return PruneReport(**counts, seconds=time.monotonic() - started, dry_run=True)

    steps: list[tuple[str, Step]] = [
        *(("notices", partial(eventlog.prune_head, bound=bound, before=cut.notices, limit=batch,
                              kind=kind)) for kind in NOTICE_KINDS),
        ("events", partial(eventlog.prune_head, bound=bound, before=cut.events, limit=batch)),
        ("run_logs", partial(output_db.prune_ended, which="run_logs", before=cut.logs,
                             limit=batch)),
        ("run_metrics", partial(output_db.prune_ended, which="run_metrics", before=cut.metrics,
                                limit=batch)),
        ("agents", partial(agents_db.prune_gone, before=cut.agents, limit=batch)),
        ("blobs", partial(blobs_db.prune_unreferenced, before=cut.blobs,
                          chunks=min(batch, BLOB_CHUNKS))),
    ]
    counts = dict.fromkeys(("notices", "events", "run_logs", "run_metrics", "agents", "blobs"),
                           0)
    batches = 0

    def report(complete: bool = True) -> PruneReport:
        return PruneReport(
            events=counts["notices"] + counts["events"], notices=counts["notices"],
            run_logs=counts["run_logs"], run_metrics=counts["run_metrics"],
            agents=counts["agents"], blobs=counts["blobs"], seconds=time.monotonic() - started,
            batches=batches,
            complete=complete)

    for name, step in steps:
        done = False
        while not done:
            if budget_s is not None and time.monotonic() - started >= budget_s:
                return report(complete=False)
            deleted, done = await store.write(step, bulk=True)
            counts[name] += deleted
            batches += 1
            if progress is not None:
                progress(report(complete=False))
            # Between batches, whatever else this event loop has to do comes first.
            await asyncio.sleep(0)
    return report()


def _count(conn: Conn, cut: Cutoffs, bound: int) -> dict[str, Any]:
    """What `prune_once` would delete, counted in one read transaction."""
    prefix, last = eventlog.count_head(conn, bound=bound, before=cut.events)
    notices = overlap = 0
    for kind in NOTICE_KINDS:
        notices += eventlog.count_head(conn, bound=bound, before=cut.notices, kind=kind)[0]
        # Notices inside the events' prefix are deleted (and counted) once, as notices.
        overlap += eventlog.count_head(conn, bound=bound, before=cut.notices, kind=kind,
                                       upto=last)[0]
    return {
        "events": notices + prefix - overlap,
        "notices": notices,
        "run_logs": output_db.count_ended(conn, "run_logs", before=cut.logs),
        "run_metrics": output_db.count_ended(conn, "run_metrics", before=cut.metrics),
        "agents": agents_db.count_gone(conn, before=cut.agents),
        "blobs": blobs_db.count_unreferenced(conn, before=cut.blobs),
    }
