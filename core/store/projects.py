"""Queries on the projects table."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from launch_tui.core.model import Project
from launch_tui.core.store.schema import projects


async def exists(conn: AsyncConnection, name: str) -> bool:
    return await conn.scalar(select(projects.c.name).where(projects.c.name == name)) is not None


async def add(conn: AsyncConnection, name: str, created_at: float) -> bool:
    """Insert a project; False when the name is taken (the caller's transaction is then
    unusable and must be abandoned)."""
    try:
        await conn.execute(projects.insert().values(name=name, created_at=created_at))
    except IntegrityError:
        return False
    return True


async def every(conn: AsyncConnection) -> list[Project]:
    result = await conn.execute(select(projects).order_by(projects.c.name))
    return [Project(name=r.name, created_at=r.created_at) for r in result]
