"""Which keys a queue config may hold, and the rule each key's value follows.

Common to every target: `resource_args`, `template_variables`,
`allow_overrides`, `env`, `wandb_mode`, `base_image` and `secret_env`. A target
adds the keys its plugin declares (`BackendPlugin.queue_keys`: docker's
`allow_volumes` and `allow_host_network`, local-process's `inherit_env`); any
other key is refused. Values are checked by the key's form, so a third-party
target's keys get the same rules:

    allow_…       a switch: a real boolean (a file's "false" must not open the host)
    secret_env    a list of environment variable names
    inherit_env   a list of names or glob patterns (`LC_*`) of the agent's environment

`resolve.parse_queue_config` checks the common keys' structure and calls these;
each refusal is one sentence naming the key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from launch_tui.core import registry
from launch_tui.core.errors import ValidationError
from launch_tui.core.jobs import IMAGE_RE

# The keys QueueConfig holds as fields; everything else valid travels in `extra`.
FIELD_KEYS = ("resource_args", "template_variables", "allow_overrides", "env", "wandb_mode")
COMMON_KEYS = (*FIELD_KEYS, "base_image", "secret_env", "max_retries")
MAX_RETRIES_LIMIT = 100
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# fnmatch patterns over environment names: names plus *, ?, [..] and [!..].
_ENV_PATTERN_RE = re.compile(r"^[A-Za-z0-9_*?\[\]!-]+$")


def known_keys(resource: str) -> tuple[str, ...]:
    """Every key a queue on `resource` may set (raises naming an unknown target)."""
    extra = registry.plugin(resource).queue_keys
    return (*COMMON_KEYS, *(k for k in extra if k not in COMMON_KEYS))


def check_keys(resource: str, raw: Mapping[str, Any]) -> None:
    known = known_keys(resource)
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ValidationError(
            f"queue config: unknown key {', '.join(repr(u) for u in unknown)} for a "
            f"{resource} queue (known keys: {', '.join(sorted(known))}).",
            field=unknown[0],
        )


def extra_values(resource: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The keys beyond QueueConfig's fields, each checked by its form."""
    extra: dict[str, Any] = {}
    for key in known_keys(resource):
        if key in FIELD_KEYS or key not in raw:
            continue
        value = raw[key]
        if key == "base_image":
            _check_image(value)
        elif key == "max_retries":
            # How often an item whose run crashed (its agent or machine died) or was
            # preempted (a cluster evicted it) is enqueued again; a job's own failure
            # is never retried.
            if (isinstance(value, bool) or not isinstance(value, int)
                    or not 0 <= value <= MAX_RETRIES_LIMIT):
                raise ValidationError(
                    f"max_retries: must be a whole number from 0 to {MAX_RETRIES_LIMIT} "
                    f"(not {_shown(value)}).", field=key)
        elif key.startswith("allow_"):
            if not isinstance(value, bool):
                raise ValidationError(
                    f"{key}: must be true or false (not {_shown(value)}).", field=key)
        elif key == "inherit_env":
            _check_names(key, value, patterns=True)
        elif key.endswith("_env"):
            _check_names(key, value, patterns=False)
        extra[key] = value
    return extra


def check_env_names(env: Mapping[str, Any], field: str) -> None:
    """Every name of an `env` mapping is a valid environment variable name."""
    for name in env:
        if not isinstance(name, str) or not ENV_NAME_RE.match(name):
            where = f"{field}.{name or repr('')}"
            raise ValidationError(
                f"{where}: {str(name)!r} is not a valid environment variable name "
                "(letters, digits and '_', not starting with a digit; no '=').",
                field=where,
            )


def _check_names(key: str, value: Any, *, patterns: bool) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(
            f"{key}: must be a list of environment variable names (not {_shown(value)}).",
            field=key,
        )
    rule = _ENV_PATTERN_RE if patterns else ENV_NAME_RE
    for name in value:
        if not rule.match(name) or name[0].isdigit():
            what = "name or glob pattern" if patterns else "name"
            raise ValidationError(
                f"{key}: {name!r} is not a valid environment variable {what}.", field=key)


def _check_image(value: Any) -> None:
    if not isinstance(value, str) or len(value) > 255 or not IMAGE_RE.match(value):
        raise ValidationError(
            f"base_image: {_shown(value)} is not a valid image reference "
            "(expected [registry/]name[:tag][@digest], lower-case name).",
            field="base_image",
        )


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"a {type(value).__name__}" if isinstance(value, list | dict) else repr(value)
