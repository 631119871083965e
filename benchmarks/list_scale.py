"""Listing runs at scale: the newest 50 of 100 runs beside the newest 50 of 100,000.

Two stores are seeded with finished runs (one real run, enqueued and claimed,
copied with new ids, queues, states and times through the store's bulk inserts,
`core/store/bulk.py`: 100,000 enqueues would take minutes). On each it times
`list_runs(limit=50)` in process (and per queue, per state, two states, a page
deep in the listing, `since`, and the item history), and `launch-tui runs --json
--limit 50` as a command; then `launch-tui runs --json --limit 0` (every run,
streamed) with the command's peak RSS, beside the same listing made the old way
in the same run (every run read, then one `json.dumps(indent=2)`). The two
stores take turns, sample by sample. It prints the query plans of the listing
statements, as executed.

    .venv/bin/python benchmarks/list_scale.py [--small 100] [--large 100000]

Goal: on 100,000 runs, `list_runs(limit=50)` and `runs --json --limit 50` within
20 % of 100 runs; `runs --json` (all) with a flat peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import event, func, select  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from launch_tui.core.listings import cursor_of  # noqa: E402
from launch_tui.core.model import ItemState, RunState  # noqa: E402
from launch_tui.core.service import LaunchService  # noqa: E402
from launch_tui.core.store import bulk, schema  # noqa: E402
from launch_tui.core.store.session import Store  # noqa: E402

BIN = Path(sys.executable).parent
DAY = 86_400.0
BATCH = 10_000
# Of every 20 runs: 17 finished, 2 failed, 1 crashed; queues alternate.
STATES = [RunState.FINISHED] * 17 + [RunState.FAILED] * 2 + [RunState.CRASHED]

OLD_WAY = r"""
import asyncio, dataclasses, enum, json, sys
from launch_tui.core.service import LaunchService
def to_jsonable(value):  # the CLI's encoding before listings streamed: a Python walk
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for prop in ("ref", "job_ref"):
            if hasattr(type(value), prop):
                out[prop] = getattr(value, prop)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value
async def main():
    svc = await LaunchService.open(home=sys.argv[1])
    runs = await svc.list_runs()
    sys.stdout.write(json.dumps(to_jsonable(runs), indent=2, sort_keys=True) + "\n")
    await svc.close()
asyncio.run(main())
"""


async def seed(home: Path, count: int) -> None:
    """`count` finished runs (and their claimed items) over the last 30 days."""
    code = home / "code"
    code.mkdir(parents=True)
    (code / "train.py").write_text("print('hi')\n")
    svc = await LaunchService.open(home=home)
    await svc.create_code_job(code, "python train.py", name="train",
                              config_defaults={"lr": 0.1, "epochs": 3, "model": "resnet50"})
    for q in ("q", "other"):
        await svc.create_queue(q, "local-process")
    await svc.enqueue("train", "q", config={"lr": 0.01})
    run = (await svc.claim_run("agent", ["q"])).run
    assert run is not None
    await svc.set_run_state(run.id, RunState.FINISHED, exit_code=0)
    url = svc.settings.store_url
    await svc.close()

    store = Store(url, clock=time.time)
    await store.prepare()
    item_row, run_row, queue_ids = await store.read(lambda conn: (
        conn.execute(select(schema.items)).first()._asdict(),
        conn.execute(select(schema.runs)).first()._asdict(),
        [r.id for r in conn.execute(select(schema.queues.c.id).order_by(schema.queues.c.name))]))
    start = time.time() - 30 * DAY
    step = 30 * DAY / count

    def write(conn: Any, first: int, size: int) -> None:
        items, runs = [], []
        for n in range(first, first + size):
            at = start + n * step
            run_id = f"s{n:07d}"
            queue_id = queue_ids[n % 2]
            items.append({**item_row, "id": 1_000_000 + n, "queue_id": queue_id,
                          "state": str(ItemState.CLAIMED), "run_id": run_id,
                          "created_at": at, "updated_at": at})
            runs.append({**run_row, "id": run_id, "item_id": 1_000_000 + n,
                         "queue_id": queue_id, "state": str(STATES[n % len(STATES)]),
                         "created_at": at, "updated_at": at + 60})
        bulk.add_items(conn, items)
        bulk.add_runs(conn, runs)

    for first in range(0, count, BATCH):
        await store.write(write, first, min(BATCH, count - first), bulk=True)
    await store.dispose()


async def cases_of(svc: LaunchService) -> dict[str, Callable[[], Awaitable[Any]]]:
    middle_id = await svc._store.read(lambda conn: conn.scalar(
        select(schema.runs.c.id).order_by(schema.runs.c.created_at.desc())
        .offset(conn.scalar(select(func.count()).select_from(schema.runs)) // 2).limit(1)))
    middle = cursor_of(await svc.get_run(middle_id))
    day_ago = time.time() - DAY
    return {
        "list_runs(limit=50)": lambda: svc.list_runs(limit=50),
        "  one queue": lambda: svc.list_runs("q", limit=50),
        "  one state (failed)": lambda: svc.list_runs(states=["failed"], limit=50),
        "  two states (failed, crashed)": lambda: svc.list_runs(states=["failed", "crashed"],
                                                                limit=50),
        "  the page below the middle run": lambda: svc.list_runs(limit=50, before=middle),
        "  since a day ago": lambda: svc.list_runs(limit=50, since=day_ago),
        "list_items(states=None, limit=50)": lambda: svc.list_items(states=None, limit=50),
    }


async def in_process(homes: list[Path], samples: int
                     ) -> tuple[list[dict[str, tuple[float, int]]], dict[str, str]]:
    """Median time (ms) and rows returned of each listing on each store, and the
    query plans on the last. The stores take turns, sample by sample, so a busy
    moment of the machine weighs on both alike."""
    services = [await LaunchService.open(home=h) for h in homes]
    cases = [await cases_of(svc) for svc in services]
    out: list[dict[str, tuple[float, int]]] = [{} for _ in homes]
    for label in cases[0]:
        fns = [c[label] for c in cases]
        times: list[list[float]] = [[] for _ in fns]
        for fn in fns:
            for _ in range(5):
                await fn()
        for _ in range(samples):
            for i, fn in enumerate(fns):
                t = time.perf_counter()
                await fn()
                times[i].append(time.perf_counter() - t)
        for i, fn in enumerate(fns):
            out[i][label] = (statistics.median(times[i]) * 1000, len(await fn()))
    plans = {label: await explain(services[-1], fn) for label, fn in cases[-1].items()}
    for svc in services:
        await svc.close()
    return out, plans


async def explain(svc: LaunchService, fn: Callable[[], Awaitable[Any]]) -> str:
    """EXPLAIN QUERY PLAN of the listing statements `fn` executes (SQLite)."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        if "FROM runs" in sql or "FROM items" in sql:
            seen.append((sql, params))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        await fn()
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    plans = []
    for sql, params in seen:
        rows = await svc._store.read(
            lambda conn, s=sql, p=params: conn.exec_driver_sql("EXPLAIN QUERY PLAN " + s,
                                                               p).all())
        plans.append("; ".join(r[-1] for r in rows if "SCALAR" not in r[-1]))
    return " | ".join(plans)


def command(argv: list[str], home: Path, out: Path | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one command run to its end. The RSS is what
    /usr/bin/time reports: a child's own ru_maxrss would include this process's RSS,
    which Linux carries over from the parent it was forked from through exec."""
    env = {**os.environ, "LAUNCH_TUI_HOME": str(home)}
    report = home / "time.txt"
    with open(out or os.devnull, "w") as sink:
        t = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-o", str(report), "-f", "%M", *argv], env=env,
                       stdout=sink, check=True)
        elapsed = time.perf_counter() - t
    return elapsed, int(report.read_text().split()[-1]) / 1024


def commands(homes: list[Path], counts: list[int]) -> list[dict[str, tuple[float, float]]]:
    """Each command on each store; the stores take turns."""
    cli = [str(BIN / "launch-tui")]
    limited: list[list[tuple[float, float]]] = [[] for _ in homes]
    for _ in range(7):
        for i, home in enumerate(homes):
            limited[i].append(command([*cli, "runs", "--json", "--limit", "50"], home))
    out = []
    for home, count, runs in zip(homes, counts, limited, strict=True):
        listing = home / "all.json"
        streamed = command([*cli, "runs", "--json", "--limit", "0"], home, listing)
        with open(listing) as f:
            assert len(json.load(f)) == count + 1, "runs --json: one document of every run"
        old = command([sys.executable, "-c", OLD_WAY, str(home)], home)
        out.append({
            "launch-tui runs --json --limit 50": (statistics.median(t for t, _ in runs),
                                                  max(m for _, m in runs)),
            "launch-tui runs --json --limit 0 (all)": streamed,
            "  baseline: all runs, one json.dumps(indent=2)": old})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    counts = [args.small, args.large]
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        homes = [Path(tmp) / f"home-{n}" for n in counts]
        for home, count in zip(homes, counts, strict=True):
            t = time.perf_counter()
            asyncio.run(seed(home, count))
            print(f"  seeded {count:,} finished runs in {time.perf_counter() - t:.1f} s",
                  file=sys.stderr)
        (small, large), plans = asyncio.run(in_process(homes, args.samples))
        small_cmd, large_cmd = commands(homes, counts)

    a, b = f"{args.small:,} runs", f"{args.large:,} runs"
    print(f"in process, median of {args.samples}: ms (rows){'':8s}{a:>14s}{b:>18s}   change")
    for label in small:
        (ts, ns), (tl, nl) = small[label], large[label]
        print(f"  {label:44s}{ts:8.3f} ({ns:3d}){tl:12.3f} ({nl:3d})   "
              f"{(tl / ts - 1) * 100:+5.0f} %")
    print(f"commands (s, peak RSS MB){'':25s}{a:>12s}{b:>14s}   change")
    for label in small_cmd:
        (ts, ms), (tl, ml) = small_cmd[label], large_cmd[label]
        print(f"  {label:48s}{ts:6.3f}s {ms:5.0f}MB{tl:8.3f}s {ml:5.0f}MB   "
              f"{(tl / ts - 1) * 100:+5.0f} %")
    print(f"query plans on {b}")
    for label, plan in plans.items():
        print(f"  {label.strip():36s} {plan}")
    print(json.dumps({
        "list_runs_limit50_ms": [round(small["list_runs(limit=50)"][0], 3),
                                 round(large["list_runs(limit=50)"][0], 3)],
        "cli_runs_json_limit50_s": [round(small_cmd["launch-tui runs --json --limit 50"][0], 3),
                                    round(large_cmd["launch-tui runs --json --limit 50"][0], 3)],
        "cli_runs_json_all_rss_mb": [
            round(small_cmd["launch-tui runs --json --limit 0 (all)"][1]),
            round(large_cmd["launch-tui runs --json --limit 0 (all)"][1])],
    }))


if __name__ == "__main__":
    main()
