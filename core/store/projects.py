"""Queries on the projects table."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from launch_tui.core.model import Project
from launch_tui.core.store.schema import projects


def exists(conn: Connection, name: str) -> bool:
    return conn.scalar(select(projects.c.name).where(projects.c.name == name)) is not None


def add(conn: Connection, name: str, created_at: float) -> bool:
    """Insert a project; False when the name is taken (the caller's transaction is then
    unusable and must be abandoned)."""
    try:
        conn.execute(projects.insert().values(name=name, created_at=created_at))
    except IntegrityError:
        return False
    return True


def every(conn: Connection) -> list[Project]:
    result = conn.execute(select(projects).order_by(projects.c.name))
    return [Project(name=r.name, created_at=r.created_at) for r in result]
