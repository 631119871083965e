"""Write SVG screenshots of the real app to screenshots/ (used by `make screenshots`).

Seeds a demo store in a temporary directory through the service (a project,
two small code jobs, a local-process queue, runs in several states made via
the lease protocol), with the service's clock, run ids, host and pid frozen so
the pictures only change when the app does. Then drives the app headless with
the keys a person would press and saves what the screen shows.

    python scripts/screenshots.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.pilot import Pilot  # noqa: E402
from textual.widgets import Input  # noqa: E402

from launch_tui.tui.app import LaunchApp  # noqa: E402
from launch_tui.tui.demo import seed_frozen_showcase  # noqa: E402


@dataclass(frozen=True)
class Shot:
    name: str
    size: tuple[int, int]
    keys: tuple[str, ...]
    title: str


SHOTS = (
    Shot("main", (120, 40), ("2", "j", "4"),
         "Main screen: jobs, queues with their items, runs in several states, agents"),
    Shot("main-80x24", (80, 24), ("4",), "80x24: one pane at a time, switched by tab or 1-6"),
    Shot("logs-80x24", (80, 24), ("4", "j", "j", "l"),
         "80x24 logs under the list: the agents' log and the selected run's, following"),
    Shot("why-80x24", (80, 24), ("2", "j", "3"),
         "Why each item waits, in the core's words; the status line has the cursor row's"),
    Shot("history", (120, 40), ("2", "j", "3", "H", "4", "H", "3"),
         "History: items and runs done with, their outcome, duration and why; r re-enqueues"),
    Shot("enqueue-error", (100, 34), ("j", "e", "tab", "tab", "tab", "end", "0", "0"),
         "Enqueue form: fields from the job's schema, an inline error, the resolved spec"),
    Shot("run-detail", (120, 40), ("4", "G", "enter"),
         "Run detail: timeline with stage durations, metrics as sparklines, logs"),
    Shot("help", (100, 40), ("question_mark",), "Every key, with what it does"),
)


async def settle(pilot: Pilot) -> None:
    app = pilot.app
    assert isinstance(app, LaunchApp)
    for _ in range(250):
        if app.model is not None and app.model.loaded:
            break
        await pilot.pause(0.02)
    await pilot.pause(0.3)


def driver(shot: Shot, out: Path) -> Callable[[Pilot], Awaitable[None]]:
    async def drive(pilot: Pilot) -> None:
        await settle(pilot)
        for key in shot.keys:
            await pilot.press(key)
            await pilot.pause(0.15)
            for field in pilot.app.screen.query(Input):
                field.cursor_blink = False  # a blinking cursor would make diffs noisy
        await pilot.pause(0.5)
        await pilot.wait_for_scheduled_animations()
        svg = pilot.app.export_screenshot(title=f"launch-tui · {shot.title}")
        (out / f"{shot.name}.svg").write_text(svg, encoding="utf-8")
        pilot.app.exit()

    return drive


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="launch-tui-shots-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        now = seed_frozen_showcase(home)
        for shot in SHOTS:
            app = LaunchApp(home=str(home), clock=lambda now=now: now)
            app.run(headless=True, size=shot.size, auto_pilot=driver(shot, out))
            print(f"{out / (shot.name + '.svg')}  {shot.size[0]}x{shot.size[1]}  {shot.title}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
