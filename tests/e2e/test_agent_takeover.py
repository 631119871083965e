"""Agents that die or freeze: their runs are taken over, and a frozen agent that wakes
up after losing its name writes nothing more.

Real `launch-tui agent` processes, real local-process runs, the real store; the
liveness window is shortened to 2 s through the home's settings.toml. A frozen
agent is stopped between its writes (`AgentProcess.freeze` says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from launch_tui.core.model import AgentStatus, RunState
from launch_tui.core.store import runs as runs_db
from launch_tui.core.store.engine import writer_lock_path
from tests.agent_harness import Lab, script, wait_for

STALE_S = 2.0

GATED = script(
    """
    import os, time
    from pathlib import Path
    print("before", flush=True)
    gate = Path(os.environ["GATE"])
    while not gate.exists():
        time.sleep(0.05)
    print("after", flush=True)
    """
)

# Ends, after the gate, without printing: only the end of the run tells its agent
# anything (no output write to find the run taken by).
QUIET_END = script(
    """
    import os, sys, time
    from pathlib import Path
    print("before", flush=True)
    gate = Path(os.environ["GATE"])
    while not gate.exists():
        time.sleep(0.05)
    sys.exit(3)
    """
)

TICKS = script(
    """
    import time
    for i in range(40):
        print(f"tick {i}", flush=True)
        time.sleep(0.2)
    """
)


@pytest.fixture
async def lab(tmp_path: Path, store_url: str | None) -> AsyncIterator[Lab]:
    home = tmp_path / "home"
    home.mkdir()
    (home / "settings.toml").write_text(f"[agent]\nstale_s = {STALE_S}\n")
    lab = await Lab.open(tmp_path, store_url)
    try:
        yield lab
    finally:
        await lab.close()


async def test_runs_of_an_agent_killed_for_good_are_taken_over(lab: Lab) -> None:
    first, run, gate = await lab.gated_run("first", GATED, "before")
    await first.kill()  # SIGKILL, never restarted

    second = await lab.agent(["local"], name="second", heartbeat_s=0.5)

    async def taken() -> bool:
        return (await lab.service.get_run(run.id)).agent == second.name

    await wait_for(taken, "the second agent to take the run over", within=30)
    gate.touch()
    done = await lab.wait_run(run.id, within=60)
    assert done.state == RunState.FINISHED, done.error_message
    # The job kept running through the take-over; its output is stored once.
    assert await lab.output(run.id) == ["before", "after"]
    messages = [e.message for e in await lab.service.agent_logs(second.name)]
    assert any(f"took over run {run.id} from first" in m for m in messages), messages


async def test_a_run_whose_process_died_with_its_agent_is_crashed_and_retried(
    lab: Lab, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    queue = await lab.queue(config={"env": {"GATE": str(gate)}, "max_retries": 1})
    job = await lab.job({"main.py": GATED}, "python main.py")
    first = lab.spawn_agent([queue], "first")
    item = await lab.service.enqueue(job, queue, priority="high")
    run = await lab.run_of(item.id, within=60)
    await lab.wait_output(run.id, "before", within=60)
    await first.kill()
    lab.kill_run_processes(run.id)  # the machine's processes went with it
    gate.touch()  # a second attempt will get through

    await lab.agent([queue], name="second", heartbeat_s=0.5)
    done = await lab.wait_run(run.id, within=60)
    assert done.state == RunState.CRASHED
    # Enqueued again once (the queue allows one retry), and that attempt runs.
    retry = [i for i in await lab.service.list_items(queue, states=None) if i.id != item.id]
    shown = [(i.id, i.state, i.run_id, i.leased_by, i.error_message) for i in retry]
    assert len(retry) == 1 and retry[0].priority == "high", shown
    assert f"requeued as item #{retry[0].id} (retry 1 of 1)" in (done.reason or "")
    again = await lab.wait_run((await lab.run_of(retry[0].id)).id, within=60)
    assert again.state == RunState.FINISHED, again.error_message
    assert await lab.output(again.id) == ["before", "after"]


async def test_a_crash_without_retries_left_is_not_requeued(lab: Lab, tmp_path: Path) -> None:
    queue = await lab.queue(config={"env": {"GATE": str(tmp_path / "never")}})
    job = await lab.job({"main.py": GATED}, "python main.py")
    first = lab.spawn_agent([queue], "first")
    item = await lab.service.enqueue(job, queue)
    run = await lab.run_of(item.id, within=60)
    await lab.wait_output(run.id, "before", within=60)
    await first.kill()
    lab.kill_run_processes(run.id)

    await lab.agent([queue], name="second", heartbeat_s=0.5)
    done = await lab.wait_run(run.id, within=60)
    assert done.state == RunState.CRASHED
    assert "requeued" not in (done.reason or "")
    assert [i.id for i in await lab.service.list_items(queue, states=None)] == [item.id]


async def test_a_frozen_agent_that_lost_its_name_stops_and_writes_nothing(lab: Lab) -> None:
    frozen, run, _ = await lab.gated_run("w", TICKS, "tick 3")

    await frozen.freeze(lab)
    try:
        async def stale() -> bool:
            (row,) = [a for a in await lab.service.list_agents() if a.name == "w"]
            return lab.service._store.now() - row.heartbeat_at > STALE_S

        await wait_for(stale, "the frozen agent's heartbeat to go stale", within=30)
        successor = lab.spawn_agent(["local"], "w")

        async def reattached() -> bool:
            messages = [e.message for e in await lab.service.agent_logs("w")]
            return any(m.startswith(f"re-attached to run {run.id}") for m in messages)

        await wait_for(reattached, "the successor to re-attach the run", within=30)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)

    # The woken agent finds its name taken, stops with an error and a reason.
    code = await asyncio.to_thread(frozen.proc.wait, 30)
    assert code == 1
    assert "lost it and stops supervising" in frozen.output()

    done = await lab.wait_run(run.id, within=60)
    assert done.state == RunState.FINISHED, done.error_message
    # Exactly what the job printed, each line once.
    assert await lab.output(run.id) == [f"tick {i}" for i in range(40)]
    assert await successor.stop() == 0


@contextlib.asynccontextmanager
async def store_outage(lab: Lab) -> AsyncIterator[None]:
    """No agent can write an agent row (a heartbeat) while this lasts, as in a database
    restart: on SQLite this process holds the writers' lock; on PostgreSQL it holds
    an EXCLUSIVE lock on the agents table (reads go on)."""
    path = writer_lock_path(lab.service._store.url)
    if path is not None:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock
        return
    assert lab.store_url is not None
    url = lab.store_url.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute("LOCK TABLE agents IN EXCLUSIVE MODE")
        yield
        await conn.commit()


async def test_after_an_outage_every_agent_survived_no_run_changes_hands(lab: Lab) -> None:
    """When the store comes back, every agent's last heartbeat is older than the
    liveness window. The first agent to write again must not take the runs of
    another that simply comes back a moment later."""
    stale_s = 4.0  # wide enough that the late agent's heartbeat clearly comes first
    (lab.home / "settings.toml").write_text(f"[agent]\nstale_s = {stale_s}\n")
    late, run, gate = await lab.gated_run("late", GATED, "before")
    early = lab.spawn_agent(["local"], "early")

    async def early_started() -> bool:
        return any(e.message.startswith("started")
                   for e in await lab.service.agent_logs("early"))

    await wait_for(early_started, "the second agent to start", within=60)

    async def beaten_since(name: str, since: float) -> bool:
        agents = {a.name: a for a in await lab.service.list_agents()}
        return agents[name].heartbeat_at > since

    async def all_stale() -> bool:
        now = lab.service._store.now()
        return all(now - a.heartbeat_at > stale_s for a in await lab.service.list_agents())

    async with store_outage(lab):
        await late.freeze(lab)  # it comes back after the store does
        await wait_for(all_stale, "every agent's heartbeat to go stale", within=30)
        back = lab.service._store.now()
    await wait_for(lambda: beaten_since("early", back), "the early agent to beat again",
                   within=30)
    os.kill(late.pid, signal.SIGCONT)
    # Once the late agent has beaten again it is live to everyone: had the early
    # agent taken its run (as it did at once without the fix), that is done by now.
    await wait_for(lambda: beaten_since("late", back), "the late agent to beat again",
                   within=30)

    messages = [e.message for e in await lab.service.agent_logs("early")]
    assert not any("took over" in m for m in messages), messages
    assert (await lab.service.get_run(run.id)).agent == "late"
    gate.touch()
    done = await lab.wait_run(run.id, within=60)
    assert done.state == RunState.FINISHED, done.error_message
    assert await lab.output(run.id) == ["before", "after"]
    assert await late.stop() == 0
    assert await early.stop() == 0


async def test_an_agent_cut_off_while_its_run_was_taken_leaves_it_to_the_taker(
        lab: Lab) -> None:
    cut_off, run, _ = await lab.gated_run("cut-off", TICKS, "tick 3")
    taker = lab.spawn_agent(["local"], "taker")

    await cut_off.freeze(lab)
    try:
        async def taken() -> bool:
            return (await lab.service.get_run(run.id)).agent == "taker"

        await wait_for(taken, "the other agent to take the run over", within=30)
    finally:
        os.kill(cut_off.pid, signal.SIGCONT)

    done = await lab.wait_run(run.id, within=60)
    assert done.state == RunState.FINISHED, done.error_message
    # Exactly what the job printed, each line once: the agent that came back
    # stored nothing more of a run that is no longer its own.
    assert await lab.output(run.id) == [f"tick {i}" for i in range(40)]
    messages = [e.message for e in await lab.service.agent_logs("cut-off")]
    assert any(m.startswith(f"run {run.id} was taken over by taker") for m in messages), \
        messages
    assert await cut_off.stop() == 0
    assert await taker.stop() == 0


async def test_an_agent_whose_run_was_taken_does_not_write_its_end(lab: Lab) -> None:
    """The run is taken over while its agent goes on (what it finds when it comes back
    from a freeze or a cut-off before its heartbeat notices): the run's end, which
    only the taker may write, is refused to it and it lets go of the run."""
    gate = lab.root / "gate"
    queue = await lab.queue(config={"env": {"GATE": str(gate)}})
    job = await lab.job({"main.py": QUIET_END}, "python main.py")
    agent = await lab.agent([queue], name="x", heartbeat_s=0.5)
    run = await lab.run_of((await lab.service.enqueue(job, queue)).id)
    await lab.wait_output(run.id, "before")
    # What a take-over by "y" writes (runs_db.reassign), without "x" looking gone.
    await lab.service._store.write(
        lambda c: runs_db.reassign(c, run.id, "x", "y", lab.service._store.now()))
    gate.touch()

    async def let_go() -> list[str] | None:
        messages = [e.message for e in await lab.service.agent_logs("x")]
        said = any(m.startswith(f"run {run.id} was taken over by y") for m in messages)
        return messages if said else None

    messages = await wait_for(let_go, "agent x to let go of the run", within=30)
    assert not any(m.startswith(f"run {run.id} failed") for m in messages), messages
    now = await lab.service.get_run(run.id)
    assert (now.state, now.agent, now.exit_code) == (RunState.RUNNING, "y", None)
    await wait_for(lambda: agent.status == AgentStatus.POLLING, "agent x to be idle",
                   within=10)
