"""Resolution of what runs: config and resource args, each failure naming field and rule.

effective config   = job defaults ⊕ item overrides, checked against the job's input schema
effective resource = queue defaults ⊕ item overrides (where the queue allows them),
                     template variables substituted after their values are checked,
                     then macros filled in, then checked against the backend's schema
                     and the target's policy (`BackendPlugin.check_args`).
Queue configs are checked here too (which keys, and their forms: `queueconfig`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from launch_tui.core import queueconfig, registry
from launch_tui.core.configfile import deep_merge
from launch_tui.core.errors import ValidationError
from launch_tui.core.model import JobVersion, Queue, QueueConfig, QueueItem, RunSpec
from launch_tui.core.schemas import check_schema, validate

TEMPLATE_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MACRO_RE = re.compile(r"\$\{([a-z_]+)\}")
MACROS = ("run_id", "project_name", "image_uri", "queue_name")
_VAR_TYPES = {"integer", "number", "string", "boolean"}
WANDB_MODES = ("offline", "online", "disabled")


def effective_config(
    defaults: dict[str, Any], overrides: dict[str, Any], schema: dict[str, Any]
) -> dict[str, Any]:
    config = deep_merge(defaults, overrides)
    # Only schemas the store read (job versions) reach here, and nothing changes them.
    validate(config, schema, "config", frozen=True)
    return config


def parse_queue_config(resource: str, raw: dict[str, Any], queue: str | None = None
                       ) -> QueueConfig:
    """Validate a queue config mapping (from a file or a form) and build a QueueConfig.
    `queue` names the queue in the target's policy sentences ("this queue" if None)."""
    queueconfig.check_keys(resource, raw)
    resource_args = raw.get("resource_args") or {}
    if not isinstance(resource_args, dict):
        raise ValidationError("resource_args: must be a mapping.", field="resource_args")
    if isinstance(resource_args.get("env"), dict):
        queueconfig.check_env_names(resource_args["env"], "resource_args.env")
    variables = raw.get("template_variables") or {}
    if not isinstance(variables, dict):
        raise ValidationError("template_variables: must be a mapping.", field="template_variables")
    for name, schema in variables.items():
        _check_variable(name, schema)
    used = set(_template_names(resource_args))
    undeclared = sorted(used - set(variables))
    if undeclared:
        raise ValidationError(
            f"resource_args: template variable '{undeclared[0]}' is used but not declared in "
            "template_variables.",
            field="resource_args",
        )
    allow = raw.get("allow_overrides", False)
    if isinstance(allow, list):
        if not all(isinstance(a, str) for a in allow):
            raise ValidationError("allow_overrides: must be true, false or a list of arg names.")
        allow_value: bool | tuple[str, ...] = tuple(allow)
    elif isinstance(allow, bool):
        allow_value = allow
    else:
        raise ValidationError(
            "allow_overrides: must be true, false or a list of resource arg names.",
            field="allow_overrides",
        )
    env = raw.get("env") or {}
    if not isinstance(env, dict):
        raise ValidationError("env: must be a mapping of names to string values.", field="env")
    queueconfig.check_env_names(env, "env")
    for name, value in env.items():
        if not isinstance(value, str):
            raise ValidationError(f"env.{name}: must be a string value.", field=f"env.{name}")
    mode = raw.get("wandb_mode", "offline")
    if mode not in WANDB_MODES:
        raise ValidationError(
            f"wandb_mode: '{mode}' must be one of {', '.join(WANDB_MODES)}.", field="wandb_mode"
        )
    extra = queueconfig.extra_values(resource, raw)
    config = QueueConfig(
        resource_args=resource_args,
        template_variables=variables,
        allow_overrides=allow_value,
        env={str(k): v for k, v in env.items()},
        wandb_mode=mode,
        extra=extra,
    )
    # The defaults, with each variable at its default (or an example value), must be valid.
    sample = {n: _sample_value(s) for n, s in variables.items()}
    args = fill_macros(substitute_templates(resource_args, sample), _placeholder_macros())
    validate(args, registry.resource_schema(resource), "resource_args")
    check_policy(resource, args, config, queue)
    return config


def check_policy(resource: str, args: dict[str, Any], config: QueueConfig,
                 queue: str | None) -> None:
    """The target's own rules for resource args (host networking, host paths, …),
    against what the queue's config allows; one sentence naming the field."""
    policy = registry.plugin(resource).check_args
    if policy is not None:
        policy(args, config.to_dict(), queue)


def _check_variable(name: str, schema: Any) -> None:
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(name)):
        raise ValidationError(
            f"template_variables: '{name}' must be a valid identifier.", field="template_variables"
        )
    field = f"template_variables.{name}"
    if not isinstance(schema, dict):
        raise ValidationError(f"{field}: must be a JSON schema mapping.", field=field)
    if schema.get("type") not in _VAR_TYPES and "enum" not in schema:
        raise ValidationError(
            f"{field}: needs a type (integer, number, string or boolean) or an enum.", field=field
        )
    problem = check_schema(schema)
    if problem is not None:
        raise ValidationError(f"{field}: not a valid JSON schema ({problem}).")
    if "default" in schema:
        validate(schema["default"], schema, f"{field}.default")


def _sample_value(schema: dict[str, Any]) -> Any:
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type")
    if t in ("integer", "number"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        return lo + 1 if "exclusiveMinimum" in schema else lo
    if t == "boolean":
        return False
    return "x"


def _template_names(value: Any) -> list[str]:
    if isinstance(value, str):
        return TEMPLATE_RE.findall(value)
    if isinstance(value, dict):
        return [n for v in value.values() for n in _template_names(v)]
    if isinstance(value, list):
        return [n for v in value for n in _template_names(v)]
    return []


def substitute_templates(value: Any, values: dict[str, Any]) -> Any:
    """`"{{gpus}}"` becomes the typed value; `"a-{{x}}"` interpolates as text."""
    if isinstance(value, str):
        whole = TEMPLATE_RE.fullmatch(value.strip())
        if whole:
            return values[whole.group(1)]
        return TEMPLATE_RE.sub(lambda m: str(values[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: substitute_templates(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_templates(v, values) for v in value]
    return value


def fill_macros(value: Any, macros: dict[str, str]) -> Any:
    """Replace `${run_id}` and friends; macros not in `macros` stay as they are."""
    if isinstance(value, str):
        return MACRO_RE.sub(lambda m: macros.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: fill_macros(v, macros) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_macros(v, macros) for v in value]
    return value


def _placeholder_macros() -> dict[str, str]:
    return {"run_id": "run00000", "project_name": "project", "image_uri": "image:latest",
            "queue_name": "queue"}


def check_template_values(config: QueueConfig, values: dict[str, Any]) -> dict[str, Any]:
    """Every given value is declared and fits its schema; missing ones take defaults."""
    declared = config.template_variables
    for name in values:
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ValidationError(
                f"template variable '{name}' is not declared by the queue (declared: {known}).",
                field=name,
            )
    out: dict[str, Any] = {}
    for name, schema in declared.items():
        if name in values:
            value = values[name]
            # CLI values arrive as text; accept "4" for an integer variable.
            if isinstance(value, str) and schema.get("type") in ("integer", "number"):
                value = _coerce_number(value, schema["type"])
            validate(value, schema, f"template variable '{name}'")
            out[name] = value
        elif "default" in schema:
            out[name] = schema["default"]
        else:
            raise ValidationError(
                f"template variable '{name}' needs a value (-v {name}=…); it has no default.",
                field=name,
            )
    return out


def _coerce_number(text: str, kind: str) -> Any:
    try:
        return int(text) if kind == "integer" else float(text)
    except ValueError:
        return text


def effective_resource_args(
    resource: str,
    queue_name: str,
    config: QueueConfig,
    overrides: dict[str, Any],
    template_values: dict[str, Any],
    macros: dict[str, str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (resource args, template values used) or raise naming the field and rule."""
    if overrides:
        allow = config.allow_overrides
        if allow is False:
            raise ValidationError(
                f"resource_args: queue '{queue_name}' does not allow resource overrides "
                "(its config sets allow_overrides: false).",
                field="resource_args",
            )
        if isinstance(allow, tuple):
            refused = sorted(set(overrides) - set(allow))
            if refused:
                raise ValidationError(
                    f"resource_args.{refused[0]}: queue '{queue_name}' allows overriding only "
                    f"{', '.join(allow) or 'nothing'}.",
                    field=f"resource_args.{refused[0]}",
                )
    values = check_template_values(config, template_values)
    args = substitute_templates(deep_merge(config.resource_args, overrides), values)
    args = fill_macros(args, macros or _placeholder_macros())
    complete = fill_macros(args, _placeholder_macros())
    validate(complete, registry.resource_schema(resource), "resource_args", frozen=True)
    if isinstance(complete.get("env"), dict):
        queueconfig.check_env_names(complete["env"], "resource_args.env")
    check_policy(resource, complete, config, queue_name)
    return args, values


def job_environment(
    *,
    run_id: str,
    project: str,
    job: str,
    version: int,
    config: dict[str, Any],
    queue_config: QueueConfig,
) -> dict[str, str]:
    """Environment for the job, the way W&B Launch sets it, plus our own helper's."""
    config_json = json.dumps(config, sort_keys=True)
    env = dict(queue_config.env)
    env.update(
        {
            "WANDB_CONFIG": config_json,
            "WANDB_RUN_ID": run_id,
            "WANDB_PROJECT": project,
            "WANDB_NAME": f"{job}-v{version}-{run_id}",
            "WANDB_LAUNCH": "True",
            "WANDB_MODE": queue_config.wandb_mode,
            "LAUNCH_TUI_RUN_ID": run_id,
            "LAUNCH_TUI_CONFIG": config_json,
            "LAUNCH_TUI_PROJECT": project,
            "LAUNCH_TUI_JOB": f"{job}:v{version}",
        }
    )
    return env


def run_spec(run_id: str, item: QueueItem, version: JobVersion, queue: Queue) -> RunSpec:
    """What a claimed item runs: its config and resource args resolved against the job
    version and the queue as they are now, with the run's macros filled in."""
    config = effective_config(version.config_defaults, item.config_overrides,
                              version.input_schema)
    macros = {"run_id": run_id, "project_name": item.project, "queue_name": item.queue}
    args, _ = effective_resource_args(
        queue.resource, queue.name, queue.config, item.resource_overrides, item.template_values,
        macros,
    )
    env = job_environment(
        run_id=run_id, project=item.project, job=item.job, version=item.version, config=config,
        queue_config=queue.config,
    )
    return RunSpec(
        run_id=run_id,
        project=item.project,
        queue=item.queue,
        resource=queue.resource,
        job=item.job,
        version=item.version,
        kind=version.kind,
        entrypoint=version.entrypoint,
        config=config,
        resource_args=args,
        env=env,
        source=version.source,
        environment=version.environment,
        job_digest=version.digest,
        queue_config=queue.config.to_dict(),
        image=version.source.get("image"),
    )
