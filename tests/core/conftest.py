"""Fixtures for core tests: a fresh embedded store per test and a CLI runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    d = tmp_path / "train-code"
    d.mkdir()
    (d / "train.py").write_text("import os\nprint(os.environ['WANDB_CONFIG'])\n")
    return d


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> object:
        return json.loads(self.out)


@pytest.fixture
def cli(home: Path):  # type: ignore[no-untyped-def]
    """Run the real `launch-tui` entry point in a subprocess against `home`."""

    def run(*args: str, cwd: Path | None = None) -> Result:
        env = {**os.environ, "LAUNCH_TUI_HOME": str(home)}
        proc = subprocess.run(
            [sys.executable, "-m", "launch_tui.tui.cli", *args],
            capture_output=True, text=True, env=env, cwd=cwd or REPO, timeout=60,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def write(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Write a mapping as a JSON config file; returns its path for a CLI option."""
    count = iter(range(1000))

    def write(data: dict[str, Any]) -> str:
        path = tmp_path / f"c{next(count)}.json"
        path.write_text(json.dumps(data))
        return str(path)

    return write
