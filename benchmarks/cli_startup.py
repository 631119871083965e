"""How long a headless CLI command takes to start and answer, against bare Python.

Runs `launch-tui items --json` on an empty embedded store (created once, before
timing) and, as the baseline in the same run, `python -c pass` with the same
interpreter. Also lists the heavy modules the command loaded, which should be
none of textual, rich or any backend SDK.

    .venv/bin/python benchmarks/cli_startup.py [--runs 15]

Every command runs as an installed program does: with its modules' compiled
bytecode cached (in a private PYTHONPYCACHEPREFIX, filled by one untimed run of
each, so the checkout is not touched). An editable install under
PYTHONDONTWRITEBYTECODE=1 instead compiles the package's own ~50 modules from
source on every start; that figure is printed too, for reference.

Goal (issue 9): the command within 300 ms of the baseline, bytecode cached.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
HEAVY = ("textual", "rich", "docker", "kubernetes", "boto3", "google.cloud.aiplatform",
         "jsonschema", "yaml", "sqlalchemy.orm", "sqlalchemy.ext.asyncio")


def timed(commands: list[tuple[list[str], dict[str, str]]], runs: int) -> list[list[float]]:
    """Each command's times, the commands taken in turn in every round: a VM whose
    speed drifts over a minute then slows them all alike, not the one timed last."""
    out: list[list[float]] = [[] for _ in commands]
    for _ in range(runs):
        for times, (argv, env) in zip(out, commands, strict=True):
            start = time.perf_counter()
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - start)
    return out


def loaded_modules(home: Path, env: dict[str, str]) -> list[str]:
    code = (
        "import atexit, sys\n"
        f"heavy = {HEAVY!r}\n"
        "atexit.register(lambda: print(json.dumps([m for m in heavy if m in sys.modules]),"
        " file=sys.stderr))\n"
        "import json\n"
        f"sys.argv = ['launch-tui', '--home', {str(home)!r}, 'items', '--json']\n"
        "from launch_tui.tui.cli import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return json.loads(proc.stderr.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        env = {**os.environ, "LAUNCH_TUI_HOME": str(home),
               "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}
        env.pop("LAUNCH_TUI_STORE", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        uncached = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
        uncached.pop("PYTHONPYCACHEPREFIX")
        command = [str(BIN / "launch-tui"), "items", "--json"]
        base_cmd = [sys.executable, "-c", "pass"]
        # The floor under any store access: the store is SQLAlchemy Core on asyncio.
        floor_cmd = [sys.executable, "-c", "import asyncio, sqlalchemy"]
        for argv in (command, base_cmd, floor_cmd):  # makes the store, fills the cache
            subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        base, floor, cli, cold = timed(
            [(base_cmd, env), (floor_cmd, env), (command, env), (command, uncached)], runs)
        heavy = loaded_modules(home, env)
    b, c = statistics.median(base), statistics.median(cli)
    f, u = statistics.median(floor), statistics.median(cold)
    print(f"headless CLI start-up, median of {runs} rounds (bytecode cached)")
    print(f"  baseline: python -c pass          {b * 1000:7.1f} ms")
    print(f"  import asyncio, sqlalchemy        {f * 1000:7.1f} ms   (+{(f - b) * 1000:.0f} ms)")
    print(f"  launch-tui items --json (empty)   {c * 1000:7.1f} ms   (+{(c - b) * 1000:.0f} ms)")
    print(f"  the same, package not compiled    {u * 1000:7.1f} ms   (+{(u - b) * 1000:.0f} ms)")
    print(f"  heavy modules loaded: {', '.join(heavy) or 'none'}")
    print(json.dumps({"baseline_ms": round(b * 1000, 1), "sqlalchemy_ms": round(f * 1000, 1),
                      "items_ms": round(c * 1000, 1),
                      "over_baseline_ms": round((c - b) * 1000, 1),
                      "uncompiled_items_ms": round(u * 1000, 1), "heavy": heavy}))


if __name__ == "__main__":
    main()
