"""A fork server per home directory that starts local-process supervisors without a Python start.

    python -m launch_tui.backends.local_forkserver HOME ADDRESS IDLE_S

Starting `python -m launch_tui.backends.local_supervisor` costs a fresh
interpreter (about 50 ms) on every dispatch. This long-lived process has the
supervisor imported already and forks one per request instead (about 1 ms).
`local_spawn` is the agent's side: it starts this server and talks to it.

Survival is unchanged: the server runs in its own session, detached from the
agent that started it (it double-forks, so it is nobody's child), and each
supervisor it forks is a process group of its own, so killing an agent (even
with SIGKILL), or the server itself, leaves jobs running. The supervisors stay
in the server's session on purpose: Linux's autogroup scheduling gives each
session an equal share of the CPU, so one session for all of a home's runs
means a hundred busy runs compete with the agent as one, not as a hundred
(a session per run starved the agent of CPU, and dispatch with it), and the
server lowers that session's priority as a whole (`local_priority`), as
even one session of busy runs takes more than its share. The supervisors'
files stay the record; the server holds no state a restarted agent would need.

One per home and code version: it listens on a Linux abstract-namespace unix
socket whose name is a hash of the home path and of the supervisor's and this
module's source (no 108-byte sun_path limit, no stale socket file: the kernel
frees the name when the process dies). A restarted agent with the same code
reuses it; newer code gets a new one; a dead one is simply started again.
Binding the name is exclusive, so two agents racing to start one end with one;
a lock file makes the second wait instead of starting a process in vain.

Only processes of the server's own user are served (SO_PEERCRED), and only run
directories under HOME/work. It reaps the supervisors it forked, and exits
after IDLE_S with none alive and no request, or when HOME is removed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import traceback
from pathlib import Path
from typing import Any

# Only the standard library and the supervisor's modules: this process starts on a
# dispatch path, and everything it imports is in every supervisor it forks.
from launch_tui.backends import local_priority
from launch_tui.backends import local_rundir as rd
from launch_tui.backends import local_supervisor as sv

STATE_DIR = "forkserver"  # under the home: start lock, records and logs of the servers
SUPERVISOR_LOG = "supervisor.log"
IDLE_S = 600.0
HOME_CHECK_S = 60.0  # while idle, how often the server checks that its home still exists
REQUEST_TIMEOUT_S = 2.0
_MAX_REQUEST = 8192


def code_version() -> str:
    """Hash of what a forked supervisor runs: a server of other code is not reused."""
    h = hashlib.sha256()
    h.update(f"{sys.executable}\0{sys.version}\0".encode())
    for module in (sv.__file__, local_priority.__file__, rd.__file__, __file__):
        h.update(Path(module).read_bytes())
    return h.hexdigest()


def address_for(home: Path, version: str) -> str:
    home_key = hashlib.sha256(os.fsencode(os.path.realpath(home))).hexdigest()
    return f"\0launch-tui-forkserver-{home_key[:24]}-{version[:16]}"


def running_servers(home: Path) -> list[tuple[int, int | None]]:
    """(pid, start time) of the live fork servers of `home`, from their records."""
    found = []
    for path in sorted((home / STATE_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        process = (int(record["pid"]), record.get("start_time"))
        if rd.is_alive(*process):
            found.append(process)
    return found


# ---------------------------------------------------------------- server


class _Server:
    def __init__(self, home: Path, listener: socket.socket, idle_s: float) -> None:
        self.home = home
        self.work = Path(os.path.realpath(home / "work"))
        self.listener = listener
        self.idle_s = idle_s
        self.children: set[int] = set()
        self.last_active = time.monotonic()
        self.stopping = False
        # SIGCHLD (a supervisor ended) and SIGTERM wake the selector through this pipe.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel = selectors.DefaultSelector()

    def serve(self) -> None:
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, "accept")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        while not self.stopping:
            self._reap()
            if self.children:
                timeout = None  # busy: woken by a request or a child's end, nothing else
            else:
                idle_for = time.monotonic() - self.last_active
                if idle_for >= self.idle_s or not self.home.is_dir():
                    return
                timeout = min(self.idle_s - idle_for, HOME_CHECK_S)
            for key, _ in self.sel.select(timeout):
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wake_r, 512):
                            pass
                else:
                    self._accept()

    def _on_term(self, signum: int, frame: object) -> None:
        self.stopping = True  # supervisors live on; whoever needs one starts a new server

    def _reap(self) -> None:
        while self.children:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self.last_active = time.monotonic()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            self.last_active = time.monotonic()
            with conn:
                try:
                    reply = self._handle(conn)
                except (OSError, ValueError) as exc:
                    reply = {"error": str(exc)}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(reply).encode() + b"\n")

    def _handle(self, conn: socket.socket) -> dict[str, Any]:
        conn.setblocking(True)
        conn.settimeout(REQUEST_TIMEOUT_S)
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid != os.getuid():
            raise ValueError("only the fork server's own user may start supervisors")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(_MAX_REQUEST)
            if not chunk or len(data) > _MAX_REQUEST:
                raise ValueError("incomplete request")
            data += chunk
        run_dir = Path(os.path.realpath(json.loads(data)["run_dir"]))
        if run_dir.parent != self.work or not run_dir.is_dir():
            raise ValueError(f"{run_dir} is not a run directory of {self.home}")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            self._become_supervisor(run_dir, conn)  # never returns
        self.children.add(pid)
        return {"pid": pid}

    def _become_supervisor(self, run_dir: Path, conn: socket.socket) -> None:
        code = 1
        try:
            # Its own process group: nothing aimed at the server's group reaches it
            # (the session, which has no terminal, is kept: see the docstring).
            os.setpgid(0, 0)
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            self.sel.close()
            for closing in (conn, self.listener):
                closing.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            _redirect(run_dir / SUPERVISOR_LOG)
            os.chdir(run_dir)
            code = sv.main([str(run_dir)])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def _redirect(log: Path) -> None:
    out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m launch_tui.backends.local_forkserver HOME ADDRESS IDLE_S",
              file=sys.stderr)
        return 2
    home, address, idle_s = Path(argv[0]), argv[1], float(argv[2])
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind("\0" + address.removeprefix("\0"))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return 0  # another server has it: the agent connects to that one
        raise
    listener.listen(socket.SOMAXCONN)
    # Bound and listening before the parent exits: when the agent sees this
    # process end, connecting works. The child is nobody's child but init's.
    if os.fork() != 0:
        os._exit(0)
    # The session every supervisor and job forked here shares (see the docstring)
    # yields the CPU to the user's other sessions, the agent's among them.
    local_priority.lower_session_priority(tries=5)
    record = home / STATE_DIR / f"{address.strip(chr(0))}.json"
    with contextlib.suppress(OSError):
        rd.write_json_atomic(record, {"pid": os.getpid(),
                                      "start_time": rd.proc_start_time(os.getpid()),
                                      "started_at": time.time()})
    try:
        _Server(home, listener, idle_s).serve()
    finally:
        with contextlib.suppress(OSError):
            record.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
