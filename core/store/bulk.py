"""Inserting many items and runs in one statement each: imports, benchmarks, tests.

Rows go in as they are given (states, times, specs), with no events and no
checks against queue config or job schema: the caller vouches for them. One
`executemany` per table is what makes seeding 100,000 finished runs take
seconds, where enqueueing and running them would take minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

from launch_tui.core.store.schema import items, runs


def add_items(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert items rows: each a dict of items columns (id included, so runs can
    name their item)."""
    if rows:
        conn.execute(items.insert(), list(rows))


def add_runs(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert runs rows: each a dict of runs columns."""
    if rows:
        conn.execute(runs.insert(), list(rows))
