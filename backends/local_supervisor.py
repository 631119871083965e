"""Supervisor of one local-process run: `python -m launch_tui.backends.local_supervisor RUN_DIR`.

The agent starts this small process in a session apart from its own (forked by
the home's fork server, `local_forkserver`, into the server's session shared by
all its runs, or as a fresh interpreter in a new one), so the job outlives an
agent that is killed (even with SIGKILL): everything the agent later needs is
a file in RUN_DIR, written here (the files: `local_rundir`).

Only the standard library is used (and `local_priority` and `local_rundir`,
themselves standard library only), so the supervisor starts fast and works in
any interpreter that can run the agent. Memory stays bounded whatever the job
prints: output is read in chunks and very long lines are split.
"""

from __future__ import annotations

import codecs
import fcntl
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

from launch_tui.backends.local_priority import lower_job_priority, lower_session_priority
from launch_tui.backends.local_rundir import (
    CANCEL,
    EXIT,
    JOB,
    LAUNCH,
    OUTPUT,
    SUPERVISOR,
    SUPERVISOR_LOCK,
    proc_start_time,
    write_json_atomic,
)

READ_CHUNK = 64 * 1024
# A line longer than this is recorded as several records, so neither this
# process nor a log reader ever holds an unbounded line in memory.
MAX_LINE_CHARS = 64 * 1024
FLUSH_EVERY_S = 0.1
POLL_S = 0.1  # where pidfds are missing, how often the pump looks for the job's exit
# After the job's main process exits, how long its leftover children may keep
# the output pipes open before the whole process group is killed.
LEFTOVER_GRACE_S = 2.0
DRAIN_AFTER_KILL_S = 3.0


# json.dumps(text, ensure_ascii=False) without the call's overhead: the C encoder
# json itself uses for strings.
_json_string = json.encoder.encode_basestring


class _Records:
    """The output file and how many records it holds: both streams' sinks append here."""

    def __init__(self, out: BinaryIO, existing: int = 0) -> None:
        self.out = out
        self.count = existing


def count_records(path: Path) -> int:
    """Records already in an output file (0 for a new one)."""
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


class _LineSink:
    """Turns one stream's bytes into timestamped JSON-line records in the output file."""

    def __init__(self, name: str, records: _Records) -> None:
        self.name = name
        self.records = records
        # Incremental decoding keeps multi-byte characters split across reads
        # intact; undecodable bytes become U+FFFD instead of failing.
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.partial = ""

    def feed(self, data: bytes) -> None:
        text = self.partial + self.decoder.decode(data)
        *lines, self.partial = text.split("\n")
        now = time.time()
        if lines:
            self._write_all([line.removesuffix("\r") for line in lines], now)
        while len(self.partial) > MAX_LINE_CHARS:
            self._emit(self.partial[:MAX_LINE_CHARS], now)
            self.partial = self.partial[MAX_LINE_CHARS:]

    def close(self) -> None:
        self.partial += self.decoder.decode(b"", final=True)
        if self.partial:
            self._emit(self.partial, time.time())
            self.partial = ""

    def _emit(self, text: str, ts: float) -> None:
        self._write_all([text], ts)

    def _write_all(self, texts: list[str], ts: float) -> None:
        """One record per text, all stamped `ts`, in one write.

        Records of one read share everything but their text, so only the text is
        JSON-encoded per line: a job printing as fast as it can costs this process
        a fraction of what one json.dumps of a dict per line did.
        """
        head = f'{{"ts": {round(ts, 6)!r}, "stream": "{self.name}", "n": '
        n = self.records.count
        records = []
        for text in texts:
            while len(text) > MAX_LINE_CHARS:
                n += 1
                records.append(f'{head}{n}, "text": {_json_string(text[:MAX_LINE_CHARS])}}}\n')
                text = text[MAX_LINE_CHARS:]
            n += 1
            records.append(f'{head}{n}, "text": {_json_string(text)}}}\n')
        self.records.out.write("".join(records).encode("utf-8", "replace"))
        self.records.count = n


class Supervisor:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.launch: dict[str, Any] = json.loads((run_dir / LAUNCH).read_text())
        self.proc: subprocess.Popen[bytes] | None = None
        self.terminate_requested = False
        # Read end of the signal wakeup pipe: a SIGTERM interrupts the pump's wait.
        self.wake_fd: int | None = None

    def signal_job(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def cancelled(self) -> bool:
        return (self.run_dir / CANCEL).exists()

    def write_exit(self, **fields: Any) -> None:
        record = {
            "exit_code": None,
            "signal": None,
            "timed_out": False,
            "timeout_s": self.launch.get("timeout_s"),
            "cancelled": self.cancelled(),
            "error": None,
            "ended_at": time.time(),
            **fields,
        }
        write_json_atomic(self.run_dir / EXIT, record)

    def run(self) -> None:
        if self.cancelled():
            self.write_exit(cancelled=True)
            return
        argv: list[str] = self.launch["argv"]
        out_path = self.run_dir / OUTPUT
        existing = count_records(out_path)  # none, unless a start was tried before
        with open(out_path, "ab", buffering=READ_CHUNK) as out:
            records = _Records(out, existing)
            try:
                self.proc = subprocess.Popen(
                    argv,
                    cwd=self.launch["cwd"],
                    env=self.launch["env"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    # Its own process group: cancel and timeout signal the job
                    # and every process it started, and nothing else. Not its own
                    # session: the supervisor's has no terminal, and a session per
                    # job would give each its own share of the CPU (autogroup).
                    process_group=0,
                    close_fds=True,
                )
            except OSError as exc:
                shown = " ".join(self.launch.get("entrypoint") or argv)
                message = (
                    f"entrypoint: '{shown}' cannot start: "
                    f"{exc.strerror or exc} ({exc.filename or argv[0]})."
                )
                _LineSink("stderr", records)._emit(message, time.time())
                out.flush()
                self.write_exit(exit_code=127, error=message)
                return
            lower_job_priority(self.proc.pid, int(self.launch.get("nice") or 0))
            write_json_atomic(
                self.run_dir / JOB,
                {
                    "pid": self.proc.pid,
                    "pgid": self.proc.pid,
                    "start_time": proc_start_time(self.proc.pid),
                    "started_at": time.time(),
                },
                durable=False,  # the job does not outlive the machine either
            )
            if self.cancelled():  # cancel raced with the start
                self.signal_job(signal.SIGTERM)
            timed_out = self._pump(records)
        code = self.proc.wait()
        if code < 0:
            self.write_exit(exit_code=128 - code, signal=-code, timed_out=timed_out)
        else:
            self.write_exit(exit_code=code, timed_out=timed_out)

    def _pump(self, records: _Records) -> bool:
        """Copy the job's output until both pipes close; enforce the timeout. True if it hit.

        Woken only by output, the job's exit (its pidfd), a signal (through the
        wakeup fd) or the next deadline: an idle job costs this process nothing.
        A line after a quiet spell is written at once (a reader sees it live);
        a burst is written in batches at most FLUSH_EVERY_S apart.
        """
        assert self.proc is not None and self.proc.stdout and self.proc.stderr
        timeout_s = self.launch.get("timeout_s")
        kill_grace_s = float(self.launch.get("timeout_grace_s", 10.0))
        started = time.monotonic()
        timed_out = False
        kill_at: float | None = None
        leader_gone_at: float | None = None
        group_killed_at: float | None = None
        last_flush = float("-inf")
        unflushed = False

        sel = selectors.DefaultSelector()
        open_pipes = 0
        for pipe, name in ((self.proc.stdout, "stdout"), (self.proc.stderr, "stderr")):
            os.set_blocking(pipe.fileno(), False)
            sink = _LineSink(name, records)
            sel.register(pipe.fileno(), selectors.EVENT_READ, (pipe, sink))
            open_pipes += 1
        pidfd = _pidfd(self.proc.pid)
        if pidfd is not None:
            sel.register(pidfd, selectors.EVENT_READ, "exited")
        if self.wake_fd is not None:
            sel.register(self.wake_fd, selectors.EVENT_READ, "signal")

        while open_pipes:
            now = time.monotonic()
            deadlines = []
            if unflushed:
                deadlines.append(last_flush + FLUSH_EVERY_S)
            if timeout_s and not timed_out:
                deadlines.append(started + timeout_s)
            if kill_at is not None:
                deadlines.append(kill_at)
            if leader_gone_at is not None and group_killed_at is None:
                deadlines.append(leader_gone_at + LEFTOVER_GRACE_S)
            if group_killed_at is not None:
                deadlines.append(group_killed_at + DRAIN_AFTER_KILL_S)
            if pidfd is None and leader_gone_at is None:
                deadlines.append(now + POLL_S)  # no pidfd here: look for the exit now and then
            wait = max(0.0, min(deadlines) - now) if deadlines else None
            for key, _ in sel.select(wait):
                if key.data == "exited":
                    sel.unregister(key.fd)  # stays readable; poll() below sees the exit
                elif key.data == "signal":
                    _drain(key.fd)
                else:
                    pipe, sink = key.data
                    try:
                        data = os.read(key.fd, READ_CHUNK)
                    except BlockingIOError:
                        continue
                    if data:
                        sink.feed(data)
                        unflushed = True
                    else:
                        sink.close()
                        sel.unregister(key.fd)
                        pipe.close()
                        open_pipes -= 1
            now = time.monotonic()
            if unflushed and now - last_flush >= FLUSH_EVERY_S:
                records.out.flush()
                last_flush = now
                unflushed = False

            if self.terminate_requested:
                self.terminate_requested = False
                self.signal_job(signal.SIGTERM)
            if timeout_s and not timed_out and now - started >= timeout_s:
                timed_out = True
                self.signal_job(signal.SIGTERM)
                kill_at = now + kill_grace_s
            if kill_at is not None and now >= kill_at:
                self.signal_job(signal.SIGKILL)
                kill_at = None

            if leader_gone_at is None and self.proc.poll() is not None:
                leader_gone_at = now
            if leader_gone_at is not None and group_killed_at is None:
                if now - leader_gone_at >= LEFTOVER_GRACE_S:
                    # Children left behind keep the pipes open; a run ends with
                    # its main process, so they go too.
                    self.signal_job(signal.SIGKILL)
                    group_killed_at = now
            if group_killed_at is not None and now - group_killed_at >= DRAIN_AFTER_KILL_S:
                break  # something escaped the group and holds the pipe; stop waiting
        for key in list(sel.get_map().values()):
            if isinstance(key.data, tuple):
                pipe, sink = key.data
                sink.close()
                pipe.close()
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
        records.out.flush()
        return timed_out


def _pidfd(pid: int) -> int | None:
    """A descriptor that becomes readable when the child exits (Linux 5.3+), else None."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m launch_tui.backends.local_supervisor RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    if os.getsid(0) == os.getpid():
        # Started directly, in a session of its own (see `local_priority`).
        # Forked by the fork server, it shares the server's, already lowered.
        lower_session_priority()
    # The lock is held for the supervisor's lifetime: a second supervisor for
    # the same run (a retried submit) finds it taken and leaves.
    lock_fd = os.open(run_dir / SUPERVISOR_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0
    # Who holds the run until supervisor.json says so (`lock_holder`).
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, f"{os.getpid()} {proc_start_time(os.getpid())}\n".encode(), 0)
    if (run_dir / SUPERVISOR).exists():
        return 0  # the run was supervised before (and that supervisor has gone): never rerun
    # Read what to run before claiming the run: an unreadable launch record
    # fails here, and the submit that started us reports it.
    sup = Supervisor(run_dir)
    write_json_atomic(
        run_dir / SUPERVISOR,
        {"pid": os.getpid(), "start_time": proc_start_time(os.getpid()), "started_at": time.time()},
    )

    def on_term(signum: int, frame: object) -> None:
        sup.terminate_requested = True  # forwarded to the job from the pump loop

    sup.wake_fd, wake_w = os.pipe()  # not inherited by the job (PEP 446)
    for fd in (sup.wake_fd, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, on_term)
    # Terminal hang-ups and Ctrl-C aimed at the agent are not for the job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        sup.run()
    except Exception as exc:
        if not (run_dir / EXIT).exists():
            if sup.proc is not None and sup.proc.poll() is None:
                sup.signal_job(signal.SIGKILL)
                sup.proc.wait()
            sup.write_exit(error=f"the local-process supervisor failed: {exc!r}")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
