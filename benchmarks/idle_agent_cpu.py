"""Idle cost of an agent: CPU of the agent process while its local runs do nothing.

    .venv/bin/python benchmarks/idle_agent_cpu.py [--runs 100] [--window 20] [--sleep 60]

One real LaunchAgent on a local-process queue in a throwaway home (real SQLite
file, real processes) supervises --runs runs whose job is `sleep --sleep`. Once
every run is running, the CPU time of this process (the agent and the service
it talks to; all of its threads, from time.process_time()) is measured over
--window seconds of wall time and shown as a percentage of one core.

Baseline, measured in the same run: the same process with the same agent
started on the same queue, before anything is enqueued (an agent with no runs).
The supervisors' and the fork server's own CPU over the loaded window is shown
too (from /proc/<pid>/stat), since they are what pushes to the agent.

Goal: the agent with 100 idle runs under 2 % of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from launch_tui.backends import local_rundir as rd
from launch_tui.backends.local_forkserver import running_servers
from launch_tui.core.agent import LaunchAgent
from launch_tui.core.model import RunState
from launch_tui.core.service import LaunchService

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds; 0 once it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0.0
    fields = raw[raw.rfind(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def measure(window_s: float) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) over the window."""
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(window_s)
    return time.process_time() - cpu0, time.monotonic() - wall0


def helpers(home: Path) -> tuple[list[int], list[int]]:
    """Pids of the live supervisors, and of the fork servers, of this home."""
    supervisors = []
    for record in (home / "work").glob(f"*/{rd.SUPERVISOR}"):
        data = json.loads(record.read_text())
        if rd.is_alive(int(data["pid"]), data.get("start_time")):
            supervisors.append(int(data["pid"]))
    return supervisors, [pid for pid, _ in running_servers(home)]


def percent(cpu: float, wall: float) -> str:
    return f"{100 * cpu / wall:6.2f} %"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--sleep", type=int, default=90, help="how long each job sleeps")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="idle-agent-cpu-"))
    src = root / "src"
    src.mkdir()
    (src / "README").write_text("the job is a sleep\n")
    home = root / "home"
    service = await LaunchService.open(home=home)
    agent: LaunchAgent | None = None
    try:
        await service.create_queue("idle", "local-process", {})
        await service.create_code_job(src, f"sleep {args.sleep}", name="sleeper")
        agent = LaunchAgent(service, ["idle"], name="bench", max_jobs=args.runs + 1)
        await agent.start()
        print(f"idle agent CPU benchmark in {root} ({os.cpu_count()} cores)", file=sys.stderr)

        await asyncio.sleep(1.0)  # let the agent settle after its start
        base_cpu, base_wall = await measure(args.window)

        started = time.monotonic()
        for _ in range(args.runs):
            await service.enqueue("sleeper", "idle")
        while True:
            running = await service.list_runs("idle", states=[RunState.RUNNING])
            if len(running) == args.runs:
                break
            assert time.monotonic() - started < args.sleep / 2, (
                f"only {len(running)} of {args.runs} runs running after "
                f"{time.monotonic() - started:.0f} s"
            )
            await asyncio.sleep(0.5)
        ramp = time.monotonic() - started
        print(f"  {args.runs} runs running after {ramp:.1f} s; measuring {args.window:g} s",
              file=sys.stderr)
        await asyncio.sleep(1.0)  # the last runs' first writes to the store are done

        supervisors, servers = helpers(home)
        pids = supervisors + servers
        helper_cpu0 = sum(cpu_seconds(p) for p in pids)
        load_cpu, load_wall = await measure(args.window)
        helper_cpu = sum(cpu_seconds(p) for p in pids) - helper_cpu0
        still = len(await service.list_runs("idle", states=[RunState.RUNNING]))
        assert still == args.runs, f"only {still} runs were still running after the window"
    finally:
        if agent is not None:
            await agent.stop(cancel_runs=True)
        await service.close()
        for pid, _ in running_servers(home):
            os.kill(pid, 9)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(f"CPU of the agent process over {args.window:g} s of wall time, % of one core "
          f"({os.cpu_count()} cores)")
    print(f"{'variant':<48} {'cpu s':>7}  {'cpu %':>8}")
    print(f"{'baseline: the same agent, no runs':<48} {base_cpu:7.3f}  "
          f"{percent(base_cpu, base_wall)}")
    label = f"the agent supervising {args.runs} runs of sleep"
    print(f"{label:<48} {load_cpu:7.3f}  {percent(load_cpu, load_wall)}")
    extra = load_cpu - base_cpu
    print(f"{'  of which the runs (difference)':<48} {extra:7.3f}  {percent(extra, load_wall)}")
    helper_label = f"their {len(supervisors)} supervisors + {len(servers)} fork server(s)"
    print(f"{helper_label:<48} {helper_cpu:7.3f}  {percent(helper_cpu, load_wall)}")
    verdict = "met" if 100 * load_cpu / load_wall < 2 else "NOT met"
    print(f"goal: under 2 % of a core with {args.runs} idle runs: {verdict}")


if __name__ == "__main__":
    asyncio.run(main())
