"""Paged run and item listings: order, cursors that walk every row once, filters, and
query plans that read an index in order (no sort of every match)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from launch_tui.core.errors import ValidationError
from launch_tui.core.listings import cursor_of
from launch_tui.core.model import ItemState, Run
from launch_tui.core.service import LaunchService
from launch_tui.core.store.session import Store
from tests.core.seeding import T0, seed_runs


async def walk(fetch: Callable[[str | None], Awaitable[list[Any]]]) -> list[Any]:
    out: list[Any] = []
    cursor = None
    while page := await fetch(cursor):
        out.extend(page)
        cursor = cursor_of(page[-1])
    return out


async def test_runs_are_newest_first_and_cursors_walk_each_once(
        service: LaunchService, code_dir: Path) -> None:
    made = await seed_runs(service, code_dir, 203)
    newest = await service.list_runs(limit=10)
    assert [r.id for r in newest] == [m[1] for m in made[:10]]
    walked = await walk(lambda c: service.list_runs(limit=7, before=c))
    assert [r.id for r in walked] == [m[1] for m in made]
    assert [r.id for r in await service.list_runs()] == [m[1] for m in made]  # no limit
    pages = [len(p) async for p in service.run_pages(page=50)]
    assert pages == [50, 50, 50, 50, 3]
    assert sum([len(p) async for p in service.run_pages(limit=120, page=50)]) == 120


@pytest.mark.parametrize("queue,states,agent,since", [
    ("a", None, None, None),
    (None, ["failed"], None, None),
    (None, ["failed", "crashed"], None, None),
    ("b", ["finished", "crashed"], None, T0 + 20),
    (None, None, "ag1", None),
    (None, None, None, T0 + 40),
])
async def test_run_filters_page_alike(service: LaunchService, code_dir: Path, queue: str | None,
                                      states: list[str] | None, agent: str | None,
                                      since: float | None) -> None:
    made = await seed_runs(service, code_dir, 203)
    expected = [m[1] for m in made if (queue is None or m[2] == queue)
                and (states is None or str(m[3]) in states)
                and (agent is None or m[4] == agent) and (since is None or m[0] >= since)]
    assert expected

    def fetch(cursor: str | None) -> Awaitable[list[Run]]:
        return service.list_runs(queue, states=states, agent=agent, since=since, limit=6,
                                 before=cursor)

    assert [r.id for r in await walk(fetch)] == expected
    assert [r.id for r in await service.list_runs(queue, states=states, agent=agent,
                                                  since=since)] == expected


async def test_items_wait_in_take_order_then_history_newest_first(
        service: LaunchService, code_dir: Path) -> None:
    await service.create_code_job(code_dir, "python train.py", name="t")
    for q in ("b", "a"):
        await service.create_queue(q, "local-process")
    enqueued = [await service.enqueue("t", q, priority=p)
                for p in ("low", "high", "medium", "high", "critical") for q in ("a", "b")]
    taken = [(await service.claim_run("agent", [q])).run for q in ("a", "a", "b")]
    assert all(taken)
    await service.cancel(enqueued[0].id)  # a's low
    leased = await service.claim("agent", ["b"])
    assert leased is not None

    everything = await service.list_items(states=None)
    waiting = [i for i in everything if i.state in (ItemState.PENDING, ItemState.LEASED)]
    history = everything[len(waiting):]
    assert [(i.queue, i.priority.rank, i.id) for i in waiting] == sorted(
        (i.queue, i.priority.rank, i.id) for i in waiting)
    assert [i.id for i in history] == sorted((i.id for i in history), reverse=True)
    assert {i.state for i in history} == {ItemState.CLAIMED, ItemState.CANCELLED}
    assert len(everything) == len(enqueued)
    places = {q: [i.position for i in waiting if i.queue == q and i.state == ItemState.PENDING]
              for q in ("a", "b")}
    assert places == {"a": [1, 2], "b": [1, 2, 3]}
    # Every page size walks the same list, places counted across pages too.
    for size in (1, 2, 3, 7):
        walked = await walk(lambda c, n=size: service.list_items(states=None, limit=n, after=c))
        assert [(i.id, i.position) for i in walked] == [(i.id, i.position) for i in everything]
    assert [i.id for i in await service.list_items("b", states=["pending"], limit=2)] == [
        i.id for i in waiting if i.queue == "b" and i.state == ItemState.PENDING][:2]
    assert await service.list_items(since=time.time() + 60) == []


async def test_a_cursor_that_is_not_one_is_refused_in_one_sentence(
        service: LaunchService, code_dir: Path) -> None:
    await seed_runs(service, code_dir, 4)
    [run] = await service.list_runs(limit=1)
    with pytest.raises(ValidationError, match=r"^cursor: 'nope' is not a position in a run"):
        await service.list_runs(before="nope")
    with pytest.raises(ValidationError, match=r"not a position in an? item listing"):
        await service.list_items(after=cursor_of(run))
    with pytest.raises(ValidationError, match="limit: -1 must be 0 or more"):
        await service.list_runs(limit=-1)


@pytest.mark.sqlite_only  # SQLite's plans; PostgreSQL's planner chooses by statistics
async def test_listings_read_an_index_in_order(service: LaunchService, code_dir: Path) -> None:
    """No listing sorts its matches (TEMP B-TREE) or scans a table without an index,
    whatever the filter: each page costs the same on a store of any size."""
    await seed_runs(service, code_dir, 40)
    [mid] = await service.list_runs(limit=1, before=None, since=T0 + 5)
    cursor = cursor_of(mid)
    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "all": lambda: service.list_runs(limit=5),
        "page": lambda: service.list_runs(limit=5, before=cursor),
        "since": lambda: service.list_runs(limit=5, since=T0 + 3),
        "queue": lambda: service.list_runs("a", limit=5, before=cursor),
        "state": lambda: service.list_runs(states=["failed"], limit=5, before=cursor),
        "states": lambda: service.list_runs(states=["failed", "crashed"], limit=5),
        "items": lambda: service.list_items(states=None, limit=5),
    }
    store = Store(service.settings.store_url, clock=time.time)
    try:
        for name, fn in cases.items():
            statements: list[tuple[str, Any]] = []

            def record(_c: Any, _cur: Any, sql: str, params: Any, *_: Any,
                       into: list[tuple[str, Any]] = statements) -> None:
                if "FROM runs" in sql or "FROM items" in sql:
                    into.append((sql, params))

            event.listen(Engine, "before_cursor_execute", record)
            try:
                await fn()
            finally:
                event.remove(Engine, "before_cursor_execute", record)
            assert statements, name
            for sql, params in statements:
                plan = [r[-1] for r in await store.read(
                    lambda conn, s=sql, p=params: conn.exec_driver_sql(
                        "EXPLAIN QUERY PLAN " + s, p).all())]
                for step in plan:
                    assert "TEMP B-TREE" not in step, (name, plan)
                    # The one whole-index walk: the newest runs of every queue, in order.
                    assert not step.startswith("SCAN") or step == (
                        "SCAN runs USING INDEX ix_runs_newest"), (name, plan)
    finally:
        await store.dispose()
