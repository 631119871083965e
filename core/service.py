"""LaunchService: the one way into the core.

The TUI, the CLI, in-process and headless agents are all clients of this
facade. Commands are async and transactional; every state change appends an
event in the same transaction, and `subscribe()` tails those events, so a
client sees changes made by other processes too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import string
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from launch_tui.core import jobs as jobrules
from launch_tui.core import registry, resolve
from launch_tui.core.errors import ConflictError, NotFound, ValidationError
from launch_tui.core.events import (
    AgentHeartbeat,
    AgentLog,
    Event,
    ItemEnqueued,
    ItemStateChanged,
    JobAliasSet,
    JobVersionCreated,
    ProjectCreated,
    QueueChanged,
    RunLogAppended,
    RunMetricsLogged,
    RunStateChanged,
    decode,
)
from launch_tui.core.model import (
    TERMINAL_RUN_STATES,
    Agent,
    AgentStatus,
    ErrorStage,
    ItemState,
    Job,
    JobKind,
    JobVersion,
    LogLine,
    LogStream,
    MetricRecord,
    Priority,
    Project,
    Queue,
    QueueItem,
    Run,
    RunSpec,
    RunState,
)
from launch_tui.core.settings import Settings, load_settings
from launch_tui.core.snapshots import create_snapshot
from launch_tui.core.store import engine as store_engine
from launch_tui.core.store import rows
from launch_tui.core.store.schema import (
    agents,
    events,
    items,
    job_aliases,
    job_versions,
    projects,
    queues,
    run_logs,
    run_metrics,
    runs,
)
from launch_tui.core.store.schema import (
    jobs as jobs_table,
)

# Which run states may follow which. Terminal states have no successors, which is
# what guarantees every run ends in exactly one terminal state.
_ACTIVE = {RunState.QUEUED, RunState.BUILDING, RunState.STARTING, RunState.RUNNING}
_TRANSITIONS: dict[RunState, set[RunState]] = {
    RunState.QUEUED: {RunState.BUILDING, RunState.STARTING, RunState.RUNNING, RunState.STOPPING}
    | TERMINAL_RUN_STATES,
    RunState.BUILDING: {RunState.STARTING, RunState.RUNNING, RunState.STOPPING}
    | TERMINAL_RUN_STATES,
    RunState.STARTING: {RunState.RUNNING, RunState.STOPPING} | TERMINAL_RUN_STATES,
    RunState.RUNNING: {RunState.STOPPING} | TERMINAL_RUN_STATES,
    RunState.STOPPING: set(TERMINAL_RUN_STATES),
}
_RUN_ID_ALPHABET = string.ascii_lowercase + string.digits
# An agent whose heartbeat is older than this is considered gone.
AGENT_STALE_S = 30.0


def new_run_id() -> str:
    """8 characters, starting with a letter so it never looks like an item number."""
    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(_RUN_ID_ALPHABET) for _ in range(7)
    )


@dataclass(frozen=True)
class JobVersionResult:
    version: JobVersion
    created: bool  # False when identical content already existed


class LaunchService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine, self._wengine = store_engine.create_engines(settings.store_url)
        self._sqlite = store_engine.is_sqlite(self._engine)
        self._waiters: set[asyncio.Event] = set()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, store: str | None = None, home: Path | str | None = None) -> LaunchService:
        settings = load_settings(Path(home) if home else None, store)
        svc = cls(settings)
        try:
            await store_engine.prepare(svc._engine, svc._wengine, settings.store_url)
        except BaseException:
            await svc._engine.dispose()
            raise
        return svc

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._notify()
            await self._engine.dispose()

    async def __aenter__(self) -> LaunchService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def artifacts(self) -> Path:
        return self.settings.artifacts

    def project_or_default(self, project: str | None) -> str:
        return project or self.settings.default_project

    # ------------------------------------------------------------------ plumbing

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        async with self._wengine.begin() as conn:
            yield conn
        self._notify()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.connect() as conn:
            yield conn

    def _notify(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    async def _emit(self, conn: AsyncConnection, *evs: Event) -> None:
        now = time.time()
        await conn.execute(
            events.insert(), [{"ts": now, "kind": e.kind, "payload": e.payload()} for e in evs]
        )

    async def _project_exists(self, conn: AsyncConnection, project: str) -> None:
        found = await conn.scalar(select(projects.c.name).where(projects.c.name == project))
        if found is None:
            raise NotFound(
                f"project: '{project}' does not exist (create it with "
                f"`launch-tui project create {project}`)."
            )

    async def _queue_row(self, conn: AsyncConnection, project: str, name: str) -> Any:
        row = (
            await conn.execute(
                select(queues).where(queues.c.project == project, queues.c.name == name)
            )
        ).first()
        if row is None:
            await self._project_exists(conn, project)
            known = (
                await conn.scalars(select(queues.c.name).where(queues.c.project == project))
            ).all()
            hint = f" (queues: {', '.join(known)})" if known else " (it has no queues yet)"
            raise NotFound(f"queue: '{name}' does not exist in project '{project}'{hint}.")
        return row

    async def _job_row(self, conn: AsyncConnection, project: str, name: str) -> Any:
        row = (
            await conn.execute(
                select(jobs_table).where(
                    jobs_table.c.project == project, jobs_table.c.name == name
                )
            )
        ).first()
        if row is None:
            await self._project_exists(conn, project)
            raise NotFound(f"job: '{name}' does not exist in project '{project}'.")
        return row

    async def _scoped(
        self, conn: AsyncConnection, query: Any, project: str, queue: str | None, queue_id: Any
    ) -> Any:
        """Restrict a joined item/run select to a project, and to one queue if given;
        an unknown project or queue raises NotFound naming it."""
        query = query.where(queues.c.project == project)
        if queue is None:
            await self._project_exists(conn, project)
            return query
        qrow = await self._queue_row(conn, project, queue)
        return query.where(queue_id == qrow.id)

    async def _aliases(self, conn: AsyncConnection, job_id: int) -> dict[str, int]:
        result = await conn.execute(
            select(job_aliases.c.alias, job_aliases.c.version).where(
                job_aliases.c.job_id == job_id
            )
        )
        return {a: v for a, v in result.all()}

    async def _version_row(self, conn: AsyncConnection, job: Any, tag: str | None) -> Any:
        """Resolve `None`/alias/`vN` to a job_versions row."""
        tag = tag or "latest"
        m = jobrules.VERSION_ALIAS_RE.match(tag)
        if m:
            number = int(m.group(1))
        else:
            aliases = await self._aliases(conn, job.id)
            if tag not in aliases:
                raise NotFound(
                    f"job: '{job.name}' has no alias '{tag}' "
                    f"(aliases: {', '.join(sorted(aliases))})."
                )
            number = aliases[tag]
        row = (
            await conn.execute(
                select(job_versions).where(
                    job_versions.c.job_id == job.id, job_versions.c.version == number
                )
            )
        ).first()
        if row is None:
            latest = await conn.scalar(
                select(func.max(job_versions.c.version)).where(job_versions.c.job_id == job.id)
            )
            raise NotFound(
                f"job: '{job.name}' has no version v{number} (versions v0 to v{latest})."
            )
        return row

    async def _version_snapshot(self, conn: AsyncConnection, job: Any, row: Any) -> JobVersion:
        aliases = await self._aliases(conn, job.id)
        mine = tuple(sorted(a for a, v in aliases.items() if v == row.version))
        return rows.to_version(job.project, job.name, row, mine)

    # ------------------------------------------------------------------ projects

    async def create_project(self, name: str) -> Project:
        jobrules.check_name(name, "project")
        now = time.time()
        try:
            async with self._tx() as conn:
                await conn.execute(projects.insert().values(name=name, created_at=now))
                await self._emit(conn, ProjectCreated(project=name))
        except IntegrityError:
            raise ConflictError(f"project: '{name}' already exists.") from None
        return Project(name=name, created_at=now)

    async def list_projects(self) -> list[Project]:
        async with self._read() as conn:
            result = await conn.execute(select(projects).order_by(projects.c.name))
            return [Project(name=r.name, created_at=r.created_at) for r in result]

    # ------------------------------------------------------------------ jobs

    async def create_code_job(
        self,
        path: str | Path,
        entrypoint: str | Sequence[str],
        *,
        name: str | None = None,
        project: str | None = None,
        aliases: Iterable[str] = (),
        config_defaults: dict[str, Any] | None = None,
        input_schema: dict[str, Any] | None = None,
        base_image: str | None = None,
    ) -> JobVersionResult:
        root = Path(path).expanduser()
        name = name or _name_from(os.path.basename(os.path.abspath(root)))
        jobrules.check_name(name, "name")
        ep = jobrules.parse_entrypoint(entrypoint)
        if base_image:
            jobrules.check_image(base_image)
        defaults, schema, inferred = _config_and_schema(config_defaults, input_schema)
        await self._ensure_project(self.project_or_default(project))
        snap = await asyncio.to_thread(
            create_snapshot, root, self.artifacts, self.settings.snapshot_max_bytes
        )
        source = {"snapshot": snap.digest, "files": snap.files, "bytes": snap.bytes}
        environment = {
            "requirements": "requirements.txt" if snap.has_requirements else None,
            "pyproject": snap.has_pyproject,
            "dockerfile": "Dockerfile" if snap.has_dockerfile else None,
            "python": snap.python_version or _python_version(),
            "base_image": base_image,
            "schema_inferred": inferred,
        }
        spec = jobrules.VersionSpec("code", ep, source, environment, defaults, schema)
        return await self._create_version(project, name, JobKind.CODE, spec, aliases)

    async def create_git_job(
        self,
        url: str,
        entrypoint: str | Sequence[str],
        *,
        ref: str | None = None,
        name: str | None = None,
        project: str | None = None,
        aliases: Iterable[str] = (),
        config_defaults: dict[str, Any] | None = None,
        input_schema: dict[str, Any] | None = None,
        base_image: str | None = None,
        requirements: str | None = "requirements.txt",
    ) -> JobVersionResult:
        jobrules.check_git_url(url)
        jobrules.check_git_ref(ref)
        name = name or _name_from(url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
                                  .removesuffix(".git"))
        jobrules.check_name(name, "name")
        ep = jobrules.parse_entrypoint(entrypoint)
        if base_image:
            jobrules.check_image(base_image)
        defaults, schema, inferred = _config_and_schema(config_defaults, input_schema)
        environment = {
            # A git job's files are unknown until it is checked out; builders look for
            # this file and carry on without it when it is absent.
            "requirements": requirements,
            "pyproject": False,
            "dockerfile": None,
            "python": _python_version(),
            "base_image": base_image,
            "schema_inferred": inferred,
        }
        spec = jobrules.VersionSpec("git", ep, {"url": url, "ref": ref}, environment, defaults,
                                    schema)
        return await self._create_version(project, name, JobKind.GIT, spec, aliases)

    async def create_image_job(
        self,
        image: str,
        *,
        entrypoint: str | Sequence[str] | None = None,
        name: str | None = None,
        project: str | None = None,
        aliases: Iterable[str] = (),
        config_defaults: dict[str, Any] | None = None,
        input_schema: dict[str, Any] | None = None,
    ) -> JobVersionResult:
        jobrules.check_image(image)
        ep = jobrules.parse_entrypoint(entrypoint) if entrypoint else ()
        repo = image.split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]
        name = name or _name_from(repo)
        jobrules.check_name(name, "name")
        defaults, schema, inferred = _config_and_schema(config_defaults, input_schema)
        environment = {"schema_inferred": inferred}
        spec = jobrules.VersionSpec("image", ep, {"image": image}, environment, defaults, schema)
        return await self._create_version(project, name, JobKind.IMAGE, spec, aliases)

    async def update_job_config(
        self,
        job_ref: str,
        config_defaults: dict[str, Any],
        *,
        project: str | None = None,
        input_schema: dict[str, Any] | None = None,
        aliases: Iterable[str] = (),
    ) -> JobVersionResult:
        """Make a new version of a job with other config defaults (same code and entrypoint)."""
        base = await self.job_version(job_ref, project=project)
        inferred = bool(base.environment.get("schema_inferred", True))
        if input_schema is not None:
            schema = jobrules.check_input_schema(input_schema)
            inferred = False
        elif inferred:
            schema = jobrules.infer_schema(config_defaults)
        else:
            schema = base.input_schema
        resolve.validate(config_defaults, schema, "config")
        environment = {**base.environment, "schema_inferred": inferred}
        spec = jobrules.VersionSpec(
            str(base.kind), base.entrypoint, base.source, environment, config_defaults, schema
        )
        return await self._create_version(base.project, base.job, base.kind, spec, aliases)

    async def _ensure_project(self, project: str) -> None:
        async with self._read() as conn:
            await self._project_exists(conn, project)

    async def _create_version(
        self,
        project: str | None,
        name: str,
        kind: JobKind,
        spec: jobrules.VersionSpec,
        aliases: Iterable[str],
    ) -> JobVersionResult:
        project = self.project_or_default(project)
        alias_list = [jobrules.check_alias(a) for a in aliases if a != "latest"]
        digest = spec.digest()
        now = time.time()
        table = jobs_table
        async with self._tx() as conn:
            await self._project_exists(conn, project)
            job = (
                await conn.execute(
                    select(table).where(table.c.project == project, table.c.name == name)
                )
            ).first()
            if job is None:
                job_id = (
                    await conn.execute(
                        table.insert().values(
                            project=project, name=name, kind=str(kind), created_at=now
                        )
                    )
                ).inserted_primary_key[0]
            else:
                if job.kind != str(kind):
                    raise ValidationError(
                        f"name: job '{name}' is a {job.kind} job; a {kind} job needs another "
                        "name.",
                        field="name",
                    )
                job_id = job.id
            existing = (
                await conn.execute(
                    select(job_versions).where(
                        job_versions.c.job_id == job_id, job_versions.c.digest == digest
                    )
                )
            ).first()
            created = existing is None
            if created:
                latest = await conn.scalar(
                    select(func.max(job_versions.c.version)).where(
                        job_versions.c.job_id == job_id
                    )
                )
                number = 0 if latest is None else latest + 1
                await conn.execute(
                    job_versions.insert().values(
                        job_id=job_id, version=number, digest=digest, spec=spec.to_dict(),
                        created_at=now,
                    )
                )
                await self._emit(
                    conn, JobVersionCreated(project=project, job=name, version=number)
                )
                alias_list = ["latest", *alias_list]
            else:
                number = existing.version
            for alias in alias_list:
                await self._set_alias(conn, job_id, alias, number)
                await self._emit(
                    conn, JobAliasSet(project=project, job=name, alias=alias, version=number)
                )
            row = (
                await conn.execute(
                    select(job_versions).where(
                        job_versions.c.job_id == job_id, job_versions.c.version == number
                    )
                )
            ).one()
            job_row = (await conn.execute(select(table).where(table.c.id == job_id))).one()
            version = await self._version_snapshot(conn, job_row, row)
        return JobVersionResult(version=version, created=created)

    async def _set_alias(self, conn: AsyncConnection, job_id: int, alias: str, number: int) -> None:
        updated = await conn.execute(
            update(job_aliases)
            .where(job_aliases.c.job_id == job_id, job_aliases.c.alias == alias)
            .values(version=number)
        )
        if updated.rowcount == 0:
            await conn.execute(
                job_aliases.insert().values(job_id=job_id, alias=alias, version=number)
            )

    async def set_alias(
        self, job_ref: str, alias: str, *, project: str | None = None
    ) -> JobVersion:
        jobrules.check_alias(alias)
        project = self.project_or_default(project)
        name, tag = jobrules.parse_job_ref(job_ref)
        async with self._tx() as conn:
            job = await self._job_row(conn, project, name)
            row = await self._version_row(conn, job, tag)
            await self._set_alias(conn, job.id, alias, row.version)
            await self._emit(
                conn, JobAliasSet(project=project, job=name, alias=alias, version=row.version)
            )
            return await self._version_snapshot(conn, job, row)

    async def list_jobs(self, project: str | None = None) -> list[Job]:
        project = self.project_or_default(project)
        table = jobs_table
        async with self._read() as conn:
            await self._project_exists(conn, project)
            job_rows = (
                await conn.execute(
                    select(table).where(table.c.project == project).order_by(table.c.name)
                )
            ).all()
            return [await self._job_snapshot(conn, j) for j in job_rows]

    async def _job_snapshot(self, conn: AsyncConnection, job: Any) -> Job:
        aliases = await self._aliases(conn, job.id)
        version_rows = (
            await conn.execute(
                select(job_versions)
                .where(job_versions.c.job_id == job.id)
                .order_by(job_versions.c.version)
            )
        ).all()
        by_version: dict[int, list[str]] = {}
        for a, v in aliases.items():
            by_version.setdefault(v, []).append(a)
        versions = tuple(
            rows.to_version(job.project, job.name, r, tuple(sorted(by_version.get(r.version, []))))
            for r in version_rows
        )
        return Job(
            project=job.project,
            name=job.name,
            kind=JobKind(job.kind),
            versions=versions,
            aliases=aliases,
            created_at=job.created_at,
        )

    async def get_job(self, name: str, *, project: str | None = None) -> Job:
        project = self.project_or_default(project)
        job_name, _ = jobrules.parse_job_ref(name)
        async with self._read() as conn:
            return await self._job_snapshot(conn, await self._job_row(conn, project, job_name))

    async def job_version(self, job_ref: str, *, project: str | None = None) -> JobVersion:
        project = self.project_or_default(project)
        name, tag = jobrules.parse_job_ref(job_ref)
        async with self._read() as conn:
            job = await self._job_row(conn, project, name)
            row = await self._version_row(conn, job, tag)
            return await self._version_snapshot(conn, job, row)

    # ------------------------------------------------------------------ queues

    async def create_queue(
        self,
        name: str,
        resource: str,
        config: dict[str, Any] | None = None,
        *,
        project: str | None = None,
    ) -> Queue:
        project = self.project_or_default(project)
        jobrules.check_name(name, "queue")
        registry.plugin(resource)
        parsed = resolve.parse_queue_config(resource, config or {})
        now = time.time()
        try:
            async with self._tx() as conn:
                await self._project_exists(conn, project)
                await conn.execute(
                    queues.insert().values(
                        project=project, name=name, resource=resource,
                        config=parsed.to_dict(), created_at=now, updated_at=now,
                    )
                )
                await self._emit(conn, QueueChanged(project=project, queue=name))
        except IntegrityError:
            raise ConflictError(
                f"queue: '{name}' already exists in project '{project}'."
            ) from None
        return await self.get_queue(name, project=project)

    async def update_queue(
        self,
        name: str,
        config: dict[str, Any],
        *,
        resource: str | None = None,
        project: str | None = None,
    ) -> Queue:
        """Replace a queue's config (and optionally its resource). Pending items keep
        their overrides; they are resolved against the new config when claimed."""
        project = self.project_or_default(project)
        async with self._tx() as conn:
            row = await self._queue_row(conn, project, name)
            new_resource = resource or row.resource
            registry.plugin(new_resource)
            parsed = resolve.parse_queue_config(new_resource, config)
            await conn.execute(
                update(queues)
                .where(queues.c.id == row.id)
                .values(resource=new_resource, config=parsed.to_dict(), updated_at=time.time())
            )
            await self._emit(conn, QueueChanged(project=project, queue=name))
        return await self.get_queue(name, project=project)

    async def list_queues(self, project: str | None = None) -> list[Queue]:
        project = self.project_or_default(project)
        async with self._read() as conn:
            await self._project_exists(conn, project)
            pending = dict(
                (
                    await conn.execute(
                        select(items.c.queue_id, func.count())
                        .where(items.c.state == ItemState.PENDING)
                        .group_by(items.c.queue_id)
                    )
                ).all()
            )
            result = await conn.execute(
                select(queues).where(queues.c.project == project).order_by(queues.c.name)
            )
            return [rows.to_queue(r, pending.get(r.id, 0)) for r in result]

    async def get_queue(self, name: str, *, project: str | None = None) -> Queue:
        project = self.project_or_default(project)
        async with self._read() as conn:
            row = await self._queue_row(conn, project, name)
            pending = await conn.scalar(
                select(func.count()).where(
                    items.c.queue_id == row.id, items.c.state == ItemState.PENDING
                )
            )
            return rows.to_queue(row, pending or 0)

    # ------------------------------------------------------------------ enqueue

    async def preview(
        self,
        job_ref: str,
        queue: str,
        *,
        project: str | None = None,
        config: dict[str, Any] | None = None,
        resource_args: dict[str, Any] | None = None,
        template_values: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The resolved spec an item would run with (macros shown as placeholders)."""
        project = self.project_or_default(project)
        version = await self.job_version(job_ref, project=project)
        q = await self.get_queue(queue, project=project)
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
        self,
        job_ref: str,
        queue: str,
        *,
        project: str | None = None,
        config: dict[str, Any] | None = None,
        resource_args: dict[str, Any] | None = None,
        template_values: dict[str, Any] | None = None,
        priority: Priority | str = Priority.MEDIUM,
    ) -> QueueItem:
        project = self.project_or_default(project)
        priority = _priority(priority)
        name, tag = jobrules.parse_job_ref(job_ref)
        now = time.time()
        async with self._tx() as conn:
            job = await self._job_row(conn, project, name)
            vrow = await self._version_row(conn, job, tag)
            version = rows.to_version(project, name, vrow, ())
            qrow = await self._queue_row(conn, project, queue)
            qconfig = rows.queue_config(qrow.config)
            # Validate everything now: nothing is enqueued that would fail later.
            resolve.effective_config(version.config_defaults, config or {}, version.input_schema)
            _, values = resolve.effective_resource_args(
                qrow.resource, qrow.name, qconfig, resource_args or {}, template_values or {}
            )
            item_id = (
                await conn.execute(
                    items.insert().values(
                        queue_id=qrow.id, job_id=job.id, version=vrow.version,
                        config_overrides=config or {}, resource_overrides=resource_args or {},
                        template_values=values, priority=priority.rank,
                        state=ItemState.PENDING, created_at=now, updated_at=now,
                    )
                )
            ).inserted_primary_key[0]
            await self._emit(
                conn,
                ItemEnqueued(project=project, queue=queue, item_id=item_id,
                             priority=str(priority)),
            )
            return await self._item(conn, item_id)

    async def requeue(self, target: str | int, *, priority: Priority | str | None = None
                      ) -> QueueItem:
        """Enqueue again what a run or item ran, with the same overrides."""
        item = await self._item_for(target)
        return await self.enqueue(
            f"{item.job}:v{item.version}",
            item.queue,
            project=item.project,
            config=item.config_overrides,
            resource_args=item.resource_overrides,
            template_values=item.template_values,
            priority=priority or item.priority,
        )

    async def _item_for(self, target: str | int) -> QueueItem:
        text = str(target).lstrip("#")
        if text.isdigit():
            return await self.get_item(int(text))
        run = await self.get_run(text)
        return await self.get_item(run.item_id)

    async def _item(self, conn: AsyncConnection, item_id: int) -> QueueItem:
        row = (await conn.execute(rows.item_select().where(items.c.id == item_id))).first()
        if row is None:
            raise NotFound(f"item: #{item_id} does not exist.")
        position = None
        if row.state == ItemState.PENDING:
            ahead = await conn.scalar(
                select(func.count()).where(
                    items.c.queue_id == row.queue_id,
                    items.c.state == ItemState.PENDING,
                    or_(
                        items.c.priority < row.priority,
                        and_(items.c.priority == row.priority, items.c.id < row.id),
                    ),
                )
            )
            position = (ahead or 0) + 1
        return rows.to_item(row, position)

    async def get_item(self, item_id: int) -> QueueItem:
        async with self._read() as conn:
            return await self._item(conn, item_id)

    async def list_items(
        self,
        queue: str | None = None,
        *,
        project: str | None = None,
        states: Iterable[ItemState | str] | None = (ItemState.PENDING,),
        limit: int | None = None,
    ) -> list[QueueItem]:
        """Items in the order they will be taken (priority, then first in first out)."""
        project = self.project_or_default(project)
        async with self._read() as conn:
            query = await self._scoped(conn, rows.item_select(), project, queue,
                                       items.c.queue_id)
            if states is not None:
                query = query.where(items.c.state.in_([str(s) for s in states]))
            query = query.order_by(queues.c.name, items.c.priority, items.c.id)
            if limit is not None:
                query = query.limit(limit)
            result = (await conn.execute(query)).all()
        out: list[QueueItem] = []
        counters: dict[str, int] = {}
        for r in result:
            position = None
            if r.state == ItemState.PENDING:
                counters[r.queue_name] = counters.get(r.queue_name, 0) + 1
                position = counters[r.queue_name]
            out.append(rows.to_item(r, position))
        return out

    # ------------------------------------------------------------------ cancel

    async def cancel(self, target: str | int, *, reason: str = "cancelled by user") -> str:
        """Cancel a pending item, or ask the agent to stop a run. Returns what was done."""
        text = str(target).lstrip("#")
        if text.isdigit():
            async with self._tx() as conn:
                item = await self._item(conn, int(text))
                if item.state in (ItemState.PENDING, ItemState.LEASED):
                    await self._set_item_state(conn, item, ItemState.CANCELLED, reason=reason,
                                               error_message=reason)
                    return f"item #{item.id} cancelled"
                if item.state != ItemState.CLAIMED or item.run_id is None:
                    raise ConflictError(f"item: #{item.id} is already {item.state}.")
                text = item.run_id
        async with self._tx() as conn:
            run = await self._run(conn, text)
            if run.state.terminal or run.state == RunState.STOPPING:
                raise ConflictError(f"run: {run.id} is already {run.state}.")
            await self._transition(conn, run, RunState.STOPPING, reason=reason)
        return f"run {run.id} stopping"

    async def _set_item_state(
        self,
        conn: AsyncConnection,
        item: QueueItem,
        state: ItemState,
        *,
        reason: str | None = None,
        agent: str | None = None,
        error_stage: ErrorStage | None = None,
        error_message: str | None = None,
        **values: Any,
    ) -> None:
        await conn.execute(
            update(items)
            .where(items.c.id == item.id)
            .values(
                state=state, updated_at=time.time(),
                error_stage=str(error_stage) if error_stage else None,
                error_message=error_message, **values,
            )
        )
        await self._emit(
            conn,
            ItemStateChanged(project=item.project, queue=item.queue, item_id=item.id,
                             state=str(state), agent=agent, reason=reason),
        )

    # ------------------------------------------------------------------ leases

    async def claim(
        self,
        agent: str,
        queue_names: Sequence[str],
        *,
        project: str | None = None,
        lease_s: float | None = None,
    ) -> QueueItem | None:
        """Lease the next pending item of the first queue (in the given order) that has one."""
        project = self.project_or_default(project)
        lease_s = lease_s if lease_s is not None else self.settings.lease_s
        now = time.time()
        async with self._tx() as conn:
            await self._expire_leases(conn, now)
            for name in queue_names:
                qrow = await self._queue_row(conn, project, name)
                query = (
                    select(items.c.id)
                    .where(items.c.queue_id == qrow.id, items.c.state == ItemState.PENDING)
                    .order_by(items.c.priority, items.c.id)
                    .limit(1)
                )
                if not self._sqlite:
                    query = query.with_for_update(skip_locked=True)
                item_id = await conn.scalar(query)
                if item_id is None:
                    continue
                item = await self._item(conn, item_id)
                await self._set_item_state(
                    conn, item, ItemState.LEASED, agent=agent, reason=f"leased by {agent}",
                    leased_by=agent, lease_expires=now + lease_s,
                )
                return await self._item(conn, item_id)
        return None

    async def _expire_leases(self, conn: AsyncConnection, now: float) -> None:
        expired = (
            await conn.execute(
                rows.item_select().where(
                    items.c.state == ItemState.LEASED, items.c.lease_expires < now
                )
            )
        ).all()
        for r in expired:
            item = rows.to_item(r)
            await self._set_item_state(
                conn, item, ItemState.PENDING,
                reason=f"lease of {item.leased_by} expired unacknowledged",
                leased_by=None, lease_expires=None,
            )

    async def expire_leases(self) -> None:
        async with self._tx() as conn:
            await self._expire_leases(conn, time.time())

    async def _leased_item(self, conn: AsyncConnection, item_id: int, agent: str) -> QueueItem:
        item = await self._item(conn, item_id)
        if item.state != ItemState.LEASED or item.leased_by != agent:
            raise ConflictError(
                f"item: #{item_id} is not leased by {agent} (it is {item.state}"
                + (f", leased by {item.leased_by}" if item.leased_by else "") + ")."
            )
        return item

    async def renew_lease(self, item_id: int, agent: str, lease_s: float | None = None) -> None:
        lease_s = lease_s if lease_s is not None else self.settings.lease_s
        async with self._tx() as conn:
            await self._leased_item(conn, item_id, agent)
            await conn.execute(
                update(items).where(items.c.id == item_id)
                .values(lease_expires=time.time() + lease_s)
            )

    async def release(self, item_id: int, agent: str, reason: str = "released") -> None:
        async with self._tx() as conn:
            item = await self._leased_item(conn, item_id, agent)
            await self._set_item_state(conn, item, ItemState.PENDING, reason=reason,
                                       agent=agent, leased_by=None, lease_expires=None)

    async def fail_item(
        self, item_id: int, agent: str, stage: ErrorStage, message: str
    ) -> None:
        async with self._tx() as conn:
            item = await self._leased_item(conn, item_id, agent)
            await self._set_item_state(conn, item, ItemState.FAILED, reason=message, agent=agent,
                                       error_stage=stage, error_message=message)

    async def acknowledge(self, item_id: int, agent: str) -> Run:
        """Turn a lease into a run: resolve the spec for real and record it.

        If the item no longer resolves (its queue config changed since it was
        enqueued), the item fails at stage `agent` and ValidationError is raised.
        """
        run_id = new_run_id()
        now = time.time()
        async with self._tx() as conn:
            item = await self._leased_item(conn, item_id, agent)
            qrow = await self._queue_row(conn, item.project, item.queue)
            job = await self._job_row(conn, item.project, item.job)
            vrow = await self._version_row(conn, job, f"v{item.version}")
            try:
                spec = _resolve_spec(run_id, item, rows.to_version(item.project, item.job, vrow,
                                                                    ()), qrow)
            except ValidationError as exc:
                await self._set_item_state(
                    conn, item, ItemState.FAILED, reason=str(exc), agent=agent,
                    error_stage=ErrorStage.AGENT, error_message=str(exc),
                )
                failed = exc
            else:
                failed = None
                timestamps = {"leased": item.updated_at, str(RunState.QUEUED): now}
                await conn.execute(
                    runs.insert().values(
                        id=run_id, item_id=item.id, queue_id=qrow.id, job_id=job.id,
                        version=item.version, agent=agent, state=RunState.QUEUED,
                        spec=spec.to_dict(), timestamps=timestamps, created_at=now,
                        updated_at=now,
                    )
                )
                await self._set_item_state(
                    conn, item, ItemState.CLAIMED, agent=agent, reason=f"run {run_id}",
                    run_id=run_id, lease_expires=None,
                )
                await self._emit(
                    conn,
                    RunStateChanged(project=item.project, queue=item.queue, run_id=run_id,
                                    item_id=item.id, state=str(RunState.QUEUED)),
                )
        if failed is not None:
            raise failed
        return await self.get_run(run_id)

    # ------------------------------------------------------------------ runs

    async def _run(self, conn: AsyncConnection, run_id: str) -> Run:
        row = (await conn.execute(rows.run_select().where(runs.c.id == run_id))).first()
        if row is None:
            raise NotFound(f"run: '{run_id}' does not exist.")
        return rows.to_run(row)

    async def get_run(self, run_id: str) -> Run:
        async with self._read() as conn:
            return await self._run(conn, run_id)

    async def list_runs(
        self,
        queue: str | None = None,
        *,
        project: str | None = None,
        states: Iterable[RunState | str] | None = None,
        agent: str | None = None,
        limit: int | None = None,
    ) -> list[Run]:
        """Newest first."""
        project = self.project_or_default(project)
        async with self._read() as conn:
            query = await self._scoped(conn, rows.run_select(), project, queue,
                                       runs.c.queue_id)
            if states is not None:
                query = query.where(runs.c.state.in_([str(RunState(s)) for s in states]))
            if agent is not None:
                query = query.where(runs.c.agent == agent)
            query = query.order_by(runs.c.created_at.desc(), runs.c.id)
            if limit is not None:
                query = query.limit(limit)
            return [rows.to_run(r) for r in (await conn.execute(query)).all()]

    async def agent_runs(self, agent: str) -> list[Run]:
        """Runs an agent owns that have not ended (what it must re-attach to)."""
        async with self._read() as conn:
            query = rows.run_select().where(
                runs.c.agent == agent,
                runs.c.state.not_in([str(s) for s in TERMINAL_RUN_STATES]),
            ).order_by(runs.c.created_at)
            return [rows.to_run(r) for r in (await conn.execute(query)).all()]

    async def set_run_state(
        self,
        run_id: str,
        state: RunState,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
        error_stage: ErrorStage | None = None,
        error_message: str | None = None,
        handle: dict[str, Any] | None = None,
        spec: RunSpec | None = None,
    ) -> Run:
        async with self._tx() as conn:
            run = await self._run(conn, run_id)
            return await self._transition(
                conn, run, state, reason=reason, exit_code=exit_code, error_stage=error_stage,
                error_message=error_message, handle=handle, spec=spec,
            )

    async def update_run(
        self, run_id: str, *, handle: dict[str, Any] | None = None, spec: RunSpec | None = None,
        reason: str | None = None,
    ) -> None:
        """Record details (backend handle, resolved spec) without changing state."""
        values: dict[str, Any] = {"updated_at": time.time()}
        if handle is not None:
            values["handle"] = handle
        if spec is not None:
            values["spec"] = spec.to_dict()
        if reason is not None:
            values["reason"] = reason
        async with self._tx() as conn:
            await self._run(conn, run_id)
            await conn.execute(update(runs).where(runs.c.id == run_id).values(**values))

    async def _transition(
        self,
        conn: AsyncConnection,
        run: Run,
        state: RunState,
        *,
        reason: str | None = None,
        exit_code: int | None = None,
        error_stage: ErrorStage | None = None,
        error_message: str | None = None,
        handle: dict[str, Any] | None = None,
        spec: RunSpec | None = None,
    ) -> Run:
        if state == run.state:
            return run
        if state not in _TRANSITIONS.get(run.state, set()):
            raise ConflictError(f"run: {run.id} cannot go from {run.state} to {state}.")
        now = time.time()
        values: dict[str, Any] = {
            "state": state,
            "updated_at": now,
            "timestamps": {**run.timestamps, str(state): now},
            "reason": reason,
        }
        if exit_code is not None:
            values["exit_code"] = exit_code
        if error_stage is not None:
            values["error_stage"] = str(error_stage)
            values["error_message"] = error_message
        if handle is not None:
            values["handle"] = handle
        if spec is not None:
            values["spec"] = spec.to_dict()
        await conn.execute(update(runs).where(runs.c.id == run.id).values(**values))
        await self._emit(
            conn,
            RunStateChanged(project=run.project, queue=run.queue, run_id=run.id,
                            item_id=run.item_id, state=str(state), reason=reason),
        )
        return await self._run(conn, run.id)

    # ------------------------------------------------------------------ logs & metrics

    async def append_logs(
        self, run_id: str, lines: Sequence[tuple[float, LogStream | str, str]]
    ) -> None:
        """Store a batch of (timestamp, stream, text) lines and announce it with one event."""
        if not lines:
            return
        async with self._tx() as conn:
            first = None
            last = None
            result = await conn.execute(
                run_logs.insert().returning(run_logs.c.id),
                [{"run_id": run_id, "ts": ts, "stream": str(stream), "text": text}
                 for ts, stream, text in lines],
            )
            ids = [r[0] for r in result.all()]
            first, last = min(ids), max(ids)
            await self._emit(
                conn, RunLogAppended(run_id=run_id, first_id=first, last_id=last, lines=len(ids))
            )

    async def run_logs(
        self, run_id: str, *, after: int = 0, limit: int = 1000,
        streams: Iterable[LogStream | str] | None = None,
    ) -> list[LogLine]:
        async with self._read() as conn:
            query = select(run_logs).where(run_logs.c.run_id == run_id, run_logs.c.id > after)
            if streams is not None:
                query = query.where(run_logs.c.stream.in_([str(s) for s in streams]))
            result = await conn.execute(query.order_by(run_logs.c.id).limit(limit))
            return [rows.to_log(r) for r in result]

    async def output_line_count(self, run_id: str) -> int:
        """How many lines of the run's own output are stored (log lines plus metric records).

        An agent re-attaching after a restart skips this many lines of the backend's replay.
        """
        async with self._read() as conn:
            lines = await conn.scalar(
                select(func.count()).where(
                    run_logs.c.run_id == run_id,
                    run_logs.c.stream.in_([str(LogStream.STDOUT), str(LogStream.STDERR)]),
                )
            )
            records = await conn.scalar(
                select(func.count()).where(run_metrics.c.run_id == run_id)
            )
            return (lines or 0) + (records or 0)

    async def tail_logs(self, run_id: str, lines: int = 200) -> list[LogLine]:
        async with self._read() as conn:
            result = await conn.execute(
                select(run_logs).where(run_logs.c.run_id == run_id)
                .order_by(run_logs.c.id.desc()).limit(lines)
            )
            return [rows.to_log(r) for r in reversed(result.all())]

    async def record_metrics(
        self, run_id: str, records: Sequence[tuple[int, float, dict[str, float]]]
    ) -> None:
        if not records:
            return
        async with self._tx() as conn:
            await conn.execute(
                run_metrics.insert(),
                [{"run_id": run_id, "step": s, "ts": ts, "values": v} for s, ts, v in records],
            )
            step, _, values = records[-1]
            await self._emit(conn, RunMetricsLogged(run_id=run_id, step=step, values=values))

    async def run_metrics(self, run_id: str) -> list[MetricRecord]:
        async with self._read() as conn:
            result = await conn.execute(
                select(run_metrics).where(run_metrics.c.run_id == run_id)
                .order_by(run_metrics.c.id)
            )
            return [rows.to_metric(r) for r in result]

    # ------------------------------------------------------------------ agents

    async def register_agent(
        self,
        name: str,
        queue_names: Sequence[str],
        *,
        project: str | None = None,
        max_jobs: int = 1,
    ) -> Agent:
        """Record an agent as started. A name already used by a live agent is refused."""
        jobrules.check_name(name, "agent")
        if max_jobs < 1:
            raise ValidationError("max_jobs: must be at least 1.", field="max_jobs")
        if not queue_names:
            raise ValidationError("queues: an agent needs at least one queue (-q).", field="queues")
        project = self.project_or_default(project)
        now = time.time()
        host = socket.gethostname()
        pid = os.getpid()
        async with self._tx() as conn:
            for q in queue_names:
                await self._queue_row(conn, project, q)
            row = (await conn.execute(select(agents).where(agents.c.name == name))).first()
            if row is not None and _agent_alive(row, now):
                raise ConflictError(
                    f"agent: '{name}' is already running (pid {row.pid} on {row.host}); "
                    "choose another --name."
                )
            # Leases this agent took in a previous life and never acknowledged go back.
            leased = (
                await conn.execute(
                    rows.item_select().where(
                        items.c.state == ItemState.LEASED, items.c.leased_by == name
                    )
                )
            ).all()
            for r in leased:
                await self._set_item_state(
                    conn, rows.to_item(r), ItemState.PENDING, agent=name,
                    reason=f"{name} restarted before acknowledging it",
                    leased_by=None, lease_expires=None,
                )
            values = dict(
                project=project, queues=list(queue_names), status=AgentStatus.POLLING,
                max_jobs=max_jobs, running=0, heartbeat_at=now, started_at=now, host=host,
                pid=pid,
            )
            if row is None:
                await conn.execute(agents.insert().values(name=name, **values))
            else:
                await conn.execute(update(agents).where(agents.c.name == name).values(**values))
            await self._emit(
                conn, AgentHeartbeat(agent=name, status=str(AgentStatus.POLLING), running=0)
            )
            row = (await conn.execute(select(agents).where(agents.c.name == name))).one()
            return rows.to_agent(row)

    async def agent_heartbeat(self, name: str, status: AgentStatus, running: int) -> None:
        async with self._tx() as conn:
            await conn.execute(
                update(agents).where(agents.c.name == name)
                .values(status=status, running=running, heartbeat_at=time.time())
            )
            await self._emit(conn, AgentHeartbeat(agent=name, status=str(status), running=running))

    async def agent_log(
        self, name: str, message: str, *, level: str = "info", run_id: str | None = None
    ) -> None:
        async with self._tx() as conn:
            await self._emit(conn, AgentLog(agent=name, level=level, message=message,
                                            run_id=run_id))

    async def list_agents(self) -> list[Agent]:
        async with self._read() as conn:
            result = await conn.execute(select(agents).order_by(agents.c.name))
            return [rows.to_agent(r) for r in result]

    async def agent_logs(self, agent: str | None = None, limit: int = 200) -> list[AgentLog]:
        """The newest `limit` log lines (of one agent, or of all), oldest first."""
        query = select(events).where(events.c.kind == AgentLog.kind)
        if agent is not None:
            # Filtered in the query: other agents' lines must not crowd this one's out.
            query = query.where(events.c.payload["agent"].as_string() == agent)
        async with self._read() as conn:
            result = await conn.execute(query.order_by(events.c.seq.desc()).limit(limit))
            out = []
            for r in result:
                ev = decode(r.seq, r.ts, r.kind, r.payload)
                if isinstance(ev, AgentLog) and (agent is None or ev.agent == agent):
                    out.append(ev)
            return list(reversed(out[:limit]))

    # ------------------------------------------------------------------ change feed

    async def last_event_seq(self) -> int:
        async with self._read() as conn:
            return (await conn.scalar(select(func.max(events.c.seq)))) or 0

    async def events_after(self, seq: int, limit: int = 500) -> list[Event]:
        async with self._read() as conn:
            result = await conn.execute(
                select(events).where(events.c.seq > seq).order_by(events.c.seq).limit(limit)
            )
            out = []
            for r in result:
                ev = decode(r.seq, r.ts, r.kind, r.payload)
                if ev is not None:
                    out.append(ev)
            return out

    async def subscribe(
        self, after: int | None = None, poll_s: float = 0.2
    ) -> AsyncIterator[Event]:
        """Every event after `after` (default: from now on), as it is written by any process.

        Changes made through this service object wake subscribers at once; changes
        from other processes are seen within `poll_s`.
        """
        last = await self.last_event_seq() if after is None else after
        wake = asyncio.Event()
        self._waiters.add(wake)
        try:
            while not self._closed:
                wake.clear()
                batch = await self.events_after(last)
                for ev in batch:
                    last = ev.seq
                    yield ev
                if len(batch) >= 500:
                    continue
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # cancellation that races with the event being set, hanging shutdown.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll_s):
                        await wake.wait()
        finally:
            self._waiters.discard(wake)


# ---------------------------------------------------------------------- helpers


def _name_from(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in text).strip("-._")
    return cleaned or "job"


def _python_version() -> str:
    import sys

    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _priority(value: Priority | str) -> Priority:
    try:
        return Priority(value)
    except ValueError:
        raise ValidationError(
            f"priority: '{value}' must be one of critical, high, medium, low.", field="priority"
        ) from None


def _config_and_schema(
    defaults: dict[str, Any] | None, schema: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    defaults = defaults or {}
    if schema is None:
        return defaults, jobrules.infer_schema(defaults), True
    schema = jobrules.check_input_schema(schema)
    # Defaults the schema declares but the config file left out.
    for key, prop in schema.get("properties", {}).items():
        if key not in defaults and isinstance(prop, dict) and "default" in prop:
            defaults = {**defaults, key: prop["default"]}
    resolve.validate(defaults, schema, "config")
    return defaults, schema, False


def _agent_alive(row: Any, now: float) -> bool:
    if row.status == AgentStatus.STOPPED or now - row.heartbeat_at > AGENT_STALE_S:
        return False
    if row.host == socket.gethostname():
        if row.pid == os.getpid():
            return False  # this process restarting its own agent
        try:
            os.kill(row.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


def _resolve_spec(run_id: str, item: QueueItem, version: JobVersion, qrow: Any) -> RunSpec:
    qconfig = rows.queue_config(qrow.config)
    config = resolve.effective_config(
        version.config_defaults, item.config_overrides, version.input_schema
    )
    macros = {"run_id": run_id, "project_name": item.project, "queue_name": item.queue}
    args, _ = resolve.effective_resource_args(
        qrow.resource, qrow.name, qconfig, item.resource_overrides, item.template_values, macros
    )
    env = resolve.job_environment(
        run_id=run_id, project=item.project, job=item.job, version=item.version, config=config,
        queue_config=qconfig,
    )
    return RunSpec(
        run_id=run_id,
        project=item.project,
        queue=item.queue,
        resource=qrow.resource,
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
        queue_config=qconfig.to_dict(),
        image=version.source.get("image"),
    )
