"""Queue surgery, "why" and history from the keyboard, at 80x24 (Pilot, real store)."""

from __future__ import annotations

from textual.widgets import OptionList

from launch_tui.core.model import ItemState, Priority
from launch_tui.core.service import LaunchService
from launch_tui.tui.demo import Demo
from launch_tui.tui.screens.confirm import ConfirmScreen
from launch_tui.tui.screens.enqueue import EnqueueScreen
from launch_tui.tui.screens.main import MainScreen
from launch_tui.tui.screens.pick import PickScreen
from tests.tui.conftest import (
    make_app,
    wait_for_notice,
    wait_for_text,
    wait_loaded,
    wait_until,
)
from tests.tui.screen_text import screen_text


async def _order(service: LaunchService, queue: str = "local") -> list[int]:
    return [i.id for i in await service.list_items(queue)]


async def test_top_bottom_and_priority_from_the_items_pane(
        service: LaunchService, world: Demo) -> None:
    a, b, c = [(await service.enqueue("train", "local")).id for _ in range(3)]
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "j", "3")  # local is the second queue
        await wait_for_text(pilot, "Items · local (3)")
        await pilot.press("end", "t")  # the last item to the top
        await wait_for_notice(pilot, f"Item #{c} moved to the top: position 1 on local")
        assert await _order(service) == [c, a, b]
        # The pane follows the store's order (through the feed), cursor on the item.
        await wait_until(pilot, lambda: app.screen.selected_item() == c  # type: ignore[attr-defined]
                         and app.screen.items.table.cursor == 0,  # type: ignore[attr-defined]
                         "the moved item at the top, under the cursor")
        await pilot.press("b")
        await wait_for_notice(pilot, f"Item #{c} moved to the bottom")
        assert await _order(service) == [a, b, c]
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PickScreen), "the picker")
        assert "Priority of item #" in screen_text(app)
        options = app.screen.query_one(OptionList)
        options.highlighted = 0  # critical
        await pilot.press("enter")
        await wait_for_notice(pilot, "now has priority critical (position 1)")
        moved = await service.get_item(c)
        assert moved.priority == Priority.CRITICAL and await _order(service) == [c, a, b]


async def test_move_to_another_queue_and_a_refusal_is_inline(
        service: LaunchService, world: Demo) -> None:
    item = await service.enqueue("train", "local")
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "j", "3")
        await wait_for_text(pilot, "Items · local (1)")
        await pilot.press("v")
        await wait_until(pilot, lambda: isinstance(app.screen, PickScreen), "the picker")
        assert "gpu (docker)" in screen_text(app)
        await pilot.press("enter")
        await wait_for_notice(pilot, f"Item #{item.id} moved to gpu")
        assert (await service.get_item(item.id)).queue == "gpu"
        await wait_for_text(pilot, "Items · local (0)")


async def test_marked_items_are_cancelled_with_one_question(
        service: LaunchService, world: Demo) -> None:
    ids = [(await service.enqueue("train", "local")).id for _ in range(3)]
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "j", "3")
        await wait_for_text(pilot, "Items · local (3)")
        await pilot.press("space", "space")  # marks the first two (space moves down)
        await wait_for_text(pilot, "2 marked (x cancels)")
        await pilot.press("up", "x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "a question")
        assert f"Cancel 2 items (#{ids[0]}, #{ids[1]})?" in screen_text(app)
        await pilot.press("y")
        await wait_for_notice(pilot, "2 items cancelled.")
        assert [(await service.get_item(i)).state for i in ids] == [
            ItemState.CANCELLED, ItemState.CANCELLED, ItemState.PENDING]
        await wait_for_text(pilot, "Items · local (1)")
        assert "marked" not in screen_text(app)  # the marks went with the action


async def test_hold_from_the_queues_pane_and_why_in_the_items_pane(
        service: LaunchService, world: Demo) -> None:
    await service.enqueue("train", "local")
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "j", "3")
        await wait_for_text(pilot, "no agent serves queue…")  # "… local (none ever has)"
        await pilot.press("2", "h")
        await wait_for_notice(pilot, "Queue local held")
        assert (await service.get_queue("local")).held
        await wait_for_text(pilot, "local held")
        await pilot.press("3")
        await wait_for_text(pilot, "queue local is held")
        await pilot.press("2", "h")
        await wait_for_notice(pilot, "Queue local resumed")
        assert not (await service.get_queue("local")).held


async def test_history_shows_outcomes_and_r_re_enqueues(
        service: LaunchService, world: Demo) -> None:
    done = await service.enqueue("train", "local", config={"epochs": 7})
    await service.cancel(str(done.id))
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "j", "3")
        await wait_for_text(pilot, "Items · local (0)")
        await pilot.press("H")
        text = await wait_for_text(pilot, "Items · local · history (1)")
        assert f"#{done.id}" in text and "cancelled" in text and "cancelled by user" in text
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueScreen), "the form")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "back")
        [again] = await service.list_items("local")
        assert again.config_overrides == {"epochs": 7}
        await pilot.press("H")
        await wait_for_text(pilot, "Items · local (1)")
