"""Finding job versions inside a transaction: by alias or `vN`, pinned to a snapshot.

Versions never change once written, so a version snapshot is read from the
database once per store and kept in the store's cache (`Store.cached_version`);
the job a name refers to is cached the same way. Every miss is one sentence
naming what is missing (the job, the alias with the job's aliases, or the
version with the range that exists).
"""

from __future__ import annotations

from launch_tui.core import jobs as jobrules
from launch_tui.core.errors import NotFound
from launch_tui.core.lookups import require_project
from launch_tui.core.model import JobVersion
from launch_tui.core.store import jobs as jobs_db
from launch_tui.core.store import rows
from launch_tui.core.store.session import Conn, Row, Store


def require_job(conn: Conn, project: str, name: str) -> Row:
    row = jobs_db.find(conn, project, name)
    if row is None:
        require_project(conn, project)
        raise NotFound(f"job: '{name}' does not exist in project '{project}'.")
    return row


def version_number(conn: Conn, job: Row, tag: str | None) -> int:
    """Resolve `None`/alias/`vN` to a version number (not checked to exist)."""
    tag = tag or "latest"
    m = jobrules.VERSION_ALIAS_RE.match(tag)
    if m:
        return int(m.group(1))
    number = jobs_db.alias(conn, job.id, tag)
    if number is None:
        aliases = jobs_db.aliases(conn, job.id)
        raise NotFound(
            f"job: '{job.name}' has no alias '{tag}' "
            f"(aliases: {', '.join(sorted(aliases))})."
        )
    return number


def require_version(conn: Conn, job: Row, tag: str | None) -> Row:
    """Resolve `None`/alias/`vN` to a job_versions row."""
    number = version_number(conn, job, tag)
    row = jobs_db.version(conn, job.id, number)
    if row is None:
        raise _no_version(conn, job, number)
    return row


def pinned_version(store: Store, conn: Conn, job: Row, tag: str | None) -> JobVersion:
    """The version `tag` names, as a snapshot without aliases; versions never change
    once written, so each is read from the database once per store."""
    number = version_number(conn, job, tag)
    version = version_by_id(store, conn, job.id, number)
    if version is None:
        raise _no_version(conn, job, number)
    return version


def pinned_ref(store: Store, conn: Conn, project: str, name: str, tag: str | None
               ) -> tuple[int, JobVersion]:
    """(job id, version) that `name[:tag]` names now, as `pinned_version` gives it, in
    as few statements as may be: none for `vN` of a job seen before, else one."""
    tag = tag or "latest"
    m = jobrules.VERSION_ALIAS_RE.match(tag)
    job = store.cached_job(project, name)
    if job is not None:
        number = int(m.group(1)) if m else jobs_db.alias(conn, job.id, tag)
    else:
        job = jobs_db.find_with_alias(conn, project, name, "" if m else tag)
        if job is None:
            require_job(conn, project, name)  # raises, naming what is missing
        store.cache_job(job)
        number = int(m.group(1)) if m else job.alias_version
    if number is None:
        version_number(conn, job, tag)  # raises, listing the job's aliases
    version = version_by_id(store, conn, job.id, number)
    if version is None:
        raise _no_version(conn, job, number)
    return job.id, version


def version_by_id(store: Store, conn: Conn, job_id: int, number: int) -> JobVersion | None:
    """A version snapshot without aliases, from the store's cache when it has it."""
    version = store.cached_version(job_id, number)
    if version is None:
        row = jobs_db.version_with_job(conn, job_id, number)
        if row is None:
            return None
        version = rows.to_version(row.project, row.job_name, row, ())
        store.cache_version(job_id, version)
    return version


def _no_version(conn: Conn, job: Row, number: int) -> NotFound:
    latest = jobs_db.latest_version(conn, job.id)
    return NotFound(f"job: '{job.name}' has no version v{number} (versions v0 to v{latest}).")
