"""The main screen as a user sees it: panes, focus, live updates, filter, help, layout."""

from __future__ import annotations

import time

from textual.widgets import Input

from launch_tui.core.model import ErrorStage, ItemState, LogStream, RunState
from launch_tui.core.service import LaunchService
from launch_tui.tui.commands import key_rows
from launch_tui.tui.demo import Demo
from launch_tui.tui.screens.help import HelpScreen
from launch_tui.tui.screens.main import MainScreen
from launch_tui.tui.widgets.findbar import FindBar
from launch_tui.tui.widgets.table import LiveTable
from tests.tui.conftest import (
    make_app,
    type_text,
    wait_for_text,
    wait_loaded,
    wait_until,
)
from tests.tui.screen_text import screen_text


async def test_starts_on_jobs_with_first_job_selected(service: LaunchService, world: Demo) -> None:
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        focused = app.focused
        assert isinstance(focused, LiveTable) and focused.id == "jobs-table"
        assert focused.cursor_key == "evaluate"  # first job, by name
        text = screen_text(app)
        assert "1 Jobs (2)" in text
        assert "evaluate" in text and "train" in text
        assert "latest=v0" in text


async def test_wide_screen_shows_every_pane(service: LaunchService, showcase: Demo) -> None:
    app = make_app(service)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_loaded(pilot)
        text = screen_text(app)
        for title in ("1 Jobs", "2 Queues", "3 Items", "4 Runs", "5 Agents", "6 Projects"):
            assert title in text
        for state in ("finished", "failed", "running", "building"):
            assert state in text
        assert "demo-agent" in text


async def test_narrow_screen_shows_one_pane_and_tab_moves(
    service: LaunchService, showcase: Demo
) -> None:
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        text = screen_text(app)
        assert "1 Jobs (2)" in text and "4 Runs" not in text.split("\n", 2)[2]
        await pilot.press("tab")
        await wait_for_text(pilot, "2 Queues (2)")
        await pilot.press("tab", "tab")
        text = await wait_for_text(pilot, "4 Runs (4)")
        assert "1 Jobs (2)" not in text
        assert isinstance(app.focused, LiveTable) and app.focused.id == "runs-table"
        await pilot.press("1")
        await wait_for_text(pilot, "1 Jobs (2)")


async def test_items_show_run_order_and_follow_live_changes(
    service: LaunchService, world: Demo
) -> None:
    low = await service.enqueue("train", "local", priority="low")
    medium = await service.enqueue("train", "local", config={"epochs": 2})
    app = make_app(service)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "j")  # queues: gpu, local
        await pilot.press("3")
        text = await wait_for_text(pilot, "3 Items · local (2)")
        # Rows of the Items pane (the status line above also names the cursor's item).
        lines = [line for line in text.splitlines() if line.startswith("│") and (
            f"#{medium.id}" in line or f"#{low.id}" in line)]
        assert f"#{medium.id}" in lines[0] and f"#{low.id}" in lines[1]
        # Another client enqueues a critical item: it goes to the top, live.
        critical = await service.enqueue("evaluate", "local", priority="critical")
        text = await wait_for_text(pilot, "3 Items · local (3)")
        rows = [line for line in text.splitlines() if line.startswith("│")]
        order = [n for line in rows for n in (critical.id, medium.id, low.id)
                 if f"#{n} " in line]
        assert order == [critical.id, medium.id, low.id]
        # An agent leases the first one: it shows as leased at the head, by whom.
        await service.claim("agent-x", ["local"])
        await wait_for_text(pilot, "leased")
        assert "agent-x" in screen_text(app)


async def test_changes_from_another_process_show_up(
    service: LaunchService, world: Demo, home: object
) -> None:
    app = make_app(service)
    other = await LaunchService.open(home=service.settings.home)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_loaded(pilot)
            await pilot.press("2")
            # A separate service object: only the events table connects them.
            await other.create_queue("cpu", "local-process")
            text = await wait_for_text(pilot, "2 Queues (3)")
            assert "cpu" in text
    finally:
        await other.close()


async def test_run_states_update_in_place(service: LaunchService, world: Demo) -> None:
    await service.enqueue("train", "local")
    app = make_app(service)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        item = await service.claim("agent-x", ["local"])
        assert item is not None
        run = await service.acknowledge(item.id, "agent-x")
        await wait_for_text(pilot, run.id)
        await service.set_run_state(run.id, RunState.RUNNING)
        await wait_until(pilot, lambda: "running" in _row(app, run.id), "running")
        await service.set_run_state(run.id, RunState.FAILED, exit_code=3)
        await wait_until(pilot, lambda: "failed" in _row(app, run.id), "failed")
        assert " 3 " in _row(app, run.id) + " "


def _row(app: object, needle: str) -> str:
    for line in screen_text(app).splitlines():  # type: ignore[arg-type]
        if needle in line:
            return line
    return ""


async def test_filter_narrows_the_focused_list(service: LaunchService, world: Demo) -> None:
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("slash")
        await wait_until(pilot, lambda: isinstance(app.focused, FindBar), "the filter bar")
        await type_text(pilot, "eval")
        text = await wait_for_text(pilot, "(1 of 2)")
        assert "evaluate" in text
        assert "python train.py" not in text
        await pilot.press("enter")  # keep the filter, back to the list
        table = app.screen.query_one("#jobs-table", LiveTable)
        assert app.focused is table and table.cursor_key == "evaluate"
        await pilot.press("slash", "escape")  # clear it
        text = await wait_for_text(pilot, "1 Jobs (2)")
        assert "python train.py" in text


async def test_help_lists_every_binding_with_a_description(
    service: LaunchService, world: Demo
) -> None:
    rows = key_rows()
    assert rows and all(row.description.strip() for row in rows)
    app = make_app(service)
    async with app.run_test(size=(100, 60)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        text = screen_text(app)
        assert "Enqueue the selected job" in text
        assert "Jobs pane" in text and "Main screen" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "main screen")


async def test_palette_offers_every_main_screen_action(
    service: LaunchService, world: Demo
) -> None:
    app = make_app(service)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for row in key_rows():
            if row.section in ("Main screen", "Anywhere") or row.section.endswith("pane"):
                if row.action != "command_palette":
                    assert row.description in titles, row
        # And running one from the palette works: open it, pick "Create a queue".
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.focused, Input), "the palette input")
        await type_text(pilot, "Create a queue")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for_text(pilot, "Create a queue")


async def test_side_panel_follows_selected_run_logs(service: LaunchService, world: Demo) -> None:
    await service.enqueue("train", "local")
    item = await service.claim("agent-x", ["local"])
    assert item is not None
    run = await service.acknowledge(item.id, "agent-x")
    await service.append_logs(run.id, [(time.time(), LogStream.STDOUT, "first line")])
    await service.agent_log("agent-x", f"claimed item #{item.id}", run_id=run.id)
    app = make_app(service)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4", "l")
        await wait_for_text(pilot, "first line")
        assert f"claimed item #{item.id}" in screen_text(app)
        await service.append_logs(run.id, [(time.time(), LogStream.STDERR, "second line")])
        await wait_for_text(pilot, "second line")
        # Pause following: new lines are counted, not scrolled to.
        await pilot.press("f")
        await service.append_logs(run.id, [(time.time(), LogStream.STDOUT, "third line")])
        await wait_for_text(pilot, "paused (+1 new)")
        await pilot.press("f")
        await wait_for_text(pilot, "following")
        # Search within the log.
        run_log = app.screen.query_one("#run-log-view")
        run_log.focus()
        await wait_until(pilot, lambda: app.focused is run_log, "focus on the run log")
        await pilot.press("slash")
        await wait_until(pilot, lambda: isinstance(app.focused, FindBar), "the search bar")
        await type_text(pilot, "second")
        await wait_for_text(pilot, "/second 1/1")


async def test_a_log_without_lines_says_how_the_run_ended(
        service: LaunchService, world: Demo) -> None:
    """A run that fails at build prints nothing; its log says so and why, at once when
    opened after the end and as soon as it ends while open."""
    ended, live = [], []
    for bucket in (ended, live):
        await service.enqueue("train", "local")
        item = await service.claim("agent-x", ["local"])
        assert item is not None
        bucket.append((await service.acknowledge(item.id, "agent-x")).id)
    await service.set_run_state(ended[0], RunState.FAILED, error_stage=ErrorStage.BUILD,
                                error_message="pip could not find torch==9.9")
    app = make_app(service)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4", "G", "l")  # the oldest run: failed at build, no lines
        await wait_for_text(pilot, "no output; failed at build: pip could not find torch==9.9")
        await pilot.press("g")  # the newest: still starting, no lines yet
        await wait_for_text(pilot, "no lines yet")
        await service.set_run_state(live[0], RunState.STOPPED, reason="cancelled by root")
        await wait_for_text(pilot, "no output; stopped: cancelled by root")


async def test_the_runs_pane_says_how_each_run_ended(
        service: LaunchService, world: Demo) -> None:
    """A why column beside state and exit, without repeating them; kept at 80 columns."""
    runs = []
    for _ in range(2):
        await service.enqueue("train", "local")
        item = await service.claim("agent-x", ["local"])
        assert item is not None
        runs.append((await service.acknowledge(item.id, "agent-x")).id)
    await service.set_run_state(runs[0], RunState.RUNNING)
    await service.set_run_state(runs[0], RunState.FAILED, exit_code=3,
                                error_message="OOM at step 40")
    await service.set_run_state(runs[1], RunState.CRASHED, reason="its agent died")
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4")
        text = await wait_for_text(pilot, "OOM at step 40")
        rows = {line.split()[1]: line for line in text.splitlines()
                if line.startswith("│ ") and line.split()[1] in runs}
        assert "failed" in rows[runs[0]] and "3" in rows[runs[0]].split()
        assert "(exit code" not in rows[runs[0]]
        assert rows[runs[1]].split()[3] == "crashed"
        assert rows[runs[1]].rstrip(" │").endswith("its agent died")


async def test_a_failure_quoting_the_runs_output_stays_on_its_row(
        service: LaunchService, world: Demo) -> None:
    """The agent's failure message quotes the run's last lines under its first: the
    row shows the error itself, on one line (a newline drawn into the terminal moved
    the cursor and wrote the quoted lines over the rows below), and the status line
    gives its first and last lines."""
    await service.enqueue("train", "local")
    item = await service.claim("agent-x", ["local"])
    assert item is not None
    run = (await service.acknowledge(item.id, "agent-x")).id
    await service.set_run_state(run, RunState.RUNNING)
    await service.set_run_state(
        run, RunState.FAILED, exit_code=1, error_stage=ErrorStage.RUN,
        error_message="exit code 1; last output:\ntraining with {'lr': 0.5}\n"
                      "ValueError:\tNaN")
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4")
        text = await wait_for_text(pilot, "0s ValueError: NaN")
        lines = text.split("\n")
        assert len(lines) == 24, text
        assert not any("training with" in line for line in lines), text
        (row,) = [line for line in lines if line.startswith("│ ") and run in line]
        assert row.rstrip(" │").endswith("ValueError: NaN"), row
        await wait_until(pilot, lambda: "… ValueError: NaN" in screen_text(app),
                         "the status line's first … last line")
        assert "exit code 1; last output: … ValueError: NaN" in screen_text(app)


async def test_item_states_leave_the_waiting_list(service: LaunchService, world: Demo) -> None:
    item = await service.enqueue("train", "local")
    app = make_app(service)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "j", "3")
        await wait_for_text(pilot, "Items · local (1)")
        await service.cancel(item.id)
        await wait_for_text(pilot, "Items · local (0)")
        assert (await service.get_item(item.id)).state == ItemState.CANCELLED


async def test_no_color_still_marks_the_cursor_row(
    service: LaunchService, world: Demo, monkeypatch: object
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")  # type: ignore[attr-defined]
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        assert app.no_color
        table = app.screen.query_one("#jobs-table", LiveTable)
        style = table.get_component_rich_style("live-table--cursor")
        assert style.underline and style.bold  # visible without any colour
        assert "evaluate" in screen_text(app)


async def test_q_quits_from_the_main_screen_but_not_from_a_form(
    service: LaunchService, world: Demo
) -> None:
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("e")
        await wait_for_text(pilot, "Enqueue evaluate")
        await pilot.press("tab", "q")  # a stray q in a form does not quit
        await pilot.pause(0.2)
        assert app.is_running
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "main screen")
        await pilot.press("q")
        await wait_until(pilot, lambda: not app.is_running, "the app to quit")


async def test_agent_given_at_start_runs_inside_the_app(
    service: LaunchService, world: Demo
) -> None:

    app = make_app(service, agent_queues=["local"])
    app.agent_host.stop_timeout_s = 3.0
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await wait_for_text(pilot, "agent here:", within=15)
        [name] = app.agent_host.names()
        await pilot.press("l")
        await wait_for_text(pilot, "started on queue local")
        assert name in screen_text(app)


async def test_an_item_failing_before_its_run_is_explained(
    service: LaunchService, world: Demo
) -> None:
    from launch_tui.core.model import ErrorStage
    from tests.tui.conftest import wait_for_notice

    item = await service.enqueue("train", "local")
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await service.claim("agent-x", ["local"])
        await service.fail_item(item.id, "agent-x", ErrorStage.AGENT, "image pull failed")
        await wait_for_notice(pilot, f"Item #{item.id} on local failed: image pull failed")


async def test_a_store_that_cannot_open_is_reported_not_a_crash(
    tmp_path: object, home: object
) -> None:
    from pathlib import Path

    from launch_tui.tui.app import LaunchApp
    from tests.tui.conftest import wait_for_notice

    bad = Path(str(tmp_path)) / "garbage.db"
    bad.write_bytes(b"not a database " * 200)
    app = LaunchApp(store=str(bad))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_text(pilot, "cannot open the store")
        await wait_for_notice(pilot, "is not a launch-tui database")
        await pilot.press("e", "4", "x")  # keys still answer, nothing breaks
        assert app.is_running


async def test_switching_project_shows_its_jobs(service: LaunchService, world: Demo) -> None:
    await service.create_project("research")
    await service.create_queue("lab", "local-process", project="research")
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("6")
        await wait_for_text(pilot, "6 Projects (2)")
        table = app.screen.query_one("#projects-table", LiveTable)
        assert table.move_to("research")
        await pilot.press("enter")
        await wait_for_text(pilot, "project research")
        await pilot.press("2")
        text = await wait_for_text(pilot, "2 Queues (1)")
        assert "lab" in text
