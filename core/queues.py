"""Queues and what waits on them: queue config, enqueueing, previews, requeueing,
cancelling, and listing items.

Everything is validated when it is enqueued (job config against the job's input
schema, resource args and template values against the queue and the backend), so
nothing waits on a queue that would fail to resolve. What needs no database (names,
priority) is checked before the write; the rest inside it, against the job version
and queue config the same transaction reads.
"""

from __future__ import annotations

from typing import Any

from launch_tui.core import jobs as jobrules
from launch_tui.core import redact, registry, resolve
from launch_tui.core.catalog import Catalog
from launch_tui.core.errors import ConflictError, ValidationError
from launch_tui.core.events import ItemEnqueued, QueueChanged
from launch_tui.core.lookups import project_or_default, require_project, require_queue
from launch_tui.core.model import ItemState, JobVersion, Priority, Queue, QueueItem, RunState
from launch_tui.core.settings import Settings
from launch_tui.core.store import items as items_db
from launch_tui.core.store import queues as queues_db
from launch_tui.core.store import rows
from launch_tui.core.store.session import Conn, Row, Store
from launch_tui.core.transitions import change_item, change_run, require_item, require_run
from launch_tui.core.versions import pinned_ref


class Queues:
    def __init__(self, store: Store, settings: Settings, catalog: Catalog) -> None:
        self._store = store
        self._settings = settings
        self._catalog = catalog

    # ------------------------------------------------------------------ queue config

    async def create_queue(self, name: str, resource: str, config: dict[str, Any] | None, *,
                           project: str | None) -> Queue:
        project = project_or_default(self._settings, project)
        jobrules.check_name(name, "queue")
        registry.plugin(resource)
        _refuse_masks(config or {})
        parsed = resolve.parse_queue_config(resource, config or {}, name)
        now = self._store.now()

        def tx(conn: Conn) -> Queue:
            require_project(conn, project)
            if not queues_db.add(conn, project, name, resource, parsed.to_dict(), now):
                raise ConflictError(f"queue: '{name}' already exists in project '{project}'.")
            self._store.emit(conn, QueueChanged(project=project, queue=name))
            return queues_db.snapshot(conn, require_queue(conn, project, name))

        return await self._store.write(tx)

    async def update_queue(self, name: str, config: dict[str, Any], *, resource: str | None,
                           project: str | None) -> Queue:
        """Replace a queue's config (and optionally its resource). Pending items keep
        their overrides; they are resolved against the new config when claimed."""
        project = project_or_default(self._settings, project)
        row = await self._store.read(require_queue, project, name)
        new_resource = resource or row.resource
        registry.plugin(new_resource)
        # A config read from get_queue shows secrets masked: what still reads as it
        # was shown keeps the stored value (a TUI form or an editor round trip).
        config = redact.unmask_config(config, row.config)
        _refuse_masks(config)
        parsed = resolve.parse_queue_config(new_resource, config, name)

        def tx(conn: Conn) -> Queue:
            current = require_queue(conn, project, name)
            queues_db.set_config(conn, current.id, new_resource, parsed.to_dict(),
                                 self._store.now())
            self._store.emit(conn, QueueChanged(project=project, queue=name))
            return queues_db.snapshot(conn, require_queue(conn, project, name))

        return await self._store.write(tx)

    async def list_queues(self, project: str | None) -> list[Queue]:
        project = project_or_default(self._settings, project)

        def query(conn: Conn) -> list[Queue]:
            require_project(conn, project)
            return queues_db.in_project(conn, project)

        return await self._store.read(query)

    async def get_queue(self, name: str, *, project: str | None) -> Queue:
        project = project_or_default(self._settings, project)
        return await self._store.read(
            lambda conn: queues_db.snapshot(conn, require_queue(conn, project, name)))

    # ------------------------------------------------------------------ enqueueing

    async def preview(
        self, job_ref: str, queue: str, *, project: str | None, config: dict[str, Any] | None,
        resource_args: dict[str, Any] | None, template_values: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The resolved spec an item would run with (macros shown as placeholders)."""
        project = project_or_default(self._settings, project)
        version = await self._catalog.job_version(job_ref, project=project)
        q = await self.get_queue(queue, project=project)
        check_runnable(self._settings, str(version.kind), q.resource, q.config.to_dict(), q.name)
        eff = resolve.effective_config(
            version.config_defaults, config or {}, version.input_schema
        )
        args, values = resolve.effective_resource_args(
            q.resource, q.name, q.config, resource_args or {}, template_values or {},
            {"project_name": project, "queue_name": q.name},
        )
        return {
            "job": version.ref,
            "queue": q.name,
            "resource": q.resource,
            "entrypoint": list(version.entrypoint),
            "config": eff,
            "resource_args": args,
            "template_values": values,
        }

    async def enqueue(
        self, job_ref: str, queue: str, *, project: str | None, config: dict[str, Any] | None,
        resource_args: dict[str, Any] | None, template_values: dict[str, Any] | None,
        priority: Priority | str,
    ) -> QueueItem:
        project = project_or_default(self._settings, project)
        priority = parse_priority(priority)
        name, tag = jobrules.parse_job_ref(job_ref)
        config, resource_args = rows.json_copy(config or {}), rows.json_copy(resource_args or {})
        if isinstance(resource_args, dict):
            redact.refuse_masks(resource_args.get("env"), "resource_args.env")
        store = self._store

        # One transaction: what the item refers to is read, the item checked against
        # it (so nothing is enqueued that would fail later) and added.
        def tx(conn: Conn) -> QueueItem:
            job_id, version = pinned_ref(store, conn, project, name, tag)
            qrow = require_queue(conn, project, queue)
            values = check_item(self._settings, version, qrow, config, resource_args,
                                 template_values)
            now = store.now()
            item_id = items_db.add(
                conn, queue_id=qrow.id, job_id=job_id, version=version.version,
                config_overrides=config, resource_overrides=resource_args,
                template_values=values, priority=priority.rank, now=now,
            )
            store.emit(conn, ItemEnqueued(project=project, queue=queue, item_id=item_id,
                                          priority=str(priority)))
            return QueueItem(
                id=item_id, project=project, queue=qrow.name, job=name,
                version=version.version, config_overrides=config,
                resource_overrides=resource_args, template_values=rows.json_copy(values),
                priority=priority, state=ItemState.PENDING, created_at=now, updated_at=now,
                seq=now,
                position=items_db.near_position(conn, qrow.id, priority.rank, now, item_id),
            )

        return await store.write(tx)

    async def requeue(self, target: str | int, *, priority: Priority | str | None) -> QueueItem:
        """Enqueue again what a run or item ran, with the same overrides."""
        text = str(target).lstrip("#")

        def query(conn: Conn) -> QueueItem:
            item_id = int(text) if text.isdigit() else require_run(conn, text).item_id
            return require_item(conn, item_id)

        item = await self._store.read(query)
        return await self.enqueue(
            f"{item.job}:v{item.version}",
            item.queue,
            project=item.project,
            config=item.config_overrides,
            resource_args=item.resource_overrides,
            template_values=item.template_values,
            priority=priority or item.priority,
        )

    # ------------------------------------------------------------------ items

    async def get_item(self, item_id: int) -> QueueItem:
        return await self._store.read(require_item, item_id)

    async def cancel(self, target: str | int, *, reason: str) -> str:
        """Cancel a pending item, or ask the agent to stop a run. Returns what was done."""
        text = str(target).lstrip("#")
        store = self._store

        def tx(conn: Conn) -> str:
            run_id = text
            if text.isdigit():
                item = require_item(conn, int(text))
                if item.state in (ItemState.PENDING, ItemState.LEASED):
                    if change_item(store, conn, item, ItemState.CANCELLED, reason=reason,
                                   error_message=reason):
                        return f"item #{item.id} cancelled"
                    item = require_item(conn, item.id)  # it moved on meanwhile
                if item.state != ItemState.CLAIMED or item.run_id is None:
                    raise ConflictError(f"item: #{item.id} is already {item.state}.")
                run_id = item.run_id
            run = require_run(conn, run_id)
            if run.state.terminal or run.state == RunState.STOPPING:
                raise ConflictError(f"run: {run.id} is already {run.state}.")
            change_run(store, conn, run, RunState.STOPPING, reason=reason)
            return f"run {run.id} stopping"

        return await store.write(tx)


def check_runnable(settings: Settings, kind: str, resource: str, config: dict[str, Any],
                   queue: str) -> None:
    """ValidationError, one sentence, when the queue's target cannot run jobs of this
    kind as the queue is configured (an image job on local-process, a code job where
    no registry is named for the cluster to pull from)."""
    policy = registry.plugin(resource).check_job
    if policy is None:
        return
    problem = policy(kind, config, queue, settings.backends.get(resource) or {})
    if problem:
        raise ValidationError(problem, field="queue")


def check_item(settings: Settings, version: JobVersion, qrow: Row,
                config: dict[str, Any] | None, resource_args: dict[str, Any] | None,
                template_values: dict[str, Any] | None) -> dict[str, Any]:
    """Validate an item against its job version and queue; return its template values
    (the given ones, checked, plus the defaults of the others)."""
    check_runnable(settings, str(version.kind), qrow.resource, qrow.config, qrow.name)
    resolve.effective_config(version.config_defaults, config or {}, version.input_schema)
    _, values = resolve.effective_resource_args(
        qrow.resource, qrow.name, rows.queue_config(qrow.config), resource_args or {},
        template_values or {},
    )
    return values


def _refuse_masks(config: dict[str, Any]) -> None:
    """A mask left in a queue's env where nothing is stored is refused, not stored."""
    redact.refuse_masks(config.get("env"), "env")
    args = config.get("resource_args")
    if isinstance(args, dict):
        redact.refuse_masks(args.get("env"), "resource_args.env")


def parse_priority(value: Priority | str) -> Priority:
    try:
        return Priority(value)
    except ValueError:
        raise ValidationError(
            f"priority: '{value}' must be one of critical, high, medium, low.", field="priority"
        ) from None
