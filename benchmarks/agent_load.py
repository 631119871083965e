"""Agent under a log flood: 100 runs printing as fast as they can, against plain files.

    .venv/bin/python benchmarks/agent_load.py [--runs 100] [--seconds 20]

One LaunchAgent (max_jobs = --runs) on a local-process queue in a throwaway home
(real SQLite file, real processes). Every job prints 200-byte lines as fast as it
can for --seconds, then prints a last line and exits. Reported:

  stored       bytes of output lines the store holds, per second of the flood
  not stored   lines the agent counted but did not store (the gap markers' total)
  agent CPU    the agent process's CPU time over the flood, as % of one core
  agent RSS    its resident memory at the end
  complete     runs whose stored log ends with the job's last line, or carries
               a marker for what was not stored (must be all of them)
  dispatch     each item's wait from its own enqueue to its run recorded running
               (p50, max), how long the 100 enqueues took (the flood of the runs
               started first slows the later ones), and how long the last of
               the items took to start after the last enqueue

Baseline, in the same run: the same number of processes running the same job
with stdout redirected to a file each (no agent, no store): bytes they wrote per
second. Goal (issue 9): at least 10 MB/s stored with the agent under one core,
no run's output silently cut, dispatch unaffected.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from launch_tui.core.agent import LaunchAgent
from launch_tui.core.gaps import gap_count
from launch_tui.core.model import RunState
from launch_tui.core.service import LaunchService

ACTIVE = [state for state in RunState if not state.terminal]

JOB = """\
import json, os, sys, time
seconds = json.loads(os.environ.get("LAUNCH_TUI_CONFIG", "{}")).get("seconds") or float(sys.argv[1])
line = ("x" * 199 + "\\n").encode()
out = sys.stdout.buffer
end = time.time() + seconds
n = 0
while time.time() < end:
    for _ in range(100):
        out.write(line)
    n += 100
out.write(f"LAST {n}\\n".encode())
out.flush()
"""


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def baseline(root: Path, runs: int, seconds: float) -> float:
    job = root / "flood.py"
    job.write_text(JOB)
    files = [root / f"out-{i}.txt" for i in range(runs)]
    procs = []
    for f in files:
        with open(f, "wb") as fh:
            procs.append(subprocess.Popen([sys.executable, str(job), str(seconds)], stdout=fh))
    for p in procs:
        p.wait()
    total = sum(f.stat().st_size for f in files)
    for f in files:
        f.unlink()
    return total / seconds


async def with_agent(root: Path, runs: int, seconds: float) -> dict[str, float]:
    service = await LaunchService.open(home=root / "home")
    code = root / "code"
    code.mkdir()
    (code / "flood.py").write_text(JOB)
    await service.create_code_job(code, "python flood.py 0", name="flood",
                                  config_defaults={"seconds": seconds})
    await service.create_queue("q", "local-process")
    agent = LaunchAgent(service, ["q"], max_jobs=runs, poll_interval_s=1.0)
    await agent.start()
    cpu0, t0 = cpu_seconds(), time.monotonic()
    items = [await service.enqueue("flood", "q") for _ in range(runs)]
    enqueued = time.time()
    enqueue_s = time.monotonic() - t0
    created = {item.id: item.created_at for item in items}

    async def all_done() -> list:
        # Two one-row queries a poll: listing every run (and masking its spec) twice
        # a second would count against the agent's CPU, in this process.
        while True:
            if not (await service.list_items("q", limit=1, explain=False)
                    or await service.list_runs("q", states=ACTIVE, limit=1)):
                return await service.list_runs("q", limit=runs + 1)
            await asyncio.sleep(0.5)

    finished = await all_done()
    took = time.monotonic() - t0
    cpu = cpu_seconds() - cpu0
    rss = rss_mb()
    stored_bytes = 0
    not_stored = 0
    complete = 0
    last_start = 0.0
    waits: list[float] = []
    # The slowest run's stages, after enqueue: where dispatch waits when it does.
    stages = {"queued": 0.0, "building": 0.0, "starting": 0.0}
    for run in finished:
        for stage in stages:
            stages[stage] = max(stages[stage], run.timestamps.get(stage, 0.0) - enqueued)
        lines = await service.run_logs(run.id, limit=10_000_000)
        gaps = sum(gap_count(x.text) for x in lines if x.stream == "agent")
        not_stored += gaps
        out = [x for x in lines if x.stream == "stdout"]
        stored_bytes += sum(len(x.text) + 1 for x in out)
        if (out and out[-1].text.startswith("LAST ")) or gaps:
            complete += 1
        last_start = max(last_start, run.timestamps.get("running", 0.0) - enqueued)
        waits.append(run.timestamps.get("running", float("inf")) - created[run.item_id])
    await agent.stop()
    await service.close()
    return {"stored_MBps": stored_bytes / seconds / 1e6, "not_stored_lines": not_stored,
            "agent_cpu_pct": 100 * cpu / took, "agent_rss_MB": rss,
            "complete_runs": complete, "runs": len(items), "wall_s": took,
            "last_claim_after_enqueue_s": stages["queued"],
            "last_build_after_enqueue_s": stages["building"],
            "last_submit_after_enqueue_s": stages["starting"],
            "last_start_after_enqueue_s": last_start,
            "enqueue_all_s": enqueue_s,
            "enqueue_to_running_p50_s": statistics.median(waits),
            "enqueue_to_running_max_s": max(waits)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = baseline(Path(tmp), args.runs, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        res = asyncio.run(with_agent(Path(tmp), args.runs, args.seconds))
    print(f"log flood: {args.runs} runs x {args.seconds:g}s of 200-byte lines")
    print(f"  baseline: the same processes writing to files   {base / 1e6:8.1f} MB/s")
    print(f"  stored by the agent                             {res['stored_MBps']:8.1f} MB/s")
    print(f"  lines counted, not stored (marked)              {res['not_stored_lines']:8,d}")
    print(f"  agent CPU over the flood                        {res['agent_cpu_pct']:8.1f} %")
    print(f"  agent RSS at the end                            {res['agent_rss_MB']:8.1f} MB")
    print(f"  runs complete or marked                         {res['complete_runs']:5d}/"
          f"{res['runs']}")
    print(f"  enqueue -> running, each item: p50 / max        "
          f"{res['enqueue_to_running_p50_s']:8.2f} / {res['enqueue_to_running_max_s']:.2f} s")
    print(f"  the {res['runs']} enqueues took                            "
          f"{res['enqueue_all_s']:8.2f} s")
    print(f"  last run started after the last enqueue         "
          f"{res['last_start_after_enqueue_s']:8.2f} s")
    print("    (last claimed {last_claim_after_enqueue_s:.2f} s, building "
          "{last_build_after_enqueue_s:.2f} s, submitting {last_submit_after_enqueue_s:.2f} s)"
          .format(**res))
    print(json.dumps({"baseline_MBps": round(base / 1e6, 1),
                      **{k: round(v, 2) for k, v in res.items()}}))
    os._exit(0)


if __name__ == "__main__":
    main()
