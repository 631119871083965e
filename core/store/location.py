"""Where a store lives: refusing a URL or an SQLite path that cannot be a launch-tui
store before anything creates, opens, journals or chmods it.

Checked in this order, each refusal one sentence (`StoreError`):

- the URL: a supported scheme (an SQLite file, PostgreSQL) whose driver is
  installed;
- an SQLite path: a regular file, or a path that can be created (its nearest
  existing ancestor a writable directory); never a directory, a device, a FIFO
  (opening one would block) or a path under a regular file;
- an existing file: read-only (the header, then `sqlite_master` through a
  `mode=ro` connection), it is empty or a launch-tui database of a schema this
  version understands. Only then does the engine switch it to WAL and tighten
  its permissions: a foreign file is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from launch_tui.core.errors import StoreError
from launch_tui.core.store import schema

SUPPORTED = "an SQLite file path (or sqlite:///PATH) or postgresql://USER@HOST/DATABASE"
_DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg",)}
_EXTRAS = {"postgresql": "postgres"}
_SQLITE_HEADER = b"SQLite format 3\x00"


def parse(url: str) -> URL:
    """The URL, its scheme supported and its driver importable."""
    scheme = url.split("://", 1)[0] if "://" in url else url
    try:
        u = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"store: '{scheme}://…' is not a valid store URL ({exc}).") from exc
    backend, driver = u.get_backend_name(), u.get_driver_name()
    if backend not in _DRIVERS:
        raise StoreError(f"store: {scheme}:// is not a supported store (use {SUPPORTED}).")
    try:
        dialect = u.get_dialect()
    except NoSuchModuleError as exc:
        raise StoreError(
            f"store: {scheme}:// names a driver that is not installed or not known "
            f"(use {SUPPORTED}).") from exc
    if driver not in _DRIVERS[backend]:
        raise StoreError(f"store: {scheme}:// is not a supported driver (use {SUPPORTED}).")
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        extra = _EXTRAS.get(backend)
        hint = f" (pip install 'launch-tui[{extra}]')" if extra else ""
        raise StoreError(
            f"store: {scheme}:// needs the {driver} driver, which is not installed{hint}."
        ) from exc
    return u


def check_sqlite_path(path: Path) -> None:
    """Refuse a path that is not, and cannot become, an SQLite database file."""
    try:
        st = path.stat()  # follows a link: what it points at is what would be opened
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        st = None  # a parent is a file: named below
    except OSError as exc:
        raise StoreError(f"store: cannot read {path} ({exc.strerror}).") from exc
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise StoreError(
                f"store: {path} is a directory, not a database file (name a file, e.g. "
                f"{path / 'launch.db'}).")
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(
                f"store: {path} is {_kind(st.st_mode)}, not a regular file; the store must be "
                "an SQLite database file.")
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"store: {path} is not writable by this user.")
        if not os.access(path.parent, os.W_OK | os.X_OK):
            # SQLite keeps its write-ahead log and shared memory beside the file.
            raise StoreError(
                f"store: {path.parent} is not writable, and SQLite needs to write its "
                f"journal beside {path.name}.")
        return
    if path.is_symlink():
        raise StoreError(f"store: {path} is a link to {os.readlink(path)}, which does not exist.")
    ancestor = next(p for p in path.parents if p.exists() or p.is_symlink())
    if not ancestor.is_dir():
        raise StoreError(f"store: cannot create {path}: {ancestor} is not a directory.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise StoreError(f"store: cannot create {path}: {ancestor} is not writable.")


def create_sqlite_file(path: Path) -> None:
    """Create the (checked) file and its directories; 0600 from the first byte."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
        os.close(fd)
    except FileExistsError:
        check_sqlite_path(path)  # another process made it meanwhile: still a file?
    except OSError as exc:
        raise StoreError(f"store: cannot create {path} ({exc.strerror}).") from exc


def check_ours(path: Path) -> None:
    """Read-only: `path` is empty, or an SQLite database that is empty or ours."""
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"store: cannot read {path} ({exc.strerror}).") from exc
    if not head:
        return
    if head != _SQLITE_HEADER:
        raise StoreError(f"store: {path} is not a launch-tui database (not an SQLite file).")
    try:
        with contextlib.closing(
                sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=60)) as db:
            names = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            meta = (dict(db.execute(f"SELECT key, value FROM {schema.meta.name}"))
                    if schema.meta.name in names else {})
    except sqlite3.Error as exc:
        if "locked" in str(exc):
            raise StoreError(f"store: {path} is locked by another program.") from exc
        raise StoreError(f"store: {path} is not a launch-tui database ({exc}).") from exc
    refuse_foreign(str(path), names, meta)


def refuse_foreign(where: str, names: set[str], meta: Mapping[str, str]) -> None:
    """Refuse a database with tables that is not ours, or whose schema is newer."""
    if not names:
        return
    if schema.meta.name not in names:
        raise StoreError(
            f"store: {where} is not a launch-tui database "
            f"(it has other tables and no {schema.meta.name} table).")
    if meta.get("app") != schema.APP_MARKER:
        raise StoreError(f"store: {where} is not a launch-tui database.")
    version = int(meta.get("schema_version", "0"))
    if version > schema.SCHEMA_VERSION:
        raise StoreError(
            f"store: {where} has schema version {version}, newer than this "
            f"launch-tui understands ({schema.SCHEMA_VERSION}); upgrade launch-tui.")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"
