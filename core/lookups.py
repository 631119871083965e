"""What almost every call starts from: the project it means, and the project's or a
queue's row, or NotFound in one sentence naming what exists.

Kept apart from the catalog and queue modules, which import job snapshots,
validation and the rest: read-only commands (`items`, `runs`) need only these.
"""

from __future__ import annotations

from launch_tui.core.errors import NotFound
from launch_tui.core.settings import Settings
from launch_tui.core.store import projects as projects_db
from launch_tui.core.store import queues as queues_db
from launch_tui.core.store.session import Conn, Row


def project_or_default(settings: Settings, project: str | None) -> str:
    return project or settings.default_project


def require_project(conn: Conn, project: str) -> None:
    if not projects_db.exists(conn, project):
        raise NotFound(
            f"project: '{project}' does not exist (create it with "
            f"`launch-tui project create {project}`)."
        )


def require_queue(conn: Conn, project: str, name: str, row: Row | None = None) -> Row:
    """The queue's row (`row`, when the caller already looked it up), or NotFound
    naming the project's queues."""
    row = row if row is not None else queues_db.find(conn, project, name)
    if row is None:
        require_project(conn, project)
        known = queues_db.names(conn, project)
        hint = f" (queues: {', '.join(known)})" if known else " (it has no queues yet)"
        raise NotFound(f"queue: '{name}' does not exist in project '{project}'{hint}.")
    return row


def scope(conn: Conn, project: str, queue: str | None) -> int | None:
    """The queue id an item or run listing is restricted to (None: the whole project);
    an unknown project or queue raises NotFound naming it."""
    if queue is None:
        require_project(conn, project)
        return None
    return int(require_queue(conn, project, queue).id)
