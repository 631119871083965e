"""Dispatch latency on SQLite and PostgreSQL: from enqueue to the job's first line,
beside spawning the job directly.

    eval "$(scripts/test-services.sh env)"     # LAUNCH_TUI_TEST_PG: adds PostgreSQL
    .venv/bin/python benchmarks/dispatch_latency.py [--items 200] [--poll-items 200]
        [--stores sqlite,postgres] [--pg-url URL]

One LaunchAgent on a local-process queue, real processes, on each store in turn
(--stores, see benchmarks/benchstores.py): a fresh SQLite file in a throwaway
home, and a fresh PostgreSQL database created for the store's measurements and
dropped after them. Items are enqueued one at a time at random (exponential)
intervals, the way people and sweeps enqueue. The latency of an item is the
timestamp its job prints as the very first thing it does (time.time(), stored
in the run's logs) minus the item's enqueue time.

Variants of the same agent, on each store, measured in the same run:

  event-driven   LaunchAgent(...): woken by the change feed the moment an item is
                 enqueued (the settings' poll interval stays as a fallback)
  polling 10 s   LaunchAgent(..., event_driven=False, poll_interval_s=10): the
                 baseline, W&B Launch's agent default interval

  baseline: subprocess   the same job started with subprocess.Popen from this
                 process, --items times one after another: what starting the
                 process costs with no agent, queue, build or supervisor at all

The agent also claims as soon as one of its runs ends (a slot is free). So that
the polling baseline really waits for its polls, every job holds its slot
until its variant's last item has started; both variants run the same job
under the same arrival process, so they see the same load (up to --items runs
supervised at once). A third row runs the event-driven agent again with jobs
that end at once, i.e. without that load. `--poll-items 0` skips the slow
polling variant.

Measured figures: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchstores import StoreKind, add_arguments, chosen, durability, fresh, load, server_version

from launch_tui.core.agent import LaunchAgent
from launch_tui.core.service import LaunchService

JOB = """\
import time
started = time.time()  # first thing: this is "process start"
print(f"{started:.6f}", flush=True)
import json, os
from pathlib import Path
hold = json.loads(os.environ["LAUNCH_TUI_CONFIG"])["hold"]
while hold and not Path(hold).exists():
    time.sleep(0.5)
"""


@dataclass
class Result:
    start: list[float]  # enqueue -> the job's own first timestamp
    claim: list[float]  # enqueue -> the agent leased the item


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def measure(
    service: LaunchService,
    root: Path,
    label: str,
    *,
    items: int,
    mean_interval_s: float,
    seed: int,
    hold: bool = True,
    **agent_kw: object,
) -> Result:
    queue = f"q-{label}"
    release = root / f"release-{label}"
    await service.create_queue(queue, "local-process", {})
    agent = LaunchAgent(service, [queue], name=f"bench-{label}", max_jobs=items + 1,
                        **agent_kw)  # type: ignore[arg-type]
    await agent.start()
    rng = random.Random(seed)
    enqueued = []
    t0 = time.monotonic()
    try:
        for _ in range(items):
            await asyncio.sleep(rng.expovariate(1 / mean_interval_s))
            enqueued.append(
                await service.enqueue("probe", queue, config={"hold": str(release) if hold else ""})
            )
            print(f"\r  {label}: enqueued {len(enqueued)}/{items} "
                  f"({time.monotonic() - t0:.0f}s)", end="", file=sys.stderr, flush=True)
        # Wait until every job has printed its start time, then let them all end.
        starts: dict[int, float] = {}
        deadline = time.monotonic() + 120
        while len(starts) < items:
            assert time.monotonic() < deadline, f"{label}: only {len(starts)} jobs started"
            for item in enqueued:
                if item.id in starts:
                    continue
                current = await service.get_item(item.id)
                if current.run_id is None:
                    continue
                lines = await service.run_logs(current.run_id, limit=1, streams=("stdout",))
                if lines:
                    starts[item.id] = float(lines[0].text)
            await asyncio.sleep(0.5)
        print(f"\r  {label}: all {items} started after {time.monotonic() - t0:.0f}s; "
              "releasing them", file=sys.stderr, flush=True)
        release.touch()
        deadline = time.monotonic() + 120
        while agent.running:
            assert time.monotonic() < deadline, f"{label}: {agent.running} runs did not end"
            await asyncio.sleep(0.2)
    finally:
        await agent.stop(cancel_runs=True)
    runs = await service.list_runs(queue)
    failed = [r for r in runs if r.state != "finished"]
    assert not failed, [(r.id, r.state, r.error_message) for r in failed[:3]]
    leased = {r.item_id: r.timestamps["leased"] for r in runs}
    return Result(
        start=[starts[item.id] - item.created_at for item in enqueued],
        claim=[leased[item.id] - item.created_at for item in enqueued],
    )


def spawn_directly(src: Path, items: int) -> list[float]:
    """The baseline: Popen the same job, time from just before Popen to its first line."""
    env = {**os.environ, "LAUNCH_TUI_CONFIG": '{"hold": ""}', "PYTHONUNBUFFERED": "1"}
    latencies = []
    for _ in range(items):
        before = time.time()
        proc = subprocess.Popen([sys.executable, "job.py"], cwd=src, env=env,
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        first = proc.stdout.readline()
        proc.wait()
        latencies.append(float(first) - before)
    return latencies


def row(label: str, latencies: list[float]) -> str:
    return (f"{label:<56} {len(latencies):>5}  {percentile(latencies, 50):>7.3f}  "
            f"{percentile(latencies, 90):>7.3f}  {percentile(latencies, 99):>7.3f}  "
            f"{max(latencies):>7.3f}  {statistics.fmean(latencies):>7.3f}")


async def on_store(kind: StoreKind, src: Path, args: argparse.Namespace
                   ) -> tuple[dict[str, Result], float]:
    """The variants on one fresh store of `kind`; and its fallback poll interval."""
    with fresh(kind) as where:
        service = await LaunchService.open(store=where.url, home=where.home)
        try:
            await service.create_code_job(src, "python job.py", name="probe",
                                          config_defaults={"hold": ""})
            out = {"events": await measure(service, where.home, "events", items=args.items,
                                           mean_interval_s=args.mean_interval, seed=1)}
            if args.poll_items:
                out["polling"] = await measure(
                    service, where.home, "polling", items=args.poll_items,
                    mean_interval_s=args.mean_interval, seed=2, event_driven=False,
                    poll_interval_s=args.poll_interval)
            out["light"] = await measure(service, where.home, "events-light", items=args.items,
                                         mean_interval_s=args.mean_interval, seed=1, hold=False)
        finally:
            await service.close()
    return out, service.settings.poll_interval_s


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200, help="items for the event-driven agent")
    parser.add_argument("--poll-items", type=int, default=200,
                        help="items for the 10 s polling baseline")
    parser.add_argument("--mean-interval", type=float, default=0.5,
                        help="mean seconds between enqueues (exponential)")
    parser.add_argument("--poll-interval", type=float, default=10.0,
                        help="the baseline's poll interval")
    add_arguments(parser)
    args = parser.parse_args()
    kinds = chosen(args)

    root = Path(tempfile.mkdtemp(prefix="dispatch-latency-"))
    started = time.monotonic()
    load_before = load()
    results: list[tuple[StoreKind, str, dict[str, Result], float]] = []
    try:
        src = root / "src"
        src.mkdir()
        (src / "job.py").write_text(JOB)
        print(f"dispatch latency benchmark ({os.cpu_count()} cores)", file=sys.stderr)
        for kind in kinds:
            print(f"{kind.label}:", file=sys.stderr)
            out, fallback = await on_store(kind, src, args)
            results.append((kind, server_version(kind), out, fallback))
        direct = spawn_directly(src, args.items)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print()
    print("Enqueue -> the job's first line (a timestamp the job prints as the very first "
          "thing it does),")
    print(f"seconds; local-process target, one agent, one enqueue every {args.mean_interval:g} s "
          f"on average (exponential), {os.cpu_count()} cores")
    header = (f"{'store, variant':<56} {'items':>5}  {'p50':>7}  {'p90':>7}  {'p99':>7}  "
              f"{'max':>7}  {'mean':>7}")
    print(header)
    print("-" * len(header))

    def labels(version: str, fallback: float) -> dict[str, str]:
        return {"events": f"{version}, event-driven ({fallback:g} s fallback poll)",
                "polling": f"{version}, polling every {args.poll_interval:g} s",
                "light": f"{version}, event-driven, jobs end at once"}

    for _, version, out, fallback in results:
        names = labels(version, fallback)
        for key, res in out.items():
            print(row(names[key], res.start))
    print(row("baseline: subprocess.Popen, no agent, no store", direct))
    print("of which enqueue -> item leased by the agent:")
    for _, version, out, fallback in results:
        names = labels(version, fallback)
        for key, res in out.items():
            print(row(names[key], res.claim))
    print("(event-driven: every job holds its slot until the variant's last job has started, so "
          f"up to {args.items}")
    print(" runs are supervised at once; 'jobs end at once': a few runs at a time; the "
          "baseline: one process at a time)")
    base = percentile(direct, 50)
    for kind, _, out, _ in results:
        event, light = out["events"], out["light"]
        line = (f"{kind.label}: p50 above the baseline: "
                f"{percentile(event.start, 50) - base:.3f} s under load, "
                f"{percentile(light.start, 50) - base:.3f} s with jobs that end at once")
        if "polling" in out:
            ratio = percentile(out["polling"].start, 50) / percentile(event.start, 50)
            line += f"; event-driven p50 {ratio:.0f}x lower than polling"
        print(line)
    if args.poll_items and args.poll_items < args.items:
        print(f"(the polling variant used {args.poll_items} items, fewer than "
              f"{args.items}, to keep the run short)")
    for kind, *_ in results:
        print(durability(kind))
    print(f"{load_before} before, {load()} after; "
          f"total benchmark time {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
