"""The archive a code snapshot travels in through the store.

An uncompressed pax tar of the snapshot's regular files, in the order its digest
takes them, each with mode 0755 or 0644, owner 0, no owner names and mtime 0: the
same tree always makes the same bytes, so two machines uploading the same content
write the same chunks. Uncompressed, because compressors differ between builds
(zlib, zlib-ng) and chunks written by two of them must never mix.

Both directions recompute the tree's digest (the formula of `snapshots.digest_of`)
from the bytes they move: `pack` proves the archive holds the tree a job version
names, and `unpack` tells the caller which tree it extracted, so an archive that
was changed in the store is refused rather than run.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO, Any

from launch_tui.core.snapshots import entry_line

_BLOCK = 1 << 20


class ArchiveError(Exception):
    """An archive that is not a snapshot: `str()` says what is wrong, naming the member."""


class _Hashing:
    """A file object that hashes what is read through it (tarfile reads the file)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.sha256.update(data)
        return data


def _info(rel: str, executable: bool, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel)
    info.size = size
    info.mode = 0o755 if executable else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def pack(root: Path, entries: Sequence[tuple[str, bool]], out: IO[bytes]) -> str:
    """Write the files `entries` names ((path relative to `root`, executable), in
    digest order) to `out` as a tar; return the tree digest of what was written."""
    tree = hashlib.sha256()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, executable in entries:
            with open(root / rel, "rb") as fh:
                hashing = _Hashing(fh)
                tar.addfile(_info(rel, executable, os.fstat(fh.fileno()).st_size), hashing)
            tree.update(entry_line(rel, executable, hashing.sha256.hexdigest()))
    return tree.hexdigest()


def _relative(name: str) -> str:
    """A member's name, if it is a plain relative path that stays inside the tree."""
    path = PurePosixPath(name)
    if (not name or "\0" in name or path.is_absolute() or name != path.as_posix()
            or any(part in ("", ".", "..") for part in path.parts)):
        raise ArchiveError(f"the member {name!r} is not a path inside the snapshot")
    return name


def unpack(archive: Path, dest: Path) -> str:
    """Extract `archive` into `dest` (made here; it must not exist) and return the tree
    digest of what it held. Only regular files with plain relative names, each once;
    anything else is an ArchiveError and `dest` is left for the caller to remove."""
    tree = hashlib.sha256()
    dest.mkdir()
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for member in tar:
                rel = _relative(member.name)
                if not member.isreg():
                    raise ArchiveError(f"the member {rel!r} is not a regular file")
                executable = bool(member.mode & 0o100)
                tree.update(entry_line(rel, executable, _extract(tar, member, dest / rel)))
    except tarfile.TarError as exc:
        raise ArchiveError(f"it is not a readable tar ({exc})") from exc
    return tree.hexdigest()


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> str:
    """Write one member to `target` (a new file) and return its content's sha256."""
    src: Any = tar.extractfile(member)
    assert src is not None  # a regular file always has content, if only empty
    sha = hashlib.sha256()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise ArchiveError(f"the member {member.name!r} is inside a file") from exc
    try:
        with open(target, "xb") as out:
            while block := src.read(_BLOCK):
                sha.update(block)
                out.write(block)
        os.chmod(target, 0o755 if member.mode & 0o100 else 0o644)
    except (FileExistsError, IsADirectoryError) as exc:
        raise ArchiveError(f"the member {member.name!r} clashes with another") from exc
    return sha.hexdigest()
