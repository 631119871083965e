"""Several machines on one PostgreSQL store.

"Machines" here are processes with homes of their own: separate artifact caches,
run directories and fork servers, sharing nothing but the database URL. Agents
are real `launch-tui agent` processes; the fourth machine uses the real CLI.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from launch_tui.core.model import TERMINAL_RUN_STATES, ItemState, RunState
from tests.agent_harness import Lab, cli_argv, script, wait_for

pytestmark = pytest.mark.postgres_only

STALE_S = 3.0
SETTINGS = f"[agent]\nstale_s = {STALE_S}\n"

# Each run's process leaves a mark in a shared directory: a run started twice would
# leave two (runs are one per item: the store refuses a second run of an item).
WORK = script(
    """
    import os, time
    from pathlib import Path
    from helper import greeting
    marks = Path(os.environ["MARKS"])
    run = os.environ["LAUNCH_TUI_RUN_ID"]
    (marks / f"{run}-{os.getpid()}").touch()
    print(greeting(), run, flush=True)
    for i in range(12):
        print(f"step {i}", flush=True)
        time.sleep(0.5)
    print("done", flush=True)
    """
)
HELPER = "def greeting():\n    return 'hello from a snapshot made elsewhere'\n"


async def test_three_agent_machines_and_a_fourth_that_enqueues(lab: Lab, tmp_path: Path
                                                               ) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    fourth = lab.machine("fourth", SETTINGS)
    src = tmp_path / "src"
    src.mkdir()
    (src / "work.py").write_text(WORK)
    (src / "helper.py").write_text(HELPER)
    config = tmp_path / "queue.json"
    config.write_text(json.dumps({"env": {"MARKS": str(marks)}}))

    async def cli(*args: str) -> str:
        r = await lab.cli(*args, home=fourth, within=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    await cli("queue", "create", "shared", "--resource", "local-process", "--config", str(config))
    await cli("job", "create", "code", str(src), "--name", "work", "-e", "python work.py")
    shutil.rmtree(src)  # only the store has the code now
    items = [json.loads(await cli("launch", "-j", "work", "-q", "shared", "--json"))["id"]
             for _ in range(12)]
    homes = [lab.machine(f"m{i}", SETTINGS) for i in range(3)]
    agents = [lab.spawn_agent(["shared"], f"m{i}", "-j", "2", home=home)
              for i, home in enumerate(homes)]

    # The fourth machine follows one run's log as it is written, to its end.
    first = await lab.run_of(items[0], within=60)
    follow = await asyncio.create_subprocess_exec(
        *cli_argv("logs", first.id, "--follow"), cwd=lab.root, env=lab.env(fourth),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    # One agent dies for good in the middle of a run.
    async def busy_on_m1() -> bool:
        runs = await lab.service.list_runs("shared", states=[RunState.RUNNING], limit=100)
        return any(r.agent == "m1" for r in runs)

    await wait_for(busy_on_m1, "m1 to be running something", within=90)
    await agents[1].kill()

    async def all_done() -> bool:
        got = await lab.service.list_items("shared", states=list(ItemState), limit=100)
        if any(i.state in (ItemState.PENDING, ItemState.LEASED) for i in got):
            return False
        runs = await lab.service.list_runs("shared", limit=100)
        return len(runs) == len(got) and all(r.state in TERMINAL_RUN_STATES for r in runs)

    await wait_for(all_done, "every item to end", within=240, interval=0.5)
    out, err = await asyncio.wait_for(follow.communicate(), 30)
    # The follower printed what the run printed, to its end, whichever agent ran it
    # (it may be one the dead agent had started: its process lived on and another
    # agent re-attached to it, or it was crashed before it started).
    assert follow.returncode == 0, err.decode()
    assert "[build] source: fetched code snapshot" in out.decode()
    ended = await lab.service.get_run(first.id)
    assert f"-- run {first.id} {ended.state}" in err.decode()
    lines = [line for line in out.decode().splitlines() if not line.startswith("[")]
    assert lines == await lab.output(first.id)
    if ended.state == RunState.FINISHED:
        assert lines[0] == f"hello from a snapshot made elsewhere {first.id}"
        assert lines[-1] == "done"

    runs = await lab.service.list_runs("shared", limit=100)
    # None lost: every item has exactly one run, in exactly one terminal state.
    assert sorted(r.item_id for r in runs) == sorted(items)
    assert all(r.state in (RunState.FINISHED, RunState.CRASHED) for r in runs), [
        (r.id, r.agent, r.state, r.error_message, r.reason) for r in runs
        if r.state not in (RunState.FINISHED, RunState.CRASHED)]
    # None run twice: one process per finished run, at most one per crashed run (a
    # run its agent died while starting may never have started).
    per_run = Counter(p.name.split("-")[0] for p in marks.iterdir())
    assert all(per_run[r.id] == 1 for r in runs if r.state == RunState.FINISHED), per_run
    assert all(per_run[r.id] <= 1 for r in runs), per_run
    # The dead agent's runs went to the living (re-attached and finished here,
    # since its processes survived it on this one host).
    assert {r.agent for r in runs} <= {"m0", "m2"}
    for run in runs:
        if run.state == RunState.FINISHED:
            assert (await lab.output(run.id))[-1] == "done"
    # Each machine that ran something fetched the snapshot into its own cache.
    assert any((h / "artifacts" / "code").is_dir() for h in (homes[0], homes[2]))
    for agent in (agents[0], agents[2]):
        assert await agent.stop() == 0


SLEEPER = script(
    """
    import time
    print("started", flush=True)
    time.sleep(float(__import__("os").environ.get("NAP", "12")))
    print("woke", flush=True)
    """
)


async def test_an_agent_ten_minutes_ahead_takes_nothing_over(lab: Lab) -> None:
    """An agent whose machine's clock runs ten minutes fast must not see the others'
    heartbeats or leases as ten minutes old: time comes from the database. Debian's
    faketime (installed by scripts/test-services.sh) shifts that agent's clock."""
    queue = await lab.queue("skew")
    job = await lab.job({"main.py": SLEEPER}, "python main.py")
    lab.spawn_agent([queue], "honest", home=lab.machine("honest", SETTINGS))
    item = await lab.service.enqueue(job, queue)
    run = await lab.run_of(item.id, within=60)
    await lab.wait_output(run.id, "started", within=60)
    # A lease held by a live claimer, with a whole minute left.
    await lab.service.enqueue(job, queue, priority="low")
    leased = await lab.service.claim("a-live-claimer", [queue], lease_s=60)
    assert leased is not None

    ahead = lab.spawn_agent(
        [queue], "ahead", home=lab.machine("ahead", SETTINGS),
        prefix=["faketime", "-f", "+10m"])
    # Long enough for several heartbeats, take-over checks and claims by `ahead`.
    await asyncio.sleep(4 * STALE_S)
    assert ahead.proc.poll() is None, ahead.output()

    now = await lab.service.get_run(run.id)
    assert now.agent == "honest", "the fast agent took over a live agent's run"
    assert (await lab.service.get_item(leased.id)).state == ItemState.LEASED, \
        "the fast agent expired a lease with a minute left"
    agents = {a.name: a for a in await lab.service.list_agents()}
    skew = agents["ahead"].heartbeat_at - agents["honest"].heartbeat_at
    assert abs(skew) < 2 * STALE_S, f"heartbeats stamped {skew:.0f} s apart"
    done = await lab.wait_run(run.id, within=60)
    assert done.state == RunState.FINISHED and done.agent == "honest"
    messages = [e.message for e in await lab.service.agent_logs("ahead")]
    assert not any("took over" in m for m in messages), messages
