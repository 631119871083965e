"""Virtualenvs for local-process jobs, built once per requirements and reused.

A venv is keyed by the sha256 of its requirements (including files they pull
in with -r/-c and local paths they install from) and the interpreter it is
built with. Venvs are not relocatable, so each one is built in place under
`<home>/venvs/<key>` while holding an fcntl lock on `<key>.lock`; a marker
file written last says it is complete. A directory without the marker is what
a crashed or cancelled build left behind: it is deleted and built again.
Builds of the same key, in this process or another, wait for each other.
"""

from __future__ import annotations

import asyncio
import codecs
import fcntl
import hashlib
import os
import shutil
import sys
from collections import deque
from pathlib import Path
from typing import Any

from launch_tui.core import jobenv
from launch_tui.core.backend import BuildLog
from launch_tui.core.errors import BuildError

COMPLETE_MARKER = ".launch-tui-complete"
LOCK_POLL_S = 0.2
ERROR_LINES = 5  # lines of pip's output quoted in a BuildError
_READ_CHUNK = 64 * 1024
_MAX_LINE = 8 * 1024  # longer pip lines are split before they reach the build log


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _interpreter_id() -> bytes:
    # The venv links to the base interpreter, so that is what must match.
    base = getattr(sys, "_base_executable", sys.executable)
    return f"{sys.version}\n{os.path.realpath(base)}".encode()


def _hash_file(h: Any, name: str, path: Path) -> None:
    h.update(b"F" + name.encode() + b"\0")
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            h.update(chunk)


def _hash_path(h: Any, path: Path) -> None:
    if path.is_file():
        _hash_file(h, path.name, path)
        return
    for sub in sorted(p for p in path.rglob("*") if p.is_file()):
        _hash_file(h, str(sub.relative_to(path)), sub)


def requirements_key(req_file: Path, source_root: Path) -> str:
    """sha256 of the requirements, what they reference inside the source, and the interpreter.

    Lines naming a local path (`./pkg`, `-r other.txt`, `-e ./lib`, a wheel file)
    are followed, so changing a vendored package rebuilds the venv.
    """
    h = hashlib.sha256()
    h.update(_interpreter_id() + b"\0")
    seen: set[Path] = set()
    pending = [req_file]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        content = current.read_bytes()
        h.update(b"R" + str(current.relative_to(source_root)).encode() + b"\0" + content)
        for raw in content.decode("utf-8", "replace").splitlines():
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            include = False
            for flag in ("-r", "--requirement", "-c", "--constraint"):
                if line.startswith(flag + " ") or line.startswith(flag + "="):
                    line = line[len(flag) + 1 :].strip()
                    include = True
                    break
            for flag in ("-e", "--editable"):
                if line.startswith(flag + " ") or line.startswith(flag + "="):
                    line = line[len(flag) + 1 :].strip()
            if not line.startswith((".", "/")) and not include and not line.endswith(".whl"):
                continue
            target = (current.parent / line).resolve()
            if not target.is_relative_to(source_root) or not target.exists():
                continue
            if include and target.is_file():
                pending.append(target)
            else:
                _hash_path(h, target)
    return h.hexdigest()


async def _stream_lines(stream: asyncio.StreamReader, log: BuildLog, tail: deque[str]) -> None:
    """Forward a subprocess's output to `log` line by line, keeping the last lines."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    partial = ""
    while True:
        data = await stream.read(_READ_CHUNK)
        text = partial + decoder.decode(data, final=not data)
        *lines, partial = text.split("\n")
        if not data and partial:
            lines.append(partial)
            partial = ""
        while len(partial) > _MAX_LINE:
            lines.append(partial[:_MAX_LINE])
            partial = partial[_MAX_LINE:]
        for line in lines:
            line = line.rstrip("\r")
            if line.strip():
                tail.append(line)
            await log(line)
        if not data:
            return


async def _run(argv: list[str], cwd: Path, log: BuildLog, tail: deque[str]) -> int:
    # pip runs the build scripts of the job's requirements: they get the agent's
    # environment minus the store's URL and database password.
    env = jobenv.without_control_plane(os.environ)
    # The agent's own venv must not leak into the job's, and pip must not
    # stop to look for a newer version of itself.
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONHOME", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        await _stream_lines(proc.stdout, log, tail)
        return await proc.wait()
    finally:
        if proc.returncode is None:  # cancelled: do not leave pip running
            proc.kill()
            await proc.wait()


class FileLock:
    """An exclusive fcntl lock, acquired without blocking the event loop or a thread.

    Polling with LOCK_NB keeps the wait cancellable; a thread blocked in
    flock() could not be interrupted and would take the lock after we gave up.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    async def acquire(self, on_wait: BuildLog | None = None) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        told = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if on_wait is not None and not told:
                        await on_wait("waiting for another build of the same environment")
                        told = True
                    await asyncio.sleep(LOCK_POLL_S)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


async def ensure_venv(
    venvs_root: Path, req_file: Path, source_root: Path, req_name: str, log: BuildLog
) -> tuple[Path, bool]:
    """The venv for these requirements, built if needed. Returns (venv dir, was cached)."""
    key = await asyncio.to_thread(requirements_key, req_file, source_root)
    await asyncio.to_thread(venvs_root.mkdir, parents=True, exist_ok=True)
    venv = venvs_root / key
    lock = FileLock(venvs_root / f"{key}.lock")
    await lock.acquire(log)
    try:
        if (venv / COMPLETE_MARKER).exists():
            await log(f"environment: reusing the virtualenv for {req_name} ({key[:12]})")
            return venv, True
        if venv.exists():
            await log("environment: removing an unfinished virtualenv left by an earlier build")
            await asyncio.to_thread(shutil.rmtree, venv)
        await log(f"environment: creating a virtualenv for {req_name} ({key[:12]})")
        try:
            await _build(venv, req_file, source_root, req_name, log)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, venv, True)
            raise
        (venv / COMPLETE_MARKER).write_text(key + "\n")
        return venv, False
    finally:
        lock.release()


async def _build(
    venv: Path, req_file: Path, source_root: Path, req_name: str, log: BuildLog
) -> None:
    tail: deque[str] = deque(maxlen=40)
    code = await _run([sys.executable, "-m", "venv", str(venv)], source_root, log, tail)
    if code != 0:
        raise BuildError(
            f"environment: cannot create a virtualenv (exit code {code}): {_last_lines(tail)}"
        )
    tail.clear()
    # cwd is the source root so relative paths in the requirements resolve there.
    argv = [str(venv_python(venv)), "-m", "pip", "install", "-r", str(req_file)]
    code = await _run(argv, source_root, log, tail)
    if code != 0:
        raise BuildError(
            f"environment: installing {req_name} failed (pip exit code {code}): {_last_lines(tail)}"
        )


def _last_lines(tail: deque[str]) -> str:
    """pip's error, which it prints last; its ERROR: lines when there are any."""
    lines = list(tail)
    errors = [ln.strip() for ln in lines if ln.lstrip().startswith("ERROR:")]
    chosen = errors[-ERROR_LINES:] if errors else [ln.strip() for ln in lines[-ERROR_LINES:]]
    return " | ".join(chosen) if chosen else "no output"
