"""Full item lifecycles per second on the embedded SQLite store, against huey.

A lifecycle is what every queue item goes through: `enqueue`, then `claim_run`
(the item becomes a queued run, in one transaction), then `set_run_state(...,
finished)`. One producer task enqueues N items while claimers take them, in
three set-ups: 1 claimer task, 4 claimer tasks (one process), and 2 processes x
2 claimer tasks (the producer in a third process). The baseline, measured in the
same run on the same disk: huey's SqliteHuey enqueueing N no-op tasks and its
consumer (4 worker threads, in-process) executing them until every result is in
(also with 1 worker, beside our 1 claimer). huey is tuned to poll every
millisecond, so its polling back-off does not count against it.

Also: how long one claim_run takes on an empty store and with --seed finished
items (and their runs) in it, which must stay flat: every lookup on the claim
path goes through an index (the query plans are printed).

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/claim_throughput.py [--items 3000] [--seed 300000]

Goal: at least 1,000 lifecycles/s and not below huey; claim_run with 300,000
finished items within 20 % of the empty store.
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

from launch_tui.core.model import ItemState, RunState  # noqa: E402
from launch_tui.core.service import LaunchService  # noqa: E402
from launch_tui.core.store import schema  # noqa: E402

CHILD = r"""
import asyncio, sys, time
from pathlib import Path
from launch_tui.core.model import RunState
from launch_tui.core.service import LaunchService

async def main(home, name, tasks):
    svc = await LaunchService.open(home=home)
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

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""

PRODUCER = r"""
import asyncio, sys
from pathlib import Path
from launch_tui.core.service import LaunchService

async def main(home, n):
    svc = await LaunchService.open(home=home)
    print("ready", flush=True)
    sys.stdin.readline()  # go
    for _ in range(n):
        await svc.enqueue("x", "q")
    (Path(home) / "producer-done").touch()
    await svc.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def make_world(home: Path) -> LaunchService:
    svc = await LaunchService.open(home=home)
    code = home / "code"
    code.mkdir(exist_ok=True)
    (code / "x.py").write_text("print(1)\n")
    await svc.create_code_job(code, "python x.py", name="x")
    await svc.create_queue("q", "local-process")
    return svc


async def in_process(home: Path, n: int, claimers: int) -> float:
    """Lifecycles per second: one producer task, `claimers` claimer tasks."""
    svc = await make_world(home)
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


def across_processes(home: Path, n: int, procs: int, tasks: int) -> float:
    asyncio.run(_world_only(home))

    def spawn(code: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", code, str(home), *args], cwd=REPO,
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


async def _world_only(home: Path) -> None:
    svc = await make_world(home)
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


async def claim_latency(home: Path, seed: int, samples: int) -> tuple[float, dict[str, str]]:
    """Median claim_run time (ms) with `seed` finished items and runs in the store,
    and the query plans of the claim path's lookups."""
    svc = await make_world(home)
    if seed:
        await _seed_finished(svc, seed)
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
    return statistics.median(times) * 1000, plans


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
        conn.execute(schema.items.insert(), [
            {"id": i, "queue_id": queue_id, "job_id": job_id, "version": 0,
             "config_overrides": {}, "resource_overrides": {}, "template_values": {},
             "priority": 2, "state": str(ItemState.CLAIMED), "run_id": f"seed{i:08d}",
             "created_at": now, "updated_at": now} for i in ids])
        conn.execute(schema.runs.insert(), [
            {"id": f"seed{i:08d}", "item_id": i, "queue_id": queue_id, "job_id": job_id,
             "version": 0, "agent": "seed", "state": str(RunState.FINISHED), "spec": {},
             "timestamps": {"finished": now}, "created_at": now, "updated_at": now}
            for i in ids])

    for first in range(1_000_000, 1_000_000 + count, batch):
        await svc._store.write(write, first, min(batch, 1_000_000 + count - first), bulk=True)


def _plans(conn: Any) -> dict[str, str]:
    """EXPLAIN QUERY PLAN of the lookups claim_run makes (SQLite)."""
    queries = {
        "lease expiry probe": "SELECT id FROM items WHERE state='leased' AND lease_expires < 1 "
                              "LIMIT 1",
        "queue by name": "SELECT * FROM queues WHERE project='default' AND name='q'",
        "next pending item": "SELECT * FROM items WHERE queue_id=1 AND state='pending' "
                             "ORDER BY priority, id LIMIT 1",
        "job version": "SELECT * FROM job_versions JOIN jobs ON job_versions.job_id = jobs.id "
                       "WHERE job_versions.job_id=1 AND job_versions.version=0",
        "run by id": "SELECT * FROM runs JOIN queues ON runs.queue_id = queues.id "
                     "JOIN jobs ON runs.job_id = jobs.id WHERE runs.id='x'",
        "runs newest first": "SELECT * FROM runs ORDER BY created_at DESC LIMIT 50",
    }
    return {name: "; ".join(r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + q))
            for name, q in queries.items()}


def fresh(fn: Any, *args: Any) -> Any:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        return fn(Path(tmp), *args)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=300_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    n = args.items
    rates: dict[str, float] = {}
    rates["huey SqliteHuey, 4 worker threads"] = fresh(huey_rate, n, 4)
    rates["huey SqliteHuey, 1 worker thread"] = fresh(huey_rate, n, 1)
    rates["launch-tui, 1 claimer task"] = fresh(lambda h: asyncio.run(in_process(h, n, 1)))
    rates["launch-tui, 4 claimer tasks"] = fresh(lambda h: asyncio.run(in_process(h, n, 4)))
    rates["launch-tui, 2 processes x 2 claimer tasks"] = fresh(across_processes, n, 2, 2)
    empty, plans = fresh(lambda h: asyncio.run(claim_latency(h, 0, args.samples)))
    seeded, _ = fresh(lambda h: asyncio.run(claim_latency(h, args.seed, args.samples)))

    print(f"full lifecycles (enqueue, claim_run, finish), {n} items, SQLite WAL, "
          f"producer running alongside")
    for label, rate in rates.items():
        print(f"  {label:48s} {rate:8.0f} /s")
    print(f"claim_run, median of {args.samples}")
    print(f"  empty store                                      {empty:8.3f} ms")
    print(f"  {args.seed:,} finished items in the store{'':<13s}{seeded:8.3f} ms   "
          f"({(seeded / empty - 1) * 100:+.0f} %)")
    print("query plans of the claim path")
    for name, plan in plans.items():
        print(f"  {name:20s} {plan}")
    print(json.dumps({**{k: round(v) for k, v in rates.items()},
                      "claim_run_ms_empty": round(empty, 3),
                      f"claim_run_ms_{args.seed}_finished": round(seeded, 3)}))


if __name__ == "__main__":
    main()
