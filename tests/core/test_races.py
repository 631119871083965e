"""Races between processes sharing one store, each reproducing a bug seen on
PostgreSQL, run on whichever store the suite runs on: expired leases claimed
twice, a cancel overwriting a finished run, and two processes starting one agent
name. Each racer is its own OS process with its own connections."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch_tui.core.events import RunStateChanged
from launch_tui.core.model import TERMINAL_RUN_STATES, ItemState, RunState
from launch_tui.core.service import LaunchService
from tests.core.conftest import REPO


@pytest.fixture
async def queue(service: LaunchService, code_dir: Path) -> str:
    await service.create_code_job(code_dir, "python train.py", name="train")
    await service.create_queue("q", "local-process")
    return "q"


async def _run_all(*argvs: list[str], within: float = 240) -> list[str]:
    """Start every process at once; their stdout, once all exited 0."""
    procs = [await asyncio.create_subprocess_exec(
        *argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for argv in argvs]
    outs = await asyncio.gather(*(asyncio.wait_for(p.communicate(), within) for p in procs))
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    return [out.decode() for out, _ in outs]


CLAIMER = r"""
import asyncio, json, sys
from launch_tui.core.errors import ConflictError
from launch_tui.core.service import LaunchService
async def main(name, tasks):
    svc = await LaunchService.open()
    got, lost = [], 0
    async def worker(i):
        nonlocal lost
        while True:
            item = await svc.claim(f"{name}-{i}", ["q"])
            if item is None:
                return
            try:
                await svc.acknowledge(item.id, f"{name}-{i}")
                got.append(item.id)
            except ConflictError:
                lost += 1  # a race lost and said so: allowed, never applied
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    await svc.close()
    print(json.dumps({"got": got, "lost": lost}))
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_expired_leases_are_claimed_once(service: LaunchService, queue: str) -> None:
    n = 200
    for _ in range(n):
        await service.enqueue("train", queue)
    # Leases that ran out at once: every claimer's claim first sends them back.
    for i in range(n):
        assert await service.claim(f"gone-{i % 7}", [queue], lease_s=-1) is not None
    outs = await _run_all(*([sys.executable, "-c", CLAIMER, f"p{k}", "4"] for k in range(2)))
    results = [json.loads(o) for o in outs]
    got = [i for r in results for i in r["got"]]
    assert len(got) == n and len(set(got)) == n, "each expired item is run exactly once"
    runs = await service.list_runs(queue, limit=1000)
    assert len(runs) == n and len({r.item_id for r in runs}) == n
    items = await service.list_items(queue, states=list(ItemState), limit=1000)
    assert {i.state for i in items} == {ItemState.CLAIMED}, "no item is left leased"


RACER = r"""
import asyncio, json, sys, time
from launch_tui.core.errors import ConflictError
from launch_tui.core.model import RunState
from launch_tui.core.service import LaunchService
async def main(what, run_ids, start_at):
    svc = await LaunchService.open()
    # Both racers start at one moment, from opposite ends: they meet in the middle.
    if what == "finish":
        run_ids = run_ids[::-1]
    await asyncio.sleep(max(0.0, start_at - time.time()))
    won = lost = 0
    sem = asyncio.Semaphore(8)
    async def one(run_id):
        nonlocal won, lost
        async with sem:
            try:
                if what == "cancel":
                    await svc.cancel(run_id, reason="race")
                else:
                    await svc.set_run_state(run_id, RunState.FINISHED, exit_code=0)
                won += 1
            except ConflictError:
                lost += 1
    await asyncio.gather(*(one(r) for r in run_ids))
    await svc.close()
    print(json.dumps({"won": won, "lost": lost}))
asyncio.run(main(sys.argv[1], json.load(open(sys.argv[2])), float(sys.argv[3])))
"""


async def test_cancel_racing_finish_leaves_one_terminal_state(
        service: LaunchService, queue: str, tmp_path: Path) -> None:
    n = 800
    for _ in range(n):
        await service.enqueue("train", queue)
    run_ids = []
    for _ in range(n):
        claimed = await service.claim_run("a1", [queue])
        assert claimed.run is not None
        await service.set_run_state(claimed.run.id, RunState.RUNNING)
        run_ids.append(claimed.run.id)
    first = await service.last_event_seq()
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps(run_ids))
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    start_at = str(time.time() + 3)
    outs = await _run_all([sys.executable, str(script), "cancel", str(ids), start_at],
                          [sys.executable, str(script), "finish", str(ids), start_at])
    cancel, finish = (json.loads(o) for o in outs)
    assert cancel["won"] + cancel["lost"] == n and finish["won"] + finish["lost"] == n
    # Finishing is allowed after a cancel (the job ended while it was being stopped),
    # so every run ends finished, whoever came first; never `stopping` after finished.
    runs = {r.id: r for r in await service.list_runs(queue, limit=2 * n)}
    assert {r.state for r in runs.values()} == {RunState.FINISHED}
    assert cancel["won"] > 0 and cancel["lost"] > 0, "the two racers should have crossed"
    terminal: dict[str, list[str]] = {}
    async for ev in _events_after(service, first):
        if isinstance(ev, RunStateChanged) and RunState(ev.state) in TERMINAL_RUN_STATES:
            terminal.setdefault(ev.run_id, []).append(ev.state)
    assert all(terminal.get(r) == ["finished"] for r in run_ids), \
        "each run announced exactly one terminal state"


async def _events_after(service: LaunchService, seq: int):  # type: ignore[no-untyped-def]
    while batch := await service.events_after(seq):
        for ev in batch:
            yield ev
        seq = batch[-1].seq


REGISTER = r"""
import asyncio, sys, time
from launch_tui.core.errors import LaunchError
from launch_tui.core.service import LaunchService
async def main(start_at):
    svc = await LaunchService.open()
    await asyncio.sleep(max(0.0, start_at - time.time()))
    try:
        await svc.register_agent("shared-name", ["q"])
        print("won")
        # Alive until every other process has tried: the name of a process that
        # exited is free again, rightly.
        await asyncio.sleep(max(0.0, start_at + 5 - time.time()))
    except LaunchError as exc:
        print("lost:", exc)
    finally:
        await svc.close()
asyncio.run(main(float(sys.argv[1])))
"""


async def test_one_name_started_by_four_processes_at_once(queue: str) -> None:
    start_at = str(time.time() + 3)
    outs = await _run_all(*([sys.executable, "-c", REGISTER, start_at] for _ in range(4)))
    won = [o for o in outs if o.strip() == "won"]
    lost = [o.strip() for o in outs if o.startswith("lost:")]
    assert len(won) == 1, outs
    assert len(lost) == 3 and all("shared-name" in line and "\n" not in line for line in lost)
