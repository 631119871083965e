"""Where one local-process dispatch spends its time, stage by stage, beside a direct spawn.

    .venv/bin/python benchmarks/dispatch_stages.py [--items 30] [--interval 0.3]

One LaunchAgent on a local-process queue in a throwaway home (real SQLite file,
real processes). Items are enqueued one at a time, --interval apart, so each
dispatch has the machine to itself; the job prints time.time() and exits. For
each run, every stage is read from what the run itself recorded, as an offset
from the item's enqueue:

  leased, building, starting, running, finished   the run's own timestamps (store)
  launch.json      the backend's launch record ("submitted_at": when it was made)
  supervisor.json  the supervisor's claim of the run ("started_at")
  job.json         the job's pid record, written once its exec has succeeded
  first line       the timestamp the job printed, from the stored log

Medians over the items are printed. Baseline, in the same run: the same job
started --items times with subprocess.Popen from this process, from just before
the call to its first line (what a dispatch would cost with no agent, queue,
build or supervisor). The difference between "first line" and the baseline is
the dispatch's own cost; the stages say which step it is spent in.

Measured figures: benchmarks/README.md (dispatch_latency.py has the goal).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchstores import load
from dispatch_latency import spawn_directly

from launch_tui.core.agent import LaunchAgent
from launch_tui.core.model import RunState
from launch_tui.core.service import LaunchService

JOB = 'import time\nprint(f"{time.time():.6f}", flush=True)\n'
FILES = {"launch.json": "submitted_at", "supervisor.json": "started_at",
         "job.json": "started_at"}


def _record(run_dir: Path, name: str) -> float | None:
    try:
        return float(json.loads((run_dir / name).read_text())[FILES[name]])
    except (OSError, ValueError, KeyError):
        return None


async def dispatch(home: Path, src: Path, items: int, interval: float
                   ) -> dict[str, list[float]]:
    """Each stage's offsets from enqueue, in seconds, over `items` serial dispatches."""
    service = await LaunchService.open(store=f"sqlite:///{home}/launch.db", home=home)
    try:
        await service.create_code_job(src, "python job.py", name="probe")
        await service.create_queue("q", "local-process")
        agent = LaunchAgent(service, ["q"], name="stages", max_jobs=items + 1)
        await agent.start()
        try:
            # One dispatch first, not measured: it starts the home's fork server.
            warm = await service.enqueue("probe", "q")
            enqueued = []
            await asyncio.sleep(1.0)
            for _ in range(items):
                await asyncio.sleep(interval)
                enqueued.append(await service.enqueue("probe", "q"))
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                done = [await service.get_item(i.id) for i in (warm, *enqueued)]
                runs = [await service.get_run(i.run_id) for i in done if i.run_id]
                if len(runs) == len(done) and all(r.state.terminal for r in runs):
                    break
                await asyncio.sleep(0.2)
        finally:
            await agent.stop()
        stages: dict[str, list[float]] = {}
        for item in enqueued:
            run_id = (await service.get_item(item.id)).run_id
            assert run_id is not None, f"item #{item.id} was never claimed"
            run = await service.get_run(run_id)
            assert run.state == RunState.FINISHED, (run.id, run.state, run.reason)
            at = {k: v for k, v in run.timestamps.items() if isinstance(v, float)}
            for name in FILES:
                stamp = _record(home / "work" / run_id, name)
                if stamp is not None:
                    at[name] = stamp
            first = await service.run_logs(run_id, limit=1, streams=("stdout",))
            at["first line"] = float(first[0].text)
            for stage, stamp in at.items():
                stages.setdefault(stage, []).append(stamp - item.created_at)
        return stages
    finally:
        await service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=30)
    parser.add_argument("--interval", type=float, default=0.3,
                        help="seconds between enqueues")
    args = parser.parse_args()
    print(f"dispatch stages ({os.cpu_count()} cores), {load()}")
    with tempfile.TemporaryDirectory(prefix="launch-stages-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        (src / "job.py").write_text(JOB)
        stages = asyncio.run(dispatch(Path(tmp) / "home", src, args.items, args.interval))
        direct = spawn_directly(src, args.items)
    medians = {stage: statistics.median(v) * 1000 for stage, v in stages.items()}
    print(f"ms after enqueue, medians of {args.items} serial dispatches")
    for stage, ms in sorted(medians.items(), key=lambda kv: kv[1]):
        print(f"  {stage:<18} {ms:8.1f}")
    baseline = statistics.median(direct) * 1000
    print(f"  baseline: subprocess.Popen to the first line {baseline:8.1f}")
    print(f"first line: {medians['first line'] / baseline:.2f}x the baseline; "
          f"{medians['first line'] - baseline:.1f} ms of it is the dispatch's own")
    print(json.dumps({"stages_ms": {k: round(v, 2) for k, v in medians.items()},
                      "baseline_ms": round(baseline, 2)}))


if __name__ == "__main__":
    main()
