"""Create or modify a queue: target resource, default resource args, template variables.

Resource-arg fields come from the backend's resource schema (a value may be a
`{{variable}}`); template variables are written as TOML tables (type, minimum,
maximum, enum, default, description). The whole config is checked as you type
with the same rules the service applies.
"""

from __future__ import annotations

import tomllib
from typing import TYPE_CHECKING, Any, cast

import tomli_w
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Input, Label, Select, Static, TextArea

from launch_tui.core import queueconfig, registry, resolve
from launch_tui.core.errors import LaunchError, ValidationError
from launch_tui.core.model import Queue
from launch_tui.tui.screens.formguard import GuardedForm
from launch_tui.tui.widgets.fields import MISSING, FieldGroup, SchemaField
from launch_tui.tui.widgets.footer import KeysFooter

if TYPE_CHECKING:
    from launch_tui.tui.app import LaunchApp

ALLOW_CHOICES = [
    ("no raw overrides", "none"),
    ("any resource arg", "any"),
    ("only the args listed", "list"),
]


def resource_arg_fields(resource: str, values: dict[str, Any]) -> list[SchemaField]:
    try:
        props = registry.resource_schema(resource).get("properties", {})
    except LaunchError:
        props = {}
    return [
        SchemaField(name, schema, values.get(name, MISSING), path=f"resource_args.{name}",
                    optional=True, allow_templates=True)
        for name, schema in props.items()
    ]


def toml_text(data: dict[str, Any]) -> str:
    try:
        return tomli_w.dumps(data)
    except TypeError:
        return ""


class QueueScreen(GuardedForm):
    BINDINGS = [
        Binding("ctrl+s", "submit", "Save queue", tooltip="Create or update the queue",
                id="submit"),
        Binding("ctrl+e", "editor", "Edit in $EDITOR",
                tooltip="Edit the queue config as TOML in $EDITOR instead", id="editor"),
        Binding("escape", "close", "Close", tooltip="Close without saving", id="close"),
    ]

    def __init__(self, queue: str | None) -> None:
        super().__init__(classes="form-screen")
        self.queue_name = queue

    @property
    def launch_app(self) -> LaunchApp:
        return cast("LaunchApp", self.app)

    @property
    def existing(self) -> Queue | None:
        model = self.launch_app.model
        if model is None or self.queue_name is None:
            return None
        return model.queues.get(self.queue_name)

    def compose(self) -> ComposeResult:
        queue = self.existing
        config = queue.config if queue else None
        resource = queue.resource if queue else registry.resource_names()[0]
        allow = config.allow_overrides if config else False
        allow_mode = "any" if allow is True else "list" if allow else "none"
        with Vertical(id="form-box") as box:
            box.border_title = f"Modify queue {queue.name}" if queue else "Create a queue"
            with VerticalScroll(id="form-scroll"):
                yield Static("", id="form-error")
                with Horizontal(classes="field-row"):
                    yield Label("name", classes="field-label")
                    yield Input(queue.name if queue else "", placeholder="e.g. gpu-large",
                                id="name", classes="field-editor", compact=True,
                                disabled=queue is not None)
                with Horizontal(classes="field-row"):
                    yield Label("resource", classes="field-label")
                    yield Select([(r, r) for r in registry.resource_names()], value=resource,
                                 allow_blank=False, id="resource", classes="field-editor",
                                 compact=True)
                yield Static("Default resource args (blank: unset; {{name}} uses a template "
                             "variable)", classes="form-section")
                yield FieldGroup(
                    resource_arg_fields(resource, config.resource_args if config else {}),
                    id="resource-fields",
                )
                yield Static("Template variables (TOML: one [table] per variable)",
                             classes="form-section", markup=False)
                yield TextArea(toml_text(config.template_variables if config else {}),
                               id="variables", classes="form-text")
                yield Static("", id="variables-error", classes="inline-error")
                with Horizontal(classes="field-row"):
                    yield Label("overrides", classes="field-label")
                    yield Select(ALLOW_CHOICES, value=allow_mode, allow_blank=False,
                                 id="allow-mode", classes="field-editor", compact=True)
                with Horizontal(classes="field-row"):
                    yield Label("overridable", classes="field-label")
                    yield Input(", ".join(allow) if isinstance(allow, tuple) else "",
                                placeholder="arg names, comma separated", id="allow-list",
                                classes="field-editor", compact=True)
                with Horizontal(classes="field-row"):
                    yield Label("wandb mode", classes="field-label")
                    yield Select([(m, m) for m in resolve.WANDB_MODES],
                                 value=config.wandb_mode if config else "offline",
                                 allow_blank=False, id="wandb-mode", classes="field-editor",
                                 compact=True)
                yield Static("Environment for every job (TOML: NAME = \"value\")",
                             classes="form-section")
                yield TextArea(toml_text(config.env if config else {}), id="env",
                               classes="form-text short")
                yield Static("", id="queue-check")
        yield KeysFooter()

    def on_mount(self) -> None:
        target = "#resource" if self.existing else "#name"
        self.call_after_refresh(self.query_one(target).focus)
        self.check()
        self.call_after_refresh(self.remember_initial)

    # ------------------------------------------------------------------ values

    @property
    def resource(self) -> str:
        return str(self.query_one("#resource", Select).value)

    def raw_config(self) -> dict[str, Any]:
        """The config mapping the service takes, built from the form (may raise)."""
        raw: dict[str, Any] = {}
        existing = self.existing
        if existing is not None:
            # Knobs the form does not show (base_image, secret_env, the target's policy
            # keys) are kept, as far as the chosen target takes them.
            known = queueconfig.known_keys(self.resource)
            raw.update({k: v for k, v in existing.config.extra.items() if k in known})
        args = self.query_one("#resource-fields", FieldGroup).values()
        raw["resource_args"] = args
        variables_text = self.query_one("#variables", TextArea).text
        try:
            raw["template_variables"] = tomllib.loads(variables_text)
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError(f"template_variables: not valid TOML ({exc}).",
                                  field="template_variables") from exc
        mode = self.query_one("#allow-mode", Select).value
        if mode == "any":
            raw["allow_overrides"] = True
        elif mode == "list":
            names = self.query_one("#allow-list", Input).value
            raw["allow_overrides"] = [n.strip() for n in names.split(",") if n.strip()]
        else:
            raw["allow_overrides"] = False
        raw["wandb_mode"] = self.query_one("#wandb-mode", Select).value
        try:
            raw["env"] = tomllib.loads(self.query_one("#env", TextArea).text)
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError(f"env: not valid TOML ({exc}).", field="env") from exc
        return raw

    def check(self) -> str | None:
        """Validate the whole config; show the message where it belongs."""
        message: str | None = None
        field = ""
        fields_bad = self.query_one("#resource-fields", FieldGroup).errors()
        if fields_bad:
            message = fields_bad[0].error
        else:
            try:
                resolve.parse_queue_config(self.resource, self.raw_config())
            except ValidationError as exc:
                message, field = str(exc), exc.field or ""
            except LaunchError as exc:
                message = str(exc)
        self._show(message, field)
        return message

    def _show(self, message: str | None, field: str) -> None:
        variables = self.query_one("#variables-error", Static)
        status = self.query_one("#queue-check", Static)
        variables.display = False
        if message is None:
            status.update("✓ this config is valid")
            status.set_class(False, "-invalid")
            return
        status.update(Text(f"✗ {message}"))
        status.set_class(True, "-invalid")
        if field.startswith("template_variables"):
            variables.update(Text(message))
            variables.display = True
        elif field.startswith("resource_args."):
            name = field.split(".")[1]
            target = self.query_one("#resource-fields", FieldGroup).field(name)
            if target is not None:
                target.set_error(message)

    # ------------------------------------------------------------------ events

    @on(Select.Changed, "#resource")
    async def _resource_changed(self, event: Select.Changed) -> None:
        group = self.query_one("#resource-fields", FieldGroup)
        keep = group.values()
        await group.remove_children()
        await group.mount_all(resource_arg_fields(self.resource, keep))
        self.check()

    def on_schema_field_changed(self, event: SchemaField.Changed) -> None:
        self.check()

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self.check()

    @on(Select.Changed, "#allow-mode")
    @on(Select.Changed, "#wandb-mode")
    @on(Input.Changed, "#allow-list")
    def _changed(self, event: Any) -> None:
        self.check()

    # ------------------------------------------------------------------ submit

    def action_editor(self) -> None:
        if self.queue_name is None:
            self.notify("Create the queue first; then M edits it as TOML.", severity="warning")
            return
        self.dismiss(None)
        self.launch_app.edit_queue_in_editor(self.queue_name)

    def action_submit(self) -> None:
        problem = self.check()
        if problem:
            self.notify(f"Not saved: {problem}", severity="error")
            return
        self._save()

    @work(group="save", exclusive=True, exit_on_error=False)
    async def _save(self) -> None:
        service = self.launch_app.service
        model = self.launch_app.model
        if service is None or model is None:
            return
        name = self.query_one("#name", Input).value.strip()
        try:
            raw = self.raw_config()
            if self.existing is None:
                await service.create_queue(name, self.resource, raw, project=model.project)
                message = f"Queue {name} created on {self.resource}."
            else:
                await service.update_queue(name, raw, resource=self.resource,
                                           project=model.project)
                message = f"Queue {name} updated."
        except LaunchError as exc:
            error = self.query_one("#form-error", Static)
            error.update(Text(f"✗ {exc}"))
            error.display = True
            self.notify(f"Not saved: {exc}", severity="error")
            return
        self.saved(message)
