"""How soon a change-feed subscriber sees a commit another process made, on SQLite and
on PostgreSQL.

    eval "$(scripts/test-services.sh env)"     # LAUNCH_TUI_TEST_PG: adds PostgreSQL
    .venv/bin/python benchmarks/feed_wake.py [--events 200] [--interval 0.02]
        [--stores sqlite,postgres] [--pg-url URL]

For each store (--stores, see benchmarks/benchstores.py; a fresh SQLite file, a
fresh PostgreSQL database created and dropped by the script):

  * process A (this one) opens the store and subscribes to the change feed
    (`service.subscribe(...)`) with a 60 s fallback poll, so no sample can be
    delivered by the poll: only the wake-up (SQLite: the inotify watch of the
    database's files, core/dbwatch.py; PostgreSQL: LISTEN/NOTIFY,
    core/store/listen.py) can deliver it within the measurement;
  * process B, long-lived, opened the same store once. On a line from A through
    its stdin pipe it makes one commit, `service.agent_log(...)`, and notes
    time.time() right after the call returns (the commit is done);
  * A notes time.time() when the subscriber's `async for` receives that AgentLog
    event. The sample is A's time minus B's: commit returned -> event received.
    (It can be slightly negative: the event may reach A before B's store thread
    has handed the commit's result back to B's event loop.) A then asks B for
    its two timestamps and pauses (--interval, randomised) so the subscriber is
    idle before the next sample. The first 5 samples warm up and are dropped.

Baseline, interleaved with those samples, between the same two processes: B
writes time.time() into its stdout pipe and A's event loop reads it (a bare
cross-process wake-up through a pipe, which is also how B's reports travel).
Also, after them: the same samples with the subscriber's watch turned off
(`watch=False`, the 0.2 s short poll), the way the feed worked before the wake-up;
there the pause also gets a random 0-0.2 s, so commits fall at random points of
the poll cycle.

Goal: p50 under 10 ms on PostgreSQL.

Measured figures: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from pathlib import Path

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
)

from launch_tui.core.events import AgentLog  # noqa: E402
from launch_tui.core.service import LaunchService  # noqa: E402

WARM_UP = 5
POLL_S = 0.2  # the feed's short poll (subscribe's default), for the watch=False row
GOAL_P50_MS = 10.0
WRITER_NAME = "bench-writer"

# Process B. Its event loop is blocked in readline() between commands: nothing of
# its own runs meanwhile, and a command is acted on the moment it arrives.
WRITER = r"""
import asyncio, os, sys, time
from launch_tui.core.service import LaunchService

async def main(url, home, name):
    svc = await LaunchService.open(store=url, home=home)
    await svc.agent_log(name, "warm-up")
    os.write(1, b"ready\n")
    last = (0.0, 0.0)
    for line in sys.stdin.buffer:
        cmd, _, arg = line.decode().strip().partition(" ")
        if cmd == "log":
            before = time.time()
            await svc.agent_log(name, f"sample {arg}")
            last = (before, time.time())
        elif cmd == "report":
            os.write(1, f"{last[0]!r} {last[1]!r}\n".encode())
        elif cmd == "ping":
            os.write(1, f"{time.time()!r}\n".encode())
        else:
            break
    await svc.close()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
"""


class Writer:
    """Process B, driven line by line through its stdin."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, where: Fresh) -> Writer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, where.url, str(where.home), WRITER_NAME, cwd=REPO,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        writer = cls(proc)
        assert await writer.line() == "ready"
        return writer

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())

    async def line(self) -> str:
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), 30)).decode().strip()

    async def stop(self) -> None:
        self.send("quit")
        await asyncio.wait_for(self.proc.wait(), 30)


class Samples:
    def __init__(self) -> None:
        self.after_commit: list[float] = []  # B's commit returned -> A received the event
        self.from_call: list[float] = []  # B called agent_log -> A received the event
        self.pipe: list[float] = []  # B wrote to its pipe -> A's loop read it


async def measure(svc: LaunchService, writer: Writer, n: int, interval: float, *,
                  watch: bool, pipe: bool) -> Samples:
    """n samples (after WARM_UP more) of B's commit -> this process's subscriber."""
    loop = asyncio.get_running_loop()
    waiting: dict[str, asyncio.Future[float]] = {}

    async def subscriber() -> None:
        # A 60 s fallback either way: with watch=True no sample can come by the poll.
        feed = svc.subscribe(poll_s=POLL_S if not watch else 60.0, watch=watch,
                             watched_poll_s=60.0)
        async for ev in feed:
            if isinstance(ev, AgentLog) and ev.agent == WRITER_NAME:
                got = time.time()
                fut = waiting.get(ev.message)
                if fut is not None and not fut.done():
                    fut.set_result(got)

    task = asyncio.create_task(subscriber())
    await asyncio.sleep(0.5)  # subscribed (and listening, on PostgreSQL) and idle
    out = Samples()
    rng = random.Random(7)
    try:
        for i in range(WARM_UP + n):
            fut = waiting[f"sample {i}"] = loop.create_future()
            writer.send(f"log {i}")
            got = await asyncio.wait_for(fut, 90)
            writer.send("report")
            before, after = map(float, (await writer.line()).split())
            if i >= WARM_UP:
                out.after_commit.append(got - after)
                out.from_call.append(got - before)
            # Polling: a random phase against the poll too (the next commit would
            # otherwise always come just after the poll that delivered this one).
            await asyncio.sleep(interval * rng.uniform(0.5, 1.5)
                                + (0.0 if watch else rng.uniform(0, POLL_S)))
            if pipe:
                writer.send("ping")
                sent = float(await writer.line())
                if i >= WARM_UP:
                    out.pipe.append(time.time() - sent)
                await asyncio.sleep(interval * rng.uniform(0.5, 1.5))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return out


async def on_store(kind: StoreKind, n: int, interval: float, poll_row: bool
                   ) -> dict[str, Samples]:
    with fresh(kind) as where:
        svc = await LaunchService.open(store=where.url, home=where.home)
        writer = await Writer.start(where)
        try:
            results = {"wake": await measure(svc, writer, n, interval, watch=True, pipe=True)}
            if poll_row:
                results["poll"] = await measure(svc, writer, n, interval, watch=False,
                                                pipe=False)
        finally:
            await writer.stop()
            await svc.close()
    return results


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of seconds, in ms."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1] * 1000


def row(label: str, values: list[float], extra: str = "") -> str:
    return (f"{label:<58}{len(values):>4}{pct(values, 50):>9.2f}{pct(values, 90):>9.2f}"
            f"{pct(values, 99):>9.2f}{pct(values, 100):>9.2f}{extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="samples per store (N)")
    parser.add_argument("--interval", type=float, default=0.02,
                        help="mean pause (s) after each sample, so the subscriber is idle")
    parser.add_argument("--no-poll-row", action="store_true",
                        help="skip the watch=False (0.2 s poll) comparison")
    add_arguments(parser)
    args = parser.parse_args()
    kinds = chosen(args)
    load_before = load()
    results = []
    for kind in kinds:
        print(f"  {kind.label}: {args.events} samples ...", file=sys.stderr, flush=True)
        results.append((kind, server_version(kind),
                        asyncio.run(on_store(kind, args.events, args.interval,
                                             not args.no_poll_row))))

    wake_label = {False: "inotify wake", True: "LISTEN/NOTIFY"}
    print(f"cross-process wake: B commits agent_log(), A's subscriber receives the event; "
          f"{args.events} samples per row, ms, {os.cpu_count()} cores")
    header = (f"{'store: path':<58}{'n':>4}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
              f"{'  p50 from the call':>20}")
    print(header)
    print("-" * len(header))
    summary: dict[str, dict[str, list[float]]] = {}
    for kind, version, res in results:
        wake = res["wake"]
        print(row(f"{version}: feed, {wake_label[kind.postgres]} (60 s poll)",
                  wake.after_commit, f"{pct(wake.from_call, 50):>20.2f}"))
        summary[f"{kind.label} feed"] = [round(pct(wake.after_commit, q), 3)
                                         for q in (50, 90, 99)]
        if "poll" in res:
            poll = res["poll"]
            print(row(f"{version}: feed, watch=False (0.2 s poll)", poll.after_commit,
                      f"{pct(poll.from_call, 50):>20.2f}"))
            summary[f"{kind.label} poll"] = [round(pct(poll.after_commit, q), 3)
                                             for q in (50, 90, 99)]
        print(row("  baseline: os pipe B -> A, the same two processes", wake.pipe))
        summary[f"{kind.label} pipe"] = [round(pct(wake.pipe, q), 3) for q in (50, 90, 99)]
    print("(from commit returned in B to the event in A's `async for`; 'from the call': from "
          "just before B's agent_log() call)")
    for kind, _, res in results:
        if kind.postgres:
            p50 = pct(res["wake"].after_commit, 50)
            verdict = "met" if p50 < GOAL_P50_MS else "NOT met"
            print(f"goal: p50 under {GOAL_P50_MS:g} ms on PostgreSQL: {verdict} ({p50:.2f} ms)")
    for kind in kinds:
        print(durability(kind))
    print(f"{load_before} before, {load()} after")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
