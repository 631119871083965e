"""JSON-schema validation for the core: compiled validators, built once per schema.

Every enqueue and claim validates an item's config against its job version's
input schema and its resource args against the backend's schema: the same few
schemas, thousands of times. Validators are compiled once per distinct schema
(keyed by its canonical JSON) and schema checks are remembered. jsonschema is
imported on first use, so commands that validate nothing never load it.
Each failure becomes a ValidationError naming the field and the rule it broke.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

import orjson

from launch_tui.core.errors import ValidationError

if TYPE_CHECKING:
    import jsonschema


def _path(prefix: str, error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join([prefix, *parts]) if parts else prefix


def _rule(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        known = ", ".join(sorted(error.schema.get("properties", {}))) or "none"
        return f"unknown field {', '.join(repr(e) for e in extra)} (known fields: {known})"
    if error.validator == "anyOf":
        return f"{json.dumps(error.instance)} matches none of the allowed forms"
    return error.message


@functools.lru_cache(maxsize=512)
def _compiled(key: str) -> jsonschema.Draft202012Validator:
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(key))


# Validators of schema objects that nothing changes once made (a backend's, a job
# version's as the store read it): the same object comes back on every enqueue and
# claim, and is then found by identity, without serialising it. Holding the object
# here keeps its id from being reused.
_BY_OBJECT: dict[int, tuple[dict[str, Any], jsonschema.Draft202012Validator]] = {}


def validator_for(schema: dict[str, Any], *, frozen: bool = False
                  ) -> jsonschema.Draft202012Validator:
    """A compiled validator for `schema`, built once per distinct schema (keyed by its
    canonical JSON), as every enqueue and claim validates against the same few.
    `frozen`: the schema object is never changed, so it may be found by identity."""
    seen = _BY_OBJECT.get(id(schema)) if frozen else None
    if seen is not None and seen[0] is schema:
        return seen[1]
    try:
        key = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):  # not plain JSON (e.g. mixed key types): no caching
        import jsonschema

        return jsonschema.Draft202012Validator(schema)
    validator = _compiled(key)
    if frozen:
        if len(_BY_OBJECT) >= 256:
            _BY_OBJECT.clear()
        _BY_OBJECT[id(schema)] = (schema, validator)
    return validator


def check_schema(schema: dict[str, Any]) -> str | None:
    """Why `schema` is not a valid JSON schema (None: it is), remembered per schema."""
    try:
        key = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return _schema_problem(schema)
    return _checked(key)


@functools.lru_cache(maxsize=512)
def _checked(key: str) -> str | None:
    return _schema_problem(json.loads(key))


def _schema_problem(schema: Any) -> str | None:
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return str(exc.message)
    return None


# Instances a frozen schema's validator accepted, by (validator, canonical JSON):
# an item's config is checked when it is enqueued and again when it is claimed,
# against the same schema object. The value keeps the validator alive, so its id
# is not reused while the entry stands.
_VALID: dict[tuple[int, bytes], jsonschema.Draft202012Validator] = {}


def _canonical(instance: Any) -> bytes | None:
    """`instance` as sorted, compact JSON (orjson: a twentieth of `json`'s time, and
    this runs on every enqueue and claim); None for what JSON cannot say (mixed key
    types, integers beyond 64 bits): that instance is validated but not remembered.
    NaN and infinities read as null here, as the store writes them."""
    try:
        return orjson.dumps(instance, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError is one
        return None


def validate(instance: Any, schema: dict[str, Any], prefix: str, *, frozen: bool = False
             ) -> None:
    """Raise ValidationError for the first (deepest, most specific) violation.
    `frozen`: see `validator_for`."""
    validator = validator_for(schema, frozen=frozen)
    key = None
    if frozen:
        canonical = _canonical(instance)
        key = None if canonical is None else (id(validator), canonical)
        if key is not None and _VALID.get(key) is validator:
            return
    errors = sorted(
        validator.iter_errors(instance), key=lambda e: ([str(p) for p in e.absolute_path],
                                                        e.message)
    )
    if errors:
        from jsonschema.exceptions import best_match

        err = best_match(errors) or errors[0]
        field = _path(prefix, err)
        raise ValidationError(f"{field}: {_rule(err)}.", field=field)
    if key is not None:
        if len(_VALID) >= 4096:
            _VALID.clear()
        _VALID[key] = validator
