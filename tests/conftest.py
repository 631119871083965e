"""Fixtures shared by every test folder: a fresh embedded store per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from launch_tui.core.service import LaunchService
from tests.agent_harness import Lab


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty LAUNCH_TUI_HOME; the embedded SQLite store is created inside it."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("LAUNCH_TUI_HOME", str(path))
    monkeypatch.delenv("LAUNCH_TUI_STORE", raising=False)
    return path


@pytest.fixture
async def service(home: Path) -> AsyncIterator[LaunchService]:
    svc = await LaunchService.open(home=home)
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    """A throwaway home with its store, for agents in this process or their own
    (tests/agent_harness.py); every process it started is stopped at the end."""
    lab = await Lab.open(tmp_path)
    try:
        yield lab
    finally:
        await lab.close()
