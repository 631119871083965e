"""The Kubernetes objects of one run, as plain dicts: its Job and its Secrets.

Pure and SDK-free, so core can check resource args (`check_kubernetes_args`) on
machines without the `kubernetes` extra, and tests can read the rules directly.

Resource args are the queue's partial Job, W&B Launch style (`metadata`,
`spec` with `template.spec` — or `spec` as a bare Pod spec), plus shorthands
(`cpu`, `memory`, `gpus`, `node_selector`, …). launch-tui fills in what makes it
this run: the image, the command, the environment, labels, `restartPolicy:
Never`, and defaults for `backoffLimit` and `ttlSecondsAfterFinished`.

Environment values whose names look secret (core.redact) or that the queue lists
in `secret_env` go into a per-run Secret and reach the container through
`secretKeyRef`, never as plain values in the Job.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from launch_tui.core.configfile import deep_merge
from launch_tui.core.errors import ValidationError
from launch_tui.core.model import RunSpec
from launch_tui.core.redact import secret_name

LABEL_RUN = "launch-tui/run-id"
LABEL_QUEUE = "launch-tui/queue"
LABEL_AGENT = "launch-tui/agent"
LABEL_PROJECT = "launch-tui/project"
LABEL_CREATED_BY = "app.kubernetes.io/created-by"
CREATED_BY = "launch-tui"
MAIN_CONTAINER = "job"
DEFAULT_TTL_S = 3600  # a finished Job stays an hour for `kubectl describe`; logs are stored
ALLOW_PRIVILEGED = "allow_privileged"
MAX_NAME = 63  # a Job's name is also the value of its pods' `job-name` label

_DNS_BAD = re.compile(r"[^a-z0-9-]+")
_LABEL_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Keys that mark `spec` as a bare Pod spec rather than a Job spec.
_POD_KEYS = {"containers", "initContainers", "volumes", "nodeSelector", "tolerations",
             "affinity", "serviceAccountName", "securityContext", "hostNetwork", "hostPID",
             "hostIPC", "imagePullSecrets", "priorityClassName", "runtimeClassName"}


# ---------------------------------------------------------------- names

def dns_name(*parts: str, limit: int = MAX_NAME) -> str:
    """A DNS-1123 label from `parts`: lower case, [a-z0-9-], at most `limit` characters.

    The last part (the run id) is kept whole; earlier parts are cut to fit, with a
    short hash of what was cut so two long names that share a prefix stay apart.
    """
    clean = [_DNS_BAD.sub("-", p.lower()).strip("-") for p in parts]
    tail = clean[-1]
    head = "-".join(c for c in clean[:-1] if c)
    room = limit - len(tail) - 1
    if head and len(head) > room:
        digest = hashlib.sha256(head.encode()).hexdigest()[:6]
        head = head[: max(0, room - 7)].rstrip("-")
        head = f"{head}-{digest}" if head else digest
    name = f"{head}-{tail}" if head else tail
    name = name[:limit].strip("-")
    return name or "run"


def label_value(value: str) -> str:
    """A valid label value: at most 63 of [A-Za-z0-9_.-], starting and ending alphanumeric."""
    clean = _LABEL_BAD.sub("-", value)[:MAX_NAME]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", clean)


def job_name(spec: RunSpec) -> str:
    return dns_name("lt", spec.job, spec.run_id)


def secret_name_for(run_id: str, what: str = "env") -> str:
    return dns_name("launch-tui", what, run_id, limit=253)


# ---------------------------------------------------------------- policy

def _allowed(queue_config: Mapping[str, Any]) -> bool:
    return queue_config.get(ALLOW_PRIVILEGED) is True


def _job_shape(args: Mapping[str, Any]) -> dict[str, Any]:
    """The user's part of the Job, as a full Job dict (a bare Pod `spec` is wrapped)."""
    manifest: dict[str, Any] = {}
    if isinstance(args.get("metadata"), dict):
        manifest["metadata"] = args["metadata"]
    spec = args.get("spec")
    if isinstance(spec, dict):
        if "template" not in spec and _POD_KEYS & set(spec):
            manifest["spec"] = {"template": {"spec": spec}}
        else:
            manifest["spec"] = spec
    return manifest


def _pod_spec_path(args: Mapping[str, Any]) -> str:
    spec = args.get("spec")
    if isinstance(spec, dict) and "template" not in spec and _POD_KEYS & set(spec):
        return "resource_args.spec"
    return "resource_args.spec.template.spec"


def check_kubernetes_args(
    resource_args: Mapping[str, Any], queue_config: Mapping[str, Any], queue: str | None = None
) -> None:
    """Refuse what reaches into the node unless the queue allows it, naming the field.

    Privileged containers, the host's network/PID/IPC namespaces, hostPath volumes
    and added capabilities each give a job the node; a queue opts in with
    `allow_privileged: true`. Also checks the queue config's kubernetes keys.
    """
    check_queue_keys(queue_config)
    _check_manifest_shape(resource_args)
    if _allowed(queue_config):
        return
    which = f"queue '{queue}'" if queue else "this queue"
    rule = f"which {which} does not allow (set {ALLOW_PRIVILEGED}: true in its config)"
    pod = _job_shape(resource_args).get("spec", {}).get("template", {}).get("spec", {})
    where = _pod_spec_path(resource_args)
    if not isinstance(pod, dict):
        return
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key) is True:
            raise ValidationError(
                f"{where}.{key}: sharing the node's {key[4:].lower()} namespace reaches "
                f"outside the pod, {rule}.", field=f"{where}.{key}")
    for i, volume in enumerate(pod.get("volumes") or []):
        if isinstance(volume, dict) and "hostPath" in volume:
            field = f"{where}.volumes[{i}].hostPath"
            raise ValidationError(
                f"{field}: mounting a path of the node is {rule}.", field=field)
    for group in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(pod.get(group) or []):
            if not isinstance(container, dict):
                continue
            ctx = container.get("securityContext") or {}
            base = f"{where}.{group}[{i}].securityContext"
            if ctx.get("privileged") is True:
                raise ValidationError(
                    f"{base}.privileged: a privileged container controls the node, {rule}.",
                    field=f"{base}.privileged")
            if ((ctx.get("capabilities") or {}).get("add")):
                raise ValidationError(
                    f"{base}.capabilities.add: added capabilities reach past the container, "
                    f"{rule}.", field=f"{base}.capabilities.add")


def _check_manifest_shape(args: Mapping[str, Any]) -> None:
    if "kind" in args and args["kind"] != "Job":
        raise ValidationError(
            f"resource_args.kind: a kubernetes queue runs batch/v1 Jobs (not {args['kind']!r}).",
            field="resource_args.kind")
    if "apiVersion" in args and args["apiVersion"] != "batch/v1":
        raise ValidationError(
            f"resource_args.apiVersion: must be batch/v1 (not {args['apiVersion']!r}).",
            field="resource_args.apiVersion")
    pod = _job_shape(args).get("spec", {}).get("template", {}).get("spec")
    if pod is not None and not isinstance(pod, dict):
        raise ValidationError(f"{_pod_spec_path(args)}: must be a mapping (a Pod spec).",
                              field=_pod_spec_path(args))
    containers = (pod or {}).get("containers")
    if containers is not None and not (
        isinstance(containers, list) and all(isinstance(c, dict) for c in containers)
    ):
        field = f"{_pod_spec_path(args)}.containers"
        raise ValidationError(f"{field}: must be a list of containers.", field=field)


def check_queue_keys(queue_config: Mapping[str, Any]) -> None:
    """The kubernetes queue-config keys' values (their names are checked by core)."""
    builder = queue_config.get("builder")
    if builder is not None:
        if not isinstance(builder, dict) or set(builder) - {"destination"}:
            raise ValidationError(
                "builder: must be a mapping with one key, destination (the registry "
                "repository images are pushed to, e.g. registry.example.com/team/launch).",
                field="builder")
        dest = builder.get("destination")
        if not isinstance(dest, str) or not re.match(
            r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)*$", dest.rstrip("/")
        ):
            raise ValidationError(
                f"builder.destination: {dest!r} is not a registry repository "
                "(expected host[:port]/path, lower case).", field="builder.destination")
    ns = queue_config.get("namespace")
    if ns is not None and not (isinstance(ns, str) and _DNS_LABEL.match(ns) and len(ns) <= 63):
        raise ValidationError(
            f"namespace: {ns!r} is not a valid namespace name (lower-case letters, digits "
            "and '-', at most 63).", field="namespace")
    context = queue_config.get("context")
    if context is not None and not (isinstance(context, str) and context):
        raise ValidationError("context: must be the name of a kubeconfig context.",
                              field="context")
    grace = queue_config.get("image_pull_grace_s")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int | float)
                              or grace <= 0):
        raise ValidationError(
            f"image_pull_grace_s: must be a number of seconds above 0 (not {grace!r}).",
            field="image_pull_grace_s")


# ---------------------------------------------------------------- the Job

def split_env(env: Mapping[str, str], secret_names: tuple[str, ...]) -> tuple[
    dict[str, str], dict[str, str]
]:
    """(plain, secret): secret are the values whose names look secret or are listed."""
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for name, value in env.items():
        (secret if secret_name(name, secret_names) else plain)[name] = value
    return plain, secret


def run_env(spec: RunSpec) -> dict[str, str]:
    args_env = spec.resource_args.get("env") or {}
    return {**spec.env, **{k: str(v) for k, v in args_env.items()}}


def _env_list(existing: list[Any], plain: Mapping[str, str], secret: Mapping[str, str],
              secret_ref: str) -> list[dict[str, Any]]:
    ours = {**{k: {"name": k, "value": v} for k, v in plain.items()},
            **{k: {"name": k, "valueFrom": {"secretKeyRef": {"name": secret_ref, "key": k}}}
               for k in secret}}
    kept = [e for e in existing if isinstance(e, dict) and e.get("name") not in ours]
    return [*kept, *(ours[k] for k in sorted(ours))]


def _resources(args: Mapping[str, Any]) -> dict[str, Any]:
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if args.get("cpu"):
        requests["cpu"] = str(args["cpu"])
    if args.get("memory"):
        # Memory is both asked for and capped: over it, the kernel kills (OOMKilled).
        requests["memory"] = limits["memory"] = str(args["memory"])
    if args.get("gpus"):
        limits["nvidia.com/gpu"] = int(args["gpus"])
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def build_job(spec: RunSpec, image: str, *, agent: str | None, secret_ref: str | None,
              pull_secret: str | None = None) -> dict[str, Any]:
    """The run's batch/v1 Job: the queue's partial Job with the run filled in."""
    args = spec.resource_args
    name = job_name(spec)
    labels = {
        LABEL_RUN: label_value(spec.run_id),
        LABEL_QUEUE: label_value(spec.queue),
        LABEL_PROJECT: label_value(spec.project),
        LABEL_CREATED_BY: CREATED_BY,
    }
    if agent:
        labels[LABEL_AGENT] = label_value(agent)
    user = _job_shape(args)
    job: dict[str, Any] = deep_merge(
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {}, "spec": {}}, user)
    meta = job["metadata"]
    meta.pop("generateName", None)
    meta["name"] = name
    meta.pop("namespace", None)  # the namespace is chosen by resolve order, not here
    meta["labels"] = {**(args.get("labels") or {}), **(meta.get("labels") or {}), **labels}
    jspec = job["spec"]
    jspec.setdefault("backoffLimit", args.get("backoff_limit", 0))
    jspec.setdefault("ttlSecondsAfterFinished", args.get("ttl_seconds_after_finished",
                                                         DEFAULT_TTL_S))
    if args.get("active_deadline_s"):
        jspec.setdefault("activeDeadlineSeconds", int(args["active_deadline_s"]))
    if args.get("parallelism"):
        jspec.setdefault("parallelism", int(args["parallelism"]))
        jspec.setdefault("completions", int(args["parallelism"]))
    template = jspec.setdefault("template", {})
    tmeta = template.setdefault("metadata", {})
    tmeta["labels"] = {**(args.get("labels") or {}), **(tmeta.get("labels") or {}), **labels}
    pod = template.setdefault("spec", {})
    pod["restartPolicy"] = pod.get("restartPolicy") or "Never"
    if args.get("node_selector"):
        pod["nodeSelector"] = {**args["node_selector"], **(pod.get("nodeSelector") or {})}
    if args.get("service_account"):
        pod.setdefault("serviceAccountName", args["service_account"])
    if pull_secret:
        refs = list(pod.get("imagePullSecrets") or [])
        refs.append({"name": pull_secret})
        pod["imagePullSecrets"] = refs
    containers = [dict(c) for c in pod.get("containers") or [{}]]
    main = containers[0]
    main["name"] = main.get("name") or MAIN_CONTAINER
    main["image"] = image
    if spec.entrypoint:
        main["command"] = list(spec.entrypoint)
        main.pop("args", None)
    plain, secret = split_env(run_env(spec), tuple(spec.queue_config.get("secret_env") or ()))
    if secret and not secret_ref:
        raise ValueError("secret values need a Secret to live in")
    main["env"] = _env_list(list(main.get("env") or []), plain, secret, secret_ref or "")
    resources = _resources(args)
    if resources:
        main["resources"] = deep_merge(resources, main.get("resources") or {})
    containers[0] = main
    pod["containers"] = containers
    return job


def env_secret(spec: RunSpec, name: str, values: Mapping[str, str]) -> dict[str, Any]:
    return _secret(spec, name, "Opaque", {k: v for k, v in values.items()})


def pull_secret(spec: RunSpec, name: str, registry: str, username: str,
                password: str) -> dict[str, Any]:
    """A kubernetes.io/dockerconfigjson Secret: the cluster's credentials for the
    registry the agent pushed the run's image to."""
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    config = {"auths": {registry: {"username": username, "password": password, "auth": auth}}}
    return _secret(spec, name, "kubernetes.io/dockerconfigjson",
                   {".dockerconfigjson": json.dumps(config)})


def _secret(spec: RunSpec, name: str, kind: str, values: Mapping[str, str]) -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {
            "name": name,
            "labels": {LABEL_RUN: label_value(spec.run_id), LABEL_CREATED_BY: CREATED_BY},
        },
        "data": data,
    }
