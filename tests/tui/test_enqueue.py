"""Enqueueing from the keyboard: defaults, inline errors, resources, re-enqueue."""

from __future__ import annotations

import time

from textual.pilot import Pilot
from textual.widgets import Input, Select

from launch_tui.core.model import AgentStatus, ItemState, LogStream, RunState
from launch_tui.core.service import LaunchService
from launch_tui.tui.demo import Demo
from launch_tui.tui.screens.enqueue import EnqueueScreen
from launch_tui.tui.screens.main import MainScreen
from launch_tui.tui.widgets.fields import FieldGroup, SchemaField
from tests.tui.conftest import make_app, type_text, wait_for_text, wait_loaded, wait_until
from tests.tui.screen_text import screen_text


def field(app: object, group: str, name: str) -> SchemaField:
    screen = app.screen  # type: ignore[attr-defined]
    found = screen.query_one(f"#{group}", FieldGroup).field(name)
    assert found is not None, name
    return found


async def set_input(pilot: Pilot, f: SchemaField, text: str) -> None:
    editor = f.editor
    assert isinstance(editor, Input)
    editor.focus()
    # Focus lands on the next message cycle; keys sent before it would go elsewhere.
    await wait_until(pilot, lambda: pilot.app.focused is editor, "focus on the field")
    editor.value = ""
    await type_text(pilot, text)


async def test_e_then_ctrl_s_enqueues_defaults_and_the_run_shows_its_logs(
    service: LaunchService, world: Demo
) -> None:
    """The whole loop: enqueue by keyboard, an agent runs it, its logs follow in the panel."""
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("j", "e")  # jobs: evaluate, train
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueScreen), "the form")
        text = await wait_for_text(pilot, '"job": "train:v0"')  # resolved preview
        assert "Enqueue train" in text
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "form closed")
        items = await service.list_items("gpu")  # first queue: nothing used before
        assert [i.job_ref for i in items] == ["train:v0"]
        assert items[0].config_overrides == {}  # defaults, as the form showed them
        await pilot.press("3")
        await wait_for_text(pilot, "Items · gpu (1)")
        assert "pending" in screen_text(app)

        # Play the agent's part of the lease protocol.
        item = await service.claim("agent-t", ["gpu"])
        assert item is not None
        run = await service.acknowledge(item.id, "agent-t")
        await service.set_run_state(run.id, RunState.RUNNING)
        await service.append_logs(run.id, [(time.time(), LogStream.STDOUT, "epoch 1 loss=0.5")])
        await service.set_run_state(run.id, RunState.FINISHED, exit_code=0)
        await wait_for_text(pilot, "Items · gpu (0)")
        await pilot.press("4")
        await wait_until(
            pilot, lambda: run.id in screen_text(app) and "finished" in screen_text(app), "run"
        )
        await pilot.press("l")  # side panel with the selected (newest) run's log
        await wait_for_text(pilot, "epoch 1 loss=0.5")
        assert f"Run log · {run.id}" in screen_text(app)


def _queue(app: object) -> object:
    screen = app.screen  # type: ignore[attr-defined]
    return screen.queue if isinstance(screen, EnqueueScreen) else None


async def test_the_form_picks_a_queue_an_agent_serves(
        service: LaunchService, world: Demo) -> None:
    """The job's last queue only while an agent serves it; else a served queue; the
    form says who serves the chosen queue, or that nobody does."""
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        # No agent anywhere: the first queue (gpu), with a warning.
        await pilot.press("j", "e")
        await wait_until(pilot, lambda: _queue(app) == "gpu", "gpu chosen")
        await wait_for_text(pilot, "no agent serves gpu: items will wait")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "form closed")
        # An agent serves local: the job's last queue (gpu) has none, so local it is.
        await service.register_agent("vm-local", ["local"])
        await service.agent_heartbeat("vm-local", AgentStatus.POLLING, 0)
        await wait_until(pilot, lambda: "vm-local" in app.model.agents,  # type: ignore[union-attr]
                         "the agent in the model")
        await pilot.press("e")
        await wait_until(pilot, lambda: _queue(app) == "local", "local chosen")
        await wait_for_text(pilot, "served by vm-local (polling)")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "form closed")
        assert len(await service.list_items("local")) == 1
        # Another agent for gpu: the job's last queue (local) is still served: kept.
        await service.register_agent("vm-gpu", ["gpu"])
        await wait_until(pilot, lambda: "vm-gpu" in app.model.agents,  # type: ignore[union-attr]
                         "the second agent")
        await pilot.press("e")
        await wait_until(pilot, lambda: _queue(app) == "local", "local kept")
        # Changing the queue updates the note.
        app.screen.query_one("#queue", Select).value = "gpu"
        await wait_for_text(pilot, "served by vm-gpu")


async def test_an_invalid_field_is_flagged_and_blocks_submit(
    service: LaunchService, world: Demo
) -> None:
    app = make_app(service)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("j", "e")
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueScreen), "the form")
        await set_input(pilot, field(app, "config-fields", "epochs"), "500")
        text = await wait_for_text(pilot, "config.epochs: 500 is greater than the maximum of 100")
        assert "Enqueue train" in text
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert isinstance(app.screen, EnqueueScreen)  # still open
        assert await service.list_items("gpu") == []
        # Not a number at all.
        await set_input(pilot, field(app, "config-fields", "lr"), "fast")
        await wait_for_text(pilot, "config.lr: 'fast' is not a number.")
        # Fixing both lets it through, with only the changed values as overrides.
        await set_input(pilot, field(app, "config-fields", "epochs"), "7")
        await set_input(pilot, field(app, "config-fields", "lr"), "0.01")
        await pilot.pause(0.4)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "form closed")
        items = await service.list_items("gpu")
        assert [i.config_overrides for i in items] == [{"epochs": 7}]


async def test_template_variable_bounds_are_checked(service: LaunchService, world: Demo) -> None:
    app = make_app(service)
    async with app.run_test(size=(80, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueScreen), "the form")
        gpus = field(app, "resource-fields", "gpus")  # the gpu queue's {{gpus}}, 0..8
        await set_input(pilot, gpus, "9")
        await wait_for_text(pilot, "9 is greater than the maximum of 8")
        await set_input(pilot, gpus, "2")
        await set_input(pilot, field(app, "resource-fields", "memory"), "16g")
        # The preview follows typing (debounced); wait for the one with both values.
        text = await wait_for_text(pilot, '"memory": "16g"')
        assert '"gpus": 2' in text
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "form closed")
        [item] = await service.list_items("gpu")
        assert item.template_values == {"gpus": 2}
        assert item.resource_overrides == {"memory": "16g"}


async def test_service_errors_show_inline_in_the_form(service: LaunchService, world: Demo) -> None:
    """A rule only the service knows (the memory pattern) lands under its field."""
    app = make_app(service)
    async with app.run_test(size=(80, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueScreen), "the form")
        memory = field(app, "resource-fields", "memory")
        await set_input(pilot, memory, "lots")
        await wait_until(pilot, lambda: memory.error is not None, "an error on memory")
        assert "resource_args.memory" in str(memory.error)
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert isinstance(app.screen, EnqueueScreen)
        assert await service.list_items("gpu") == []


async def test_a_failed_run_can_be_fixed_and_resubmitted(
    service: LaunchService, showcase: Demo
) -> None:
    failed = showcase.runs["failed"]
    app = make_app(service)
    async with app.run_test(size=(80, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("4")
        table = app.screen.query_one("#runs-table")
        assert table.move_to(failed)  # type: ignore[attr-defined]
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, EnqueueScreen), "the form")
        text = await wait_for_text(pilot, f"again from run {failed} (failed)")
        lr = field(app, "config-fields", "lr")
        assert lr.value == 0.5  # what the failed run had
        assert "local" in text
        await set_input(pilot, lr, "0.05")
        await pilot.pause(0.4)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, MainScreen), "form closed")
        items = await service.list_items("local", states=[ItemState.PENDING])
        newest = max(items, key=lambda i: i.id)
        assert newest.config_overrides == {"lr": 0.05}
        assert newest.job_ref == "train:v0" and newest.queue == "local"
