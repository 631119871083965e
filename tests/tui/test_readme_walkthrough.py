"""The README's first steps, as a new user takes them, in tmux at 80x24.

`make run` (the README's first command) opens the app on the demo with its agent;
the seeded items run; `e` + `ctrl+s` enqueues the selected job and it runs; a run
that fails while the user looks at another pane raises a notice; the Items
history shows it with its outcome and why; `r` there re-enqueues it. Everything
goes through a real terminal, the real agent and real processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.tui.test_tmux import ROOT, Tmux


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAUNCH_TUI_HOME": str(home)}
    env.pop("LAUNCH_TUI_STORE", None)
    return subprocess.run([sys.executable, "-m", "launch_tui.tui.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_readme_walkthrough_at_80x24(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    marker = tmp_path / "exited"
    # The demo is always the embedded store: the walkthrough is the one-machine set-up.
    command = (f"cd {ROOT} && env -u LAUNCH_TUI_STORE LAUNCH_TUI_HOME={home} "
               f"TERM=xterm-256color make -s run; echo $? > {marker}; sleep 60")
    tmux = Tmux(f"launch-tui-walk-{os.getpid()}-{tmp_path.name}")
    tmux.run("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command)
    try:
        screen = tmux.wait_for("1 Jobs (2)", within=60)
        assert "evaluate" in screen and "train" in screen
        tmux.wait_for("started on local")
        # The two seeded items run on the in-process agent.
        tmux.keys("4")
        _wait_runs(home, finished=2)
        tmux.wait_for("finished")

        # Enqueue the selected job with its defaults: it runs too.
        tmux.keys("1", "g", "e")  # evaluate, the first job
        tmux.wait_for('"job": "evaluate:v0"')
        tmux.keys("C-s")
        tmux.wait_for("1 Jobs (2)")
        _wait_runs(home, finished=3)

        # A run that fails while the user looks at the Jobs pane raises a notice.
        failing = _cli(home, "launch", "-j", "train", "-q", "local", "--set", "lr=0.5")
        assert failing.returncode == 0, failing.stderr
        screen = tmux.wait_for("failed", within=40)
        assert "loss became NaN" in screen or "Run failed" in screen, screen

        # The history of the local queue shows it, with its outcome and why.
        tmux.keys("2", "G", "3", "H")
        # The row itself: "history" and "failed" are also in the hint and the notice
        # shown before the history has loaded, and r on no row does nothing.
        row = tmux.wait_for_line("#4 train:v0", "failed")
        assert "ValueError: loss became NaN" in row, row  # the error, not "last output:"
        # r on the failed item re-enqueues it with its config (lr 0.5).
        tmux.keys("g", "r")
        tmux.wait_for("again from run")
        # The form's body is drawn after its title, and the notices of the runs that
        # just ended cover the end of the title until they time out.
        tmux.wait_for("lr 0.5")
        tmux.wait_for("(failed)", within=30)
        tmux.keys("C-s")
        _wait_runs(home, total=5)
        tmux.keys("q")
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        screen = tmux.screen()
        if not marker.exists() and "Quit" in screen:  # an agent runs here: asks first
            tmux.keys("y")
            while not marker.exists() and time.monotonic() < deadline + 20:
                time.sleep(0.1)
        assert marker.exists(), f"the app did not exit on q:\n{tmux.screen()}"
        assert marker.read_text().strip() == "0"
    finally:
        tmux.run("kill-server")


def _wait_runs(home: Path, *, finished: int | None = None, total: int | None = None,
               within: float = 60) -> None:
    """Until the store has `finished` finished runs or `total` runs that ended."""
    import json

    deadline = time.monotonic() + within
    runs: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        result = _cli(home, "runs", "--json", "-n", "0")
        if result.returncode == 0:
            runs = json.loads(result.stdout)
            done = [r for r in runs if r["state"] in ("finished", "failed", "crashed",
                                                      "stopped")]
            if finished is not None and sum(r["state"] == "finished" for r in runs) >= finished:
                return
            if total is not None and len(done) >= total:
                return
        time.sleep(0.5)
    raise AssertionError(f"runs did not end in time: {[(r['id'], r['state']) for r in runs]}")


def test_the_app_exits_when_its_terminal_goes_away(tmp_path: Path) -> None:
    """`make run`, then the terminal goes away (a dropped SSH connection, a killed
    tmux pane). make leads the session and does not pass SIGHUP on, so the app must
    notice the hang-up itself: it stops its agent (the name is free again) and
    exits, rather than spinning on a dead terminal."""
    import asyncio

    from launch_tui.core.model import AgentStatus
    from launch_tui.core.service import LaunchService

    home = tmp_path / "home"
    home.mkdir()
    command = (f"cd {ROOT} && env -u LAUNCH_TUI_STORE LAUNCH_TUI_HOME={home} "
               f"TERM=xterm-256color make -s run")
    tmux = Tmux(f"launch-tui-hup-{os.getpid()}-{tmp_path.name}")
    tmux.run("new-session", "-d", "-s", "app", "-x", "80", "-y", "24", command)

    async def agents() -> list[tuple[str, AgentStatus, int]]:
        service = await LaunchService.open(home=home)
        try:
            return [(a.name, a.status, a.pid) for a in await service.list_agents()]
        finally:
            await service.close()

    try:
        tmux.wait_for("started on local", within=60)
        [(name, status, pid)] = asyncio.run(agents())
        assert status != AgentStatus.STOPPED
    finally:
        tmux.run("kill-server")
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    outlived = Path(f"/proc/{pid}").exists()
    if outlived:
        os.kill(pid, 9)  # leave no orphan behind, then fail
    assert not outlived, "the app outlived its terminal"
    assert asyncio.run(agents()) == [(name, AgentStatus.STOPPED, pid)]
