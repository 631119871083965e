"""Cancel with confirmation, run detail, editing config and queues, the in-process agent."""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

import pytest
from textual.widgets import Input

from launch_tui.core.model import ItemState, RunState
from launch_tui.core.service import LaunchService
from launch_tui.tui.demo import Demo
from launch_tui.tui.screens.config import ConfigScreen
from launch_tui.tui.screens.confirm import ConfirmScreen
from launch_tui.tui.screens.main import MainScreen
from launch_tui.tui.screens.queue import QueueScreen
from launch_tui.tui.screens.run import RunScreen
from launch_tui.tui.widgets.fields import FieldGroup
from tests.tui.conftest import (
    make_app,
    type_text,
    wait_for_notice,
    wait_for_text,
    wait_loaded,
    wait_until,
)
from tests.tui.screen_text import screen_text


async def test_cancel_item_asks_first(service: LaunchService, world: Demo) -> None:
    item = await service.enqueue("train", "local")
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "j", "3")
        await wait_for_text(pilot, "Items · local (1)")
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "a question")
        assert f"Cancel item #{item.id} (train:v0, pending)?" in screen_text(app)
        await pilot.press("n")  # no: nothing happens
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "back")
        assert (await service.get_item(item.id)).state == ItemState.PENDING
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "a question")
        await pilot.press("y")
        await wait_for_text(pilot, "Items · local (0)")
        assert (await service.get_item(item.id)).state == ItemState.CANCELLED


async def test_cancel_run_asks_first_and_stops_it(service: LaunchService, showcase: Demo) -> None:
    running = showcase.runs["running"]
    app = make_app(service)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4")
        assert app.screen.query_one("#runs-table").move_to(running)  # type: ignore[attr-defined]
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "a question")
        assert f"Cancel run {running}" in screen_text(app)
        await pilot.press("enter")  # the safe button has focus: enter keeps it
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "back")
        assert (await service.get_run(running)).state == RunState.RUNNING
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "a question")
        await pilot.press("y")
        await wait_until(pilot, lambda: "stopping" in screen_text(app), "stopping")
        assert (await service.get_run(running)).state == RunState.STOPPING


async def test_cancelling_a_finished_run_explains_why_not(
    service: LaunchService, showcase: Demo
) -> None:
    app = make_app(service)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4")
        table = app.screen.query_one("#runs-table")
        assert table.move_to(showcase.runs["finished"])  # type: ignore[attr-defined]
        await pilot.press("x")
        await wait_for_notice(pilot, f"Run {showcase.runs['finished']} is already finished.")
        assert isinstance(app.screen, MainScreen)


async def test_run_detail_shows_timeline_error_metrics_and_logs(
    service: LaunchService, showcase: Demo
) -> None:
    app = make_app(service)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4")
        table = app.screen.query_one("#runs-table")
        assert table.move_to(showcase.runs["failed"])  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), "run detail")
        text = await wait_for_text(pilot, "epoch 1/5 loss=nan")
        assert "exit 1" in text
        assert "error at run: ValueError: loss became NaN at epoch 1" in text
        for stage in ("leased", "queued", "building", "running", "failed"):
            assert stage in text
        await pilot.press("escape")
        assert table.move_to(showcase.runs["finished"])  # type: ignore[attr-defined]
        await pilot.press("enter")
        text = await wait_for_text(pilot, "Metrics (12 steps)")
        assert "accuracy" in text and "loss" in text
        assert "exit 0" in text


async def test_run_detail_follows_a_live_run(service: LaunchService, showcase: Demo) -> None:
    running = showcase.runs["running"]
    app = make_app(service)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_loaded(pilot)
        app.open_run(running)
        await wait_for_text(pilot, "Metrics (6 steps)")
        await service.record_metrics(running, [(6, 0.0, {"loss": 0.1, "accuracy": 0.95})])
        await wait_for_text(pilot, "Metrics (7 steps)")
        await service.set_run_state(running, RunState.FINISHED, exit_code=0)
        await wait_for_text(pilot, "exit 0")
        # Cancel is refused for a finished run, re-enqueue opens the form.
        await pilot.press("r")
        await wait_for_text(pilot, f"again from run {running} (finished)")


async def test_edit_config_in_a_form_makes_a_new_version(
    service: LaunchService, world: Demo
) -> None:
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("j", "c")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfigScreen), "config form")
        epochs = app.screen.query_one(FieldGroup).field("epochs")
        assert epochs is not None and isinstance(epochs.editor, Input)
        epochs.editor.focus()
        await wait_until(pilot, lambda: app.focused is epochs.editor, "focus on epochs")
        epochs.editor.value = ""
        await type_text(pilot, "9")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "saved")
        job = await service.get_job("train")
        assert job.aliases["latest"] == 1
        assert job.latest.config_defaults["epochs"] == 9
        await wait_for_text(pilot, "latest=v1")


def fake_editor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                edits: list[tuple[str, str]]) -> Path:
    """Set $EDITOR to a script that, in session n, keeps a copy of the file it was given
    (in the returned folder, as n.toml) and then makes the n-th (old, new) replacement."""
    seen = tmp_path / "seen"
    seen.mkdir()
    script = tmp_path / "fake-editor"
    script.write_text(f"""#!{sys.executable}
import pathlib, sys
path = pathlib.Path(sys.argv[1])
seen = pathlib.Path({str(seen)!r})
edits = {edits!r}
n = len(list(seen.iterdir()))
text = path.read_text()
(seen / f"{{n}}.toml").write_text(text)
if n < len(edits):
    path.write_text(text.replace(*edits[n]))
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("EDITOR", str(script))
    monkeypatch.delenv("VISUAL", raising=False)
    return seen


async def test_editor_round_trip_reopens_a_broken_edit_with_the_error(
    service: LaunchService, world: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First save breaks the schema; the editor comes back with the error on top and the
    user's text kept; the second save fixes it and makes a new version."""
    seen = fake_editor(tmp_path, monkeypatch, [("epochs = 5", "epochs = 500  # user's edit"),
                                               ("epochs = 500", "epochs = 50")])
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("j", "C")
        await wait_until(pilot, lambda: len(os.listdir(seen)) == 2, "two editor sessions")
        await wait_for_notice(pilot, "train: v1 created (latest).")
    first, second = (seen / "0.toml").read_text(), (seen / "1.toml").read_text()
    assert "epochs = 5\n" in first and not first.startswith("# !")
    assert second.startswith("# ! config.epochs: 500 is greater than the maximum of 100.")
    assert "epochs = 500  # user's edit" in second  # nothing lost
    job = await service.get_job("train")
    assert job.latest.version == 1 and job.latest.config_defaults["epochs"] == 50


async def test_a_toml_error_names_the_line_of_the_file_the_user_sees(
    service: LaunchService, world: Demo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parser counts lines without the error note; the note must not: the line it
    names in the reopened file is the broken one."""
    seen = fake_editor(tmp_path, monkeypatch, [("epochs = 5", "epochs = = 5"),
                                               ("epochs = = 5", "epochs = 7")])
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("j", "C")
        await wait_for_notice(pilot, "train: v1 created (latest).")
    second = (seen / "1.toml").read_text().splitlines()
    named = re.search(r"line (\d+)", second[0])
    assert second[0].startswith("# ! not valid TOML:") and named is not None
    assert second[int(named.group(1)) - 1] == "epochs = = 5"


async def test_create_a_queue_in_the_form(service: LaunchService, world: Demo) -> None:
    app = make_app(service)
    async with app.run_test(size=(100, 50)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, QueueScreen), "queue form")
        name = app.screen.query_one("#name", Input)
        await wait_until(pilot, lambda: app.focused is name, "focus on the name")
        await type_text(pilot, "cpu")
        group = app.screen.query_one("#resource-fields", FieldGroup)
        timeout = group.field("timeout_s")
        assert timeout is not None and isinstance(timeout.editor, Input)
        timeout.editor.focus()
        await wait_until(pilot, lambda: app.focused is timeout.editor, "focus on timeout_s")
        await type_text(pilot, "{{limit}}")  # uses a variable not declared yet
        await wait_for_text(pilot, "template variable 'limit' is used but not declared")
        await pilot.press("ctrl+s")
        await pilot.pause(0.2)
        assert isinstance(app.screen, QueueScreen)  # refused
        variables = app.screen.query_one("#variables")
        variables.text = '[limit]\ntype = "integer"\nminimum = 1\nmaximum = 60\ndefault = 30\n'
        await wait_for_text(pilot, "this config is valid")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "saved")
        queue = await service.get_queue("cpu")
        assert queue.resource == "local-process"
        assert queue.config.resource_args == {"timeout_s": "{{limit}}"}
        assert queue.config.template_variables["limit"]["maximum"] == 60


async def test_modify_a_queue_keeps_what_the_form_does_not_show(
    service: LaunchService, world: Demo
) -> None:
    app = make_app(service)
    async with app.run_test(size=(100, 50)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "m")  # the gpu (docker) queue
        await wait_until(pilot, lambda: isinstance(app.screen, QueueScreen), "queue form")
        memory = app.screen.query_one("#resource-fields", FieldGroup).field("memory")
        assert memory is not None and isinstance(memory.editor, Input)
        assert memory.editor.value == "8g"
        memory.editor.value = "32g"
        await wait_for_text(pilot, "this config is valid")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "saved")
        queue = await service.get_queue("gpu")
        assert queue.config.resource_args["memory"] == "32g"
        assert queue.config.resource_args["gpus"] == "{{gpus}}"
        assert queue.config.allow_overrides == ("memory", "cpus")


async def test_modify_a_queue_keeps_its_masked_secrets(
    service: LaunchService, world: Demo
) -> None:
    queue = await service.get_queue("local")
    config = {**queue.config.to_dict(), "secret_env": ["TEAM"],
              "env": {"WANDB_API_KEY": "wk_real_value", "TEAM": "team_real_value"},
              "resource_args": {**queue.config.resource_args,
                                "env": {"S3_SECRET": "s3_real_value"}}}
    await service.update_queue("local", config)
    app = make_app(service)
    async with app.run_test(size=(100, 50)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "j", "m")  # the local queue
        await wait_until(pilot, lambda: isinstance(app.screen, QueueScreen), "queue form")
        env = app.screen.query_one("#env")
        assert "wk_real_value" not in env.text and "********" in env.text
        assert "real_value" not in screen_text(app)
        env.text += 'ADDED = "yes"\n'  # an edit beside the masked values
        await wait_for_text(pilot, "this config is valid")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "saved")
    # The agent's claim gets the real values: the masked ones were kept, not replaced.
    await service.enqueue("train", "local")
    claim = await service.claim_run("agent-x", ["local"])
    assert claim.run is not None and claim.run.spec is not None
    assert claim.run.spec["env"]["WANDB_API_KEY"] == "wk_real_value"
    assert claim.run.spec["env"]["TEAM"] == "team_real_value"
    assert claim.run.spec["env"]["ADDED"] == "yes"
    assert claim.run.spec["resource_args"]["env"] == {"S3_SECRET": "s3_real_value"}


async def test_in_process_agent_starts_and_stops_by_key(
    service: LaunchService, world: Demo
) -> None:
    app = make_app(service)
    app.agent_host.stop_timeout_s = 3.0
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("2", "j", "a")  # an agent on the local queue
        await wait_for_text(pilot, "agent here:", within=15)
        [name] = app.agent_host.names()
        assert name in screen_text(app)
        await pilot.press("l")  # its own log lines in the side panel
        await wait_for_text(pilot, "started on queue local")
        await pilot.press("A")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "a question")
        assert f"Stop the agent {name}?" in screen_text(app)
        await pilot.press("y")
        await wait_until(pilot, lambda: not app.agent_host.names(), "agent let go", within=8)
        await wait_until(pilot, lambda: "agent here:" not in screen_text(app), "status line")
        await wait_for_notice(pilot, f"Agent {name} stopped.")
    agents = {a.name: a for a in await service.list_agents()}
    assert agents[name].status == "stopped"


async def test_enqueued_job_runs_on_the_in_process_agent_with_its_logs(
    service: LaunchService, world: Demo
) -> None:
    """End to end: e, ctrl+s, the agent in the app runs it, its log follows in the panel."""
    app = make_app(service, agent_queues=["local"])
    app.agent_host.stop_timeout_s = 3.0
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await wait_until(pilot, lambda: app.agent_host.names(), "the agent", within=15)
        await pilot.press("e")  # evaluate: the first job; local: the queue an agent serves
        await wait_for_text(pilot, '"queue": "local"')
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "form closed")
        await pilot.press("4", "l")
        await wait_until(
            pilot, lambda: app.model is not None and any(
                r.state == RunState.FINISHED for r in app.model.runs.values()),
            "the run to finish", within=120,
        )
        text = await wait_for_text(pilot, "score=0.87", within=20)
        assert "finished" in text
