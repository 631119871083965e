"""A real `git daemon` on loopback and small repositories to serve, for tests.

Shared by the git checkout tests and the Docker builder tests. The daemon is
started and stopped by its own PID; it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` with a fixed identity; return its stdout stripped."""
    env = {**os.environ, **_GIT_ENV, "HOME": str(cwd)}
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def commit_files(work: Path, files: dict[str, str], message: str) -> str:
    """Write `files` into the work tree `work`, commit them, return the sha."""
    for rel, text in files.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", message)
    return git(work, "rev-parse", "HEAD")


@dataclass
class GitDaemon:
    base: Path  # repositories served as git://127.0.0.1:port/<name>
    port: int
    proc: subprocess.Popen[bytes]

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def new_repo(self, name: str) -> Path:
        """A bare repository `name` under the served directory plus a work tree pushing to it.

        Returns the work tree; commit with `commit_files`, then `publish(work)`.
        """
        bare = self.base / name
        git(self.base, "init", "-q", "--bare", "-b", "main", str(bare))
        work = self.base.parent / "work" / name
        work.mkdir(parents=True)
        git(work, "init", "-q", "-b", "main")
        git(work, "remote", "add", "origin", str(bare))
        return work

    @staticmethod
    def publish(work: Path) -> None:
        git(work, "push", "-q", "--all", "origin")
        git(work, "push", "-q", "--tags", "origin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"git daemon exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"git daemon did not listen on 127.0.0.1:{port} within {timeout}s")


@contextmanager
def git_daemon(root: Path) -> Iterator[GitDaemon]:
    """Serve `root`/repos over git:// on a free loopback port for the block's duration."""
    base = root / "repos"
    base.mkdir(parents=True)
    port = _free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--listen=127.0.0.1",
            f"--port={port}",
            "--export-all",
            "--reuseaddr",
            "--informative-errors",
            f"--base-path={base}",
            str(base),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, proc)
        yield GitDaemon(base=base, port=port, proc=proc)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
