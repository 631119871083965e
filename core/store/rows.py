"""Row -> snapshot conversion, and the joined selects that feed it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from launch_tui.core.model import (
    Agent,
    AgentStatus,
    ErrorStage,
    ItemState,
    JobKind,
    JobVersion,
    LogLine,
    LogStream,
    MetricRecord,
    Priority,
    Queue,
    QueueConfig,
    QueueItem,
    Run,
    RunState,
)
from launch_tui.core.store import jsoncodec
from launch_tui.core.store.schema import items, jobs, queues, runs


def json_copy(value: Any) -> Any:
    """`value` as it would read back from a JSON column (tuples become lists), sharing
    no mutable part with the original: snapshots built from what was just written
    must not change when the caller's objects do."""
    if not value and isinstance(value, dict):
        return {}
    return jsoncodec.copy(value)  # the codec beats copying in Python


_FIELD_KEYS = frozenset(
    {"resource_args", "template_variables", "allow_overrides", "env", "wandb_mode"})


def queue_config(raw: dict[str, Any]) -> QueueConfig:
    allow = raw.get("allow_overrides", False)
    return QueueConfig(
        resource_args=raw.get("resource_args", {}),
        template_variables=raw.get("template_variables", {}),
        allow_overrides=tuple(allow) if isinstance(allow, list) else bool(allow),
        env=raw.get("env", {}),
        wandb_mode=raw.get("wandb_mode", "offline"),
        # Every other key (base_image, secret_env, the target's policy keys): only
        # validated configs are stored, so what is there is kept as it is.
        extra={k: v for k, v in raw.items() if k not in _FIELD_KEYS},
    )


def to_queue(row: Any, pending: int = 0) -> Queue:
    return Queue(
        project=row.project,
        name=row.name,
        resource=row.resource,
        config=queue_config(row.config),
        created_at=row.created_at,
        updated_at=row.updated_at,
        pending=pending,
        held_at=row.held_at,
        hold_reason=row.hold_reason,
    )


def to_version(project: str, job: str, row: Any, aliases: tuple[str, ...]) -> JobVersion:
    spec = row.spec
    return JobVersion(
        project=project,
        job=job,
        kind=JobKind(spec["kind"]),
        version=row.version,
        digest=row.digest,
        entrypoint=tuple(spec["entrypoint"]),
        source=spec["source"],
        environment=spec["environment"],
        config_defaults=spec["config_defaults"],
        input_schema=spec["input_schema"],
        aliases=aliases,
        created_at=row.created_at,
    )


def item_select() -> Select[Any]:
    return select(
        items,
        queues.c.name.label("queue_name"),
        queues.c.project.label("project"),
        jobs.c.name.label("job_name"),
    ).select_from(items.join(queues, items.c.queue_id == queues.c.id).join(
        jobs, items.c.job_id == jobs.c.id))


def to_item(row: Any, position: int | None = None,
            names: tuple[str, str, str] | None = None) -> QueueItem:
    """An item snapshot from an `item_select()` row, or from a bare items row plus its
    (project, queue, job) names."""
    project, queue, job = names or (row.project, row.queue_name, row.job_name)
    return QueueItem(
        id=row.id,
        project=project,
        queue=queue,
        job=job,
        version=row.version,
        config_overrides=row.config_overrides,
        resource_overrides=row.resource_overrides,
        template_values=row.template_values,
        priority=Priority.from_rank(row.priority),
        state=ItemState(row.state),
        created_at=row.created_at,
        updated_at=row.updated_at,
        leased_by=row.leased_by,
        lease_expires=row.lease_expires,
        run_id=row.run_id,
        error_stage=ErrorStage(row.error_stage) if row.error_stage else None,
        error_message=row.error_message,
        position=position,
        seq=row.seq,
    )


def run_select() -> Select[Any]:
    return select(
        runs,
        queues.c.name.label("queue_name"),
        queues.c.project.label("project"),
        jobs.c.name.label("job_name"),
    ).select_from(runs.join(queues, runs.c.queue_id == queues.c.id).join(
        jobs, runs.c.job_id == jobs.c.id))


def to_run(row: Any, names: tuple[str, str, str] | None = None) -> Run:
    """A run snapshot from a `run_select()` row, or from a bare runs row plus its
    (project, queue, job) names."""
    project, queue, job = names or (row.project, row.queue_name, row.job_name)
    return Run(
        id=row.id,
        item_id=row.item_id,
        project=project,
        queue=queue,
        job=job,
        version=row.version,
        agent=row.agent,
        state=RunState(row.state),
        spec=row.spec,
        handle=row.handle,
        timestamps=row.timestamps,
        exit_code=row.exit_code,
        error_stage=ErrorStage(row.error_stage) if row.error_stage else None,
        error_message=row.error_message,
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def to_agent(row: Any) -> Agent:
    return Agent(
        name=row.name,
        queues=tuple(row.queues),
        project=row.project,
        status=AgentStatus(row.status),
        max_jobs=row.max_jobs,
        running=row.running,
        heartbeat_at=row.heartbeat_at,
        started_at=row.started_at,
        host=row.host,
        pid=row.pid,
    )


def to_log(row: Any) -> LogLine:
    return LogLine(id=row.id, run_id=row.run_id, ts=row.ts, stream=LogStream(row.stream),
                   text=row.text, source=row.source)


def to_metric(row: Any) -> MetricRecord:
    # "values" is a column name, read through the mapping to avoid any attribute clash.
    return MetricRecord(run_id=row.run_id, step=row.step, ts=row.ts, values=row._mapping["values"],
                        source=row.source)
