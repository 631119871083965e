"""Run and item listings a page at a time: filters, cursors, and walking every page.

A cursor is opaque to callers: `cursor_of(run_or_item)` names where a page
ended, and handing it back (`before=` for runs, `after=` for items) continues
from there however many rows were added meanwhile, since it holds the row's
sort key (a keyset, see `store/listings`), not an offset. `pages()` walks a
listing page by page, so a client can stream one of any length in bounded
memory.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from launch_tui.core import explain
from launch_tui.core.errors import ValidationError
from launch_tui.core.lookups import project_or_default, scope
from launch_tui.core.model import ItemState, QueueItem, Run, RunState
from launch_tui.core.settings import Settings
from launch_tui.core.store import agents as agents_db
from launch_tui.core.store import listings as listings_db
from launch_tui.core.store import queues as queues_db
from launch_tui.core.store import runs as runs_db
from launch_tui.core.store.session import Conn, Store

T = TypeVar("T", Run, QueueItem)

PAGE = 500  # rows per page when walking a whole listing (`pages`)


def cursor_of(row: Run | QueueItem) -> str:
    """Where a page that ends with `row` ended: pass it as the next page's `before`
    (runs) or `after` (items)."""
    if isinstance(row, Run):
        key: list[Any] = ["run", row.created_at, row.id]
    elif row.state in listings_db.WAITING:
        key = ["waiting", row.queue, row.priority.rank, row.seq, row.id]
    else:
        key = ["history", row.created_at, row.id]
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, kinds: tuple[str, ...]) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        shapes = {"run": (float, str), "waiting": (str, int, float, int), "history": (float, int)}
        if isinstance(key, list) and key and key[0] in kinds:
            shape = shapes[key[0]]
            if len(key) == len(shape) + 1 and all(
                    isinstance(v, t if t is not float else (int, float))
                    and not isinstance(v, bool) for v, t in zip(key[1:], shape, strict=True)):
                return key
    except (ValueError, binascii.Error, UnicodeDecodeError):
        pass
    what = "run" if kinds == ("run",) else "item"
    raise ValidationError(f"cursor: '{cursor}' is not a position in a {what} listing.",
                          field="cursor")


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 0:
        raise ValidationError(f"limit: {limit} must be 0 or more.", field="limit")


class Listings:
    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings

    async def list_runs(self, queue: str | None, *, project: str | None,
                        states: Iterable[RunState | str] | None, agent: str | None,
                        limit: int | None, before: str | None, since: float | None
                        ) -> list[Run]:
        """Newest first (created_at, then id, descending)."""
        project = project_or_default(self._settings, project)
        _check_limit(limit)
        wanted = None if states is None else [RunState(s) for s in states]
        key = None if before is None else _decode(before, ("run",))

        def query(conn: Conn) -> list[Run]:
            queue_id = scope(conn, project, queue)
            return listings_db.runs_page(
                conn, project, queue_id=queue_id, states=wanted, agent=agent, since=since,
                before=None if key is None else (key[1], key[2]), limit=limit)

        return await self._store.read(query)

    async def list_items(self, queue: str | None, *, project: str | None,
                         states: Iterable[ItemState | str] | None, limit: int | None,
                         after: str | None, since: float | None) -> list[QueueItem]:
        """Waiting items in the order they will be taken (queue by queue, priority, then
        first in first out), then the others newest first."""
        project = project_or_default(self._settings, project)
        _check_limit(limit)
        wanted = None if states is None else [ItemState(s) for s in states]
        key = None if after is None else tuple(_decode(after, ("waiting", "history")))

        def query(conn: Conn) -> list[QueueItem]:
            queue_id = scope(conn, project, queue)
            return listings_db.items_page(conn, project, queue_id=queue_id, states=wanted,
                                          since=since, after=key, limit=limit)

        return await self._store.read(query)

    async def explained(self, found: list[QueueItem]) -> list[QueueItem]:
        """The items with their outcome, end, duration and `why` filled in: one read of
        the queues, agents and runs they need."""
        if not found:
            return found
        store, stale_s = self._store, self._settings.agent_stale_s

        def query(conn: Conn) -> list[QueueItem]:
            queues = {(q.project, q.name): q
                      for project in {i.project for i in found}
                      for q in queues_db.bare_in_project(conn, project)}
            waiting = any(i.state == ItemState.PENDING for i in found)
            agents = agents_db.every(conn) if waiting else []
            ran = runs_db.load_many(conn, [i.run_id for i in found if i.run_id])
            now = store.now()
            return [_explain(i, queues.get((i.project, i.queue)), agents,
                             ran.get(i.run_id or ""), now, stale_s) for i in found]

        return await store.read(query)


def _explain(item: QueueItem, queue: Any, agents: list[Any], run: Run | None, now: float,
             stale_s: float) -> QueueItem:
    outcome = str(item.state)
    ended = duration = None
    if item.state == ItemState.CLAIMED and run is not None:
        outcome = str(run.state)
        if run.state.terminal:
            ended = run.timestamps.get(str(run.state), run.updated_at)
            began = run.timestamps.get(str(RunState.RUNNING))
            duration = ended - (began if began is not None else run.created_at)
    elif item.state in (ItemState.FAILED, ItemState.CANCELLED):
        ended = item.updated_at
        duration = ended - item.created_at
    return dataclasses.replace(
        item, outcome=outcome, ended_at=ended, duration_s=duration,
        why=explain.item_why(item, queue, agents, now, stale_s, run))


async def pages(fetch: Callable[[str | None, int], Awaitable[list[T]]], limit: int | None,
                size: int = PAGE) -> AsyncIterator[list[T]]:
    """Every page of a listing, `fetch(cursor, n)` reading each, until `limit` rows
    (None: all) or the listing ends. Each page is its own read transaction."""
    _check_limit(limit)
    cursor, left = None, limit
    while left is None or left > 0:
        n = size if left is None else min(size, left)
        page = await fetch(cursor, n)
        if page:
            yield page
        if len(page) < n:
            return
        if left is not None:
            left -= len(page)
        cursor = cursor_of(page[-1])
