"""Fixtures for the TUI tests: a fresh store per test, the demo world, waiting helpers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from launch_tui.core.service import LaunchService
from launch_tui.tui.app import LaunchApp
from launch_tui.tui.demo import Demo, seed_jobs_and_queues, seed_showcase
from tests.tui.screen_text import screen_text


@pytest.fixture
async def world(service: LaunchService, tmp_path: Path) -> Demo:
    """Two jobs (train, evaluate) and two queues (gpu: docker, local: local-process)."""
    return await seed_jobs_and_queues(service, tmp_path / "src")


@pytest.fixture
async def showcase(service: LaunchService, tmp_path: Path) -> Demo:
    """The world plus runs in several states and waiting items."""
    return await seed_showcase(service, tmp_path / "src")


def make_app(service: LaunchService, **kwargs: object) -> LaunchApp:
    return LaunchApp(service=service, **kwargs)  # type: ignore[arg-type]


async def wait_until(
    pilot: Pilot, predicate: Callable[[], object], what: str, within: float = 10.0
) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out waiting for {what}; screen shows:\n{screen_text(pilot.app)}"
            )
        await pilot.pause(0.05)


async def wait_for_text(pilot: Pilot, text: str, within: float = 10.0) -> str:
    await wait_until(pilot, lambda: text in screen_text(pilot.app), repr(text), within)
    return screen_text(pilot.app)


def notices(app: object) -> list[str]:
    """Messages of the notifications (toasts) currently shown."""
    return [n.message for n in app._notifications]  # type: ignore[attr-defined]


async def wait_for_notice(pilot: Pilot, text: str, within: float = 10.0) -> None:
    await wait_until(
        pilot, lambda: any(text in m for m in notices(pilot.app)), f"a notice {text!r}", within
    )


async def wait_loaded(pilot: Pilot) -> None:
    app = pilot.app
    assert isinstance(app, LaunchApp)
    await wait_until(pilot, lambda: app.model is not None and app.model.loaded, "the store")
    await pilot.pause()


async def type_text(pilot: Pilot, text: str) -> None:
    for ch in text:
        await pilot.press(ch)
