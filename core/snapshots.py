"""Content-addressed code snapshots.

A snapshot is a directory `artifacts/code/<sha256>` holding a copy of the
job's files. The digest covers every file's relative path, executable bit and
content, so the same tree always lands in the same place and is stored once.

Regular files are snapshotted; FIFOs, sockets and devices are left out (opening
a FIFO would wait for a writer). A file or directory that cannot be read is
refused, naming it: a snapshot never silently lacks part of the tree.

Making one is two steps (`stage_snapshot`, then `publish` or `discard`): the
copy waits beside the store until the job version that refers to it is
committed, so a refused `job create code` leaves nothing behind, and nothing
already in place (content is shared between versions) is ever removed.

This directory is one machine's copy. The store keeps the snapshot too, as a blob
other machines fetch from (`snapshot_blobs`, `snapshot_archive`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NoReturn

from launch_tui.core.errors import StoreError, ValidationError

# Directories that never belong in a snapshot: VCS data, caches, run outputs.
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        ".venv",
        "venv",
        "node_modules",
        "wandb",
        ".ipynb_checkpoints",
    }
)
SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class SnapshotFile:
    rel: str
    path: Path
    executable: bool
    size: int


@dataclass(frozen=True)
class Snapshot:
    digest: str
    files: int
    bytes: int
    path: Path
    has_requirements: bool
    has_pyproject: bool
    has_dockerfile: bool
    python_version: str | None


def _is_virtualenv(path: Path) -> bool:
    try:
        return (path / "pyvenv.cfg").is_file()
    except OSError:
        return False  # an unreadable directory: the walk names it when it gets there


def collect(root: Path, max_bytes: int) -> list[SnapshotFile]:
    """List the files to snapshot, refusing links out of `root` and trees over `max_bytes`."""
    if not root.exists():
        raise ValidationError(f"path: {root} does not exist.", field="path")
    if not root.is_dir():
        raise ValidationError(f"path: {root} is not a directory.", field="path")
    root = root.resolve()
    files: list[SnapshotFile] = []
    total = 0

    def unreadable(exc: OSError) -> NoReturn:
        where = Path(exc.filename or root)
        rel = where.relative_to(root).as_posix() if where.is_relative_to(root) else str(where)
        raise ValidationError(f"path: cannot read {rel}/ in {root} ({exc.strerror}).",
                              field="path")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            full = here / d
            if d in SKIP_DIRS or _is_virtualenv(full):
                continue
            if full.is_symlink():
                target = full.resolve()
                if not target.is_relative_to(root):
                    raise ValidationError(
                        f"path: {full.relative_to(root)} links to {target}, outside the job "
                        "directory; snapshots may only contain files inside it.",
                        field="path",
                    )
                # A link to a directory inside the tree: its files are snapshotted there.
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if name.endswith(SKIP_SUFFIXES):
                continue
            full = here / name
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                target = full.resolve()
                if not target.is_relative_to(root):
                    raise ValidationError(
                        f"path: {rel} links to {target}, outside the job directory; "
                        "snapshots may only contain files inside it.",
                        field="path",
                    )
                if not target.is_file():
                    continue
            try:
                st = full.stat()
            except OSError as exc:
                unreadable(exc)
            if not stat.S_ISREG(st.st_mode):  # FIFOs, sockets, devices: not code
                continue
            total += st.st_size
            if total > max_bytes:
                raise ValidationError(
                    f"path: {root} holds more than {max_bytes // (1024 * 1024)} MiB of files; "
                    "snapshots are limited to that size (move data out of the code directory "
                    "or raise snapshot_max_mb in settings.toml).",
                    field="path",
                )
            files.append(
                SnapshotFile(rel, full, bool(st.st_mode & stat.S_IXUSR), st.st_size)
            )
    if not files:
        raise ValidationError(f"path: {root} contains no files to snapshot.", field="path")
    return files


def _open(f: SnapshotFile) -> BinaryIO:
    """The file for reading, or one sentence naming it. Non-blocking, and checked to be
    a regular file once open: one replaced by a FIFO since it was listed must not hang."""
    try:
        fd = os.open(f.path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ValidationError(f"path: cannot read {f.rel} ({exc.strerror}).",
                              field="path") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValidationError(f"path: {f.rel} is no longer a regular file.", field="path")
    return os.fdopen(fd, "rb")


def _read(f: SnapshotFile, fh: BinaryIO) -> bytes:
    try:
        return fh.read(1 << 20)
    except OSError as exc:
        raise ValidationError(f"path: cannot read {f.rel} ({exc.strerror}).",
                              field="path") from exc


def _file_sha256(f: SnapshotFile) -> str:
    h = hashlib.sha256()
    with _open(f) as fh:
        while block := _read(f, fh):
            h.update(block)
    return h.hexdigest()


def entry_line(rel: str, executable: bool, file_sha256: str) -> bytes:
    """One file's part of a snapshot's digest (also recomputed from archives, see
    `snapshot_archive`)."""
    return f"{rel}\0{'x' if executable else '-'}\0{file_sha256}\n".encode()


def digest_of(files: list[SnapshotFile]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(entry_line(f.rel, f.executable, _file_sha256(f)))
    return h.hexdigest()


@dataclass
class StagedSnapshot:
    """A snapshot described, its copy (when the store lacked this content) waiting in a
    temporary directory beside where it belongs."""

    snapshot: Snapshot
    copy: Path | None = field(default=None)
    # (relative path, executable) of every file, in the order the digest takes them.
    entries: tuple[tuple[str, bool], ...] = ()

    @property
    def tree(self) -> Path:
        """Where the files are now: the copy, or the snapshot already in place."""
        return self.copy if self.copy is not None else self.snapshot.path

    def publish(self) -> None:
        """Put the copy in place (nothing to do when the content was there already)."""
        if self.copy is None:
            return
        try:
            os.rename(self.copy, self.snapshot.path)
        except OSError as exc:
            # Another process put the same content in place first: keep theirs.
            if not self.snapshot.path.is_dir():
                raise StoreError(f"artifacts: cannot put the snapshot in place at "
                                 f"{self.snapshot.path} ({exc.strerror}).") from exc
        finally:
            self.discard()

    def discard(self) -> None:
        """Remove the copy, if any: only ever this call's own temporary directory."""
        if self.copy is not None:
            shutil.rmtree(self.copy, ignore_errors=True)
            self.copy = None


def stage_snapshot(root: Path, artifacts: Path, max_bytes: int) -> StagedSnapshot:
    """Describe `root` and, when the store lacks its content, copy it beside the store."""
    files = collect(Path(root), max_bytes)
    digest = digest_of(files)
    dest = artifacts / "code" / digest
    copy = None if dest.is_dir() else _copy(files, dest)
    by_rel = {f.rel: f for f in files}
    python_version = None
    if ".python-version" in by_rel:
        with _open(by_rel[".python-version"]) as fh:
            python_version = fh.read().decode(errors="replace").strip() or None
    snapshot = Snapshot(
        digest=digest,
        files=len(files),
        bytes=sum(f.size for f in files),
        path=dest,
        has_requirements="requirements.txt" in by_rel,
        has_pyproject="pyproject.toml" in by_rel,
        has_dockerfile="Dockerfile" in by_rel,
        python_version=python_version,
    )
    return StagedSnapshot(snapshot, copy, tuple((f.rel, f.executable) for f in files))


def _copy(files: list[SnapshotFile], dest: Path) -> Path:
    """Copy the files into a temporary sibling of `dest` (a reader never sees half a
    snapshot); one sentence for a file that cannot be read or a store not writable."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name[:12]}-", dir=dest.parent))
    except OSError as exc:
        raise StoreError(f"artifacts: cannot write a snapshot under {dest.parent} "
                         f"({exc.strerror}).") from exc
    try:
        for f in files:
            with _open(f) as src:
                try:
                    target = tmp / f.rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "xb") as out:
                        while block := _read(f, src):
                            out.write(block)
                    os.chmod(target, 0o755 if f.executable else 0o644)
                except OSError as exc:
                    raise StoreError(f"artifacts: cannot write a snapshot under "
                                     f"{dest.parent} ({exc.strerror}).") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def create_snapshot(root: Path, artifacts: Path, max_bytes: int) -> Snapshot:
    """Copy `root` into the artifact store (once per distinct content) and describe it."""
    staged = stage_snapshot(root, artifacts, max_bytes)
    staged.publish()
    return staged.snapshot
