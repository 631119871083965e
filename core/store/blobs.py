"""Queries on content-addressed blobs: one `blobs` row (digest, size, chunk count) and
its chunks, numbered from 0, each about 1 MiB.

The foreign key from blob_chunks to blobs means a blob's row goes in first, already
saying the size and the number of chunks the blob will have; its chunks follow, a
few per transaction, so an upload never holds the writer for long. A blob is
complete when all of its chunks are there (`Blob.complete`): readers refuse
anything less, and the job version that names a snapshot is committed in the same
transaction as the check that its blob is complete (`status(lock=True)`).
Writes are idempotent (ON CONFLICT DO NOTHING): two machines uploading the same
content fill the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, select, update
from sqlalchemy.engine import Connection

from launch_tui.core.store.schema import blob_chunks, blobs, job_versions


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    chunks: int  # how many chunk rows the complete blob has
    present: int  # how many are there now
    created_at: float

    @property
    def complete(self) -> bool:
        return self.present == self.chunks


def _insert(conn: Connection, table: Any) -> Any:
    """INSERT … ON CONFLICT DO NOTHING in this connection's dialect (a failed insert
    would abort the whole transaction on PostgreSQL)."""
    # Imported here: the PostgreSQL dialect costs every CLI command on SQLite ~20 ms.
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def status(conn: Connection, digest: str, *, lock: bool = False) -> Blob | None:
    """The blob and how many of its chunks are stored, or None. With `lock`, its row is
    share-locked until the transaction ends (PostgreSQL), so `forget` cannot delete
    it under a job version that is being committed with it."""
    query = select(blobs).where(blobs.c.digest == digest)
    row = conn.execute(query.with_for_update(read=True) if lock else query).first()
    if row is None:
        return None
    present = conn.scalar(select(func.count()).select_from(blob_chunks)
                          .where(blob_chunks.c.digest == digest)) or 0
    return Blob(digest, row.size, row.chunks, present, row.created_at)


def present_chunks(conn: Connection, digest: str) -> set[int]:
    """The numbers of the chunks of `digest` already stored (an upload skips them)."""
    return set(conn.scalars(select(blob_chunks.c.n).where(blob_chunks.c.digest == digest)))


def put_chunks(conn: Connection, digest: str, size: int, chunks: int, now: float,
               parts: Sequence[tuple[int, bytes]]) -> tuple[bool, Blob]:
    """Store some chunks of a blob, its row first unless it is there already. Returns
    (whether this call inserted the blobs row, the blob as stored now); the caller
    compares its size and chunk count with its own."""
    # RETURNING, not rowcount: psycopg reports no count for a conflict-ignoring insert.
    added = conn.execute(_insert(conn, blobs).values(
        digest=digest, size=size, chunks=chunks, created_at=now,
    ).returning(blobs.c.digest)).first() is not None
    if not added:
        # Being written again (an upload that failed before, resumed): young again, so
        # `prune_unreferenced` leaves it alone meanwhile.
        conn.execute(update(blobs).where(blobs.c.digest == digest).values(created_at=now))
    if parts:
        conn.execute(_insert(conn, blob_chunks),
                     [{"digest": digest, "n": n, "data": data} for n, data in parts])
    blob = status(conn, digest)
    assert blob is not None  # inserted above or already there, in this transaction
    return added, blob


def read_chunks(conn: Connection, digest: str, first: int, end: int) -> list[tuple[int, bytes]]:
    """Chunks `first` to `end - 1` of a blob, in order (fewer when some are missing)."""
    result = conn.execute(
        select(blob_chunks.c.n, blob_chunks.c.data)
        .where(blob_chunks.c.digest == digest, blob_chunks.c.n >= first, blob_chunks.c.n < end)
        .order_by(blob_chunks.c.n))
    return [(r.n, bytes(r.data)) for r in result]


def _snapshot_of_version() -> ColumnElement[Any]:
    # A code job version names its snapshot in spec.source.snapshot.
    return job_versions.c.spec[("source", "snapshot")].as_string()


def referenced(conn: Connection, digest: str) -> bool:
    """Whether a job version names `digest` as its code snapshot."""
    return bool(conn.scalar(select(exists().where(_snapshot_of_version() == digest))))


def forget(conn: Connection, digest: str) -> bool:
    """Delete a blob no job version names (an upload whose job was refused). False,
    deleting nothing, when one does or the blob is gone. The row is locked first
    (PostgreSQL), so a version being committed with this blob is waited for and then
    seen by the check that follows."""
    locked = conn.execute(select(blobs.c.digest).where(blobs.c.digest == digest)
                          .with_for_update()).first()
    if locked is None or referenced(conn, digest):
        return False
    conn.execute(delete(blob_chunks).where(blob_chunks.c.digest == digest))
    conn.execute(delete(blobs).where(blobs.c.digest == digest))
    return True


def _unreferenced(before: float) -> Any:
    return (select(blobs.c.digest)
            .where(blobs.c.created_at < before,
                   ~exists().where(_snapshot_of_version() == blobs.c.digest))
            .order_by(blobs.c.created_at, blobs.c.digest))


def prune_unreferenced(conn: Connection, *, before: float, chunks: int) -> tuple[int, bool]:
    """Delete up to `chunks` chunks of the oldest blob made before `before` that no job
    version names (left by an upload that crashed or whose job was refused), and the
    blob's row once it has no chunks left. Returns (blobs deleted, done)."""
    digest = conn.scalar(_unreferenced(before).limit(1))
    if digest is None:
        return 0, True
    # As in `forget`: locked, then looked at again (PostgreSQL: a statement sees what
    # committed before it began), so a job version committed with this blob meanwhile,
    # or an upload that wrote to it, keeps it.
    conn.execute(select(blobs.c.digest).where(blobs.c.digest == digest).with_for_update())
    if conn.scalar(_unreferenced(before).where(blobs.c.digest == digest)) is None:
        return 0, False
    some = (select(blob_chunks.c.n).where(blob_chunks.c.digest == digest)
            .order_by(blob_chunks.c.n).limit(chunks))
    gone = conn.execute(delete(blob_chunks).where(
        blob_chunks.c.digest == digest, blob_chunks.c.n.in_(some.scalar_subquery()))).rowcount
    if gone < chunks:
        conn.execute(delete(blobs).where(blobs.c.digest == digest))
        return 1, False
    return 0, False


def count_unreferenced(conn: Connection, *, before: float) -> int:
    return conn.scalar(select(func.count()).select_from(_unreferenced(before).subquery())) or 0
