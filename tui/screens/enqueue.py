"""The enqueue form: version, queue, priority, config and resources of one job.

Config fields come from the job version's input schema, prefilled with its
defaults; resource fields come from the queue's template variables or, where
the queue allows raw overrides, from the backend's resource schema. Each
change is checked inline, and the resolved spec (service.preview) is shown
before anything is submitted. ctrl+s enqueues, escape closes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from rich.json import JSON
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.timer import Timer
from textual.widgets import Label, Select, Static

from launch_tui.core import registry
from launch_tui.core.errors import LaunchError, ValidationError
from launch_tui.core.model import Job, JobVersion, Priority, Queue, QueueItem, Run
from launch_tui.tui.screens.formguard import GuardedForm
from launch_tui.tui.widgets.fields import MISSING, FieldGroup, SchemaField, properties_of, to_text
from launch_tui.tui.widgets.footer import KeysFooter

if TYPE_CHECKING:
    from launch_tui.tui.app import LaunchApp

PREVIEW_DELAY_S = 0.25
_TEMPLATE_FIELD = re.compile(r"template variable '([^']+)'")


@dataclass(frozen=True)
class Prefill:
    """What a re-enqueue starts from: the run's item, so a failed run can be fixed."""

    version: str | None = None
    queue: str | None = None
    priority: Priority = Priority.MEDIUM
    config: dict[str, Any] = field(default_factory=dict)
    resource_args: dict[str, Any] = field(default_factory=dict)
    template_values: dict[str, Any] = field(default_factory=dict)
    origin: str = ""

    @classmethod
    def from_item(cls, item: QueueItem, run: Run | None = None) -> Prefill:
        origin = f"run {run.id} ({run.state})" if run else f"item #{item.id}"
        return cls(
            version=f"v{item.version}",
            queue=item.queue,
            priority=item.priority,
            config=dict(item.config_overrides),
            resource_args=dict(item.resource_overrides),
            template_values=dict(item.template_values),
            origin=origin,
        )


def version_options(job: Job) -> list[tuple[str, str]]:
    """Aliases first (latest leading), then every version, newest first."""
    names = sorted(job.aliases, key=lambda a: (a != "latest", a))
    options = [(f"{a} (v{job.aliases[a]})", a) for a in names]
    options += [(f"v{v.version}", f"v{v.version}") for v in sorted(
        job.versions, key=lambda v: -v.version)]
    return options


def version_for(job: Job, tag: str) -> JobVersion:
    number = job.aliases[tag] if tag in job.aliases else int(tag.lstrip("v"))
    return job.version(number)


def config_fields(version: JobVersion, overrides: dict[str, Any]) -> list[SchemaField]:
    """One field per config key, prefilled with the default (or the override)."""
    defaults = version.config_defaults
    schema = version.input_schema
    required = set(schema.get("required", []))
    fields = []
    for name, prop in properties_of(schema, defaults).items():
        value = overrides.get(name, defaults.get(name, prop.get("default", MISSING)))
        optional = name not in defaults and name not in required
        fields.append(SchemaField(name, prop, value, path=f"config.{name}", optional=optional))
    return fields


def resource_fields(queue: Queue, prefill: Prefill | None) -> list[SchemaField]:
    """Template variables of the queue, then the raw overrides it allows."""
    fields: list[SchemaField] = []
    values = prefill.template_values if prefill and prefill.queue == queue.name else {}
    for name, schema in queue.config.template_variables.items():
        value = values.get(name, schema.get("default", MISSING))
        fields.append(SchemaField(
            name, schema, value, path=f"template variable '{name}'",
            optional="default" in schema, label=f"{{{{{name}}}}}",
        ))
    allow = queue.config.allow_overrides
    if allow is False:
        return fields
    try:
        props = registry.resource_schema(queue.resource).get("properties", {})
    except LaunchError:
        props = {}
    names = list(props) if allow is True else list(allow)
    overrides = prefill.resource_args if prefill and prefill.queue == queue.name else {}
    for name in names:
        default = queue.config.resource_args.get(name, MISSING)
        fields.append(SchemaField(
            name, props.get(name, {}), overrides.get(name, MISSING),
            path=f"resource_args.{name}", optional=True,
            placeholder=f"queue default: {to_text(default)}" if default is not MISSING else "",
        ))
    return fields


class EnqueueScreen(GuardedForm):
    BINDINGS = [
        Binding("ctrl+s", "submit", "Enqueue", tooltip="Enqueue with these values", id="submit"),
        Binding("escape", "close", "Close", tooltip="Close the form without enqueueing",
                id="close"),
    ]

    def __init__(self, job: str, *, prefill: Prefill | None = None) -> None:
        super().__init__(classes="form-screen")
        self.job_name = job
        self.prefill = prefill
        self._preview_timer: Timer | None = None
        self._submitting = False

    @property
    def launch_app(self) -> LaunchApp:
        return cast("LaunchApp", self.app)

    @property
    def job(self) -> Job:
        model = self.launch_app.model
        assert model is not None
        return model.jobs[self.job_name]

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        model = self.launch_app.model
        assert model is not None
        job = self.job
        prefill = self.prefill
        tag = prefill.version if prefill and prefill.version else "latest"
        queue = prefill.queue if prefill and prefill.queue in model.queues else None
        queue = queue or self.launch_app.default_queue(job.name)
        with Vertical(id="form-box") as box:
            box.border_title = f"Enqueue {job.name}" + (
                f" · again from {prefill.origin}" if prefill and prefill.origin else "")
            with VerticalScroll(id="form-scroll"):
                yield Static("", id="form-error")
                with Horizontal(classes="field-row"):
                    yield Label("version", classes="field-label")
                    yield Select(version_options(job), value=tag, allow_blank=False,
                                 id="version", classes="field-editor", compact=True)
                with Horizontal(classes="field-row"):
                    yield Label("queue", classes="field-label")
                    yield Select([(q, q) for q in model.queue_names], value=queue or Select.NULL,
                                 allow_blank=queue is None, prompt="no queues yet", id="queue",
                                 classes="field-editor", compact=True)
                yield Static("", id="queue-agents", classes="form-note")
                with Horizontal(classes="field-row"):
                    yield Label("priority", classes="field-label")
                    yield Select([(str(p), p) for p in Priority],
                                 value=prefill.priority if prefill else Priority.MEDIUM,
                                 allow_blank=False, id="priority", classes="field-editor",
                                 compact=True)
                yield Static("Config", classes="form-section", id="config-title")
                yield FieldGroup(self._config_fields(tag), id="config-fields")
                yield Static("Resources", classes="form-section", id="resource-title")
                yield FieldGroup(self._resource_fields(queue), id="resource-fields")
                yield Static("Resolved spec (as it will run)", classes="form-section")
                yield Static("", id="preview")
        yield KeysFooter()

    def _config_fields(self, tag: str) -> list[SchemaField]:
        version = version_for(self.job, tag)
        overrides = self.prefill.config if self.prefill else {}
        return config_fields(version, overrides)

    def _resource_fields(self, queue: str | None) -> list[SchemaField]:
        model = self.launch_app.model
        if queue is None or model is None or queue not in model.queues:
            return []
        return resource_fields(model.queues[queue], self.prefill)

    def on_mount(self) -> None:
        self._update_resource_title()
        self._update_queue_agents()
        self.call_after_refresh(self._focus_first)
        self.schedule_preview()
        self.call_after_refresh(self.remember_initial)

    def _focus_first(self) -> None:
        # The queue decides whether and where it runs: the first thing to check.
        self.query_one("#queue", Select).focus()

    def _update_queue_agents(self) -> None:
        note = self.query_one("#queue-agents", Static)
        queue = self.queue
        if queue is None:
            note.update("")
            return
        agents = self.launch_app.serving_agents(queue)
        if agents:
            names = ", ".join(f"{a.name} ({a.status})" for a in agents)
            note.update(Text(f"served by {names}"))
            note.set_class(False, "-warning")
        else:
            note.update(Text(f"no agent serves {queue}: items will wait until one starts "
                             "(a on the Queues pane starts one here)"))
            note.set_class(True, "-warning")


    # ------------------------------------------------------------------ values

    @property
    def tag(self) -> str:
        return str(self.query_one("#version", Select).value)

    @property
    def queue(self) -> str | None:
        value = self.query_one("#queue", Select).value
        return None if value is Select.NULL else str(value)

    @property
    def priority(self) -> Priority:
        return Priority(self.query_one("#priority", Select).value)

    def request(self) -> dict[str, Any]:
        """The enqueue arguments: only config that differs from the version's defaults."""
        version = version_for(self.job, self.tag)
        config = self.query_one("#config-fields", FieldGroup).values()
        overrides = {k: v for k, v in config.items() if version.config_defaults.get(k) != v}
        template_values: dict[str, Any] = {}
        resource_args: dict[str, Any] = {}
        for f in self.query_one("#resource-fields", FieldGroup).fields:
            value = f.value
            if value is MISSING:
                continue
            if f.path.startswith("template variable"):
                template_values[f.field_name] = value
            else:
                resource_args[f.field_name] = value
        return {
            "job_ref": f"{self.job_name}:{self.tag}",
            "queue": self.queue,
            "config": overrides,
            "resource_args": resource_args,
            "template_values": template_values,
        }

    def local_errors(self) -> list[SchemaField]:
        return [
            *self.query_one("#config-fields", FieldGroup).errors(),
            *self.query_one("#resource-fields", FieldGroup).errors(),
        ]

    # ------------------------------------------------------------------ changes

    @on(Select.Changed, "#version")
    async def _version_changed(self, event: Select.Changed) -> None:
        group = self.query_one("#config-fields", FieldGroup)
        await group.remove_children()
        await group.mount_all(self._config_fields(self.tag))
        self.schedule_preview()

    @on(Select.Changed, "#queue")
    async def _queue_changed(self, event: Select.Changed) -> None:
        group = self.query_one("#resource-fields", FieldGroup)
        await group.remove_children()
        await group.mount_all(self._resource_fields(self.queue))
        self._update_resource_title()
        self._update_queue_agents()
        self.schedule_preview()

    @on(Select.Changed, "#priority")
    def _priority_changed(self, event: Select.Changed) -> None:
        self.schedule_preview()

    def on_schema_field_changed(self, event: SchemaField.Changed) -> None:
        self.schedule_preview()

    def _update_resource_title(self) -> None:
        model = self.launch_app.model
        title = self.query_one("#resource-title", Static)
        queue = model.queues.get(self.queue or "") if model else None
        if queue is None:
            title.update("Resources")
            return
        allow = queue.config.allow_overrides
        note = ("any resource arg may be overridden" if allow is True
                else f"overridable: {', '.join(allow)}" if allow else "no raw overrides")
        if not self.query_one("#resource-fields", FieldGroup).fields and not allow:
            note = "nothing to set on this queue"
        title.update(f"Resources · {queue.name} ({queue.resource}) · {note}")

    def schedule_preview(self) -> None:
        # Debounced: typing "0.001" asks for one preview, not five.
        if self._preview_timer is not None:
            self._preview_timer.stop()
        self._preview_timer = self.set_timer(PREVIEW_DELAY_S, self._preview)

    @work(group="preview", exclusive=True, exit_on_error=False)
    async def _preview(self) -> None:
        service = self.launch_app.service
        preview = self.query_one("#preview", Static)
        if service is None:
            return
        bad = self.local_errors()
        if bad:
            preview.update(Text(f"✗ fix {bad[0].error}"))
            return
        req = self.request()
        if req["queue"] is None:
            preview.update("✗ queue: choose a queue (or create one with n).")
            return
        try:
            spec = await service.preview(
                req["job_ref"], req["queue"], project=self._project(), config=req["config"],
                resource_args=req["resource_args"], template_values=req["template_values"],
            )
        except LaunchError as exc:
            self.show_error(exc)
            preview.update(Text(f"✗ {exc}"))
            return
        self.show_error(None)
        preview.update(JSON(json.dumps(spec, indent=2)))

    def _project(self) -> str | None:
        model = self.launch_app.model
        return model.project if model else None

    def show_error(self, exc: LaunchError | None) -> None:
        """Put a service error under the field it names, or at the top of the form."""
        top = self.query_one("#form-error", Static)
        if exc is None:
            top.update("")
            top.display = False
            return
        target = self.field_for(exc)
        if target is not None:
            target.set_error(str(exc))
            top.display = False
        else:
            top.update(Text(f"✗ {exc}"))  # not markup: errors quote rules with brackets
            top.display = True

    def field_for(self, exc: LaunchError) -> SchemaField | None:
        name = getattr(exc, "field", None) or ""
        if not isinstance(exc, ValidationError) or not name:
            return None
        groups = {
            "config": self.query_one("#config-fields", FieldGroup),
            "resource_args": self.query_one("#resource-fields", FieldGroup),
        }
        match = _TEMPLATE_FIELD.search(name)
        if match:
            return groups["resource_args"].field(match.group(1))
        head, _, rest = name.partition(".")
        if head in groups and rest:
            return groups[head].field(rest.split(".")[0])
        # Undeclared or missing template variables are named bare.
        return groups["resource_args"].field(name)

    # ------------------------------------------------------------------ submit

    def action_submit(self) -> None:
        bad = self.local_errors()
        if bad:
            bad[0].editor.focus()
            self.notify(f"Not enqueued: {bad[0].error}", severity="error")
            return
        if self.queue is None:
            self.notify("Not enqueued: choose a queue first.", severity="error")
            return
        if not self._submitting:
            self._submit()

    @work(group="submit", exclusive=True, exit_on_error=False)
    async def _submit(self) -> None:
        service = self.launch_app.service
        if service is None:
            return
        self._submitting = True
        req = self.request()
        try:
            item = await service.placed(await service.enqueue(
                req["job_ref"], req["queue"], project=self._project(), config=req["config"],
                resource_args=req["resource_args"], template_values=req["template_values"],
                priority=self.priority,
            ))
        except LaunchError as exc:
            self.show_error(exc)
            self.notify(f"Not enqueued: {exc}", severity="error")
            return
        finally:
            self._submitting = False
        self.launch_app.remember_queue(self.job_name, item.queue)
        where = f", position {item.position:,}" if item.position else ""
        self.saved(f"{item.job_ref} on {item.queue} as item #{item.id}{where}.")
