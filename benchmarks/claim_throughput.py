"""Full item lifecycles per second on SQLite and PostgreSQL, against huey.

A lifecycle is what every queue item goes through: `enqueue`, then `claim_run`
(the item becomes a queued run, in one transaction), then `set_run_state(...,
finished)`. One producer task enqueues N items while claimers take them, in
three set-ups: 1 claimer task, 4 claimer tasks (one process), and 2 processes x
2 claimer tasks (the producer in a third process). Each set-up runs on each
store (--stores, see benchmarks/benchstores.py): a fresh SQLite file, and a
fresh PostgreSQL database created for the measurement and dropped after it.
The baseline, measured in the same run on the same disk: huey's SqliteHuey
enqueueing N no-op tasks and its consumer (4 worker threads, in-process)
executing them until every result is in (also with 1 worker, beside our 1
claimer). huey is tuned to poll every millisecond, so its polling back-off does
not count against it.

Also: how long one claim_run takes on an empty store and with --seed finished
items (and their runs) in it (--pg-seed on PostgreSQL, default the same count),
which must stay flat: every lookup on the claim path goes through an index (the
query plans are printed). The seed rows go in through core/store/bulk.py, in
batches of 20,000 rows per transaction; on PostgreSQL the script then runs
VACUUM ANALYZE on items and runs (what autovacuum does shortly after such a
load; left to autovacuum, it ran in the middle of the samples).

    .venv/bin/pip install -e '.[bench]'
    eval "$(scripts/test-services.sh env)"     # LAUNCH_TUI_TEST_PG: adds PostgreSQL
    .venv/bin/python benchmarks/claim_throughput.py [--items 3000] [--seed 300000]
        [--pg-seed N] [--stores sqlite,postgres] [--pg-url URL]

Goal: at least 1,000 lifecycles/s and not below huey; claim_run with 300,000
finished items within 20 % of the empty store.

Measured figures: benchmarks/README.md.
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
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchstores import (  # noqa: E402
    Fresh,
    StoreKind,
    add_arguments,
    chosen,
    durability,
    fresh,
    load,
    server_version,
    settle_after_load,
)

from launch_tui.core.model import ItemState, RunState  # noqa: E402
from launch_tui.core.service import LaunchService  # noqa: E402
from launch_tui.core.store import bulk, schema  # noqa: E402

CHILD = r"""
import asyncio, sys, time
from pathlib import Path
from launch_tui.core.model import RunState
from launch_tui.core.service import LaunchService

async def main(home, url, name, tasks):
    svc = await LaunchService.open(store=url, home=home)
    done_flag = Path(home) / "producer-done"
    count = 0
    async def claimer(i):
        nonlocal count
        while True:
            run = (await svc.claim_run(f"{name}-{i}", ["q"])).run
            if run is None:
                if done_flag.exists():
                    return
                await asyncio.sleep(0.001)
                continue
            await svc.set_run_state(run.id, RunState.FINISHED)
            count += 1
    print("ready", flush=True)
    sys.stdin.readline()  # go
    await asyncio.gather(*(claimer(i) for i in range(tasks)))
    await svc.close()
    print(count, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""

PRODUCER = r"""
import asyncio, sys
from pathlib import Path
from launch_tui.core.service import LaunchService

async def main(home, url, n):
    svc = await LaunchService.open(store=url, home=home)
    print("ready", flush=True)
    sys.stdin.readline()  # go
    for _ in range(n):
        await svc.enqueue("x", "q")
    (Path(home) / "producer-done").touch()
    await svc.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def make_world(where: Fresh) -> LaunchService:
    svc = await LaunchService.open(store=where.url, home=where.home)
    code = where.home / "code"
    code.mkdir(exist_ok=True)
    (code / "x.py").write_text("print(1)\n")
    await svc.create_code_job(code, "python x.py", name="x")
    await svc.create_queue("q", "local-process")
    return svc


async def in_process(where: Fresh, n: int, claimers: int) -> float:
    """Lifecycles per second: one producer task, `claimers` claimer tasks."""
    svc = await make_world(where)
    # One token per item enqueued: claimers in the producer's process are woken by
    # it (as an agent is, in-process), one per item, with no polling.
    available = asyncio.Semaphore(0)
    finished = 0

    async def producer() -> None:
        for _ in range(n):
            await svc.enqueue("x", "q")
            available.release()
        for _ in range(claimers):
            available.release()  # one more each: the "no more items" wake-up

    async def claimer(i: int) -> None:
        nonlocal finished
        while True:
            await available.acquire()
            run = (await svc.claim_run(f"agent-{i}", ["q"])).run
            if run is None:
                return
            await svc.set_run_state(run.id, RunState.FINISHED)
            finished += 1

    start = time.perf_counter()
    await asyncio.gather(producer(), *(claimer(i) for i in range(claimers)))
    elapsed = time.perf_counter() - start
    await svc.close()
    assert finished == n, (finished, n)
    return n / elapsed


def across_processes(where: Fresh, n: int, procs: int, tasks: int) -> float:
    asyncio.run(_world_only(where))

    def spawn(code: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", code, str(where.home), where.url, *args],
                                cwd=REPO,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    ps = [spawn(CHILD, f"p{k}", str(tasks)) for k in range(procs)] + [spawn(PRODUCER, str(n))]
    for p in ps:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for p in ps:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    outs = [p.communicate()[0] for p in ps]
    elapsed = time.perf_counter() - start
    total = sum(int(o.strip()) for o in outs[:procs])
    assert total == n, (total, n)
    return n / elapsed


async def _world_only(where: Fresh) -> None:
    svc = await make_world(where)
    await svc.close()


def huey_rate(home: Path, n: int, workers: int) -> float:
    """huey's SqliteHuey: enqueue n no-op tasks and run them with an in-process
    consumer of `workers` threads, until every result is in."""
    import logging

    from huey import SqliteHuey

    logging.getLogger("huey").setLevel(logging.WARNING)
    huey = SqliteHuey("bench", filename=str(home / "huey.db"))

    @huey.task()
    def noop() -> int:
        return 1

    consumer = huey.create_consumer(workers=workers, worker_type="thread", periodic=False,
                                    initial_delay=0.001, max_delay=0.001,
                                    check_worker_health=False)
    # The consumer installs signal handlers, which only the main thread may do.
    assert threading.current_thread() is threading.main_thread()
    consumer.start()
    try:
        start = time.perf_counter()
        results = [noop() for _ in range(n)]
        got = [r.get(blocking=True, timeout=120, backoff=1.0, max_delay=0.001) for r in results]
        elapsed = time.perf_counter() - start
    finally:
        consumer.stop(graceful=True)
    assert got == [1] * n
    return n / elapsed


async def claim_latency(where: Fresh, seed: int, samples: int
                        ) -> tuple[float, dict[str, str], float]:
    """Median claim_run time (ms) with `seed` finished items and runs in the store,
    the query plans of the claim path's lookups, and the seconds seeding took."""
    svc = await make_world(where)
    seeding = time.perf_counter()
    if seed:
        await _seed_finished(svc, seed)
        # PostgreSQL's autovacuum would otherwise vacuum and analyze the 2 x `seed` new
        # rows while the samples run, and SQLite's first checkpoint copy them from
        # the log (both did, in trials): do now what each does soon after a bulk
        # load anyway, and measure the steady state.
        settle_after_load(where, "items", "runs")
    seeding = time.perf_counter() - seeding
    times = []
    for _ in range(samples):
        await svc.enqueue("x", "q")
        start = time.perf_counter()
        run = (await svc.claim_run("agent", ["q"])).run
        times.append(time.perf_counter() - start)
        assert run is not None
        await svc.set_run_state(run.id, RunState.FINISHED)
    plans = await svc._store.read(_plans)
    await svc.close()
    return statistics.median(times) * 1000, plans, seeding


async def _seed_finished(svc: LaunchService, count: int) -> None:
    """`count` claimed items with finished runs, written in large executemany batches
    through the store's writer (as fast as the store takes rows, not one enqueue at
    a time)."""
    queue_id, job_id = await svc._store.read(
        lambda conn: (conn.scalar(schema.queues.select().with_only_columns(schema.queues.c.id)),
                      conn.scalar(schema.jobs.select().with_only_columns(schema.jobs.c.id))))
    now = time.time() - 86_400
    batch = 20_000

    def write(conn: Any, first: int, size: int) -> None:
        ids = range(first, first + size)
        bulk.add_items(conn, [
            {"id": i, "queue_id": queue_id, "job_id": job_id, "version": 0,
             "config_overrides": {}, "resource_overrides": {}, "template_values": {},
             "priority": 2, "state": str(ItemState.CLAIMED), "run_id": f"seed{i:08d}",
             "created_at": now, "updated_at": now} for i in ids])
        bulk.add_runs(conn, [
            {"id": f"seed{i:08d}", "item_id": i, "queue_id": queue_id, "job_id": job_id,
             "version": 0, "agent": "seed", "state": str(RunState.FINISHED), "spec": {},
             "timestamps": {"finished": now}, "created_at": now, "updated_at": now}
            for i in ids])

    for first in range(1_000_000, 1_000_000 + count, batch):
        await svc._store.write(write, first, min(batch, 1_000_000 + count - first), bulk=True)


def _plans(conn: Any) -> dict[str, str]:
    """The query plans of the lookups claim_run makes: EXPLAIN QUERY PLAN on SQLite,
    EXPLAIN (COSTS OFF) on PostgreSQL, one line each."""
    queries = {
        "lease expiry probe": "SELECT id FROM items WHERE state='leased' AND lease_expires < 1 "
                              "LIMIT 1",
        "queue by name": "SELECT * FROM queues WHERE project='default' AND name='q'",
        "next pending item": "SELECT * FROM items WHERE queue_id=1 AND state='pending' "
                             "ORDER BY priority, seq, id LIMIT 1",
        "job version": "SELECT * FROM job_versions JOIN jobs ON job_versions.job_id = jobs.id "
                       "WHERE job_versions.job_id=1 AND job_versions.version=0",
        "run by id": "SELECT * FROM runs JOIN queues ON runs.queue_id = queues.id "
                     "JOIN jobs ON runs.job_id = jobs.id WHERE runs.id='x'",
        "runs newest first": "SELECT * FROM runs ORDER BY created_at DESC LIMIT 50",
    }
    if conn.dialect.name == "sqlite":
        return {name: "; ".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + q))
                for name, q in queries.items()}
    return {name: "; ".join(r[0].strip().removeprefix("->  ")
                            for r in conn.exec_driver_sql("EXPLAIN (COSTS OFF) " + q))
            for name, q in queries.items()}


def fresh_dir(fn: Any, *args: Any) -> Any:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        return fn(Path(tmp), *args)


def on_fresh(kind: StoreKind, fn: Any, *args: Any) -> Any:
    """fn(Fresh, *args) on a new empty store of `kind` (a new database on PostgreSQL)."""
    with fresh(kind) as where:
        return fn(where, *args)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=300_000,
                        help="finished items in the store for the second claim_run figure")
    parser.add_argument("--pg-seed", type=int, default=None,
                        help="the same on PostgreSQL (default: --seed)")
    parser.add_argument("--samples", type=int, default=300)
    add_arguments(parser)
    args = parser.parse_args()
    kinds = chosen(args)
    n = args.items
    load_before = load()
    huey4 = fresh_dir(huey_rate, n, 4)
    huey1 = fresh_dir(huey_rate, n, 1)
    rows = []
    plans: dict[str, dict[str, str]] = {}
    for kind in kinds:
        seed = args.pg_seed if kind.postgres and args.pg_seed is not None else args.seed
        print(f"  {kind.label}: lifecycles ...", file=sys.stderr, flush=True)
        one = on_fresh(kind, lambda w: asyncio.run(in_process(w, n, 1)))
        four = on_fresh(kind, lambda w: asyncio.run(in_process(w, n, 4)))
        procs = on_fresh(kind, across_processes, n, 2, 2)
        print(f"  {kind.label}: claim_run, empty and with {seed:,} finished items ...",
              file=sys.stderr, flush=True)
        empty, _, _ = on_fresh(kind, lambda w: asyncio.run(claim_latency(w, 0, args.samples)))
        seeded, plans[kind.label], took = on_fresh(
            kind, lambda w, s=seed: asyncio.run(claim_latency(w, s, args.samples)))
        print(f"  {kind.label}: seeded {seed:,} finished items and runs in {took:.1f} s "
              "(with VACUUM ANALYZE on PostgreSQL)",
              file=sys.stderr, flush=True)
        rows.append((kind, one, four, procs, empty, seeded, seed, took))

    print(f"full lifecycles (enqueue, claim_run, finish) per second, {n:,} items, producer "
          f"running alongside; claim_run: median of {args.samples}, ms; {os.cpu_count()} cores")
    header = (f"{'store':<34}{'1 claimer':>10}{'4 claimers':>11}{'2 procs x 2':>12}"
              f"{'claim, empty':>14}{'claim, seeded':>15}{'change':>8}{'seeded items':>14}")
    print(header)
    print("-" * len(header))
    print(f"{'baseline: huey SqliteHuey (threads)':<34}{huey1:>8.0f}/s{huey4:>9.0f}/s"
          f"{'-':>12}{'-':>14}{'-':>15}{'-':>8}{'-':>14}")
    for kind, one, four, procs, empty, seeded, seed, _ in rows:
        print(f"{server_version(kind):<34}{one:>8.0f}/s{four:>9.0f}/s{procs:>10.0f}/s"
              f"{empty:>11.3f} ms{seeded:>12.3f} ms{(seeded / empty - 1) * 100:>+7.0f}%"
              f"{seed:>14,}")
    print("(huey: 1 and 4 worker threads beside our 1 and 4 claimer tasks; seeded items "
          "written with core/store/bulk.py, then VACUUM ANALYZE on PostgreSQL)")
    for kind in kinds:
        print(f"  {durability(kind)}")
    print(f"  {load_before} before, {load()} after")
    for kind, one, four, _procs, empty, seeded, seed, took in rows:
        ok = min(one, four) >= 1000 and four >= huey4 and one >= huey1
        flat = seeded <= empty * 1.2
        print(f"goal on {kind.label}: >= 1,000/s and not below huey: "
              f"{'met' if ok else 'NOT met'}; claim_run with {seed:,} finished within 20 % "
              f"of empty: {'met' if flat else 'NOT met'} (seeding took {took:.0f} s)")
    for label, plan in plans.items():
        print(f"query plans of the claim path, {label}")
        for name, text in plan.items():
            print(f"  {name:20s} {text}")
    print(json.dumps({
        "huey_1_worker": round(huey1), "huey_4_workers": round(huey4),
        **{kind.label: {"1_claimer": round(one), "4_claimers": round(four),
                        "2_procs_x_2": round(procs), "claim_run_ms_empty": round(empty, 3),
                        f"claim_run_ms_{seed}_finished": round(seeded, 3)}
           for kind, one, four, procs, empty, seeded, seed, _ in rows}}))


if __name__ == "__main__":
    main()
