"""claim_run (an item becomes a run in one transaction), append_output (many runs'
output in one write), and the store under them: its writer thread groups
concurrent writes into one commit without letting one failure spoil the others,
and an older database gains the indexes this version adds."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from launch_tui.core.errors import ConflictError, NotFound, RunTaken
from launch_tui.core.events import (
    ItemStateChanged,
    RunLogAppended,
    RunMetricsLogged,
    RunStateChanged,
)
from launch_tui.core.gaps import gap_line
from launch_tui.core.model import (
    AgentFence,
    ErrorStage,
    ItemState,
    LogStream,
    OutputBatch,
    RunState,
)
from launch_tui.core.service import LaunchService
from launch_tui.core.settings import normalise_store_url
from launch_tui.core.store import runs as runs_db


@pytest.fixture
async def queues(service: LaunchService, code_dir: Path) -> tuple[str, str]:
    await service.create_code_job(code_dir, "python train.py", name="train",
                                  config_defaults={"lr": 0.1})
    await service.create_queue("a", "local-process")
    await service.create_queue("b", "local-process")
    return "a", "b"


async def test_claim_run_takes_queues_in_order_and_items_by_priority(
    service: LaunchService, queues: tuple[str, str]
) -> None:
    a, b = queues
    low = await service.enqueue("train", b, priority="low")
    high = await service.enqueue("train", b, priority="high", config={"lr": 0.5})
    first = await service.enqueue("train", a)
    after = await service.last_event_seq()

    taken = []
    for agent in ("x", "y", "z"):
        result = await service.claim_run(agent, [a, b])
        assert result.refused == () and result.run is not None
        taken.append(result.run)
    assert [r.item_id for r in taken] == [first.id, high.id, low.id]
    assert (await service.claim_run("x", [a, b])).run is None

    run = taken[1]
    assert run == await service.get_run(run.id)  # the snapshot is what the store holds
    assert run.state == RunState.QUEUED and run.agent == "y" and run.queue == b
    assert set(run.timestamps) == {"leased", "queued"}
    assert run.spec["config"] == {"lr": 0.5} and run.spec["env"]["WANDB_RUN_ID"] == run.id
    item = await service.get_item(high.id)
    assert item.state == ItemState.CLAIMED and item.run_id == run.id

    events = await service.events_after(after)
    claimed = [e for e in events if isinstance(e, ItemStateChanged) and e.item_id == high.id]
    assert [(e.state, e.agent, e.reason) for e in claimed] == [("claimed", "y", f"run {run.id}")]
    queued = [e for e in events if isinstance(e, RunStateChanged) and e.run_id == run.id]
    assert [(e.state, e.item_id, e.queue) for e in queued] == [("queued", high.id, b)]


async def test_claim_run_fails_items_that_no_longer_resolve_and_takes_the_next(
    service: LaunchService, code_dir: Path
) -> None:
    await service.create_code_job(code_dir, "python train.py", name="train")
    variables = {"n": {"type": "integer", "minimum": 1, "default": 1}}
    await service.create_queue("t", "local-process", {
        "template_variables": variables, "resource_args": {"timeout_s": "{{n}}"}})
    stale = await service.enqueue("train", "t", template_values={"n": 5})
    fine = await service.enqueue("train", "t", template_values={"n": 2})
    variables["n"]["maximum"] = 2
    await service.update_queue("t", {"template_variables": variables,
                                     "resource_args": {"timeout_s": "{{n}}"}})

    result = await service.claim_run("x", ["t"])
    assert result.run is not None and result.run.item_id == fine.id
    assert result.run.spec["resource_args"] == {"timeout_s": 2}
    [(item_id, message)] = result.refused
    assert item_id == stale.id and "maximum of 2" in message
    failed = await service.get_item(stale.id)
    assert failed.state == ItemState.FAILED and failed.error_stage == ErrorStage.AGENT
    assert failed.error_message == message


async def test_claim_run_names_an_unknown_queue(service: LaunchService,
                                                queues: tuple[str, str]) -> None:
    with pytest.raises(NotFound, match="queue: 'nope' does not exist"):
        await service.claim_run("x", ["nope"])


async def test_many_claimers_take_each_item_once(service: LaunchService,
                                                 queues: tuple[str, str]) -> None:
    a, b = queues
    ids = {(await service.enqueue("train", q)).id for q in (a, b) for _ in range(15)}
    got: list[int] = []

    async def claimer(i: int) -> None:
        while (run := (await service.claim_run(f"c{i}", [a, b])).run) is not None:
            got.append(run.item_id)
            await service.set_run_state(run.id, RunState.FINISHED)

    await asyncio.gather(*(claimer(i) for i in range(6)))
    assert sorted(got) == sorted(ids)


async def test_claim_run_returns_expired_leases_first(service: LaunchService,
                                                      queues: tuple[str, str]) -> None:
    a, _ = queues
    item = await service.enqueue("train", a)
    assert (await service.claim("old", [a], lease_s=0.05)) is not None
    await asyncio.sleep(0.1)
    run = (await service.claim_run("new", [a])).run
    assert run is not None and run.item_id == item.id and run.agent == "new"


async def test_append_output_stores_many_runs_in_one_write(
    service: LaunchService, queues: tuple[str, str]
) -> None:
    a, _ = queues
    for _ in range(2):
        await service.enqueue("train", a)
    one = (await service.claim_run("x", [a])).run
    two = (await service.claim_run("x", [a])).run
    assert one is not None and two is not None
    after = await service.last_event_seq()
    now = time.time()
    await service.append_output([
        OutputBatch(one.id, ((now, LogStream.STDOUT, "a1"), (now, "stderr", "a2")),
                    ((1, now, {"loss": 0.5}), (2, now, {"loss": 0.25}))),
        OutputBatch(two.id, ((now, LogStream.STDOUT, "b1"),)),
        OutputBatch("nothing-here"),
    ])
    assert [line.text for line in await service.run_logs(one.id)] == ["a1", "a2"]
    assert [line.text for line in await service.run_logs(two.id)] == ["b1"]
    assert [m.step for m in await service.run_metrics(one.id)] == [1, 2]

    events = await service.events_after(after)
    logs = {e.run_id: e for e in events if isinstance(e, RunLogAppended)}
    assert {r: e.lines for r, e in logs.items()} == {one.id: 2, two.id: 1}
    stored = await service.run_logs(one.id)
    assert (logs[one.id].first_id, logs[one.id].last_id) == (stored[0].id, stored[-1].id)
    metrics = [e for e in events if isinstance(e, RunMetricsLogged)]
    assert [(e.run_id, e.step, e.values) for e in metrics] == [(one.id, 2, {"loss": 0.25})]


async def test_append_output_of_an_agent_leaves_out_runs_another_agent_took(
    service: LaunchService, queues: tuple[str, str]
) -> None:
    """An agent's output write (fenced) stores nothing of a run that another agent has
    taken over, says which, and stores the rest; an unfenced write stores all."""
    a, _ = queues
    fence = AgentFence.of(await service.register_agent("x", [a], project=None, max_jobs=2))
    for _ in range(2):
        await service.enqueue("train", a)
    kept = (await service.claim_run("x", [a], fence=fence)).run
    taken = (await service.claim_run("x", [a], fence=fence)).run
    assert kept is not None and taken is not None
    # What a take-over by agent "y" writes (runs_db.reassign), without waiting for
    # "x" to look gone.
    await service._store.write(lambda c: runs_db.reassign(c, taken.id, "x", "y", time.time()))
    now = time.time()
    left_out = await service.append_output([
        OutputBatch(kept.id, ((now, LogStream.STDOUT, "mine"),)),
        OutputBatch(taken.id, ((now, LogStream.STDOUT, "not mine"),)),
    ], fence)
    assert left_out == {taken.id}
    assert [line.text for line in await service.run_logs(kept.id)] == ["mine"]
    assert await service.run_logs(taken.id) == []
    assert await service.append_output(
        [OutputBatch(taken.id, ((now, LogStream.STDOUT, "by y"),))]) == set()
    assert [line.text for line in await service.run_logs(taken.id)] == ["by y"]


async def test_state_and_detail_writes_of_an_agent_are_refused_once_another_took_the_run(
    service: LaunchService, queues: tuple[str, str]
) -> None:
    """An agent's fenced writes about a run (a state change, even to the state the run
    is already in, its details, lines of its build) are refused in one sentence once another agent
    has the run, and change nothing; the taker's and a person's writes go through."""
    a, _ = queues
    fence = AgentFence.of(await service.register_agent("x", [a], project=None, max_jobs=1))
    await service.enqueue("train", a)
    run = (await service.claim_run("x", [a], fence=fence)).run
    assert run is not None
    await service.set_run_state(run.id, RunState.STARTING, fence=fence)
    await service._store.write(lambda c: runs_db.reassign(c, run.id, "x", "y", time.time()))
    before = await service.get_run(run.id)

    said = f"run: {run.id} is now supervised by agent 'y', which took it over; agent 'x' no " \
           "longer supervises it."
    for write in (
        lambda: service.set_run_state(run.id, RunState.RUNNING, fence=fence),
        # The move the taker made already: no silent success that would let "x"
        # submit the run a second time.
        lambda: service.set_run_state(run.id, RunState.STARTING, fence=fence),
        lambda: service.set_run_state(run.id, RunState.FAILED, exit_code=3, fence=fence),
        lambda: service.update_run(run.id, handle={"pid": 1}, reason="x's", fence=fence),
        lambda: service.append_logs(run.id, [(time.time(), LogStream.BUILD, "x's")], fence),
    ):
        with pytest.raises(RunTaken) as caught:
            await write()
        assert str(caught.value) == said
        assert caught.value.owner == "y"
    after = await service.get_run(run.id)
    assert (after.state, after.handle, after.reason, after.exit_code, after.updated_at) == (
        before.state, before.handle, before.reason, before.exit_code, before.updated_at)
    assert await service.run_logs(run.id) == []

    y = AgentFence.of(await service.register_agent("y", [a], project=None, max_jobs=1))
    await service.update_run(run.id, handle={"pid": 2}, fence=y)
    assert (await service.set_run_state(run.id, RunState.RUNNING, fence=y)).state == \
        RunState.RUNNING
    assert (await service.get_run(run.id)).handle == {"pid": 2}
    with pytest.raises(NotFound, match="run: 'nope' does not exist"):
        await service.update_run("nope", reason="r", fence=y)
    # Unfenced (a person's, or the facade's own) writes are not an agent's.
    assert (await service.set_run_state(run.id, RunState.STOPPING)).state == RunState.STOPPING


async def test_stored_output_is_what_the_run_printed_character_for_character(
    service: LaunchService, queues: tuple[str, str]
) -> None:
    """Lines reach SQLite as one JSON array per run: quotes, backslashes, line and
    paragraph separators, astral characters and timestamps come back exactly as
    given, in order. A NUL, which PostgreSQL refuses and SQLite's JSON functions
    would cut the line at, becomes U+FFFD like any undecodable byte."""
    a, _ = queues
    await service.enqueue("train", a)
    run = (await service.claim_run("x", [a])).run
    assert run is not None
    texts = ['say "hi" \\ \\n', "tab\tand\u2028sep\u2029", "naïve 😀 中文", "", "a\x00b\x00",
             "x" * 70_000, " trailing space "]
    lines = tuple((1_764_000_000.123456 + i / 7, LogStream.STDOUT if i % 2 else "stderr", t,
                   "pod-a" if i == 3 else None) for i, t in enumerate(texts))
    await service.append_output([OutputBatch(run.id, lines)])
    stored = await service.run_logs(run.id)
    assert [x.text for x in stored] == [t.replace("\x00", "\ufffd") for t in texts]
    assert stored[4].text == "a\ufffdb\ufffd"
    assert [x.ts for x in stored] == [line[0] for line in lines]
    assert [str(x.stream) for x in stored] == [str(line[1]) for line in lines]
    assert [x.source for x in stored] == [line[3] for line in lines]


async def test_output_line_count_counts_what_gap_markers_stand_for(
    service: LaunchService, queues: tuple[str, str]
) -> None:
    a, _ = queues
    await service.enqueue("train", a)
    run = (await service.claim_run("x", [a])).run
    assert run is not None
    now = time.time()
    await service.append_output([OutputBatch(run.id, (
        (now, LogStream.STDOUT, "one"),
        (now, LogStream.AGENT, gap_line(12_400, "/tmp/full.jsonl")),
        (now, LogStream.STDERR, "two"),
        (now, LogStream.AGENT, "[launch-tui] a remark that is no marker"),
        (now, LogStream.BUILD, gap_line(7, None)),  # not an agent line: not a marker
    ), ((1, now, {"x": 1.0}),))])
    assert await service.output_line_count(run.id) == 2 + 1 + 12_400


async def test_concurrent_writes_commit_together_and_fail_alone(
    service: LaunchService,
) -> None:
    await service.create_project("taken")

    async def attempt(name: str) -> str:
        try:
            await service.create_project(name)
        except ConflictError:
            return "conflict"
        return "made"

    names = [f"p{i}" if i % 3 else "taken" for i in range(30)]
    outcomes = await asyncio.gather(*(attempt(n) for n in names))
    assert outcomes == ["conflict" if n == "taken" else "made" for n in names]
    assert {p.name for p in await service.list_projects()} >= {n for n in names}


def test_store_urls_of_old_settings_still_open() -> None:
    assert normalise_store_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_store_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_store_url("postgresql+asyncpg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_store_url("sqlite+aiosqlite:////x/l.db") == "sqlite:////x/l.db"
    assert normalise_store_url("sqlite:////x/l.db") == "sqlite:////x/l.db"
    assert normalise_store_url("/x/l.db") == "sqlite:////x/l.db"
