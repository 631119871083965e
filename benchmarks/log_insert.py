"""Storing a batch of log lines in SQLite while another thread of the process is busy.

    .venv/bin/python benchmarks/log_insert.py [--lines 16000] [--rounds 1]

The agent stores its runs' output in batches of up to 16,000 lines
(core/agent/output.py) on the store's writer thread, while its event loop, on
the main thread, reads and parses the runs' output. This inserts one batch into
a fresh SQLite file (the store's schema, WAL, synchronous=NORMAL) through the
store's own `add_lines`, beside the baseline of a plain `executemany` of the
same rows, each once with the rest of the process idle and once with a second
thread spinning Python code as a busy event loop would.

Why it matters: sqlite3's executemany releases the GIL around every row's step
and must win it back each time; with another thread running Python, each
re-take waits up to the interpreter's switch interval (5 ms). `add_lines` hands
each run's lines to SQLite as one JSON array in one statement, so it crosses the
GIL a few times per batch, not once per line. The busy baseline takes about a
minute a round.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection

from launch_tui.core.model import LogStream
from launch_tui.core.store.output import add_lines
from launch_tui.core.store.schema import metadata

RUNS = 20


def batches(lines: int) -> list[tuple[str, list[tuple[float, LogStream, str, None]]]]:
    per_run = lines // RUNS
    now = time.time()
    return [(f"run{r:013d}", [(now + i / 1000, LogStream.STDOUT, f"{i:08d} " + "x" * 190, None)
                              for i in range(per_run)]) for r in range(RUNS)]


def plain_executemany(conn: Connection, data: list) -> None:
    conn.exec_driver_sql(
        "INSERT INTO run_logs (run_id, ts, stream, text, source) VALUES (?, ?, ?, ?, ?)",
        [(run_id, ts, str(stream), text, source)
         for run_id, lines in data for ts, stream, text, source in lines])


def measure(path: Path, insert: Callable[[Connection, list], object], data: list,
            rounds: int, busy: bool) -> float:
    engine = create_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    metadata.create_all(engine)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    spinner = threading.Thread(target=spin, daemon=True)
    if busy:
        spinner.start()
    times = []
    try:
        for _ in range(rounds):
            with engine.begin() as conn:
                started = time.perf_counter()
                insert(conn, data)
            times.append(time.perf_counter() - started)
    finally:
        stop.set()
        if busy:
            spinner.join()
        engine.dispose()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=16_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    data = batches(args.lines)
    lines = sum(len(x) for _, x in data)
    print(f"one batch of {lines:,} lines of {RUNS} runs into SQLite, median of {args.rounds}, ms")
    print(f"{'':38}{'idle':>10}{'busy thread':>14}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, insert in (("baseline: executemany", plain_executemany),
                             ("store: add_lines (one JSON array a run)", add_lines)):
            row = [measure(Path(tmp) / f"{name[:5]}-{busy}.db", insert, data, args.rounds, busy)
                   for busy in (False, True)]
            results[name] = row
            print(f"{name:38}{row[0] * 1000:10.1f}{row[1] * 1000:14.1f}")
    base, ours = results.values()
    print(f"with a busy thread: add_lines {base[1] / ours[1]:.0f}x faster than executemany")


if __name__ == "__main__":
    main()
