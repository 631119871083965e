"""The real app in a real terminal: tmux at 80x24, keys sent as a person would type them.

This proves what Pilot cannot: the app starts through `run_app`, draws on a pty,
reads real key sequences (ctrl+s included) and exits cleanly on q.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from launch_tui.core.service import LaunchService
from launch_tui.tui.demo import seed_jobs_and_queues

# tmux is installed by .ci/run; a machine without it fails here rather than skipping.
assert shutil.which("tmux"), "tmux is not installed (apt-get install tmux)"

ROOT = Path(__file__).resolve().parents[2]
SIGCONTS = 400
T = TypeVar("T")


def poll(check: Callable[[], T | None], within: float) -> T | None:
    """`check()` every 0.1 s until it gives something truthy, or None after `within`
    seconds (the screen, /proc and the marker file cannot tell us; we look)."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found or time.monotonic() >= deadline:
            return found or None
        time.sleep(0.1)


class Tmux:
    """One private tmux server (its own socket), so nothing else is touched."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def run(self, *args: str) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True,
                                text=True, check=False)
        return result.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "app")

    def wait_for(self, text: str, within: float = 15.0) -> str:
        def showing() -> str | None:
            screen = self.screen()
            return screen if text in screen else None

        screen = poll(showing, within)
        if screen is None:
            raise AssertionError(f"{text!r} never appeared; the terminal shows:\n"
                                 f"{self.screen()}")
        return screen

    def wait_for_line(self, *parts: str, within: float = 15.0) -> str:
        """Until one line of the screen holds every one of `parts` (a table row, not
        the same words scattered over a notice and a hint); returns that line."""
        line = poll(lambda: next((line for line in self.screen().splitlines()
                                  if all(part in line for part in parts)), None), within)
        if line is None:
            raise AssertionError(f"no line with {parts!r} appeared; the terminal shows:\n"
                                 f"{self.screen()}")
        return line

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.run("send-keys", "-t", "app", key)
            time.sleep(0.15)


def app_pid(tmux: Tmux, within: float = 15.0) -> int:
    """The process the pane's shell started (the app)."""
    shell = int(tmux.run("display", "-p", "-t", "app", "#{pane_pid}"))
    children = Path(f"/proc/{shell}/task/{shell}/children")
    found = poll(lambda: children.read_text().split(), within)
    if not found:
        raise AssertionError("the pane's shell started no process")
    return int(found[0])


def exit_status(marker: Path, within: float = 15.0) -> str | None:
    """What the pane's shell wrote to `marker` once the app exited (None: it did not)."""
    return poll(lambda: marker.read_text().strip() if marker.exists() else None, within)


def seeded_home(tmp_path: Path) -> Path:
    """A home whose store holds the demo's jobs and queues (no agent, no items)."""
    home = tmp_path / "home"
    home.mkdir()

    async def seed() -> None:
        service = await LaunchService.open(home=home)
        try:
            await seed_jobs_and_queues(service, tmp_path / "src")
        finally:
            await service.close()

    asyncio.run(seed())
    return home


def test_enqueue_and_quit_in_a_real_terminal(tmp_path: Path) -> None:
    home = seeded_home(tmp_path)
    marker = tmp_path / "exited"
    command = (
        f"cd {ROOT} && LAUNCH_TUI_HOME={home} TERM=xterm-256color {sys.executable} -c "
        "'from launch_tui.tui.app import run_app; run_app()'; "
        f"echo $? > {marker}; sleep 30"
    )
    tmux = Tmux(f"launch-tui-test-{os.getpid()}-{tmp_path.name}")
    tmux.run("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command)
    try:
        screen = tmux.wait_for("1 Jobs (2)")
        assert "evaluate" in screen and "train" in screen
        tmux.keys("j", "e")
        tmux.wait_for('"job": "train:v0"')  # the form with its resolved spec
        tmux.keys("C-s")
        tmux.wait_for("1 Jobs (2)")
        tmux.keys("3")
        screen = tmux.wait_for("Items · gpu (1)")
        assert "train:v0" in screen and "pending" in screen
        tmux.keys("q")
        assert exit_status(marker) == "0", "the app did not exit on q with status 0"
    finally:
        tmux.run("kill-server")


def test_keys_typed_ahead_reach_the_pane_they_go_to(tmp_path: Path) -> None:
    """"2G3H" typed in one go, as a quick hand does: Queues, its last queue, Items,
    history. Each key reaches the pane the one before it moved to (a pane took focus
    only at the next refresh, and the keys queued before it went to the old one)."""
    home = seeded_home(tmp_path)
    command = (f"cd {ROOT} && LAUNCH_TUI_HOME={home} TERM=xterm-256color {sys.executable} "
               "-c 'from launch_tui.tui.app import run_app; run_app()'; sleep 30")
    tmux = Tmux(f"launch-tui-ahead-{os.getpid()}-{tmp_path.name}")
    tmux.run("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command)
    try:
        tmux.wait_for("1 Jobs (2)")
        tmux.run("send-keys", "-t", "app", "-l", "2G3H")
        tmux.wait_for("3 Items · local · history")
        tmux.run("send-keys", "-t", "app", "-l", "4H1")
        screen = tmux.wait_for("1 Jobs (2)")
        tmux.run("send-keys", "-t", "app", "-l", "4")
        tmux.wait_for("4 Runs · history")
        assert "evaluate" in screen
    finally:
        tmux.run("kill-server")


def test_sigcont_while_the_app_runs_leaves_it_working(tmp_path: Path) -> None:
    """SIGCONT comes without a stop before it: with the hang-up when a terminal goes
    away, from bash to its jobs, from a user's `kill -CONT`. Textual's own handler
    restarted the terminal's application mode inside the signal, writing to a queue
    that is not reentrant: a signal landing while the app drew deadlocked it (it
    then never exited). Many in a row, then the app must still answer and quit."""
    home = seeded_home(tmp_path)
    marker = tmp_path / "exited"
    command = (f"cd {ROOT} && LAUNCH_TUI_HOME={home} TERM=xterm-256color {sys.executable} "
               f"-c 'from launch_tui.tui.app import run_app; run_app()'; echo $? > {marker}; "
               "sleep 30")
    tmux = Tmux(f"launch-tui-cont-{os.getpid()}-{tmp_path.name}")
    tmux.run("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command)
    pid = None
    try:
        tmux.wait_for("1 Jobs (2)")
        pid = app_pid(tmux)
        for i in range(SIGCONTS):
            os.kill(pid, signal.SIGCONT)
            if i % 20 == 0:
                tmux.run("send-keys", "-t", "app", "-l", "4" if i % 40 else "1")
            time.sleep(0.002)
        tmux.keys("2")
        tmux.wait_for("2 Queues (2)")
        tmux.keys("q")
        assert exit_status(marker) == "0", \
            f"the app did not exit on q with status 0:\n{tmux.screen()}"
    finally:
        tmux.run("kill-server")
        if pid is not None and Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)  # deadlocked: leave no orphan behind
