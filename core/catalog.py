"""The catalog: projects, jobs, their versions and aliases.

A job version is content-addressed: creating a job from content identical to an
existing version returns that version instead of making a new one. `latest`
always points at the newest version; other aliases point wherever users set them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch_tui.core import jobs as jobrules
from launch_tui.core import resolve
from launch_tui.core.errors import ConflictError, ValidationError
from launch_tui.core.events import JobAliasSet, JobVersionCreated, ProjectCreated
from launch_tui.core.lookups import project_or_default, require_project
from launch_tui.core.model import Job, JobKind, JobVersion, Project
from launch_tui.core.settings import Settings
from launch_tui.core.snapshot_blobs import (
    BlobIncomplete,
    SnapshotBlobs,
    Upload,
    require_complete,
)
from launch_tui.core.snapshots import stage_snapshot
from launch_tui.core.store import jobs as jobs_db
from launch_tui.core.store import projects as projects_db
from launch_tui.core.store import rows
from launch_tui.core.store.session import Conn, Row, Store
from launch_tui.core.versions import require_job, require_version


@dataclass(frozen=True)
class JobVersionResult:
    version: JobVersion
    created: bool  # False when identical content already existed


# Uploads of one snapshot tried before giving up, when another process's refused job
# takes the same content back from the store between the upload and the commit.
UPLOAD_ATTEMPTS = 3


class Catalog:
    def __init__(self, store: Store, settings: Settings,
                 snapshots: SnapshotBlobs | None = None) -> None:
        self._store = store
        self._settings = settings
        self._snapshots = snapshots or SnapshotBlobs(store, settings.artifacts)

    # ------------------------------------------------------------------ projects

    async def create_project(self, name: str) -> Project:
        jobrules.check_name(name, "project")
        now = self._store.now()

        def tx(conn: Conn) -> None:
            if not projects_db.add(conn, name, now):
                raise ConflictError(f"project: '{name}' already exists.")
            self._store.emit(conn, ProjectCreated(project=name))

        await self._store.write(tx)
        return Project(name=name, created_at=now)

    async def list_projects(self) -> list[Project]:
        return await self._store.read(projects_db.every)

    # ------------------------------------------------------------------ creating versions

    async def create_code_job(
        self, path: str | Path, entrypoint: str | Sequence[str], *, name: str | None,
        project: str | None, aliases: Iterable[str], config_defaults: dict[str, Any] | None,
        input_schema: dict[str, Any] | None, base_image: str | None,
    ) -> JobVersionResult:
        root = Path(path).expanduser()
        name = name or _name_from(os.path.basename(os.path.abspath(root)))
        # Everything that needs no files is checked before the snapshot is taken.
        jobrules.check_name(name, "name")
        ep = jobrules.parse_entrypoint(entrypoint)
        if base_image:
            jobrules.check_image(base_image)
        aliases = [jobrules.check_alias(a) for a in aliases if a != "latest"]
        defaults, schema, inferred = _config_and_schema(config_defaults, input_schema)
        await self._store.read(require_project, project_or_default(self._settings, project))
        staged = await asyncio.to_thread(
            stage_snapshot, root, self._settings.artifacts, self._settings.snapshot_max_bytes
        )
        snap = staged.snapshot
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
        upload = Upload()
        try:
            # The blob is complete before the version that names it commits (checked
            # in that transaction), so an agent anywhere can fetch what it names.
            for attempt in range(1, UPLOAD_ATTEMPTS + 1):
                await self._snapshots.upload(staged, upload)
                try:
                    result = await self._create_version(project, name, JobKind.CODE, spec,
                                                        aliases, snapshot=snap.digest)
                    break
                except BlobIncomplete:
                    if attempt == UPLOAD_ATTEMPTS:
                        raise
        except BaseException:
            # Refused (another kind of job by that name, …): the copy and the blob this
            # call stored go; content already in place, which other versions share, stays.
            await asyncio.to_thread(staged.discard)
            if upload.created:
                # Best effort: what is left (the store failed) `gc` removes later.
                with contextlib.suppress(Exception):
                    await self._snapshots.forget(snap.digest)
            raise
        await asyncio.to_thread(staged.publish)
        return result

    async def create_git_job(
        self, url: str, entrypoint: str | Sequence[str], *, ref: str | None, name: str | None,
        project: str | None, aliases: Iterable[str], config_defaults: dict[str, Any] | None,
        input_schema: dict[str, Any] | None, base_image: str | None, requirements: str | None,
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
        self, image: str, *, entrypoint: str | Sequence[str] | None, name: str | None,
        project: str | None, aliases: Iterable[str], config_defaults: dict[str, Any] | None,
        input_schema: dict[str, Any] | None,
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
        self, job_ref: str, config_defaults: dict[str, Any], *, project: str | None,
        input_schema: dict[str, Any] | None, aliases: Iterable[str],
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

    async def _create_version(
        self, project: str | None, name: str, kind: JobKind, spec: jobrules.VersionSpec,
        aliases: Iterable[str], *, snapshot: str | None = None,
    ) -> JobVersionResult:
        project = project_or_default(self._settings, project)
        alias_list: list[str] = [jobrules.check_alias(a) for a in aliases if a != "latest"]
        digest = spec.digest()
        now = self._store.now()
        store = self._store

        def tx(conn: Conn) -> tuple[JobVersion, bool]:
            require_project(conn, project)
            if snapshot is not None:
                require_complete(conn, snapshot)
            job = jobs_db.find(conn, project, name)
            if job is None:
                job_id = jobs_db.add(conn, project, name, str(kind), now)
            else:
                if job.kind != str(kind):
                    raise ValidationError(
                        f"name: job '{name}' is a {job.kind} job; a {kind} job needs another "
                        "name.",
                        field="name",
                    )
                job_id = job.id
            aliases = alias_list
            existing = jobs_db.version_with_digest(conn, job_id, digest)
            if existing is None:
                latest = jobs_db.latest_version(conn, job_id)
                number = 0 if latest is None else latest + 1
                jobs_db.add_version(conn, job_id, number, digest, spec.to_dict(), now)
                store.emit(conn, JobVersionCreated(project=project, job=name, version=number))
                aliases = ["latest", *aliases]
            else:
                number = existing.version
            for alias in aliases:
                jobs_db.set_alias(conn, job_id, alias, number)
                store.emit(
                    conn, JobAliasSet(project=project, job=name, alias=alias, version=number)
                )
            row = jobs_db.version(conn, job_id, number)
            assert row is not None  # written or found above, in this transaction
            return _version_snapshot(conn, jobs_db.by_id(conn, job_id), row), existing is None

        version, created = await store.write(tx)
        return JobVersionResult(version=version, created=created)

    # ------------------------------------------------------------------ aliases and reading

    async def set_alias(self, job_ref: str, alias: str, *, project: str | None) -> JobVersion:
        jobrules.check_alias(alias)
        project = project_or_default(self._settings, project)
        name, tag = jobrules.parse_job_ref(job_ref)

        def tx(conn: Conn) -> JobVersion:
            job = require_job(conn, project, name)
            row = require_version(conn, job, tag)
            jobs_db.set_alias(conn, job.id, alias, row.version)
            self._store.emit(
                conn, JobAliasSet(project=project, job=name, alias=alias, version=row.version)
            )
            return _version_snapshot(conn, job, row)

        return await self._store.write(tx)

    async def list_jobs(self, project: str | None) -> list[Job]:
        project = project_or_default(self._settings, project)

        def query(conn: Conn) -> list[Job]:
            require_project(conn, project)
            return [_job_snapshot(conn, j) for j in jobs_db.in_project(conn, project)]

        return await self._store.read(query)

    async def get_job(self, name: str, *, project: str | None) -> Job:
        project = project_or_default(self._settings, project)
        job_name, _ = jobrules.parse_job_ref(name)
        return await self._store.read(
            lambda conn: _job_snapshot(conn, require_job(conn, project, job_name)))

    async def job_version(self, job_ref: str, *, project: str | None) -> JobVersion:
        project = project_or_default(self._settings, project)
        name, tag = jobrules.parse_job_ref(job_ref)

        def query(conn: Conn) -> JobVersion:
            job = require_job(conn, project, name)
            return _version_snapshot(conn, job, require_version(conn, job, tag))

        return await self._store.read(query)


def _version_snapshot(conn: Conn, job: Row, row: Row) -> JobVersion:
    aliases = jobs_db.aliases(conn, job.id)
    mine = tuple(sorted(a for a, v in aliases.items() if v == row.version))
    return rows.to_version(job.project, job.name, row, mine)


def _job_snapshot(conn: Conn, job: Row) -> Job:
    aliases = jobs_db.aliases(conn, job.id)
    by_version: dict[int, list[str]] = {}
    for a, v in aliases.items():
        by_version.setdefault(v, []).append(a)
    versions = tuple(
        rows.to_version(job.project, job.name, r, tuple(sorted(by_version.get(r.version, []))))
        for r in jobs_db.versions(conn, job.id)
    )
    return Job(
        project=job.project,
        name=job.name,
        kind=JobKind(job.kind),
        versions=versions,
        aliases=aliases,
        created_at=job.created_at,
    )


def _name_from(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in text).strip("-._")
    return cleaned or "job"


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _config_and_schema(
    defaults: dict[str, Any] | None, schema: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Config defaults and input schema of a new job: the schema is inferred from the
    defaults when not given (third value True), else checked and its declared
    defaults filled in; the defaults must satisfy it."""
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
