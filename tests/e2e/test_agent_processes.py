"""Agents and CLI clients in their own OS processes, sharing one home (one SQLite file).

Headless `launch-tui agent` processes drain a queue together, an agent is
SIGKILLed mid-run and started again under the same name, and `launch-tui logs
--follow` in another process shows a run's lines while it runs.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter

from launch_tui.backends import local_rundir as rd
from launch_tui.core.events import ItemStateChanged
from launch_tui.core.model import ErrorStage, ItemState, RunState
from tests.agent_harness import Lab, cli_argv, script, wait_for


async def agents_registered(lab: Lab, *names: str) -> bool:
    known = {a.name for a in await lab.service.list_agents()}
    return known >= set(names)


# ---------------------------------------------------------------- two agents, one queue

# Each execution appends its run id to a ledger, so a run executed twice would show.
LEDGER_CODE = (
    "import os; f = open(os.environ['LEDGER'], 'a'); "
    "f.write(os.environ['LAUNCH_TUI_RUN_ID'] + chr(10)); f.close(); print(1)"
)
ITEMS = 100


async def test_two_agent_processes_drain_one_queue_each_item_run_once(lab: Lab) -> None:
    ledger = lab.root / "ledger.txt"
    queue = await lab.queue(config={"env": {"LEDGER": str(ledger)}})
    job = await lab.job({"README": "one-liner\n"}, f'python -c "{LEDGER_CODE}"')
    first = lab.spawn_agent([queue], "agent-a", "-j", "4", "--poll-interval", "1")
    second = lab.spawn_agent([queue], "agent-b", "-j", "4", "--poll-interval", "1")
    await wait_for(lambda: agents_registered(lab, "agent-a", "agent-b"),
                   "both agents to register", within=20)

    items = [await lab.service.enqueue(job, queue) for _ in range(ITEMS)]

    async def drained() -> list | None:
        runs = await lab.service.list_runs(queue)
        return runs if len(runs) >= ITEMS and all(r.state.terminal for r in runs) else None

    runs = await wait_for(drained, f"{ITEMS} runs to end", within=50, interval=0.25)

    assert len(runs) == ITEMS
    assert Counter(r.state for r in runs) == {RunState.FINISHED: ITEMS}
    by_item = Counter(r.item_id for r in runs)
    assert set(by_item) == {i.id for i in items} and set(by_item.values()) == {1}
    final_items = await lab.service.list_items(queue, states=None)
    assert {i.state for i in final_items} == {ItemState.CLAIMED}
    assert {i.run_id for i in final_items} == {r.id for r in runs}
    # Every run's process ran exactly once, and printed what it should.
    executions = Counter(ledger.read_text().split())
    assert executions == Counter({r.id: 1 for r in runs})
    for run in runs[:5]:
        assert await lab.output(run.id) == ["1"]
    took = Counter(r.agent for r in runs)
    assert set(took) == {"agent-a", "agent-b"}, took

    # SIGTERM is a clean stop.
    assert await first.stop() == 0, first.output()
    assert await second.stop() == 0, second.output()


# ---------------------------------------------------------------- SIGKILL and restart

GATED = script(
    """
    import os, time
    from pathlib import Path

    gates = Path(os.environ["GATES"])
    run_id = os.environ["LAUNCH_TUI_RUN_ID"]

    def wait(name):
        while not (gates / f"{run_id}-{name}").exists():
            time.sleep(0.05)

    print("before", flush=True)
    wait("during")
    print("during", flush=True)
    wait("after")
    print("after", flush=True)
    """
)


async def test_agent_killed_and_restarted_reattaches_requeues_cancels_and_reports_crashes(
    lab: Lab,
) -> None:
    gates = lab.root / "gates"
    gates.mkdir()
    queue = await lab.queue(config={"env": {"GATES": str(gates)}})
    gated = await lab.job({"train.py": GATED}, "python train.py", name="gated")
    quick = await lab.job({"quick.py": "print('quick')\n"}, "python quick.py", name="quick")

    first_life = lab.spawn_agent([queue], "worker", "-j", "3")
    survivor_item = await lab.service.enqueue(gated, queue)
    victim_item = await lab.service.enqueue(gated, queue)
    doomed_item = await lab.service.enqueue(gated, queue)
    survivor = await lab.run_of(survivor_item.id)
    victim = await lab.run_of(victim_item.id)
    doomed = await lab.run_of(doomed_item.id)
    for run in (survivor, victim, doomed):
        await lab.wait_output(run.id, "before")
    doomed_job = lab.record(doomed.id, rd.JOB)
    assert doomed_job is not None

    await first_life.kill()
    # A user cancels a run while its agent is down: it can only be marked stopping.
    assert await lab.service.cancel(doomed.id) == f"run {doomed.id} stopping"

    # While no agent is up: the victim's job and supervisor die...
    lab.kill_run_processes(victim.id)

    def victim_gone() -> bool:
        return not any(
            (rec := lab.record(victim.id, name)) and rd.is_alive(rec["pid"], rec["start_time"])
            for name in (rd.SUPERVISOR, rd.JOB)
        )

    await wait_for(victim_gone, "the victim's processes to die", within=10)
    # ...the survivor writes a line nobody stores yet...
    (gates / f"{survivor.id}-during").touch()
    output_file = lab.run_dir(survivor.id) / rd.OUTPUT
    await wait_for(lambda: "during" in output_file.read_text(), "the job to print 'during'")
    assert await lab.output(survivor.id) == ["before"]
    # ...and an item is leased to the dead agent but never acknowledged.
    orphan_item = await lab.service.enqueue(quick, queue)
    leased = await lab.service.claim("worker", [queue])
    assert leased is not None and leased.id == orphan_item.id
    assert leased.state == ItemState.LEASED

    second_life = lab.spawn_agent([queue], "worker", "-j", "3")

    async def reattached() -> bool:
        messages = [e.message for e in await lab.service.agent_logs("worker")]
        return f"re-attached to run {survivor.id} on local-process" in messages

    await wait_for(reattached, "the restarted agent to re-attach the survivor")
    (gates / f"{survivor.id}-after").touch()

    survivor = await lab.wait_run(survivor.id)
    assert survivor.state == RunState.FINISHED, survivor.error_message
    assert survivor.exit_code == 0
    # Lines from before the kill, while it was down, and after the restart; none twice.
    assert await lab.output(survivor.id) == ["before", "during", "after"]

    victim = await lab.wait_run(victim.id)
    assert victim.state == RunState.CRASHED
    assert victim.error_stage == ErrorStage.RUN
    assert "vanished" in (victim.reason or "")

    # The restarted agent carried out the cancel that was waiting for it.
    doomed = await lab.wait_run(doomed.id)
    assert doomed.state == RunState.STOPPED
    assert not rd.is_alive(doomed_job["pid"], doomed_job["start_time"])
    assert await lab.output(doomed.id) == ["before"]

    orphan_run = await lab.wait_run((await lab.run_of(orphan_item.id)).id)
    assert orphan_run.state == RunState.FINISHED
    assert await lab.output(orphan_run.id) == ["quick"]
    history = [
        (e.state, e.reason or "")
        for e in await lab.service.events_after(0, limit=10_000)
        if isinstance(e, ItemStateChanged) and e.item_id == orphan_item.id
    ]
    states = [s for s, _ in history]
    # The returned lease goes back to pending; the agent then claims the item and
    # creates its run in one transaction (no second lease).
    assert states == ["leased", "pending", "claimed"], history
    assert "worker restarted before acknowledging it" in history[1][1]

    # Every item ended in exactly one terminal state, through exactly one run.
    runs = await lab.service.list_runs(queue)
    assert sorted(r.item_id for r in runs) == sorted(
        [survivor_item.id, victim_item.id, doomed_item.id, orphan_item.id]
    )
    assert all(r.state.terminal for r in runs)
    for item in await lab.service.list_items(queue, states=None):
        assert item.state == ItemState.CLAIMED
    assert {(await lab.service.get_item(survivor_item.id)).run_id} == {survivor.id}

    assert await second_life.stop() == 0, second_life.output()


# ---------------------------------------------------------------- live logs from another process

TWO_LINES = script(
    """
    import os, time
    from pathlib import Path

    print("first line", flush=True)
    gate = Path(os.environ["GATE"])
    while not gate.exists():
        time.sleep(0.05)
    print("second line", flush=True)
    """
)


async def test_logs_follow_in_another_process_prints_while_running_and_exits_at_end(
    lab: Lab,
) -> None:
    gate = lab.root / "gate"
    queue = await lab.queue(config={"env": {"GATE": str(gate)}})
    job = await lab.job({"train.py": TWO_LINES}, "python train.py")
    await lab.agent([queue])
    item = await lab.service.enqueue(job, queue)
    run = await lab.wait_run((await lab.run_of(item.id)).id, {RunState.RUNNING})

    follower = await asyncio.create_subprocess_exec(
        *cli_argv("logs", run.id, "--follow"), cwd=lab.root, env=lab.env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert follower.stdout is not None and follower.stderr is not None
    try:
        seen: list[str] = []
        while not seen or seen[-1] != "first line":
            line = await asyncio.wait_for(follower.stdout.readline(), 20)
            assert line, f"the follower ended early after {seen}"
            seen.append(line.decode().rstrip("\n"))
        # Build lines come first, marked as such.
        assert all(text.startswith("[build] ") for text in seen[:-1]), seen
        # The job cannot have ended: it waits for the gate, which does not exist yet.
        assert (await lab.service.get_run(run.id)).state == RunState.RUNNING
        assert follower.returncode is None

        gate.touch()
        line = await asyncio.wait_for(follower.stdout.readline(), 20)
        assert line.decode().rstrip("\n") == "second line"
        rest = await asyncio.wait_for(follower.stdout.read(), 20)
        assert rest == b""
        code = await asyncio.wait_for(follower.wait(), 20)
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()
    assert code == 0
    err = (await follower.stderr.read()).decode()
    assert f"-- run {run.id} finished (exit code 0)" in err
    assert (await lab.service.get_run(run.id)).state == RunState.FINISHED


# ---------------------------------------------------------------- hang-up


async def test_a_hang_up_stops_an_agent_cleanly_unless_it_runs_under_nohup(lab: Lab) -> None:
    """The SSH session that started `launch-tui agent` ends: SIGHUP stops it the way
    SIGTERM does (exit 0, status stopped, the name free again). Under nohup the
    hang-up stays ignored and the agent keeps serving."""
    import os
    import signal

    from launch_tui.core.model import AgentStatus

    queue = await lab.queue()

    async def status(name: str) -> AgentStatus | None:
        found = [a.status for a in await lab.service.list_agents() if a.name == name]
        return found[0] if found else None

    plain = lab.spawn_agent([queue], "agent-hup", "--poll-interval", "1")
    kept = lab.spawn_agent([queue], "agent-nohup", "--poll-interval", "1", prefix=["nohup"])
    await wait_for(lambda: agents_registered(lab, "agent-hup", "agent-nohup"),
                   "both agents to register", within=20)
    for agent in (plain, kept):
        os.kill(agent.pid, signal.SIGHUP)
    assert await asyncio.to_thread(plain.proc.wait, 20) == 0, plain.output()
    assert await status("agent-hup") == AgentStatus.STOPPED
    # Both were signalled together; a hang-up the nohup'd one did not ignore would
    # have ended it at once, long before the other finished stopping cleanly.
    assert kept.proc.poll() is None, kept.output()
    assert await status("agent-nohup") != AgentStatus.STOPPED
    assert await kept.stop() == 0, kept.output()
