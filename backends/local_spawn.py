"""How the local-process backend starts a supervisor: through the home's fork server, else directly.

`SupervisorStarter.start(run_dir)` returns the new supervisor's pid; the
supervisor then claims the run by writing supervisor.json (the backend waits
for that). The fast path asks the home's fork server (`local_forkserver`),
starting it first if there is none, so no Python start is on the dispatch path
but the first. If the server cannot be reached the supervisor is spawned as
`python -m launch_tui.backends.local_supervisor RUN_DIR`, as before, and reaped
through its pidfd (no thread per run); the server is tried again 5 s later,
then after 10, 20, 40 and at most 60 s while it keeps failing. A server that
was only slow (a stall under load) is back in use within seconds: direct starts
cost a Python start each and put each run in a session of its own.

Neither the server nor a supervisor gets the agent's environment: only what
starting this interpreter needs (`process_env`). The job's environment is the
explicit one in launch.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from launch_tui.backends.local_forkserver import (
    IDLE_S,
    REQUEST_TIMEOUT_S,
    STATE_DIR,
    SUPERVISOR_LOG,
    address_for,
    code_version,
)
from launch_tui.backends.local_watch import RunEvents
from launch_tui.backends.venv_cache import FileLock
from launch_tui.core import jobenv

START_TIMEOUT_S = 10.0  # how long an agent waits for a fork server it started
# After the fork server failed, how long to spawn directly before trying it again:
# RETRY_FIRST_S, doubling with each failure in a row, at most RETRY_MAX_S.
RETRY_FIRST_S = 5.0
RETRY_MAX_S = 60.0
# What the server and the supervisors inherit of the agent's environment:
# enough to start this interpreter, none of the agent's secrets.
_OWN_ENV = ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH")


def process_env() -> dict[str, str]:
    """The environment of the fork server and of directly spawned supervisors."""
    return jobenv.inherited(os.environ, _OWN_ENV)


class ForkServerClient:
    """The agent's side: find or start the home's fork server, ask it for supervisors."""

    def __init__(self, home: Path, idle_s: float = IDLE_S) -> None:
        self.home = home
        self.idle_s = idle_s
        self.version = code_version()
        self.address = address_for(home, self.version)
        self.state_dir = home / STATE_DIR

    async def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                await asyncio.get_running_loop().sock_connect(sock, self.address)
        except TimeoutError as exc:
            sock.close()
            raise OSError("the fork server did not accept the connection") from exc
        except BaseException:
            sock.close()
            raise
        # Anyone may bind an abstract name: only a server of our own user is trusted.
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        if struct.unpack("3i", creds)[1] != os.getuid():
            sock.close()
            raise OSError(f"the fork server's address {self.address[1:]!r} belongs to another user")
        return sock

    async def connect(self) -> socket.socket:
        """A connection to the live server, starting one first if there is none."""
        with contextlib.suppress(ConnectionRefusedError, FileNotFoundError):
            return await self._connect()
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = FileLock(self.state_dir / "start.lock")
        await lock.acquire()
        try:
            with contextlib.suppress(ConnectionRefusedError, FileNotFoundError):
                return await self._connect()  # another agent started it meanwhile
            await self._start()
            return await self._connect()
        finally:
            lock.release()

    def _popen_server(self, log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(
                # -P: nothing from the working directory shadows the installed package.
                [sys.executable, "-P", "-m", "launch_tui.backends.local_forkserver",
                 str(self.home), self.address.strip("\0"), str(self.idle_s)],
                cwd="/", env=process_env(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=out, start_new_session=True, close_fds=True,
            )

    async def _start(self) -> None:
        log = self.state_dir / f"{self.address.strip(chr(0))}.log"
        proc = self._popen_server(log)
        # It exits as soon as its detached child listens; wait for that, pushed
        # by its pidfd where available.
        done = asyncio.Event()
        events = RunEvents.current()
        stop = events.watch_process(proc.pid, None, done.set) if events else None
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    raise OSError(f"the fork server did not start within {START_TIMEOUT_S:g} s")
                if stop is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(deadline - time.monotonic()):
                            await done.wait()
                else:
                    await asyncio.sleep(0.01)
        finally:
            if stop is not None:
                stop()
        if proc.returncode != 0:
            raise OSError(f"the fork server exited with code {proc.returncode}; see {log}")

    async def spawn(self, run_dir: Path) -> int:
        """Have the server fork a supervisor for `run_dir`; its pid."""
        try:
            return await self._request(run_dir)
        except _ServerGone:
            # It was leaving (idle) as we connected: once more, with a new one if
            # need be. Safe even if it did fork: a second supervisor of a run
            # finds the first one's lock and leaves.
            return await self._request(run_dir)

    async def _request(self, run_dir: Path) -> int:
        loop = asyncio.get_running_loop()
        sock = await self.connect()
        data = b""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S * 2):
                await loop.sock_sendall(sock, json.dumps({"run_dir": str(run_dir)}).encode()
                                        + b"\n")
                while not data.endswith(b"\n"):
                    chunk = await loop.sock_recv(sock, 4096)
                    if not chunk:
                        break
                    data += chunk
        except TimeoutError as exc:
            raise OSError("the fork server did not answer") from exc
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise _ServerGone("the fork server closed the connection") from exc
        finally:
            sock.close()
        try:
            reply = json.loads(data)
        except ValueError as exc:
            raise _ServerGone("the fork server closed the connection without an answer") from exc
        if "pid" not in reply:
            raise OSError(f"the fork server refused: {reply.get('error')}")
        return int(reply["pid"])


class _ServerGone(OSError):
    """The connection ended without an answer: the server is gone or going."""


def spawn_direct(run_dir: Path) -> subprocess.Popen[bytes]:
    """Start a supervisor with a Python start of its own (the fallback)."""
    with open(run_dir / SUPERVISOR_LOG, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "launch_tui.backends.local_supervisor", str(run_dir)],
            cwd=run_dir,
            env=process_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            # Its own session: no signal aimed at the agent (Ctrl-C, the
            # agent's process group being killed) reaches the job.
            start_new_session=True,
            close_fds=True,
        )


def _note(run_dir: Path, line: str) -> None:
    with contextlib.suppress(OSError), open(run_dir / SUPERVISOR_LOG, "a") as log:
        log.write(line + "\n")


class SupervisorStarter:
    """Starts supervisors for one home; owns the fork server client and direct children."""

    def __init__(self, home: Path, *, use_forkserver: bool = True, idle_s: float = IDLE_S) -> None:
        self.client = ForkServerClient(home, idle_s) if use_forkserver else None
        self._retry_at = 0.0
        self._failures = 0  # in a row: how far the wait before the next try has grown
        self._failed_at = float("-inf")
        self._children: set[subprocess.Popen[bytes]] = set()  # spawned directly, not reaped

    async def start(self, run_dir: Path) -> int:
        """The pid of a new supervisor for `run_dir`."""
        self._reap()
        asked = time.monotonic()
        if self.client is not None and asked >= self._retry_at:
            try:
                pid = await self.client.spawn(run_dir)
            except OSError as exc:
                self._failed(asked)
                _note(run_dir, f"fork server unavailable ({exc}); starting the supervisor directly")
            else:
                self._failures = 0
                return pid
        proc = spawn_direct(run_dir)
        self._children.add(proc)
        events = RunEvents.current()
        if events is not None:
            events.watch_process(proc.pid, None, self._reap)
        return proc.pid

    def _failed(self, asked: float) -> None:
        """Spawn directly for a while. Requests that were already waiting when an
        earlier one failed are the same failure, not another one in a row."""
        if asked >= self._failed_at:
            self._failures += 1
        self._failed_at = time.monotonic()
        wait = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (self._failures - 1))
        self._retry_at = self._failed_at + wait

    def _reap(self) -> None:
        # Without a reaper thread: called when a child's pidfd says it ended,
        # and on every start for platforms without pidfds.
        for proc in list(self._children):
            if proc.poll() is not None:
                self._children.discard(proc)
