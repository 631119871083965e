"""Retention: what pruning deletes, what it never deletes, and that it stays out of the
way of dispatch.

Real SQLite through the facade and the CLI. Age is made with the service's clock
(`service.time`, the way tui/demo.py freezes it): data is written "days ago" and
pruned "now", so nothing sleeps. The CLI runs in a subprocess on the real clock,
which the fake one starts from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import launch_tui.core.facade.parts as parts_module
from launch_tui.core.agent import LaunchAgent
from launch_tui.core.errors import ValidationError
from launch_tui.core.events import (
    AgentHeartbeat,
    AgentLog,
    Event,
    ProjectCreated,
    RunLogAppended,
    RunMetricsLogged,
)
from launch_tui.core.model import AgentStatus, LogStream, OutputBatch, RunState
from launch_tui.core.service import LaunchService, PruneReport
from launch_tui.core.settings import Retention, load_settings
from tests.agent_harness import wait_for

DAY = 86_400.0
Open = Callable[..., Awaitable[LaunchService]]


class Clock:
    """Stands in for the `time` module in core/service.py: the store's clock."""

    def __init__(self) -> None:
        self.start = self.now = time.time()

    def time(self) -> float:
        return self.now

    def days_ago(self, days: float) -> None:
        self.now = self.start - days * DAY

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(parts_module, "time", c)
    return c


def write_retention(home: Path, **keys: float) -> None:
    body = "".join(f"{k} = {v}\n" for k, v in keys.items())
    (home / "settings.toml").write_text(f"[retention]\n{body}")


@pytest.fixture
async def open_service(home: Path) -> AsyncIterator[Open]:
    """Open the service with `[retention]` keys written to settings.toml first."""
    opened: list[LaunchService] = []

    async def open_(**retention: float) -> LaunchService:
        write_retention(home, **retention)
        svc = await LaunchService.open(home=home)
        opened.append(svc)
        return svc

    yield open_
    for svc in opened:
        await svc.close()


async def add_queue(svc: LaunchService, code_dir: Path) -> None:
    await svc.create_code_job(code_dir, "python train.py", name="train")
    await svc.create_queue("q", "local-process")


async def new_run(svc: LaunchService, *, lines: int = 5, metrics: int = 2, agent: str = "a",
                  end: RunState | None = None) -> str:
    """A run on queue q with output; ended in state `end` now, if given."""
    await svc.enqueue("train", "q")
    run = (await svc.claim_run(agent, ["q"])).run
    assert run is not None
    await svc.append_output([OutputBatch(
        run.id, tuple((0.0, LogStream.STDOUT, f"line {i}") for i in range(lines)),
        tuple((i, 0.0, {"loss": 1.0 / (i + 1)}) for i in range(metrics)))])
    if end is not None:
        await svc.set_run_state(run.id, end, exit_code=0)
    return run.id


async def output_of(svc: LaunchService, run_id: str) -> tuple[int, int]:
    return (len(await svc.run_logs(run_id, limit=100_000)),
            len(await svc.run_metrics(run_id)))


def projects(events: list[Event]) -> list[str]:
    return [e.project for e in events if isinstance(e, ProjectCreated)]


async def take(feed: AsyncIterator[Event], n: int) -> list[Event]:
    return [await asyncio.wait_for(anext(feed), 5) for _ in range(n)]


# ---------------------------------------------------------------------- events


async def test_old_events_go_but_the_newest_stay_and_a_lagging_subscriber_loses_nothing(
    open_service: Open, clock: Clock,
) -> None:
    svc = await open_service(events_days=2, events_keep=3)
    clock.days_ago(10)
    for i in range(6):
        await svc.create_project(f"old{i}")
    seen = (await svc.events_after(0))[0].seq  # a subscriber that read only the first

    clock.days_ago(0)
    report = await svc.prune()
    # Everything is old, but the newest three are kept whatever their age.
    assert projects(await svc.events_after(0)) == ["old3", "old4", "old5"]
    assert (report.events, report.notices, report.complete) == (3, 0, True)

    clock.now += 3600
    for i in range(4):
        await svc.create_project(f"new{i}")
    clock.now += 3600
    feed = svc.subscribe(after=seen)  # fell behind before any of this was pruned
    report = await svc.prune()
    assert report.events == 3  # old3..old5: no longer among the newest three
    # new0 is not among the newest three either, but is younger than the cutoff.
    got = await take(feed, 4)
    assert projects(got) == ["new0", "new1", "new2", "new3"]
    assert await svc.events_after(got[-1].seq) == []
    assert projects(await svc.events_after(0)) == ["new0", "new1", "new2", "new3"]
    await feed.aclose()  # type: ignore[attr-defined]


async def test_no_event_younger_than_a_day_goes_even_with_zero_days(
    open_service: Open, clock: Clock,
) -> None:
    svc = await open_service(events_days=0, notice_days=0, events_keep=0)
    clock.days_ago(2)
    await svc.create_project("two-days")
    clock.days_ago(0.5)
    await svc.create_project("half-a-day")
    clock.days_ago(0)
    assert (await svc.prune()).events == 1
    assert projects(await svc.events_after(0)) == ["half-a-day"]


async def test_heartbeats_and_output_notices_go_after_a_day_the_rest_stays(
    open_service: Open, clock: Clock, code_dir: Path,
) -> None:
    svc = await open_service(events_keep=0)  # otherwise defaults: notices 1 day, events 30
    clock.days_ago(3)
    await add_queue(svc, code_dir)
    await svc.register_agent("worker", ["q"])
    for _ in range(3):
        await svc.agent_heartbeat("worker", AgentStatus.POLLING, 0)
    await svc.agent_log("worker", "something happened")
    run_id = await new_run(svc, end=RunState.FINISHED)
    before = await svc.events_after(0, limit=1000)
    notices = [e for e in before
               if isinstance(e, (AgentHeartbeat, RunLogAppended, RunMetricsLogged))]
    assert len(notices) == 1 + 3 + 2  # registering, heartbeats, the run's output

    clock.days_ago(0)
    dry = await svc.prune(dry_run=True)
    report = await svc.prune()
    assert (dry.events, dry.notices) == (report.events, report.notices) == (6, 6)
    after = await svc.events_after(0, limit=1000)
    kinds = {e.kind for e in after}
    assert not kinds & {"AgentHeartbeat", "RunLogAppended", "RunMetricsLogged"}
    assert len(after) == len(before) - report.events
    assert [e.message for e in await svc.agent_logs("worker")] == ["something happened"]
    assert isinstance((await svc.agent_logs("worker"))[0], AgentLog)
    assert await output_of(svc, run_id) == (5, 2)  # the lines outlive their notices


# ---------------------------------------------------------------------- run output


async def test_output_of_runs_that_ended_long_ago_goes_that_of_recent_and_running_runs_stays(
    open_service: Open, clock: Clock, code_dir: Path,
) -> None:
    svc = await open_service(logs_days=7, metrics_days=30)
    clock.days_ago(40)
    await add_queue(svc, code_dir)
    long_ago = await new_run(svc, end=RunState.FINISHED)
    ended_10d = await new_run(svc)
    ended_3d = await new_run(svc)
    running = await new_run(svc, lines=7)
    await svc.set_run_state(running, RunState.RUNNING)
    clock.days_ago(10)
    await svc.set_run_state(ended_10d, RunState.FAILED, exit_code=1)
    clock.days_ago(3)
    await svc.set_run_state(ended_3d, RunState.CRASHED)

    clock.days_ago(0)
    report = await svc.prune(batch=3)  # small batches: runs are left and resumed midway
    assert (report.run_logs, report.run_metrics) == (10, 2)
    assert await output_of(svc, long_ago) == (0, 0)
    assert await output_of(svc, ended_10d) == (0, 2)  # logs 7 days, metrics 30
    assert await output_of(svc, ended_3d) == (5, 2)
    assert await output_of(svc, running) == (7, 2)  # 40 days old, but it has not ended
    assert (await svc.prune()).run_logs == 0

    # The run pruning passed by while it ran ends now, and is pruned in its turn.
    await svc.set_run_state(running, RunState.FINISHED, exit_code=0)
    clock.days_ago(-8)
    assert (await svc.prune()).run_logs == 7 + 5
    assert await output_of(svc, running) == (0, 2)


async def test_agents_gone_for_long_leave_the_list_unless_they_own_an_unfinished_run(
    open_service: Open, clock: Clock, code_dir: Path,
) -> None:
    svc = await open_service(agents_days=0)  # the one-day floor still holds
    clock.days_ago(40)
    await add_queue(svc, code_dir)
    await svc.register_agent("gone", ["q"])
    await svc.register_agent("busy", ["q"])
    await new_run(svc, agent="busy")  # claimed, never ended: another agent may adopt it
    clock.days_ago(0.5)
    await svc.register_agent("quiet", ["q"])
    clock.days_ago(0)
    await svc.register_agent("live", ["q"])
    assert (await svc.prune(dry_run=True)).agents == 1
    assert (await svc.prune()).agents == 1
    assert [a.name for a in await svc.list_agents()] == ["busy", "live", "quiet"]


# ---------------------------------------------------------------------- dispatch


async def test_prune_writes_are_bulk_a_claim_waits_for_no_prune_batch(
    service: LaunchService, clock: Clock, code_dir: Path,
) -> None:
    clock.days_ago(40)
    await add_queue(service, code_dir)
    old = await new_run(service, lines=400, metrics=0, end=RunState.FINISHED)
    clock.days_ago(0)
    busy = await new_run(service, lines=0, metrics=0)
    await service.enqueue("train", "q")
    order: list[str] = []
    tasks: list[asyncio.Task[None]] = []
    first_logs_batch = 0

    async def flood() -> None:  # keeps the writer busy while both wait for it
        await service.append_output([OutputBatch(busy, tuple(
            (0.0, LogStream.STDOUT, f"{i:>60}") for i in range(40_000)))])
        order.append("flood")

    async def claim() -> None:
        for _ in range(3):  # let the prune queue its next batch first
            await asyncio.sleep(0)
        result = await service.claim_run("b", ["q"])
        assert result.run is not None
        order.append("claim")

    def progress(report: PruneReport) -> None:
        nonlocal first_logs_batch
        order.append(f"batch {report.batches}")
        if report.run_logs and not tasks:  # midway through the old run's lines
            first_logs_batch = report.batches
            tasks.extend([asyncio.create_task(flood()), asyncio.create_task(claim())])

    report = await service.prune(batch=20, progress=progress)
    await asyncio.gather(*tasks)
    assert report.run_logs == 400 and await output_of(service, old) == (0, 0)
    # The prune's next batch was queued before the claim, and still went after it.
    k = first_logs_batch
    assert order.index(f"batch {k}") < order.index("claim") < order.index(f"batch {k + 1}"), order


# ---------------------------------------------------------------------- agent and CLI


async def test_an_agent_prunes_in_the_background(
    open_service: Open, clock: Clock, code_dir: Path,
) -> None:
    svc = await open_service(prune_every_minutes=0.001)
    clock.days_ago(40)
    await add_queue(svc, code_dir)
    old = await new_run(svc, end=RunState.STOPPED)
    clock.days_ago(0)
    agent = LaunchAgent(svc, ["q"], name="pruner", poll_interval_s=0.2)
    await agent.start()
    try:
        await wait_for(lambda: _pruned(svc, old), "the old run's output pruned", within=10)
    finally:
        await agent.stop()


async def _pruned(svc: LaunchService, run_id: str) -> bool:
    return await output_of(svc, run_id) == (0, 0)


async def test_gc_dry_run_counts_and_changes_nothing_then_gc_deletes(
    service: LaunchService, clock: Clock, code_dir: Path, cli: Any,
) -> None:
    clock.days_ago(40)
    await add_queue(service, code_dir)
    old = await new_run(service, end=RunState.FINISHED)
    for i in range(3):
        await service.create_project(f"p{i}")
    clock.days_ago(3)
    recent = await new_run(service, end=RunState.FINISHED)
    clock.days_ago(0)
    events = await service.events_after(0, limit=1000)

    # The CLI keeps the newest 100,000 events by default: not ours to wait for.
    write_retention(service.settings.home, events_keep=0)
    dry = cli("gc", "--dry-run", "--logs-days", "1", "--json")
    assert dry.code == 0, dry.err
    assert dry.json()["dry_run"] is True
    assert dry.json()["tables"] == {"events": dry.json()["events"], "run_logs": 10,
                                    "run_metrics": 2, "agents": 0, "blobs": 0}
    assert dry.json()["events"] > 3
    assert await service.events_after(0, limit=1000) == events
    assert await output_of(service, old) == await output_of(service, recent) == (5, 2)

    done = cli("gc")
    assert done.code == 0, done.err
    assert "run_logs     5" in done.out and "run_metrics  2" in done.out
    assert await output_of(service, old) == (0, 0)
    assert await output_of(service, recent) == (5, 2)  # 3 days: kept by the default 7
    assert projects(await service.events_after(0, limit=1000)) == []
    again = cli("gc", "--json")
    assert again.code == 0 and again.json()["tables"] == dict.fromkeys(
        ("events", "run_logs", "run_metrics", "agents", "blobs"), 0)

    bad = cli("gc", "--logs-days", "-1")
    assert (bad.code, bad.out) == (1, "")
    assert bad.err.strip().count("\n") == 0 and "--logs-days" in bad.err
    write_retention(service.settings.home, logs_days=-2)
    bad = cli("gc")
    assert bad.code == 1 and "retention.logs_days" in bad.err, bad.err


def test_retention_settings_default_and_are_checked(home: Path) -> None:
    assert load_settings(home).retention == Retention()
    for body, key in (("logs_days = -1", "retention.logs_days"),
                      ("events_keep = 1.5", "retention.events_keep"),
                      ("events_days = true", "retention.events_days"),
                      ("log_days = 3", "retention.log_days")):
        (home / "settings.toml").write_text(f"[retention]\n{body}\n")
        with pytest.raises(ValidationError, match=key):
            load_settings(home)
    (home / "settings.toml").write_text("[retention]\nlogs_days = 90\nevents_keep = 0\n")
    retention = load_settings(home).retention
    assert (retention.logs_days, retention.events_keep, retention.events_days) == (90, 0, 30)
