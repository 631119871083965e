"""Claim throughput of the lease protocol on the embedded SQLite store.

Measures items per second for claim + acknowledge with 1 task, 4 tasks in one
process, and 2 processes x 4 tasks, against a baseline measured in the same
run: bare stdlib sqlite3 write transactions (BEGIN IMMEDIATE; UPDATE; COMMIT)
on the same file, i.e. the floor any SQLite-backed queue pays per item.

    .venv/bin/python benchmarks/claim_throughput.py [--items 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from launch_tui.core.service import LaunchService  # noqa: E402

WORKER = r"""
import asyncio, json, sys, time
from launch_tui.core.service import LaunchService
async def main(home, name, tasks):
    svc = await LaunchService.open(home=home)
    count = 0
    async def worker(i):
        nonlocal count
        while (item := await svc.claim(f"{name}-{i}", ["q"])) is not None:
            await svc.acknowledge(item.id, f"{name}-{i}")
            count += 1
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    await svc.close()
    print(count)
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def seed(home: Path, n: int) -> None:
    svc = await LaunchService.open(home=home)
    code = home / "code"
    code.mkdir(exist_ok=True)
    (code / "x.py").write_text("print(1)\n")
    await svc.create_code_job(code, "python x.py", name="x")
    await svc.create_queue("q", "local-process")
    for _ in range(n):
        await svc.enqueue("x", "q")
    await svc.close()


def run_processes(home: Path, procs: int, tasks: int) -> float:
    start = time.perf_counter()
    ps = [subprocess.Popen([sys.executable, "-c", WORKER, str(home), f"p{k}", str(tasks)],
                           cwd=REPO, stdout=subprocess.PIPE, text=True) for k in range(procs)]
    total = sum(int(p.communicate()[0]) for p in ps)
    return total / (time.perf_counter() - start)


def baseline(home: Path, n: int) -> float:
    db = sqlite3.connect(home / "baseline.db", isolation_level=None)
    db.execute("pragma journal_mode=wal")
    db.execute("pragma synchronous=normal")
    db.execute("create table t (id integer primary key, state text)")
    db.executemany("insert into t (state) values (?)", [("pending",)] * n)
    start = time.perf_counter()
    for _ in range(n):
        db.execute("begin immediate")
        row = db.execute("select id from t where state='pending' order by id limit 1").fetchone()
        db.execute("update t set state='leased' where id=?", row)
        db.execute("commit")
        db.execute("begin immediate")
        db.execute("update t set state='claimed' where id=?", row)
        db.execute("commit")
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=500)
    n = parser.parse_args().items
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["baseline: bare sqlite3 claim+ack transactions"] = baseline(Path(tmp), n)
    for label, procs, tasks in (("1 process x 1 task", 1, 1), ("1 process x 4 tasks", 1, 4),
                                ("2 processes x 4 tasks", 2, 4)):
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(seed(Path(tmp), n))
            results[label] = run_processes(Path(tmp), procs, tasks)
    print(f"claim + acknowledge throughput, {n} items, SQLite WAL")
    for label, rate in results.items():
        print(f"  {label:48s} {rate:8.0f} items/s")
    print(json.dumps({k: round(v) for k, v in results.items()}))


if __name__ == "__main__":
    main()
