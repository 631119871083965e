"""How soon a change-feed subscriber sees an event another process wrote.

Process A (this one) subscribes to the feed of an SQLite store; process B
enqueues items one at a time, pausing between them so A is idle each time. An
event carries the time B stamped it with inside its transaction (`Event.ts`), so
A's delay is its clock at delivery minus that stamp. Measured three ways in the
same run, each on a fresh store:

  * the feed as it is: A wakes on B's commits through an inotify watch of the
    database's files (`core/dbwatch.py`), with a 2 s poll as a fallback;
  * the feed without the watch: A polls every 0.2 s (what it did before);
  * a bare pipe between two processes (B writes its clock, A's event loop
    reads it): the floor any cross-process wake-up pays on this machine.

    .venv/bin/python benchmarks/feed_wake.py [--events 200] [--interval 0.02]

Goal: p50 within 10 ms.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from launch_tui.core.events import ItemEnqueued  # noqa: E402
from launch_tui.core.service import LaunchService  # noqa: E402

ENQUEUER = r"""
import asyncio, random, sys, time
from launch_tui.core.service import LaunchService

async def main(home, n, interval):
    svc = await LaunchService.open(home=home)
    print("ready", flush=True)
    sys.stdin.readline()  # go
    for _ in range(n):
        await asyncio.sleep(interval * random.uniform(0.5, 1.5))
        await svc.enqueue("t", "q")
    await svc.close()

asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
"""

PIPE_WRITER = r"""
import os, random, sys, time
n, interval = int(sys.argv[1]), float(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()  # go
for _ in range(n):
    time.sleep(interval * random.uniform(0.5, 1.5))
    os.write(1, f"{time.time()!r}\n".encode())
"""


def _spawn(code: str, *args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    return proc


def _go(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(b"go\n")
    proc.stdin.flush()


async def feed_delays(home: Path, n: int, interval: float, watch: bool) -> list[float]:
    code = home / "code"
    code.mkdir(parents=True)
    (code / "train.py").write_text("print('hi')\n")
    svc = await LaunchService.open(home=home)
    await svc.create_code_job(code, "python train.py", name="t")
    await svc.create_queue("q", "local-process")
    proc = _spawn(ENQUEUER, str(home), str(n), str(interval))
    delays: list[float] = []

    async def watch_feed() -> None:
        async for ev in svc.subscribe(watch=watch):
            if isinstance(ev, ItemEnqueued):
                delays.append(time.time() - ev.ts)
                if len(delays) == n:
                    return

    watcher = asyncio.create_task(watch_feed())
    await asyncio.sleep(0.2)  # subscribed and idle
    _go(proc)
    await asyncio.wait_for(watcher, timeout=60 + n * interval * 2)
    await asyncio.to_thread(proc.wait)
    await svc.close()
    return delays


async def pipe_delays(n: int, interval: float) -> list[float]:
    proc = _spawn(PIPE_WRITER, str(n), str(interval))
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    loop = asyncio.get_running_loop()
    delays: list[float] = []
    done = loop.create_future()
    pending = b""

    def readable() -> None:
        nonlocal pending
        now = time.time()
        pending += os.read(fd, 4096)
        *lines, pending = pending.split(b"\n")
        delays.extend(now - float(line) for line in lines)
        if len(delays) >= n and not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    _go(proc)
    await done
    loop.remove_reader(fd)
    await asyncio.to_thread(proc.wait)
    return delays


def fresh(n: int, interval: float, watch: bool) -> list[float]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        return asyncio.run(feed_delays(Path(tmp) / "home", n, interval, watch))


def summary(delays: list[float]) -> tuple[float, float, float]:
    ms = sorted(d * 1000 for d in delays)
    return statistics.median(ms), ms[min(len(ms) - 1, int(len(ms) * 0.99))], ms[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.02,
                        help="mean pause (s) between B's enqueues")
    args = parser.parse_args()
    n, interval = args.events, args.interval
    results = {
        "feed, inotify watch of the database (2 s fallback poll)": fresh(n, interval, True),
        "feed without the watch (0.2 s poll)": fresh(n, interval, False),
        "baseline: bare pipe between two processes": asyncio.run(pipe_delays(n, interval)),
    }
    print(f"cross-process delivery delay, {n} events, B pausing ~{interval * 1000:.0f} ms "
          "between them")
    print(f"  {'':58s}{'p50':>9s}{'p99':>9s}{'max':>9s}")
    for label, delays in results.items():
        p50, p99, top = summary(delays)
        print(f"  {label:58s}{p50:7.2f}ms{p99:7.2f}ms{top:7.2f}ms")
    print(json.dumps({label: [round(v, 3) for v in summary(d)] for label, d in results.items()}))


if __name__ == "__main__":
    main()
