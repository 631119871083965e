"""The Vertex AI custom job of one run, as a plain dict: pure and SDK-free.

Core checks resource args with `check_vertex_args` at queue create and enqueue on
machines without the `vertex` extra; the backend turns `custom_job_body` into the
library's `CustomJob` message (`vertex_api`). Tests read the rules directly.

Resource args follow W&B Launch's Vertex queues: `spec` holds the custom job
(`worker_pool_specs`, `staging_bucket`, `base_output_dir`,
`encryption_spec_key_name`, `labels`) and `run` how it runs (`timeout`,
`service_account`, `network`, `restart_job_on_worker_restart`,
`enable_web_access`). Keys may be spelled as the Python SDK does (snake_case) or as
the REST API does (camelCase). launch-tui fills in what makes it this run: each
worker pool without an image of its own runs the run's image with the job's
entrypoint as its command, every pool gets the run's environment, and the labels
carry the run id (`launch-tui-run-id`), so a restarted agent finds the job again.

Project and location come from the queue config (`project`, `location`), else the
agent's `[backends.vertex]` settings; `api_endpoint` points at another endpoint
than `{location}-aiplatform.googleapis.com` (a test stand-in).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from launch_tui.backends.kubernetes_manifest import check_queue_keys as _check_builder
from launch_tui.core.errors import ValidationError
from launch_tui.core.model import RunSpec

QUEUE_KEYS = ("project", "location", "api_endpoint", "builder")
LABEL_RUN = "launch-tui-run-id"
LABEL_QUEUE = "launch-tui-queue"
LABEL_PROJECT = "launch-tui-project"
LABEL_CREATED_BY = "created-by"
CREATED_BY = "launch-tui"
DEFAULT_MACHINE_TYPE = "n1-standard-4"
MAX_DISPLAY_NAME = 128
MAX_LABEL = 63

SPEC_KEYS = ("worker_pool_specs", "staging_bucket", "base_output_dir",
             "encryption_spec_key_name", "labels")
RUN_KEYS = ("timeout", "service_account", "network", "restart_job_on_worker_restart",
            "enable_web_access")

_CAMEL = re.compile(r"(?<!^)([A-Z])")
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]{1,20}$")
_LOCATION = re.compile(r"^[a-z]+(-[a-z]+[0-9]+)?$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_LABEL_BAD = re.compile(r"[^a-z0-9_-]+")
_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?)s$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Keys whose own keys are names people chose, never converted from camelCase.
_VERBATIM = {"labels", "env"}


# ---------------------------------------------------------------- spelling

def snake(key: str) -> str:
    return _CAMEL.sub(r"_\1", key).lower()


def normalise(value: Any, verbatim: bool = False) -> Any:
    """Keys in snake_case (`workerPoolSpecs` -> `worker_pool_specs`), except the names
    inside `labels` and an `env` mapping."""
    if isinstance(value, Mapping):
        if verbatim:
            return {str(k): v for k, v in value.items()}
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = snake(str(key))
            out[name] = normalise(item, verbatim=name in _VERBATIM)
        return out
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def args_of(resource_args: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec, run) of resource args, in snake_case."""
    args = normalise(dict(resource_args))
    spec = args.get("spec") or {}
    run = args.get("run") or {}
    return (spec if isinstance(spec, dict) else {}), (run if isinstance(run, dict) else {})


# ---------------------------------------------------------------- policy

def check_vertex_args(resource_args: Mapping[str, Any], queue_config: Mapping[str, Any],
                      queue: str | None = None) -> None:
    """The shape of `spec` and `run` and the queue's vertex keys, one sentence naming
    the field. SDK-free: core runs it at queue create/update and at enqueue."""
    check_queue_config(queue_config)
    args = normalise(dict(resource_args))
    for key in sorted(set(args) - {"spec", "run"}):
        raise ValidationError(
            f"resource_args.{key}: a vertex queue takes resource args 'spec' (the custom "
            "job) and 'run' (how it runs).", field=f"resource_args.{key}")
    for part, known in (("spec", SPEC_KEYS), ("run", RUN_KEYS)):
        value = args.get(part)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ValidationError(f"resource_args.{part}: must be a mapping.",
                                  field=f"resource_args.{part}")
        unknown = sorted(set(value) - set(known))
        if unknown:
            field = f"resource_args.{part}.{unknown[0]}"
            raise ValidationError(
                f"{field}: not a key of a Vertex AI custom job's {part} (known: "
                f"{', '.join(known)}).", field=field)
    spec, run = args_of(resource_args)
    _check_pools(spec.get("worker_pool_specs"))
    for key in ("staging_bucket", "base_output_dir"):
        value = spec.get(key)
        if value is not None and not (isinstance(value, str) and value.startswith("gs://")
                                      and len(value) > 5):
            raise ValidationError(
                f"resource_args.spec.{key}: must be a Cloud Storage URI, gs://BUCKET[/PATH] "
                f"(not {value!r}).", field=f"resource_args.spec.{key}")
    key_name = spec.get("encryption_spec_key_name")
    if key_name is not None and not (isinstance(key_name, str) and key_name.startswith(
            "projects/") and "/cryptoKeys/" in key_name):
        raise ValidationError(
            "resource_args.spec.encryption_spec_key_name: must be a Cloud KMS key name "
            "(projects/P/locations/L/keyRings/R/cryptoKeys/K).",
            field="resource_args.spec.encryption_spec_key_name")
    _check_labels(spec.get("labels"))
    timeout_s(run.get("timeout"))
    for key in ("restart_job_on_worker_restart", "enable_web_access"):
        if key in run and not isinstance(run[key], bool):
            raise ValidationError(f"resource_args.run.{key}: must be true or false.",
                                  field=f"resource_args.run.{key}")
    for key in ("service_account", "network"):
        if key in run and not (isinstance(run[key], str) and run[key]):
            raise ValidationError(f"resource_args.run.{key}: must be a non-empty string.",
                                  field=f"resource_args.run.{key}")


def check_queue_config(queue_config: Mapping[str, Any]) -> None:
    project = queue_config.get("project")
    if project is not None and not (isinstance(project, str) and _PROJECT.match(project)):
        raise ValidationError(
            f"project: {project!r} is not a Google Cloud project id (6 to 30 lower-case "
            "letters, digits and '-', starting with a letter) or number.", field="project")
    location = queue_config.get("location")
    if location is not None and not (isinstance(location, str) and _LOCATION.match(location)):
        raise ValidationError(
            f"location: {location!r} is not a Google Cloud region (e.g. us-central1).",
            field="location")
    endpoint = queue_config.get("api_endpoint")
    if endpoint is not None and not (isinstance(endpoint, str) and endpoint.strip()):
        raise ValidationError("api_endpoint: must be a host[:port] or an http(s):// URL.",
                              field="api_endpoint")
    if "builder" in queue_config:
        _check_builder({"builder": queue_config["builder"]})


def _check_pools(pools: Any) -> None:
    where = "resource_args.spec.worker_pool_specs"
    if pools is None:
        return
    if not isinstance(pools, list) or not pools:
        raise ValidationError(f"{where}: must be a non-empty list of worker pools.",
                              field=where)
    for i, pool in enumerate(pools):
        at = f"{where}[{i}]"
        if not isinstance(pool, dict):
            raise ValidationError(f"{at}: must be a mapping (a worker pool).", field=at)
        for key in ("machine_spec", "container_spec", "disk_spec"):
            if key in pool and not isinstance(pool[key], dict):
                raise ValidationError(f"{at}.{key}: must be a mapping.", field=f"{at}.{key}")
        if "python_package_spec" in pool:
            raise ValidationError(
                f"{at}.python_package_spec: launch-tui runs containers; give a "
                "container_spec (or none: the run's image).", field=f"{at}.python_package_spec")
        count = pool.get("replica_count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or count < (1 if i == 0 else 0)):
            raise ValidationError(
                f"{at}.replica_count: must be a whole number (at least 1 in the first pool).",
                field=f"{at}.replica_count")
        container = pool.get("container_spec") or {}
        for key in ("command", "args"):
            value = container.get(key)
            if value is not None and not (isinstance(value, list)
                                          and all(isinstance(v, str) for v in value)):
                raise ValidationError(f"{at}.container_spec.{key}: must be a list of strings.",
                                      field=f"{at}.container_spec.{key}")
        env_list(container.get("env"), f"{at}.container_spec.env")


def _check_labels(labels: Any) -> None:
    where = "resource_args.spec.labels"
    if labels is None:
        return
    if not isinstance(labels, dict):
        raise ValidationError(f"{where}: must be a mapping of label names to values.",
                              field=where)
    for key, value in labels.items():
        if not _LABEL_KEY.match(str(key)):
            raise ValidationError(
                f"{where}.{key}: a label name is up to 63 lower-case letters, digits, '_' and "
                "'-', starting with a letter.", field=f"{where}.{key}")
        if not isinstance(value, str) or not _LABEL_VALUE.match(value):
            raise ValidationError(
                f"{where}.{key}: a label value is up to 63 lower-case letters, digits, '_' "
                f"and '-' (not {value!r}).", field=f"{where}.{key}")
        if str(key).startswith("launch-tui-"):
            raise ValidationError(f"{where}.{key}: labels named launch-tui-… are launch-tui's "
                                  "own.", field=f"{where}.{key}")


def timeout_s(value: Any) -> float | None:
    """`run.timeout` in seconds: a number of seconds or a duration string ("3600s")."""
    if value is None:
        return None
    where = "resource_args.run.timeout"
    if isinstance(value, str) and _DURATION.match(value.strip()):
        value = float(_DURATION.match(value.strip()).group(1))  # type: ignore[union-attr]
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValidationError(
            f"{where}: must be a number of seconds above 0, or a duration like \"3600s\" "
            f"(not {value!r}).", field=where)
    return float(value)


def env_list(env: Any, where: str) -> list[dict[str, str]]:
    """A container's `env` as Vertex's list of {name, value}; a mapping is accepted."""
    if env is None:
        return []
    if isinstance(env, dict):
        env = [{"name": k, "value": v} for k, v in env.items()]
    if not isinstance(env, list):
        raise ValidationError(f"{where}: must be a list of {{name, value}} (or a mapping).",
                              field=where)
    out: list[dict[str, str]] = []
    for i, item in enumerate(env):
        if not (isinstance(item, dict) and isinstance(item.get("name"), str)
                and _ENV_NAME.match(item["name"]) and isinstance(item.get("value", ""), str)):
            raise ValidationError(
                f"{where}[{i}]: must be {{name: NAME, value: \"text\"}} with a valid "
                "environment variable name.", field=f"{where}[{i}]")
        out.append({"name": item["name"], "value": item.get("value", "")})
    return out


# ---------------------------------------------------------------- names

def label_value(value: str) -> str:
    """A valid label value: at most 63 lower-case letters, digits, '_' and '-'."""
    return _LABEL_BAD.sub("-", value.lower())[:MAX_LABEL]


def display_name(spec: RunSpec) -> str:
    tail = f"-{spec.run_id}"
    return f"{spec.job[: MAX_DISPLAY_NAME - len(tail)]}{tail}"


def run_labels(spec: RunSpec) -> dict[str, str]:
    return {
        LABEL_RUN: label_value(spec.run_id),
        LABEL_QUEUE: label_value(spec.queue),
        LABEL_PROJECT: label_value(spec.project),
        LABEL_CREATED_BY: CREATED_BY,
    }


def run_filter(run_id: str) -> str:
    """ListCustomJobs' filter for the jobs of one run."""
    return f'labels.{LABEL_RUN}="{label_value(run_id)}"'


# ---------------------------------------------------------------- where

def where(spec: RunSpec, settings: Mapping[str, Any]) -> tuple[str, str]:
    """(project, location) of the run's job, or one sentence naming what is missing."""
    project = spec.queue_config.get("project") or settings.get("project")
    location = spec.queue_config.get("location") or settings.get("location")
    for key, value in (("project", project), ("location", location)):
        if not value:
            what = "Google Cloud project" if key == "project" else "region (e.g. us-central1)"
            raise ValidationError(
                f"{key}: queue '{spec.queue}' names no {what} for its Vertex AI jobs; set "
                f"{key} in its config (or [backends.vertex] {key} in the agent's "
                "settings.toml).", field=key)
    return str(project), str(location)


# ---------------------------------------------------------------- the job

def run_env(spec: RunSpec) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in sorted(spec.env.items())]


def custom_job_body(spec: RunSpec, image: str | None) -> dict[str, Any]:
    """The CustomJob (snake_case field names, as `json_format.ParseDict` takes them)."""
    check_vertex_args(spec.resource_args, spec.queue_config, spec.queue)
    job_spec, run = args_of(spec.resource_args)
    bucket = job_spec.get("staging_bucket")
    output = job_spec.get("base_output_dir")
    if not (bucket or output):
        raise ValidationError(
            "resource_args.spec.staging_bucket: the run has no Cloud Storage bucket for its "
            "output; set spec.staging_bucket (gs://BUCKET) or spec.base_output_dir in queue "
            f"'{spec.queue}''s resource args.", field="resource_args.spec.staging_bucket")
    output = output or f"{str(bucket).rstrip('/')}/launch-tui/{spec.run_id}"
    pools = [dict(p) for p in job_spec.get("worker_pool_specs") or [{}]]
    ours = run_env(spec)
    names = {e["name"] for e in ours}
    for i, pool in enumerate(pools):
        where_ = f"resource_args.spec.worker_pool_specs[{i}]"
        container = dict(pool.get("container_spec") or {})
        if not container.get("image_uri"):
            if not image:
                raise ValidationError(
                    f"{where_}.container_spec.image_uri: the run has no image to start; "
                    "the vertex builder must run first.", field=f"{where_}.container_spec")
            container["image_uri"] = image
        if container["image_uri"] == image and spec.entrypoint and not container.get("command"):
            container["command"] = list(spec.entrypoint)
        kept = [e for e in env_list(container.get("env"), f"{where_}.container_spec.env")
                if e["name"] not in names]
        container["env"] = [*kept, *ours]
        pool["container_spec"] = container
        machine = dict(pool.get("machine_spec") or {})
        machine.setdefault("machine_type", DEFAULT_MACHINE_TYPE)
        pool["machine_spec"] = machine
        pool.setdefault("replica_count", 1)
        pools[i] = pool
    body_spec: dict[str, Any] = {
        "worker_pool_specs": pools,
        "base_output_directory": {"output_uri_prefix": output},
    }
    for key in ("service_account", "network", "enable_web_access"):
        if key in run:
            body_spec[key] = run[key]
    scheduling: dict[str, Any] = {}
    seconds = timeout_s(run.get("timeout"))
    if seconds is not None:
        scheduling["timeout"] = f"{int(seconds)}s" if seconds.is_integer() else f"{seconds}s"
    if "restart_job_on_worker_restart" in run:
        scheduling["restart_job_on_worker_restart"] = run["restart_job_on_worker_restart"]
    if scheduling:
        body_spec["scheduling"] = scheduling
    body: dict[str, Any] = {
        "display_name": display_name(spec),
        "job_spec": body_spec,
        "labels": {**(job_spec.get("labels") or {}), **run_labels(spec)},
    }
    if job_spec.get("encryption_spec_key_name"):
        body["encryption_spec"] = {"kms_key_name": job_spec["encryption_spec_key_name"]}
    return body
