"""Form fields generated from JSON-schema properties.

Numbers become inputs checked against their bounds, enums become selects,
booleans switches, strings inputs; anything else (objects, arrays, unions)
takes a JSON/TOML-ish value. Every change is checked at once with the same
rules the service applies, and the message (naming the field) shows under it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from launch_tui.core.configfile import parse_value
from launch_tui.core.errors import ValidationError
from launch_tui.core.resolve import TEMPLATE_RE, validate


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def describe(schema: Mapping[str, Any]) -> str:
    """A short hint of a property's type and bounds: `integer 1..100`, `number >0 ≤1`."""
    if "enum" in schema:
        return "choice"
    kind = schema.get("type")
    if kind is None and "anyOf" in schema:
        kinds = [s.get("type") or json.dumps(s.get("const")) for s in schema["anyOf"]]
        kind = " or ".join(str(k) for k in kinds)
    parts = [str(kind or "value")]
    bounds = []
    if "minimum" in schema:
        bounds.append(f"≥{schema['minimum']}")
    if "exclusiveMinimum" in schema:
        bounds.append(f">{schema['exclusiveMinimum']}")
    if "maximum" in schema:
        bounds.append(f"≤{schema['maximum']}")
    if "exclusiveMaximum" in schema:
        bounds.append(f"<{schema['exclusiveMaximum']}")
    if "minimum" in schema and "maximum" in schema:
        bounds = [f"{schema['minimum']}..{schema['maximum']}"]
    if "pattern" in schema:
        bounds.append("pattern")
    return " ".join(parts + bounds)


def to_text(value: Any) -> str:
    """How a value is shown in an input: strings bare, everything else as JSON."""
    if value is MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value)


class SchemaField(Vertical):
    """A label, an editor chosen by the property's schema, a hint and an error line."""

    class Changed(Message):
        def __init__(self, field: SchemaField) -> None:
            super().__init__()
            self.field = field

        @property
        def control(self) -> SchemaField:
            return self.field

    def __init__(
        self,
        name: str,
        schema: Mapping[str, Any],
        value: Any = MISSING,
        *,
        path: str | None = None,
        optional: bool = False,
        placeholder: str = "",
        allow_templates: bool = False,
        label: str | None = None,
    ) -> None:
        super().__init__(classes="field")
        self.field_name = name
        self.schema = dict(schema)
        self.path = path or name
        self.optional = optional
        self.allow_templates = allow_templates
        self.initial = value
        self.error: str | None = None
        self._label = label or name
        self.editor = self._make_editor(value, placeholder)

    def _make_editor(self, value: Any, placeholder: str) -> Widget:
        schema = self.schema
        tooltip = schema.get("description")
        if "enum" in schema and not self.allow_templates:
            options = [(to_text(v) or '""', v) for v in schema["enum"]]
            start = value if value in schema["enum"] else Select.NULL
            if start is Select.NULL and not self.optional and options:
                start = options[0][1]
            editor: Widget = Select(
                options, value=start, allow_blank=self.optional, prompt=placeholder or "default",
                classes="field-editor", compact=True,
            )
        elif schema.get("type") == "boolean" and not self.optional and not self.allow_templates:
            editor = Switch(value=bool(value) if value is not MISSING else False,
                            classes="field-editor")
        else:
            editor = Input(to_text(value), placeholder=placeholder, classes="field-editor",
                           compact=True)
        editor.tooltip = tooltip
        return editor

    def compose(self) -> ComposeResult:
        with Horizontal(classes="field-row"):
            yield Label(self._label, classes="field-label")
            yield self.editor
            yield Static(self._hint(), classes="field-hint")
        yield Static("", classes="field-error")

    def on_mount(self) -> None:
        self.check()

    def _hint(self) -> str:
        if isinstance(self.editor, Switch):
            # Spelled out: a switch's look alone is lost without colour (NO_COLOR).
            return "yes" if self.editor.value else "no"
        return describe(self.schema)

    # ------------------------------------------------------------------ values

    def raw_value(self) -> Any:
        """The typed value, MISSING when left blank; raises ValidationError when malformed."""
        editor = self.editor
        if isinstance(editor, Switch):
            return editor.value
        if isinstance(editor, Select):
            value = editor.value
            if value is Select.NULL:
                if self.optional:
                    return MISSING
                raise ValidationError(f"{self.path}: choose a value.", field=self.path)
            return value
        assert isinstance(editor, Input)
        text = editor.value.strip()
        if not text:
            if self.optional:
                return MISSING
            raise ValidationError(f"{self.path}: a value is required.", field=self.path)
        if self.allow_templates and TEMPLATE_RE.search(text):
            return text  # filled in per item, checked against the variable's schema then
        kind = self.schema.get("type")
        if kind == "integer":
            try:
                return int(text)
            except ValueError:
                raise ValidationError(
                    f"{self.path}: '{text}' is not a whole number.", field=self.path
                ) from None
        if kind == "number":
            try:
                number = float(text)
            except ValueError:
                raise ValidationError(
                    f"{self.path}: '{text}' is not a number.", field=self.path
                ) from None
            return int(number) if number.is_integer() and "." not in text else number
        if kind == "string":
            return editor.value
        return parse_value(text)

    @property
    def value(self) -> Any:
        try:
            return self.raw_value()
        except ValidationError:
            return MISSING

    def check(self) -> str | None:
        """Validate the current value against the schema; show and return the message."""
        message: str | None = None
        try:
            value = self.raw_value()
            if value is not MISSING and not (
                isinstance(value, str) and self.allow_templates and TEMPLATE_RE.search(value)
            ):
                validate(value, self.schema, self.path)
        except ValidationError as exc:
            message = str(exc)
        self.set_error(message)
        return message

    def set_error(self, message: str | None) -> None:
        self.error = message
        line = self.query_one(".field-error", Static)
        # Text, not markup: a rule like '^[0-9]+[bkmgBKMG]?$' must show as it is.
        line.update(Text(message or ""))
        line.display = bool(message)
        self.set_class(bool(message), "-invalid")

    # ------------------------------------------------------------------ events

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.check()
        self.post_message(self.Changed(self))

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.check()
        self.post_message(self.Changed(self))

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self.query_one(".field-hint", Static).update(self._hint())
        self.check()
        self.post_message(self.Changed(self))


class FieldGroup(Vertical):
    """The fields of one schema object (config, template variables, resource args)."""

    def __init__(self, fields: Iterable[SchemaField], *, id: str | None = None) -> None:
        super().__init__(id=id, classes="field-group")
        self._initial = list(fields)

    def compose(self) -> ComposeResult:
        yield from self._initial

    @property
    def fields(self) -> list[SchemaField]:
        return list(self.query(SchemaField))

    def field(self, name: str) -> SchemaField | None:
        for f in self.fields:
            if f.field_name == name:
                return f
        return None

    def values(self) -> dict[str, Any]:
        """Every field that has a value (blank optional fields are left out)."""
        out: dict[str, Any] = {}
        for f in self.fields:
            value = f.value
            if value is not MISSING:
                out[f.field_name] = value
        return out

    def errors(self) -> list[SchemaField]:
        return [f for f in self.fields if f.check() is not None]

    def clear_errors(self) -> None:
        for f in self.fields:
            f.check()


def properties_of(
    schema: Mapping[str, Any], values: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Schema properties, plus keys present only in the values (typed by their value)."""
    props = {k: dict(v) for k, v in (schema.get("properties") or {}).items()
             if isinstance(v, dict)}
    for key, value in values.items():
        if key not in props:
            props[key] = _infer(value)
    return props


def _infer(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    return {}
