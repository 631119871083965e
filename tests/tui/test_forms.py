"""Forms as a new user meets them: errors quote rules exactly, the queue is chosen
sensibly and says who serves it, focus is visible, and changes are not lost."""

from __future__ import annotations

from textual.widgets import Input, Select

from launch_tui.core.service import LaunchService
from launch_tui.tui.demo import Demo
from launch_tui.tui.screens.enqueue import EnqueueScreen
from launch_tui.tui.widgets.fields import FieldGroup
from tests.tui.conftest import make_app, type_text, wait_for_text, wait_loaded, wait_until
from tests.tui.screen_text import screen_text


async def test_a_pattern_rule_shows_as_the_cli_shows_it(
        service: LaunchService, world: Demo) -> None:
    app = make_app(service)
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("j", "e")  # train
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueScreen), "the form")
        app.screen.query_one("#queue", Select).value = "gpu"
        group = app.screen.query_one("#resource-fields", FieldGroup)
        await wait_until(pilot, lambda: group.field("memory") is not None, "gpu's fields")
        field = group.field("memory")
        assert field is not None
        editor = field.query_one(Input)
        editor.focus()
        editor.value = ""
        await type_text(pilot, "8x")
        text = await wait_for_text(pilot, "does not match")
        assert "'^[0-9]+[bkmgBKMG]?$'" in text


async def test_the_form_opens_on_the_queue_and_focus_is_plain_to_see(
        service: LaunchService, world: Demo) -> None:
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueScreen), "the form")
        queue = app.screen.query_one("#queue", Select)
        await wait_until(pilot, lambda: app.focused is queue, "focus on the queue")
        label = queue.parent.query_one(".field-label")  # type: ignore[union-attr]
        assert label.rich_style.reverse  # seen without colour too
        focused = queue.rich_style.bgcolor
        other = app.screen.query_one("#priority", Select).rich_style.bgcolor
        assert focused is not None and other is not None
        # Far apart, not a shade: at least 60 in some channel.
        assert max(abs(a - b) for a, b in zip(focused.get_truecolor(), other.get_truecolor(),
                                              strict=True)) >= 60


async def test_escape_on_a_changed_form_asks_and_a_success_clears_old_errors(
        service: LaunchService, world: Demo) -> None:
    from launch_tui.tui.screens.confirm import ConfirmScreen
    from launch_tui.tui.screens.main import MainScreen
    from tests.tui.conftest import notices

    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("e", "escape")  # untouched: closes at once
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "closed")
        await pilot.press("j", "e")
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueScreen), "the form")
        epochs = app.screen.query_one("#config-fields", FieldGroup).field("epochs")
        assert epochs is not None
        editor = epochs.query_one(Input)
        editor.focus()
        editor.value = "500"
        await pilot.press("ctrl+s")  # refused: a "Not enqueued" notice
        await wait_until(pilot, lambda: any("Not enqueued" in n for n in notices(app)),
                         "the refusal")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "a question")
        assert "Discard the changes to this form?" in screen_text(app)
        await pilot.press("n")  # keep editing: the value is still there
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueScreen), "the form")
        assert editor.value == "500"
        editor.value = "7"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "enqueued")
        assert not any("Not enqueued" in n for n in notices(app))
        assert [i.config_overrides for i in await service.list_items()] == [{"epochs": 7}]
