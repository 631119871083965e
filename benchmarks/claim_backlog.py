"""claim_run with a backlog: the time to take the next item of a queue holding 50,000
waiting items, beside the same store with an empty queue (the baseline), on each
store (see benchstores.py for --stores / --pg-url).

    eval "$(scripts/test-services.sh env)"
    .venv/bin/python benchmarks/claim_backlog.py [--backlog 50000] [--samples 100]

Goal: the claim with a backlog within 2x of the claim on an empty queue (the next
item is one index probe, whatever waits behind it). Figures in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import benchstores
from sqlalchemy import select

from launch_tui.core.service import LaunchService
from launch_tui.core.store import bulk, schema


async def _claim_times(kind: benchstores.StoreKind, backlog: int, samples: int) -> list[float]:
    with benchstores.fresh(kind) as where:
        code = where.home / "code"
        code.mkdir()
        (code / "t.py").write_text("print(1)\n")
        svc = await LaunchService.open(store=where.url, home=where.home)
        try:
            await svc.create_code_job(code, "python t.py", name="t")
            await svc.create_queue("q", "local-process")
            store = svc._store  # the benchmark seeds through the store's bulk inserts
            job_id, queue_id = await store.read(lambda c: (
                c.scalar(select(schema.jobs.c.id)), c.scalar(select(schema.queues.c.id))))
            now = time.time()
            rows = [{"queue_id": queue_id, "job_id": job_id, "version": 0,
                     "config_overrides": {}, "resource_overrides": {}, "template_values": {},
                     "priority": 2, "state": "pending", "created_at": now, "updated_at": now}
                    for _ in range(backlog + samples)]
            for i in range(0, len(rows), 20_000):
                await store.write(bulk.add_items, rows[i:i + 20_000])
            benchstores.settle_after_load(where, "items")
            times = []
            for _ in range(samples):
                started = time.perf_counter()
                claimed = await svc.claim_run("bench", ["q"])
                times.append((time.perf_counter() - started) * 1000)
                assert claimed.run is not None
            return times
        finally:
            await svc.close()


def _row(label: str, times: list[float]) -> str:
    ordered = sorted(times)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"{label:<44} {len(times):>5} {statistics.median(times):>9.2f} {p90:>9.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=100)
    benchstores.add_arguments(parser)
    args = parser.parse_args()
    print(f"claim_run, ms; {args.samples} claims each; the backlog waits behind them")
    print(f"{'store, queue':<44} {'n':>5} {'p50':>9} {'p90':>9}")
    for kind in benchstores.chosen(args):
        version = benchstores.server_version(kind)
        empty = await _claim_times(kind, 0, args.samples)
        full = await _claim_times(kind, args.backlog, args.samples)
        print(_row(f"baseline: {version}, empty queue", empty))
        print(_row(f"{version}, {args.backlog:,} waiting", full))
        ratio = statistics.median(full) / statistics.median(empty)
        print(f"  {version}: {ratio:.2f}x the empty queue; goal within 2x: "
              + ("met" if ratio <= 2 else "NOT met"))


if __name__ == "__main__":
    asyncio.run(main())
