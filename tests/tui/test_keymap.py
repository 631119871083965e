"""Keys rebound in settings.toml's `[keys]`: they work, help shows them, and a name or
key that cannot apply is one warning while the rest still apply."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from launch_tui.core.service import LaunchService
from launch_tui.tui.commands import binding_ids, check_keymap
from launch_tui.tui.demo import Demo
from launch_tui.tui.screens.enqueue import EnqueueScreen
from launch_tui.tui.screens.help import HelpScreen
from launch_tui.tui.screens.main import MainScreen
from tests.tui.conftest import (
    make_app,
    notices,
    wait_for_notice,
    wait_for_text,
    wait_loaded,
    wait_until,
)
from tests.tui.screen_text import screen_text


@pytest.fixture
async def rebound(home: Path, world: Demo) -> AsyncIterator[LaunchService]:
    (home / "settings.toml").write_text(
        '[keys]\nenqueue = "E,f5"\nhelp = "f1"\nlaunch = "x"\n')
    svc = await LaunchService.open(home=home)
    try:
        yield svc
    finally:
        await svc.close()


async def test_a_rebound_key_works_and_the_old_one_does_not(rebound: LaunchService) -> None:
    app = make_app(rebound)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("1")
        bound = {key: b.binding.id for key, b in app.screen.active_bindings.items()}
        assert bound.get("e") != "enqueue" and bound["E"] == bound["f5"] == "enqueue"
        await pilot.press("E")
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueScreen), "the form")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "the main screen")
        await pilot.press("f5")
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueScreen), "the form on f5")


async def test_an_unknown_name_is_one_warning_and_the_rest_apply(
        rebound: LaunchService) -> None:
    app = make_app(rebound)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await wait_for_notice(pilot, "settings: keys.launch is not a key name of this app")
        assert len([n for n in notices(app) if "settings:" in n]) == 1
        bound = {key: b.binding.id for key, b in app.screen.active_bindings.items()}
        assert "question_mark" not in bound and bound["f1"] == "help"  # ? moved to f1
        footer = screen_text(app).splitlines()[-1]
        assert footer.rstrip().endswith("f1 All keys") and "? " not in footer
        await pilot.press("f1")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "help on f1")
        screen = await wait_for_text(pilot, "E f5  Enqueue the selected job")
        assert "enqueue" in screen  # the name to rebind it by


def test_a_key_taken_from_another_in_the_same_place_is_named() -> None:
    usable, problems = check_keymap({"item_top": "p"})
    assert usable == {"item_top": "p"}
    assert problems == ["settings: keys.item_top = 'p' clashes with item_priority (Items "
                        "pane), where p does item_top."]


def test_a_key_a_pane_would_hide_is_named() -> None:
    """The focused pane's keys win over the main screen's: rebinding enqueue to t
    works everywhere but in the Items pane, and the user is told so."""
    usable, problems = check_keymap({"enqueue": "t"})
    assert usable == {"enqueue": "t"}
    assert problems == ["settings: keys.enqueue = 't' clashes with item_top (the Items "
                        "pane over the main screen), where t does item_top."]
    assert check_keymap({"enqueue": "E", "help": "f1"})[1] == []


def test_every_key_of_the_app_has_a_name() -> None:
    from launch_tui.tui.commands import key_rows

    unnamed = [(r.section, r.keys) for r in key_rows() if not r.id
               and r.action not in ("command_palette", "quit")]
    assert unnamed == []
    assert {"enqueue", "cancel_items", "hold_queue", "toggle_wrap"} <= binding_ids()
