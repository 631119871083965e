"""Code snapshots in the store, so a job made on one machine runs on an agent on another.

`job create code` stores the snapshot's archive (core/snapshot_archive.py) as a
blob keyed by the snapshot's digest (`upload`), before the job version that names
it is committed; the version's transaction checks the blob is complete
(`require_complete`). A refused job takes back a blob it put there (`forget`).
Content is stored once: a complete blob is never uploaded again.

An agent that lacks `<artifacts>/code/<digest>` fetches the blob (`ensure_local`),
checks that the tree it unpacks has the digest asked for, and renames it into
place, so runs on this machine find it there from then on; the creating machine
keeps its own copy there too. SQL runs on the store's threads, file work in
`asyncio.to_thread`: the event loop never waits on either.

Blobs are written CHUNK bytes a row and WRITE_CHUNKS rows a bulk transaction, so
one snapshot never holds the writer for long: claims and heartbeats waiting for
it go first (see store/threads.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from launch_tui.core.errors import BuildError, StoreError, ValidationError
from launch_tui.core.snapshot_archive import ArchiveError, pack, unpack
from launch_tui.core.snapshots import StagedSnapshot
from launch_tui.core.store import blobs as blobs_db
from launch_tui.core.store.session import Conn, Store

CHUNK = 1 << 20
WRITE_CHUNKS = 4  # per write transaction: a claim or heartbeat waits for at most this much
READ_CHUNKS = 8  # per read transaction when fetching
_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass
class Upload:
    """What one job creation did to the store: whether it created the snapshot's blob
    (set as soon as it did, so a creation that fails midway knows to take it back)."""

    created: bool = False


class BlobIncomplete(StoreError):
    """A job version's blob was not complete when the version was to be committed (an
    upload of the same content elsewhere was taken back meanwhile): upload again."""


def require_complete(conn: Conn, digest: str) -> None:
    """In the transaction that commits a job version naming `digest`: its blob must be
    complete, and stays so (share-locked on PostgreSQL) until that commits."""
    blob = blobs_db.status(conn, digest, lock=True)
    if blob is None or not blob.complete:
        raise BlobIncomplete(f"store: the code snapshot '{digest[:12]}' was removed from the "
                             "store while this job was being created; run the command again.")


class SnapshotBlobs:
    """Uploading snapshots to the store and fetching them into this machine's artifacts."""

    def __init__(self, store: Store, artifacts: Path) -> None:
        self._store = store
        self._code = artifacts / "code"
        # One fetch per digest at a time in this process; other processes are raced
        # safely by the rename into place.
        self._fetching: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ uploading

    async def upload(self, staged: StagedSnapshot, upload: Upload) -> None:
        """Make sure the store holds the snapshot's complete blob, noting in `upload`
        when this call created it (a refused job then takes it back with `forget`)."""
        digest = staged.snapshot.digest
        blob = await self._store.read(blobs_db.status, digest)
        if blob is not None and blob.complete:
            return
        have = await self._store.read(blobs_db.present_chunks, digest) if blob else set()
        await asyncio.to_thread(self._code.mkdir, parents=True, exist_ok=True)
        # Unnamed (O_TMPFILE where there is one): nothing is left behind, whatever happens.
        archive = await asyncio.to_thread(tempfile.TemporaryFile, dir=self._code)
        try:
            packed = await asyncio.to_thread(_pack, staged, archive)
            if packed != digest:
                raise _changed(staged)
            size = await asyncio.to_thread(archive.tell)
            chunks = -(-size // CHUNK)
            if blob is not None and (blob.size, blob.chunks) != (size, chunks):
                raise _other_form(digest)
            todo = [n for n in range(chunks) if n not in have]
            for i in range(0, len(todo), WRITE_CHUNKS):
                parts = await asyncio.to_thread(_read_chunks, archive, todo[i:i + WRITE_CHUNKS])
                added, stored = await self._store.write(
                    blobs_db.put_chunks, digest, size, chunks, self._store.now(), parts,
                    bulk=True)
                upload.created = upload.created or added
                if (stored.size, stored.chunks) != (size, chunks):
                    raise _other_form(digest)
        finally:
            await asyncio.to_thread(archive.close)

    async def forget(self, digest: str) -> None:
        """Take back a blob this process uploaded for a job that was then refused, unless
        a job version names it by now (another job made from the same files)."""
        await self._store.write(blobs_db.forget, digest, bulk=True)

    # ------------------------------------------------------------------ fetching

    async def ensure_local(self, digest: str, what: str) -> bool:
        """Make sure `<artifacts>/code/<digest>` holds the snapshot `what` (e.g. "tj:v0")
        was made from, fetching it from the store when this machine lacks it. True when
        it was fetched; BuildError, in one sentence, when it cannot be had."""
        if not _DIGEST.fullmatch(digest):
            raise BuildError(f"job: {what} names no valid code snapshot ({digest[:16]!r}).")
        dest = self._code / digest
        if await asyncio.to_thread(dest.is_dir):
            return False
        lock = self._fetching.setdefault(digest, asyncio.Lock())
        async with lock:
            if await asyncio.to_thread(dest.is_dir):  # fetched by the run we waited for
                return False
            await self._fetch(digest, dest, what)
            return True

    async def _fetch(self, digest: str, dest: Path, what: str) -> None:
        short = digest[:12]
        blob = await self._store.read(blobs_db.status, digest)
        if blob is None:
            raise BuildError(f"job: the code snapshot '{short}' of {what} is neither on this "
                             f"machine ({self._code}) nor in the store.")
        if not blob.complete:
            raise BuildError(f"job: the code snapshot '{short}' of {what} is only partly in the "
                             f"store ({blob.present} of {blob.chunks} chunks) and not on this "
                             "machine.")
        try:
            await asyncio.to_thread(self._code.mkdir, parents=True, exist_ok=True)
            work = Path(await asyncio.to_thread(
                tempfile.mkdtemp, prefix=f".{short}-fetch-", dir=self._code))
        except OSError as exc:
            raise StoreError(f"artifacts: cannot write a snapshot under {self._code} "
                             f"({exc.strerror}).") from exc
        try:
            archive = work / "blob.tar"
            out = await asyncio.to_thread(open, archive, "xb")
            try:
                for first in range(0, blob.chunks, READ_CHUNKS):
                    end = min(first + READ_CHUNKS, blob.chunks)
                    parts = await self._store.read(blobs_db.read_chunks, digest, first, end)
                    if [n for n, _ in parts] != list(range(first, end)):
                        raise BuildError(f"job: the code snapshot '{short}' of {what} lost "
                                         "chunks in the store while it was being fetched.")
                    await asyncio.to_thread(out.writelines, [data for _, data in parts])
                size = await asyncio.to_thread(out.tell)
            finally:
                await asyncio.to_thread(out.close)
            try:
                got = (await asyncio.to_thread(unpack, archive, work / "tree")
                       if size == blob.size else None)
            except ArchiveError as exc:
                raise BuildError(f"job: the code snapshot '{short}' of {what} in the store is "
                                 f"damaged ({exc}); it was not used.") from exc
            if got != digest:
                found = f"its files hash to '{got[:12]}'" if got else (
                    f"it holds {size:,} bytes, not {blob.size:,}")
                raise BuildError(f"job: the code snapshot '{short}' of {what} in the store does "
                                 f"not match its digest ({found}); it was not used.")
            await asyncio.to_thread(_put_in_place, work / "tree", dest)
        except OSError as exc:
            raise StoreError(f"artifacts: cannot write a snapshot under {self._code} "
                             f"({exc.strerror}).") from exc
        finally:
            await asyncio.to_thread(shutil.rmtree, work, True)


def _pack(staged: StagedSnapshot, archive: IO[bytes]) -> str:
    try:
        return pack(staged.tree, staged.entries, archive)
    except FileNotFoundError as exc:
        raise _changed(staged) from exc
    except OSError as exc:
        raise StoreError(f"artifacts: cannot archive the snapshot in {staged.tree} "
                         f"({exc.strerror}).") from exc


def _changed(staged: StagedSnapshot) -> Exception:
    """The files archived are not the tree the digest was taken of."""
    if staged.copy is not None:  # our own copy: the job's files changed while it was made
        return ValidationError("path: files changed while the snapshot was being taken; "
                               "run the command again.", field="path")
    return StoreError(f"artifacts: the snapshot at {staged.snapshot.path} no longer matches "
                      "its digest; remove it and run the command again.")


def _other_form(digest: str) -> StoreError:
    """Another machine's archive of the same tree is being stored and differs from ours
    (another tarfile): chunks of the two must never mix."""
    return StoreError(f"store: another upload of the code snapshot '{digest[:12]}' is under "
                      "way in another form; run the command again once it has finished.")


def _read_chunks(archive: IO[bytes], numbers: list[int]) -> list[tuple[int, bytes]]:
    parts = []
    for n in numbers:
        archive.seek(n * CHUNK)
        parts.append((n, archive.read(CHUNK)))
    return parts


def _put_in_place(tree: Path, dest: Path) -> None:
    try:
        os.rename(tree, dest)
    except OSError:
        # Another process fetched the same content first: theirs is as good.
        if not dest.is_dir():
            raise
