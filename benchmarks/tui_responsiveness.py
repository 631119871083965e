"""Keypress-to-screen latency and memory of the TUI with 100 and 10,000 pending items.

Not part of the test run. Everything is measured in this one process, in order:

  baseline   Pilot's own cost of a key press, on a trivial app (a Static).
  datatable  a plain Textual DataTable holding the same number of rows: moving
             the cursor and updating one cell (the naive way to show a queue).
  launch-tui the real app on a real store: cursor moves in the queue's items
             pane, and a live change (an item enqueued by another client at
             critical priority, so it lands on screen) until it is drawn.

Key latencies are reported minus the baseline (median of many presses). Memory
is the growth of the process's resident set while the app holds the items.

    .venv/bin/python benchmarks/tui_responsiveness.py [--sizes 100,10000] [--presses 40]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.app import App, ComposeResult  # noqa: E402
from textual.pilot import Pilot  # noqa: E402
from textual.widgets import DataTable, Static  # noqa: E402

from launch_tui.core.service import LaunchService  # noqa: E402
from launch_tui.tui.app import LaunchApp  # noqa: E402
from launch_tui.tui.demo import seed_jobs_and_queues  # noqa: E402

SIZE = (120, 40)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def timed_presses(pilot: Pilot, key: str, count: int) -> list[float]:
    """Milliseconds from sending each key until Pilot sees the screen updated."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        await pilot.press(key)
        times.append((time.perf_counter() - start) * 1000)
    return times


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) >= 10 else max(values)


# ---------------------------------------------------------------------- baseline


class Trivial(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("nothing to see")


async def baseline(presses: int) -> float:
    app = Trivial()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await timed_presses(pilot, "j", 5)  # warm up
        return med(await timed_presses(pilot, "j", presses))


# ---------------------------------------------------------------------- datatable


class Table(App[None]):
    def __init__(self, rows: int) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        yield DataTable()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("pos", "item", "job", "priority", "state", "age")
        table.add_rows(
            (str(i + 1), f"#{i + 1}", "train:v0", "medium", "pending", "5s")
            for i in range(self.rows)
        )
        table.focus()


async def datatable(rows: int, presses: int) -> tuple[float, float]:
    app = Table(rows)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await timed_presses(pilot, "down", 5)
        moves = med(await timed_presses(pilot, "down", presses))
        table = app.query_one(DataTable)
        updates = []
        for i in range(min(presses, 20)):
            start = time.perf_counter()
            table.update_cell_at((i, 4), "leased")
            await pilot.pause()
            updates.append((time.perf_counter() - start) * 1000)
        return moves, med(updates)


# ---------------------------------------------------------------------- launch-tui


async def fill(service: LaunchService, pending: int) -> None:
    """`pending` items on the local queue, through the service like any client."""
    batch = 200
    for start in range(0, pending, batch):
        await asyncio.gather(*(
            service.enqueue("train", "local", config={"epochs": 1 + (i % 50)})
            for i in range(start, min(pending, start + batch))
        ))


async def until(pilot: Pilot, predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    deadline = time.monotonic() + limit_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not show the change")
        await asyncio.sleep(0.002)


async def launch_tui(pending: int, presses: int, root: Path) -> dict[str, float]:
    home = root / f"home-{pending}"
    home.mkdir()
    service = await LaunchService.open(home=home)
    try:
        await seed_jobs_and_queues(service, root / f"src-{pending}")
        started = time.perf_counter()
        await fill(service, pending)
        fill_s = time.perf_counter() - started
        before = rss_mb()
        # Python-level allocations the app makes and keeps (model, widgets), traced only
        # while loading so the timings below run at full speed.
        tracemalloc.start()
        app = LaunchApp(service=service)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.model is not None and app.model.loaded, 60)
            load_s = time.perf_counter() - started - fill_s
            await pilot.press("2", "j", "3")  # the local queue's items
            await until(pilot, lambda: app.screen.query_one("#items-table").row_count
                        == pending)
            gc.collect()
            traced_mb = tracemalloc.get_traced_memory()[0] / 2**20
            tracemalloc.stop()
            after = rss_mb()
            await timed_presses(pilot, "j", 5)
            moves = await timed_presses(pilot, "j", presses)
            ups = await timed_presses(pilot, "k", presses)
            table = app.screen.query_one("#items-table")
            await pilot.press("g")  # top of the queue, where a critical item lands
            live = []
            for _ in range(10):
                start = time.perf_counter()
                item = await service.enqueue("evaluate", "local", priority="critical")
                needle = f"#{item.id}"

                def shown(needle: str = needle) -> bool:
                    # Critical items queue up first-in-first-out at the top: on screen.
                    visible = table.view[: table.size.height - 1]
                    return int(needle[1:]) in {key[2] for key in visible}

                await until(pilot, shown)
                await pilot.pause()
                live.append((time.perf_counter() - start) * 1000)
    finally:
        await service.close()
    return {
        "fill_s": fill_s,
        "load_s": load_s,
        "key_ms": med(moves + ups),
        "key_p90_ms": p90(moves + ups),
        "live_ms": med(live),
        "rss_mb": after - before,
        "traced_mb": traced_mb,
    }


async def main(sizes: list[int], presses: int) -> None:
    print(f"terminal {SIZE[0]}x{SIZE[1]}, {presses} presses per key, medians "
          "(p90 where shown)\n")
    base = await baseline(presses)
    print(f"baseline  Pilot press on a trivial app: {base:6.1f} ms (subtracted below)\n")
    rows = []
    with tempfile.TemporaryDirectory(prefix="launch-tui-bench-") as tmp:
        for n in sizes:
            dt_move, dt_update = await datatable(n, presses)
            result = await launch_tui(n, presses, Path(tmp))
            rows.append((n, dt_move, dt_update, result))
    header = (f"{'pending':>8} | {'DataTable move':>14} {'update_cell':>11} | "
              f"{'launch-tui key':>14} {'p90':>6} {'live change':>11} {'heap MB':>8} "
              f"{'RSS +MB':>8} {'load s':>6}")
    print(header)
    print("-" * len(header))
    for n, dt_move, dt_update, r in rows:
        print(f"{n:>8,} | {dt_move - base:>11.1f} ms {dt_update:>8.1f} ms | "
              f"{r['key_ms'] - base:>11.1f} ms {r['key_p90_ms'] - base:>6.1f} "
              f"{r['live_ms']:>8.1f} ms {r['traced_mb']:>8.1f} {r['rss_mb']:>8.1f} "
              f"{r['load_s']:>6.2f}")
    print("\nkey: cursor move in the items pane, keypress to screen update, minus baseline."
          "\nlive change: enqueue by another client -> drawn at the top of the items pane"
          "\n             (includes the store write and the change-feed read)."
          "\nupdate_cell: DataTable.update_cell_at + one screen update, for comparison."
          "\nheap MB: Python memory the app allocated and kept while loading (tracemalloc);"
          "\n         RSS +MB: growth of the process's resident set over the same span.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000")
    parser.add_argument("--presses", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(main([int(s) for s in args.sizes.split(",")], args.presses))
