"""Store, home and snapshot problems through the real CLI: one sentence, exit 1, no
traceback, and nothing touched (a foreign database keeps its bytes, mode and
journal; /dev/null keeps its mode; a refused job leaves no snapshot).

Root runs these tests and reads and writes anything, so permission cases run the
CLI without the capabilities that let root ignore permissions (setpriv)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from launch_tui.core.errors import ValidationError
from launch_tui.core.snapshots import collect, digest_of
from tests.core.conftest import REPO, Result

SUPPORTED = "(use an SQLite file path (or sqlite:///PATH) or postgresql://USER@HOST/DATABASE)."
NO_DAC = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search",
          "--inh-caps", "-dac_override,-dac_read_search", "--")


def run(*args: str, home: Path, env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = ()) -> Result:
    full = {**os.environ, "LAUNCH_TUI_HOME": str(home), **(env or {})}
    full.pop("LAUNCH_TUI_STORE", None)
    proc = subprocess.run([*prefix, sys.executable, "-m", "launch_tui.tui.cli", *args],
                          capture_output=True, text=True, env=full, cwd=REPO, timeout=60)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def sentence(r: Result) -> str:
    assert r.code == 1, r
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("launch-tui: error: "), r.err
    return lines[0].removeprefix("launch-tui: error: ")


def unprivileged() -> tuple[str, ...]:
    """How to run the CLI so that file permissions apply to it."""
    if os.geteuid() != 0:
        return ()
    # util-linux (essential on Debian) ships setpriv; without it these tests cannot
    # make permissions apply to root, and they fail rather than pass unproven.
    assert shutil.which("setpriv"), "setpriv (util-linux) is needed to drop root's DAC bypass"
    return NO_DAC


def fingerprint(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------- home and paths


def test_a_home_that_is_a_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory\n")
    before = fingerprint(home)
    assert sentence(run("queue", "list", home=home)) == (
        f"home: {home} is not a directory (--home and LAUNCH_TUI_HOME name the directory "
        "launch-tui keeps its data in).")
    assert fingerprint(home) == before and os.listdir(tmp_path) == ["home"]


def test_a_database_path_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run("--store", str(blocker / "sub" / "launch.db"), "queue", "list", home=tmp_path / "h")
    assert sentence(r) == (
        f"store: cannot create {blocker}/sub/launch.db: {blocker} is not a directory.")
    assert blocker.read_text() == "x"


def test_a_store_that_is_a_directory(tmp_path: Path) -> None:
    d = tmp_path / "db"
    d.mkdir()
    assert sentence(run("--store", str(d), "queue", "list", home=tmp_path / "h")) == (
        f"store: {d} is a directory, not a database file (name a file, e.g. {d}/launch.db).")
    assert os.listdir(d) == [] and sorted(os.listdir(tmp_path)) == ["db"]


def test_dev_null_is_refused_before_anything_touches_it(tmp_path: Path) -> None:
    before = os.stat("/dev/null")
    beside = {p: p.exists() for p in map(Path, ("/dev/null-writer.lock", "/dev/null-wal"))}
    try:
        r = run("--store", "/dev/null", "queue", "list", home=tmp_path / "h")
        assert sentence(r) == (
            "store: /dev/null is a character device, not a regular file; the store must be "
            "an SQLite database file.")
        assert stat.S_IMODE(os.stat("/dev/null").st_mode) == stat.S_IMODE(before.st_mode)
        assert {p: p.exists() for p in beside} == beside
    finally:
        if stat.S_IMODE(os.stat("/dev/null").st_mode) != stat.S_IMODE(before.st_mode):
            os.chmod("/dev/null", stat.S_IMODE(before.st_mode))  # never leave it broken


def test_a_fifo_store_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "db.fifo"
    os.mkfifo(fifo)
    assert sentence(run("--store", str(fifo), "queue", "list", home=tmp_path / "h")) == (
        f"store: {fifo} is a FIFO, not a regular file; the store must be an SQLite "
        "database file.")


def test_an_unwritable_home(tmp_path: Path) -> None:
    prefix = unprivileged()
    home = tmp_path / "home"
    home.mkdir(mode=0o555)
    home.chmod(0o555)
    r = run("queue", "list", home=home, prefix=prefix)
    assert sentence(r) == f"store: cannot create {home}/launch.db: {home} is not writable."
    assert os.listdir(home) == []


def test_a_database_that_is_not_writable(tmp_path: Path) -> None:
    prefix = unprivileged()
    home = tmp_path / "home"
    home.mkdir()
    assert run("queue", "list", home=home).code == 0
    db = home / "launch.db"
    db.chmod(0o400)
    assert sentence(run("queue", "list", home=home, prefix=prefix)) == (
        f"store: {db} is not writable by this user.")
    db.chmod(0o600)
    home.chmod(0o555)
    try:
        assert sentence(run("queue", "list", home=home, prefix=prefix)) == (
            f"store: {home} is not writable, and SQLite needs to write its journal beside "
            "launch.db.")
    finally:
        home.chmod(0o755)


# ---------------------------------------------------------------------- URLs and drivers


def test_unsupported_schemes_and_missing_drivers(tmp_path: Path) -> None:
    home = tmp_path / "h"
    r = run("--store", "mysql://u:pw@localhost/launch", "queue", "list", home=home)
    assert sentence(r) == f"store: mysql:// is not a supported store {SUPPORTED}"
    r = run("--store", "postgresql+nosuchdriver://u:pw@localhost/launch", "queue", "list",
            home=home)
    assert sentence(r) == (
        "store: postgresql+nosuchdriver:// names a driver that is not installed or not known "
        f"{SUPPORTED}")
    assert "pw" not in r.err and not home.exists()


def test_postgresql_without_psycopg_installed(tmp_path: Path) -> None:
    # Whether or not psycopg is installed here: a package of that name that cannot be
    # imported, first on the path, is what a machine without it looks like.
    shadow = tmp_path / "shadow" / "psycopg"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    r = run("--store", "postgresql://u:pw@localhost/launch", "queue", "list",
            home=tmp_path / "h", env={"PYTHONPATH": str(shadow.parent)})
    assert sentence(r) == (
        "store: postgresql+psycopg:// needs the psycopg driver, which is not installed "
        "(pip install 'launch-tui[postgres]').")


def test_an_unreachable_postgresql_is_one_line(tmp_path: Path) -> None:
    import psycopg  # noqa: F401 - the driver is a test dependency; its absence is a failure

    r = run("--store", "postgresql://u:pw@127.0.0.1:1/launch", "queue", "list",
            home=tmp_path / "h")
    assert sentence(r) == ('store: cannot connect to PostgreSQL database "launch" on '
                           "127.0.0.1:1 as u: connection refused.")
    assert "pw" not in r.err


# ---------------------------------------------------------------------- foreign files


def _journal_mode(path: Path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return str(db.execute("PRAGMA journal_mode").fetchone()[0])


def test_a_foreign_sqlite_file_is_refused_before_it_is_modified(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes (text) VALUES ('keep me')")
    conn.close()
    db.chmod(0o644)
    before = fingerprint(db)
    assert _journal_mode(db) == "delete"
    r = run("--store", str(db), "queue", "list", home=tmp_path / "h")
    assert sentence(r) == (
        f"store: {db} is not a launch-tui database (it has other tables and no launch_meta "
        "table).")
    assert fingerprint(db) == before
    assert _journal_mode(db) == "delete"
    assert sorted(os.listdir(tmp_path)) == ["other.db"]  # no -wal, -shm or lock file


def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("just text\n")
    db.chmod(0o664)
    before = fingerprint(db)
    r = run("--store", str(db), "queue", "list", home=tmp_path / "h")
    assert sentence(r) == f"store: {db} is not a launch-tui database (not an SQLite file)."
    assert fingerprint(db) == before


# ---------------------------------------------------------------------- snapshots


def _snapshots(home: Path) -> list[str]:
    code = home / "artifacts" / "code"
    return sorted(os.listdir(code)) if code.is_dir() else []


def test_a_refused_code_job_leaves_no_snapshot(cli, home: Path, code_dir: Path) -> None:  # type: ignore[no-untyped-def]
    create = ("job", "create", "code", str(code_dir), "-e", "python train.py")
    assert sentence(cli(*create, "--name", "bad name")).startswith("name: 'bad name'")
    assert sentence(cli(*create, "--project", "nope")).startswith("project: 'nope'")
    assert sentence(cli("job", "create", "code", str(code_dir), "-e", "")).startswith(
        "entrypoint:")
    assert sentence(cli(*create, "--alias", "v3")).startswith("alias: 'v3'")
    assert cli("job", "create", "git", "https://github.com/x/y.git", "-e", "python t.py",
               "--name", "g").code == 0
    # Refused inside the transaction, after the files were read: a git job has the name.
    assert sentence(cli(*create, "--name", "g")) == (
        "name: job 'g' is a git job; a code job needs another name.")
    assert _snapshots(home) == []

    # Content already in place is shared: a refused job never removes it.
    assert cli(*create, "--name", "train").code == 0
    (kept,) = _snapshots(home)
    assert sentence(cli(*create, "--name", "g")).startswith("name: job 'g' is a git job")
    assert _snapshots(home) == [kept]
    assert (home / "artifacts" / "code" / kept / "train.py").is_file()


def test_unreadable_files_in_a_code_directory_are_named(cli, home: Path,  # type: ignore[no-untyped-def]
                                                        code_dir: Path) -> None:
    prefix = unprivileged()
    assert cli("queue", "list").code == 0  # the store exists (permissions do not matter)
    secret = code_dir / "secret.py"
    secret.write_text("x = 1\n")
    secret.chmod(0)
    create = ("job", "create", "code", str(code_dir), "-e", "python train.py")
    assert sentence(run(*create, home=home, prefix=prefix)) == (
        "path: cannot read secret.py (Permission denied).")
    secret.unlink()
    sub = code_dir / "sub"
    sub.mkdir()
    (sub / "a.py").write_text("")
    sub.chmod(0)
    try:
        assert sentence(run(*create, home=home, prefix=prefix)) == (
            f"path: cannot read sub/ in {code_dir} (Permission denied).")
    finally:
        sub.chmod(0o755)
    assert _snapshots(home) == []


def test_a_fifo_in_a_code_directory_is_left_out(cli, home: Path, code_dir: Path) -> None:  # type: ignore[no-untyped-def]
    os.mkfifo(code_dir / "pipe")  # opening it would wait for a writer that never comes
    r = cli("job", "create", "code", str(code_dir), "-e", "python train.py")
    assert r.code == 0, r.err
    (snapshot,) = _snapshots(home)
    assert os.listdir(home / "artifacts" / "code" / snapshot) == ["train.py"]


def test_a_file_gone_or_replaced_after_listing_is_named(tmp_path: Path) -> None:
    root = tmp_path / "code"
    root.mkdir()
    (root / "a.py").write_text("a")
    (root / "b.py").write_text("b")
    files = collect(root, 1 << 20)
    (root / "a.py").unlink()
    with pytest.raises(ValidationError) as caught:
        digest_of(files)
    assert str(caught.value) == "path: cannot read a.py (No such file or directory)."
    (root / "a.py").write_text("a")
    files = collect(root, 1 << 20)
    (root / "b.py").unlink()
    os.mkfifo(root / "b.py")
    with pytest.raises(ValidationError) as caught:
        digest_of(files)  # returns at once: the FIFO is opened without waiting
    assert str(caught.value) == "path: b.py is no longer a regular file."
