"""Edit a job's config defaults in a form; saving makes a new job version.

Same fields as the enqueue form (from the version's input schema). ctrl+e
switches to the TOML round trip in $EDITOR for anything a form cannot say.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Select, Static

from launch_tui.core.errors import LaunchError
from launch_tui.core.model import Job
from launch_tui.tui.screens.enqueue import config_fields, version_for, version_options
from launch_tui.tui.screens.formguard import GuardedForm
from launch_tui.tui.widgets.fields import FieldGroup
from launch_tui.tui.widgets.footer import KeysFooter

if TYPE_CHECKING:
    from launch_tui.tui.app import LaunchApp


class ConfigScreen(GuardedForm):
    BINDINGS = [
        Binding("ctrl+s", "submit", "Save version",
                tooltip="Save these defaults as a new version of the job", id="submit"),
        Binding("ctrl+e", "editor", "Edit in $EDITOR",
                tooltip="Edit the defaults as TOML in $EDITOR instead", id="editor"),
        Binding("escape", "close", "Close", tooltip="Close without saving", id="close"),
    ]

    def __init__(self, job: str) -> None:
        super().__init__(classes="form-screen")
        self.job_name = job

    @property
    def launch_app(self) -> LaunchApp:
        return cast("LaunchApp", self.app)

    @property
    def job(self) -> Job:
        model = self.launch_app.model
        assert model is not None
        return model.jobs[self.job_name]

    def compose(self) -> ComposeResult:
        job = self.job
        with Vertical(id="form-box") as box:
            box.border_title = f"Edit config defaults · {job.name}"
            with VerticalScroll(id="form-scroll"):
                yield Static("", id="form-error")
                yield Static(
                    f"Saving makes v{max(v.version for v in job.versions) + 1} with the same "
                    "code and entrypoint, and points 'latest' at it.", classes="form-note")
                with Horizontal(classes="field-row"):
                    yield Label("from", classes="field-label")
                    yield Select(version_options(job), value="latest", allow_blank=False,
                                 id="version", classes="field-editor", compact=True)
                with Horizontal(classes="field-row"):
                    yield Label("also alias", classes="field-label")
                    yield Input(placeholder="optional, e.g. prod", id="alias",
                                classes="field-editor", compact=True)
                yield Static("Config defaults", classes="form-section")
                yield FieldGroup(config_fields(version_for(job, "latest"), {}),
                                 id="config-fields")
        yield KeysFooter()

    def on_mount(self) -> None:
        self.call_after_refresh(self._focus_first)
        self.call_after_refresh(self.remember_initial)

    def _focus_first(self) -> None:
        fields = self.query_one(FieldGroup).fields
        if fields:
            fields[0].editor.focus()

    @on(Select.Changed, "#version")
    async def _version_changed(self, event: Select.Changed) -> None:
        group = self.query_one(FieldGroup)
        await group.remove_children()
        await group.mount_all(config_fields(version_for(self.job, str(event.value)), {}))

    def action_editor(self) -> None:
        self.dismiss(None)
        self.launch_app.edit_config_in_editor(self.job_name)

    def action_submit(self) -> None:
        bad = self.query_one(FieldGroup).errors()
        if bad:
            bad[0].editor.focus()
            self.notify(f"Not saved: {bad[0].error}", severity="error")
            return
        self._save()

    @work(group="save", exclusive=True, exit_on_error=False)
    async def _save(self) -> None:
        service = self.launch_app.service
        model = self.launch_app.model
        if service is None or model is None:
            return
        tag = str(self.query_one("#version", Select).value)
        alias = self.query_one("#alias", Input).value.strip()
        values = self.query_one(FieldGroup).values()
        error = self.query_one("#form-error", Static)
        try:
            result = await service.update_job_config(
                f"{self.job_name}:{tag}", values, project=model.project,
                aliases=[alias] if alias else [],
            )
        except LaunchError as exc:
            name = getattr(exc, "field", None) or ""
            target = self.query_one(FieldGroup).field(name.removeprefix("config.").split(".")[0])
            if target is not None:
                target.set_error(str(exc))
            else:
                error.update(Text(f"✗ {exc}"))
                error.display = True
            self.notify(f"Not saved: {exc}", severity="error")
            return
        number = result.version.version
        if result.created:
            self.saved(f"{self.job_name}: v{number} created (latest).")
        else:
            self.saved(f"{self.job_name}: same as v{number}; no new version.")
