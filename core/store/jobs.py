"""Queries on jobs, their versions and their aliases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from launch_tui.core.store.schema import job_aliases, job_versions, jobs


async def find(conn: AsyncConnection, project: str, name: str) -> Row[Any] | None:
    return (
        await conn.execute(select(jobs).where(jobs.c.project == project, jobs.c.name == name))
    ).first()


async def by_id(conn: AsyncConnection, job_id: int) -> Row[Any]:
    return (await conn.execute(select(jobs).where(jobs.c.id == job_id))).one()


async def add(conn: AsyncConnection, project: str, name: str, kind: str,
              created_at: float) -> int:
    result = await conn.execute(
        jobs.insert().values(project=project, name=name, kind=kind, created_at=created_at)
    )
    return int(result.inserted_primary_key[0])


async def in_project(conn: AsyncConnection, project: str) -> list[Row[Any]]:
    result = await conn.execute(
        select(jobs).where(jobs.c.project == project).order_by(jobs.c.name)
    )
    return list(result.all())


async def aliases(conn: AsyncConnection, job_id: int) -> dict[str, int]:
    """alias -> version number."""
    result = await conn.execute(
        select(job_aliases.c.alias, job_aliases.c.version).where(job_aliases.c.job_id == job_id)
    )
    return {a: v for a, v in result.all()}


async def set_alias(conn: AsyncConnection, job_id: int, alias: str, version: int) -> None:
    """Point an alias at a version, creating the alias if it is new."""
    updated = await conn.execute(
        update(job_aliases)
        .where(job_aliases.c.job_id == job_id, job_aliases.c.alias == alias)
        .values(version=version)
    )
    if updated.rowcount == 0:
        await conn.execute(job_aliases.insert().values(job_id=job_id, alias=alias, version=version))


async def version(conn: AsyncConnection, job_id: int, number: int) -> Row[Any] | None:
    return (
        await conn.execute(
            select(job_versions).where(
                job_versions.c.job_id == job_id, job_versions.c.version == number
            )
        )
    ).first()


async def version_with_digest(conn: AsyncConnection, job_id: int, digest: str
                              ) -> Row[Any] | None:
    return (
        await conn.execute(
            select(job_versions).where(
                job_versions.c.job_id == job_id, job_versions.c.digest == digest
            )
        )
    ).first()


async def latest_version(conn: AsyncConnection, job_id: int) -> int | None:
    return await conn.scalar(
        select(func.max(job_versions.c.version)).where(job_versions.c.job_id == job_id)
    )


async def versions(conn: AsyncConnection, job_id: int) -> list[Row[Any]]:
    """Every version of a job, oldest first."""
    result = await conn.execute(
        select(job_versions).where(job_versions.c.job_id == job_id)
        .order_by(job_versions.c.version)
    )
    return list(result.all())


async def add_version(conn: AsyncConnection, job_id: int, number: int, digest: str,
                      spec: dict[str, Any], created_at: float) -> None:
    await conn.execute(
        job_versions.insert().values(
            job_id=job_id, version=number, digest=digest, spec=spec, created_at=created_at
        )
    )
