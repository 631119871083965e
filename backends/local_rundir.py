"""The files of a local-process run directory, and the processes they name.

The supervisor (`local_supervisor`) writes them; the backend, the builder, the
fork server and a restarted agent read them. Standard library only: the
supervisor imports this module, and it starts on the dispatch path.

    launch.json      what to run (argv, cwd, env, timeout), written by the backend
    supervisor.json  the supervisor's pid and /proc start time, once it owns the run
    supervisor.lock  held by the supervisor for its lifetime; names it from the start
    job.json         the job's pid, process group and start time
    output.jsonl     one JSON object per output line: {"ts", "stream", "n", "text"},
                     n numbering the records from 1 (a reader far behind skips
                     to the end and knows how many records it passed over)
    cancel.json      written by the backend when the run is cancelled
    exit.json        how the job ended, written atomically as the very last step
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

LAUNCH = "launch.json"
SUPERVISOR = "supervisor.json"
SUPERVISOR_LOCK = "supervisor.lock"
JOB = "job.json"
OUTPUT = "output.jsonl"
CANCEL = "cancel.json"
EXIT = "exit.json"


def write_json_atomic(path: Path, data: dict[str, Any], *, durable: bool = True) -> None:
    """Readers see either no file or the whole file, never a torn one.

    `durable` also waits until the file is on disk (fsync), for records that must
    survive the machine going down: the claim of a run (supervisor.json) and how it
    ended (exit.json). The others matter only while the processes live, and skip it:
    on ext4 an fsync commits the journal, which waits for every job's unwritten
    output, so under a log flood one takes seconds.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def proc_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None if it is gone or a zombie.

    Together with the pid this names a process uniquely, so a recycled pid is
    never mistaken for the job.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses.
    fields = raw[raw.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def is_alive(pid: int, start_time: int | None) -> bool:
    if not Path("/proc").is_dir():  # not Linux: best effort
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    current = proc_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


def lock_holder(run_dir: Path) -> tuple[int, int | None] | None:
    """The supervisor that holds `run_dir`'s lock, as (pid, start time), or None when
    none does; (0, None) for one that has not yet written who it is.

    For a submit whose own supervisor left because the lock was taken: a supervisor
    the fork server forked after the submit stopped waiting for its answer holds
    the run, and may not have written supervisor.json yet (under a flood it
    competes for the CPU with every job, and the file is fsynced). Probing takes
    the lock for an instant: a supervisor starting in that instant leaves, as if
    the probe had been a supervisor before it.
    """
    try:
        fd = os.open(run_dir / SUPERVISOR_LOCK, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            fields = os.pread(fd, 64, 0).split()
            try:
                start = None if fields[1] == b"None" else int(fields[1])
                return int(fields[0]), start
            except (IndexError, ValueError):
                return 0, None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
