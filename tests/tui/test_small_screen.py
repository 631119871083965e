"""80x24: the logs under a shortened list, resizable from the keyboard; tab cycles."""

from __future__ import annotations

import time

from launch_tui.core.model import LogStream
from launch_tui.core.service import LaunchService
from launch_tui.tui.demo import Demo
from launch_tui.tui.widgets.logview import LogView
from launch_tui.tui.widgets.table import LiveTable
from tests.tui.conftest import make_app, wait_for_text, wait_loaded, wait_until
from tests.tui.screen_text import screen_text


async def _running(service: LaunchService) -> str:
    await service.enqueue("train", "local")
    run = (await service.claim_run("vm-1", ["local"])).run
    assert run is not None
    await service.append_logs(run.id, [(time.time(), LogStream.STDOUT, "epoch 1/5 loss=0.9")])
    return run.id


async def test_logs_take_the_lower_part_under_the_list(
        service: LaunchService, world: Demo) -> None:
    run_id = await _running(service)
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4", "l")
        text = await wait_for_text(pilot, "epoch 1/5 loss=0.9")
        # The run list is still there, above the log, with the followed run in it.
        assert "4 Runs (1)" in text and run_id in text
        lines = text.splitlines()
        list_top = next(i for i, line in enumerate(lines) if "4 Runs" in line)
        log_line = next(i for i, line in enumerate(lines) if "epoch 1/5" in line)
        assert list_top < log_line
        panes = app.screen.query_one("#panes")
        assert panes.size.height == 9
        # ] grows the list, [ shrinks it; never below a few rows either way.
        await pilot.press("right_square_bracket")
        await wait_until(pilot, lambda: panes.size.height == 11, "the list to grow")
        for _ in range(20):
            await pilot.press("left_square_bracket")
        await wait_until(pilot, lambda: panes.size.height == 4, "the list at its least")
        assert "epoch 1/5 loss=0.9" in screen_text(app)
        # tab: list -> agent log -> run log -> list.
        table = app.screen.query_one("#runs-table", LiveTable)
        assert app.focused is table
        await pilot.press("tab")
        await wait_until(pilot, lambda: isinstance(app.focused, LogView), "a log")
        await pilot.press("tab", "tab")
        await wait_until(pilot, lambda: app.focused is table, "back to the list")
        # l hides the logs: the list has the whole height again.
        await pilot.press("l")
        await wait_until(pilot, lambda: panes.size.height > 15, "the full list")


async def test_w_wraps_long_log_lines(service: LaunchService, world: Demo) -> None:
    run_id = await _running(service)
    tail = "MARKER-END"
    long_line = "x" * 100 + " " + tail  # wrapped, the tail is on the line's second row
    await service.append_logs(run_id, [(time.time(), LogStream.STDERR, long_line)])
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4", "l")
        await wait_for_text(pilot, "epoch 1/5 loss=0.9")
        assert tail not in screen_text(app)  # cut at the edge
        await pilot.press("tab", "tab")  # the run log
        view = app.screen.query_one("#run-log-view", LogView)
        await wait_until(pilot, lambda: app.focused is view, "the run log")
        await pilot.press("w")
        await wait_for_text(pilot, tail)
        assert view.wrap
        await pilot.press("w")
        await wait_until(pilot, lambda: tail not in screen_text(app), "the line cut again")


async def test_the_run_detail_status_scrolls_to_a_long_error(
        service: LaunchService, world: Demo) -> None:
    from textual.containers import VerticalScroll

    from launch_tui.core.model import ErrorStage, RunState
    from launch_tui.tui.screens.run import RunScreen

    run_id = await _running(service)
    error = " ".join(f"word{i}" for i in range(150)) + " LAST-WORD"
    await service.set_run_state(run_id, RunState.FAILED, error_stage=ErrorStage.RUN,
                                error_message=error, exit_code=1)
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        app.open_run(run_id)
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), "the run detail")
        await wait_for_text(pilot, "word0")
        assert "LAST-WORD" not in screen_text(app)  # clipped: more than fits
        status = app.screen.query_one("#run-status", VerticalScroll)
        await wait_until(pilot, lambda: isinstance(app.focused, LogView), "the log focused")
        for _ in range(4):  # no mouse: tab reaches it
            if app.focused is status:
                break
            await pilot.press("tab")
        assert app.focused is status
        await pilot.press("end")
        await wait_for_text(pilot, "LAST-WORD")


async def test_the_status_line_shows_the_whole_cursor_row(
        service: LaunchService, world: Demo) -> None:
    await service.enqueue("train", "local")
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "j", "3")
        # The why column is cut at 80 columns; the status line has it whole.
        text = await wait_for_text(pilot, "(none ever has)")
        status = " ".join(text.splitlines()[:2])  # it wraps onto a second line
        assert "#1 train:v0 (medium): no agent serves queue local (none ever has)" in status
        await pilot.press("1")
        await wait_for_text(pilot, "evaluate code latest=v0 python eval.py")


async def test_escape_backs_out_one_step_at_a_time(
        service: LaunchService, world: Demo) -> None:
    from launch_tui.tui.screens.main import MainScreen
    from tests.tui.conftest import type_text

    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("slash")
        await type_text(pilot, "eval")
        await pilot.press("enter")  # back in the list, the filter stays
        await wait_for_text(pilot, "1 Jobs (1 of 2)")
        table = app.screen.query_one("#jobs-table", LiveTable)
        await wait_until(pilot, lambda: app.focused is table, "the list focused")
        await pilot.press("l")
        await wait_until(pilot, lambda: app.screen.side_visible, "the logs")  # type: ignore[attr-defined]
        await pilot.press("escape")  # the filter first, even with the list focused
        await wait_for_text(pilot, "1 Jobs (2)")
        assert app.screen.side_visible  # type: ignore[attr-defined]
        await pilot.press("escape")  # then the logs panel
        await wait_until(pilot, lambda: not app.screen.side_visible, "logs closed")  # type: ignore[attr-defined]
        await pilot.press("escape", "2")  # then nothing: never quits; 2 still works
        await wait_for_text(pilot, "─ 2 Queues (2)")
        assert app.is_running and isinstance(app.screen, MainScreen)


async def test_footer_lists_the_panes_keys_and_always_shows_help(
        service: LaunchService, world: Demo) -> None:
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2")
        text = await wait_for_text(pilot, "a Start agent")
        footer = text.splitlines()[-1]
        for key in ("space Mark", "a Start agent", "n New", "m Modify", "M TOML", "h Hold"):
            assert key in footer, footer
        assert footer.rstrip().endswith("? All keys")
        await pilot.press("3")
        footer = (await wait_for_text(pilot, "t Top")).splitlines()[-1]
        assert footer.rstrip().endswith("? All keys")
        # What does not fit is left out whole (? lists it), never cut mid-word.
        assert footer.split() == ["x", "Cancel", "space", "Mark", "H", "History", "t", "Top",
                                  "b", "Bottom", "p", "Priority", "?", "All", "keys"]
        await pilot.press("H")  # the history: re-enqueue applies, surgery does not
        text = await wait_for_text(pilot, "r Re-enqueue")
        footer = text.splitlines()[-1]
        assert "t Top" not in footer and footer.startswith(" H History  r Re-enqueue")
        assert "nothing done with on this queue yet (H shows the waiting items)" in text


async def test_queue_marks_apply_only_under_the_cursor_and_go_after_use(
        service: LaunchService, world: Demo) -> None:
    app = make_app(service)
    app.agent_host.stop_timeout_s = 3.0
    started: list[list[str]] = []
    app.start_agent = lambda queues: started.append(list(queues))  # type: ignore[method-assign]
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "space")  # mark gpu, the first queue
        await wait_for_text(pilot, "1 queues marked (a starts an agent)")
        await pilot.press("down", "a")  # the cursor is on local, not on the mark
        assert started == [["local"]]
        assert "queues marked" not in screen_text(app)  # used: cleared
        await pilot.press("up", "space", "up", "a")  # mark gpu again, a on it
        assert started[-1] == ["gpu"]
