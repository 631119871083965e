"""Content-addressed code snapshots.

A snapshot is a directory `artifacts/code/<sha256>` holding a copy of the
job's files. The digest covers every file's relative path, executable bit and
content, so the same tree always lands in the same place and is stored once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from launch_tui.core.errors import ValidationError

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
    return (path / "pyvenv.cfg").is_file()


def collect(root: Path, max_bytes: int) -> list[SnapshotFile]:
    """List the files to snapshot, refusing links out of `root` and trees over `max_bytes`."""
    if not root.exists():
        raise ValidationError(f"path: {root} does not exist.", field="path")
    if not root.is_dir():
        raise ValidationError(f"path: {root} is not a directory.", field="path")
    root = root.resolve()
    files: list[SnapshotFile] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
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
            st = full.stat()
            if not stat.S_ISREG(st.st_mode):
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


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest_of(files: list[SnapshotFile]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.rel}\0{'x' if f.executable else '-'}\0{_file_sha256(f.path)}\n".encode())
    return h.hexdigest()


def create_snapshot(root: Path, artifacts: Path, max_bytes: int) -> Snapshot:
    """Copy `root` into the artifact store (once per distinct content) and describe it."""
    files = collect(Path(root), max_bytes)
    digest = digest_of(files)
    dest = artifacts / "code" / digest
    if not dest.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Copy into a temporary sibling, then rename: a reader never sees half a snapshot.
        tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=dest.parent))
        try:
            for f in files:
                target = tmp / f.rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f.path, target)
                os.chmod(target, 0o755 if f.executable else 0o644)
            os.rename(tmp, dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not dest.is_dir():
                raise
    names = {f.rel for f in files}
    python_version = None
    if ".python-version" in names:
        python_version = (dest / ".python-version").read_text().strip() or None
    return Snapshot(
        digest=digest,
        files=len(files),
        bytes=sum(f.size for f in files),
        path=dest,
        has_requirements="requirements.txt" in names,
        has_pyproject="pyproject.toml" in names,
        has_dockerfile="Dockerfile" in names,
        python_version=python_version,
    )
