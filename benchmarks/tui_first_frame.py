"""How long `launch-tui` takes to draw its first frame, and to show the store's data.

Each run starts the real command in a pseudo-terminal (80x24, xterm-256color), as
a user over SSH would, on an embedded store seeded once with the demo
(`launch-tui demo --no-app`), and reads what it writes:

  first frame   the main screen's furniture is on the terminal (the Jobs pane's
                title), whether or not the store has answered yet
  data shown    the demo's `train` job is on screen (store opened, lists loaded)

Baselines in the same run, started the same way:

  python -c pass          the interpreter alone (exits at once)
  textual hello           a minimal Textual app drawing one Static: Textual's own
                          start-up, which no app built on it can go below

    .venv/bin/python benchmarks/tui_first_frame.py [--runs 9]

Goal (issue 13): the first frame within 1 s.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

BIN = Path(sys.executable).parent
HELLO = (
    "from textual.app import App\n"
    "from textual.widgets import Static\n"
    "class Hello(App):\n"
    "    def compose(self):\n"
    "        yield Static('hello from textual')\n"
    "Hello().run()\n"
)


def until_seen(argv: list[str], env: dict[str, str], marks: list[bytes],
               timeout: float = 30.0) -> list[float]:
    """Seconds from spawning `argv` in an 80x24 pty until each of `marks` was written."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the command, on the pty
        os.execve(argv[0], argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    start = time.perf_counter()
    seen: list[float] = []
    out = b""
    try:
        while len(seen) < len(marks) and time.perf_counter() - start < timeout:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            while len(seen) < len(marks) and marks[len(seen)] in out:
                seen.append(time.perf_counter() - start)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    if len(seen) < len(marks):
        raise SystemExit(f"{argv[-1]}: never showed {marks[len(seen)]!r} in {timeout} s")
    return seen


def pass_time(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=9)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "LAUNCH_TUI_HOME": str(home), "TERM": "xterm-256color",
               "COLUMNS": "80", "LINES": "24"}
        for name in ("LAUNCH_TUI_STORE", "NO_COLOR", "TEXTUAL"):
            env.pop(name, None)
        subprocess.run([str(BIN / "launch-tui"), "demo", "--no-app"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        hello = Path(tmp) / "hello.py"
        hello.write_text(HELLO)
        base, textual, frame, data = [], [], [], []
        for _ in range(runs):  # interleaved, so load changes hit all alike
            base.append(pass_time(env))
            textual.append(until_seen([sys.executable, str(hello)], env,
                                      [b"hello from textual"])[0])
            first, shown = until_seen([str(BIN / "launch-tui")], env, [b"Jobs", b"train"])
            frame.append(first)
            data.append(shown)
    b, t, f, d = (statistics.median(x) * 1000 for x in (base, textual, frame, data))
    print(f"TUI start-up at 80x24 in a pty, median of {runs} runs "
          f"(load average {os.getloadavg()[0]:.2f})")
    print(f"  baseline: python -c pass          {b:7.1f} ms")
    print(f"  baseline: textual hello           {t:7.1f} ms")
    print(f"  launch-tui first frame            {f:7.1f} ms   (+{f - t:.0f} ms over textual)")
    print(f"  launch-tui data shown             {d:7.1f} ms   (+{d - t:.0f} ms over textual)")
    print(json.dumps({"python_ms": round(b, 1), "textual_hello_ms": round(t, 1),
                      "first_frame_ms": round(f, 1), "data_shown_ms": round(d, 1)}))


if __name__ == "__main__":
    main()
