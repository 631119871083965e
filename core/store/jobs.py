"""Queries on jobs, their versions and their aliases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, and_, bindparam, func, select, update
from sqlalchemy.engine import Connection

from launch_tui.core.store.prepared import Prepared
from launch_tui.core.store.schema import job_aliases, job_versions, jobs

_FIND = Prepared(select(jobs).where(jobs.c.project == bindparam("project"),
                                    jobs.c.name == bindparam("name")))
_ALIAS = Prepared(select(job_aliases.c.version).where(
    job_aliases.c.job_id == bindparam("job_id"), job_aliases.c.alias == bindparam("alias")))

_FIND_WITH_ALIAS = Prepared(
    select(jobs, job_aliases.c.version.label("alias_version"))
    .select_from(jobs.outerjoin(job_aliases, and_(job_aliases.c.job_id == jobs.c.id,
                                                  job_aliases.c.alias == bindparam("alias"))))
    .where(jobs.c.project == bindparam("project"), jobs.c.name == bindparam("name"))
)


def find(conn: Connection, project: str, name: str) -> Any | None:
    return _FIND.first(conn, project=project, name=name)


def find_with_alias(conn: Connection, project: str, name: str, alias: str) -> Any | None:
    """The jobs row, with the version `alias` points at as `alias_version` (None when
    the job has no such alias); None when there is no such job. One statement."""
    return _FIND_WITH_ALIAS.first(conn, project=project, name=name, alias=alias)


def by_id(conn: Connection, job_id: int) -> Row[Any]:
    return conn.execute(select(jobs).where(jobs.c.id == job_id)).one()


def add(conn: Connection, project: str, name: str, kind: str, created_at: float) -> int:
    result = conn.execute(
        jobs.insert().values(project=project, name=name, kind=kind, created_at=created_at)
    )
    return int(result.inserted_primary_key[0])


def in_project(conn: Connection, project: str) -> list[Row[Any]]:
    result = conn.execute(select(jobs).where(jobs.c.project == project).order_by(jobs.c.name))
    return list(result.all())


def aliases(conn: Connection, job_id: int) -> dict[str, int]:
    """alias -> version number."""
    result = conn.execute(
        select(job_aliases.c.alias, job_aliases.c.version).where(job_aliases.c.job_id == job_id)
    )
    return {a: v for a, v in result.all()}


def alias(conn: Connection, job_id: int, name: str) -> int | None:
    """The version one alias points at (None: no such alias)."""
    return _ALIAS.scalar(conn, job_id=job_id, alias=name)  # type: ignore[no-any-return]


def set_alias(conn: Connection, job_id: int, alias: str, version: int) -> None:
    """Point an alias at a version, creating the alias if it is new."""
    updated = conn.execute(
        update(job_aliases)
        .where(job_aliases.c.job_id == job_id, job_aliases.c.alias == alias)
        .values(version=version)
    )
    if updated.rowcount == 0:
        conn.execute(job_aliases.insert().values(job_id=job_id, alias=alias, version=version))


def version(conn: Connection, job_id: int, number: int) -> Row[Any] | None:
    return conn.execute(
        select(job_versions).where(job_versions.c.job_id == job_id,
                                   job_versions.c.version == number)
    ).first()


def version_with_job(conn: Connection, job_id: int, number: int) -> Row[Any] | None:
    """A version row with its job's project and name (`project`, `job_name`)."""
    return conn.execute(
        select(job_versions, jobs.c.project, jobs.c.name.label("job_name"))
        .select_from(job_versions.join(jobs, job_versions.c.job_id == jobs.c.id))
        .where(job_versions.c.job_id == job_id, job_versions.c.version == number)
    ).first()


def version_with_digest(conn: Connection, job_id: int, digest: str) -> Row[Any] | None:
    return conn.execute(
        select(job_versions).where(job_versions.c.job_id == job_id,
                                   job_versions.c.digest == digest)
    ).first()


def latest_version(conn: Connection, job_id: int) -> int | None:
    return conn.scalar(
        select(func.max(job_versions.c.version)).where(job_versions.c.job_id == job_id)
    )


def versions(conn: Connection, job_id: int) -> list[Row[Any]]:
    """Every version of a job, oldest first."""
    result = conn.execute(
        select(job_versions).where(job_versions.c.job_id == job_id)
        .order_by(job_versions.c.version)
    )
    return list(result.all())


def add_version(conn: Connection, job_id: int, number: int, digest: str, spec: dict[str, Any],
                created_at: float) -> None:
    conn.execute(
        job_versions.insert().values(
            job_id=job_id, version=number, digest=digest, spec=spec, created_at=created_at
        )
    )
