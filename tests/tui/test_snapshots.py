"""Snapshot tests: the real app on a frozen demo store, at 80x24 and 120x40.

The store is seeded with the service's clock, run ids, host and pid frozen, and
the app is given a fixed "now", so ages and durations are the same every run.
Update after an intended change with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the SVGs before committing them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from launch_tui.tui.app import LaunchApp
from launch_tui.tui.demo import seed_frozen_showcase
from tests.tui.conftest import wait_for_text

# The frozen clock advances a little at every call, and the two stores do not stamp
# the same number of times while seeding, so the pixels are pinned on the embedded
# store; what the app shows of a PostgreSQL store is covered by the other TUI tests.
pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def frozen_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], LaunchApp]:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("LAUNCH_TUI_HOME", str(home))
    monkeypatch.setenv("TZ", "UTC")
    now = seed_frozen_showcase(home)
    return lambda: LaunchApp(home=str(home), clock=lambda: now)


async def settle(pilot: Pilot) -> None:
    """Wait for the store to load and the panes' first reads to land."""
    app = pilot.app
    assert isinstance(app, LaunchApp)
    for _ in range(200):
        if app.model is not None and app.model.loaded:
            break
        await pilot.pause(0.02)
    await pilot.pause(0.3)


def no_blink(pilot: Pilot) -> None:
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False


def test_main_screen_80x24(snap_compare: Callable[..., bool], frozen_app: Callable) -> None:
    assert snap_compare(frozen_app(), terminal_size=(80, 24), run_before=settle)


def test_main_screen_120x40(snap_compare: Callable[..., bool], frozen_app: Callable) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("2", "j", "4")  # items of the local queue; runs focused
        await pilot.pause(0.2)

    assert snap_compare(frozen_app(), terminal_size=(120, 40), run_before=run_before)


def test_runs_and_logs_80x24(snap_compare: Callable[..., bool], frozen_app: Callable) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("4", "j", "j", "l")  # the failed run's log in the side panel
        await pilot.pause(0.4)

    assert snap_compare(frozen_app(), terminal_size=(80, 24), run_before=run_before)


def test_enqueue_form_with_inline_error_80x24(
    snap_compare: Callable[..., bool], frozen_app: Callable
) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("j", "e")
        await pilot.pause(0.3)
        no_blink(pilot)
        # The form opens on the queue; priority, lr, then epochs: 5 -> 500, past its maximum.
        await pilot.press("tab", "tab", "tab", "end", "0", "0")
        await pilot.pause(0.5)

    assert snap_compare(frozen_app(), terminal_size=(80, 24), run_before=run_before)


def test_run_detail_120x40(snap_compare: Callable[..., bool], frozen_app: Callable) -> None:
    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("4", "G", "enter")  # the oldest run: finished, with metrics
        await pilot.pause(0.5)

    assert snap_compare(frozen_app(), terminal_size=(120, 40), run_before=run_before)


def test_no_color_80x24(
    snap_compare: Callable[..., bool], frozen_app: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_COLOR: states are words, the cursor bar is reverse video."""
    monkeypatch.setenv("NO_COLOR", "1")

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("4")
        await pilot.pause(0.2)

    assert snap_compare(frozen_app(), terminal_size=(80, 24), run_before=run_before)


def test_items_why_80x24(snap_compare: Callable[..., bool], frozen_app: Callable) -> None:
    """The waiting items of the local queue, each with the core's sentence on why."""

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("2", "j", "3")
        await wait_for_text(pilot, "3 Items · local (3)")

    assert snap_compare(frozen_app(), terminal_size=(80, 24), run_before=run_before)


def test_items_history_120x40(snap_compare: Callable[..., bool], frozen_app: Callable) -> None:
    """The local queue's history: items done with, by outcome, with duration and why."""

    async def run_before(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("2", "j", "3", "H")
        await wait_for_text(pilot, "3 Items · local · history (2)")

    assert snap_compare(frozen_app(), terminal_size=(120, 40), run_before=run_before)
