"""What a local-process run is doing, read from its run directory, and how to wait for a change.

`read_state` turns the supervisor's files (and /proc) into a RunStatus, plus the
process whose end would be the next change that no file reports.
`Waiter` is what one `watch`, `logs`, `cancel` or `submit` waits on: the run
directory's inotify watch and that process's pidfd (see `local_watch`), or a
back-off poll where neither is available. `OutputReader` reads output.jsonl.

Every read here is a few hundred bytes from the page cache, made when the
kernel said the file changed; it runs in the event loop, since a hop to a
thread would cost more than the read.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import orjson

from launch_tui.backends import local_rundir as rd
from launch_tui.backends import local_supervisor as sv
from launch_tui.backends.local_build import read_json
from launch_tui.backends.local_watch import EVERYTHING, Backoff, RunEvents, Subscription
from launch_tui.core.backend import LogChunk, RunStatus
from launch_tui.core.model import LogStream, RunState

_READ_CHUNK = 64 * 1024
# Passing over a lagging run's output: only backlogs larger than _SKIP_MIN are
# skipped (smaller ones are cheaper to parse), and the newest bytes are parsed after
# all: KEEP_AT_END once the run has ended, so the stored log ends with its last
# lines, KEEP_LIVE while it runs (it goes on printing newer ones). Records numbered
# by the supervisor are skipped by their numbers (two small reads); older files
# without numbers by counting newlines in chunks of _SKIP_CHUNK (about a ms of a
# core each).
_SKIP_MIN = 256 * 1024
KEEP_AT_END = 128 * 1024
KEEP_LIVE = 4 * 1024
_SKIP_CHUNK = 4 << 20
# How much of a record's start is read to find its number: the head before the text
# is under 80 bytes.
_HEAD_BYTES = 256
# How far past an offset the next record surely starts: the longest record is
# MAX_LINE_CHARS characters, each at most 6 bytes JSON-escaped, plus its head.
_PROBE_BYTES = sv.MAX_LINE_CHARS * 6 + _HEAD_BYTES
_NUMBERED = re.compile(rb'\{"ts": [-+.0-9eE]+, "stream": "[a-z]+", "n": ([0-9]+), "text": ')

Process = tuple[int, int | None]  # pid and /proc start time


def exit_status(record: dict[str, Any]) -> RunStatus:
    code = record.get("exit_code")
    if record.get("cancelled"):
        return RunStatus(RunState.STOPPED, "cancelled", code)
    if record.get("error"):
        return RunStatus(RunState.FAILED, str(record["error"]), code)
    if record.get("timed_out"):
        return RunStatus(RunState.FAILED, f"timed out after {record.get('timeout_s')} s", code)
    if record.get("signal"):
        try:
            name = signal.Signals(int(record["signal"])).name
        except ValueError:
            name = str(record["signal"])
        return RunStatus(RunState.FAILED, f"killed by signal {name}", code)
    if code == 0:
        return RunStatus(RunState.FINISHED, None, 0)
    return RunStatus(RunState.FAILED, f"exit code {code}", code)


_VANISHED = "the job's process vanished without recording an exit status"


def alive(record: dict[str, Any] | None) -> Process | None:
    if record is None:
        return None
    process = (int(record["pid"]), record.get("start_time"))
    return process if rd.is_alive(*process) else None


def read_state(run_dir: Path) -> tuple[RunStatus, Process | None]:
    """The run's state from its files and /proc, and the process to follow until it changes.

    That process is the supervisor while it lives (its files report the rest),
    else an orphaned job; None once the run has ended.
    """
    record = read_json(run_dir / rd.EXIT)
    if record is not None:
        return exit_status(record), None
    sup = read_json(run_dir / rd.SUPERVISOR)
    if sup is None:
        return RunStatus(RunState.CRASHED, "no supervisor was started for this run"), None
    job = read_json(run_dir / rd.JOB)
    supervisor = alive(sup)
    job_process = alive(job)
    if job_process is not None:
        return RunStatus(RunState.RUNNING), supervisor or job_process
    if supervisor is not None:
        # Before the job starts, or while the supervisor records its exit.
        return RunStatus(RunState.STARTING if job is None else RunState.RUNNING), supervisor
    record = read_json(run_dir / rd.EXIT)  # it may have been written meanwhile
    if record is not None:
        return exit_status(record), None
    if (run_dir / rd.CANCEL).exists():
        return RunStatus(RunState.STOPPED, f"cancelled; {_VANISHED}"), None
    return RunStatus(RunState.CRASHED, _VANISHED), None


class Waiter:
    """What one watch, logs, cancel or submit waits on: its run directory and one process."""

    def __init__(
        self, run_dir: Path, names: frozenset[str], backoff: Backoff | None = None
    ) -> None:
        self.run_dir = run_dir
        events = RunEvents.current()
        self.sub: Subscription | None = events.subscribe(run_dir, names) if events else None
        self.backoff = backoff or Backoff()

    def follow(self, process: Process | None) -> None:
        if self.sub is not None:
            self.sub.follow(process)

    def inspect(self) -> RunStatus:
        status, process = read_state(self.run_dir)
        self.follow(None if status.state.terminal else process)
        return status

    async def next(self, at_most_s: float | None = None) -> set[str]:
        """What changed, once something did; an empty set after at_most_s."""
        if self.sub is not None and not self.sub.degraded:
            return await self.sub.wait(at_most_s)
        # Nothing pushes here: look again after a back-off delay.
        delay = self.backoff.next()
        if at_most_s is not None:
            delay = min(delay, at_most_s)
        if self.sub is None:
            await asyncio.sleep(delay)
            return {EVERYTHING}
        return await self.sub.wait(delay) or {EVERYTHING}

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sub is not None:
            self.sub.close()


class OutputReader:
    """Reads output.jsonl in bounded chunks, remembering where it stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: Any = None
        self.partial = b""

    def read_batch(self) -> list[LogChunk]:
        """The next complete lines (at most about one chunk's worth); [] at the current end."""
        if not self._open():
            return []
        while True:
            data = self.file.read(_READ_CHUNK)
            if not data:
                return []
            complete, newline, self.partial = (self.partial + data).rpartition(b"\n")
            if newline:
                # One decode for the whole chunk: the supervisor writes UTF-8 records.
                text = complete.decode("utf-8", "replace")
                return [_parse_line(line) for line in text.split("\n") if line]

    def worth_skipping(self, keep: int = KEEP_AT_END) -> bool:
        """Whether so much is written and unread that skipping all but the newest `keep`
        bytes beats parsing (one fstat)."""
        if not self._open():
            return False
        unread = os.fstat(self.file.fileno()).st_size - self.file.tell()
        return unread - keep >= _SKIP_MIN

    def skip_numbered(self, keep: int = KEEP_AT_END) -> int | None:
        """Pass over all but the newest bytes by the records' numbers; how many lines
        that was, or None where the records carry no numbers (then count them).

        Two reads of a record's head, whatever the backlog: cheap enough for the
        event loop. For a run whose lines the agent only counts anyway.
        """
        if not self.worth_skipping(keep):
            return 0
        fd = self.file.fileno()
        here = self.file.tell()
        # The next line starts with what was read of it already (self.partial).
        first = _record_number(self.partial + os.pread(fd, _HEAD_BYTES, here))
        # From the first record that starts in the newest `keep` bytes (in the newest
        # KEEP_AT_END where a record is longer than `keep`).
        size = os.fstat(fd).st_size
        around = size - keep
        window = os.pread(fd, keep, around)
        if window.find(b"\n") < 0 < size - KEEP_AT_END - here:
            around = size - KEEP_AT_END
            window = os.pread(fd, KEEP_AT_END, around)
        newline = window.find(b"\n")
        if first is None or newline < 0:
            return None
        last = _record_number(window[newline + 1 : newline + 1 + _HEAD_BYTES])
        if last is None or last < first:
            return None
        self.file.seek(around + newline + 1)
        self.partial = b""
        return last - first

    def seek_record(self, stored: int) -> int | None:
        """From the start of the file, pass over the first `stored` records by their
        numbers; how many that was (fewer if the file holds fewer), or None where the
        records carry no numbers (then read them). For an agent re-attaching to a run
        whose first lines the store has: a binary search of a few dozen small reads
        instead of parsing gigabytes. Blocking: call it in a thread.
        """
        if stored <= 0 or not self._open() or self.file.tell() or self.partial:
            return None
        fd = self.file.fileno()
        size = os.fstat(fd).st_size
        if _record_number(os.pread(fd, _HEAD_BYTES, 0)) != 1:
            return None
        # The smallest offset whose next record is numbered past `stored`; the file
        # is in record order, so numbers only grow with offsets.
        lo, hi = 0, size
        while lo < hi:
            mid = (lo + hi) // 2
            found = _record_at(fd, mid, size)
            if found is None or found[1] is None or found[1] > stored:
                hi = mid
            else:
                lo = mid + 1
        found = _record_at(fd, lo, size)
        if found is not None and found[1] == stored + 1:
            self.file.seek(found[0])
            return stored
        # The file holds `stored` records or fewer: pass over all complete ones.
        base = max(0, size - _PROBE_BYTES)
        tail = os.pread(fd, size - base, base)
        end = tail.rfind(b"\n")
        if end < 0:
            return None
        before = tail.rfind(b"\n", 0, end)
        if before < 0 and base:
            return None
        last = _record_number(tail[before + 1 : before + 1 + _HEAD_BYTES])
        if last is None or last > stored:
            return None
        self.file.seek(base + end + 1)
        return last

    def _open(self) -> bool:
        """Open the file if it exists and is not open yet; whether it is open."""
        if self.file is None:
            try:
                self.file = open(self.path, "rb", buffering=0)
            except FileNotFoundError:
                return False
        return True

    def skip_backlog(self, keep: int = KEEP_AT_END) -> int:
        """Pass over all but the newest bytes written so far; how many lines that was.

        For a run whose lines the agent only counts anyway: by the records' numbers
        where they have them, else counting newlines, which reads the file at
        page-cache speed where parsing every JSON record would cost the agent a
        core. Blocking (it may read hundreds of MB): call it in a thread.
        """
        numbered = self.skip_numbered(keep)
        if numbered is not None:
            return numbered
        pos = self.file.tell()
        stop = os.fstat(self.file.fileno()).st_size - keep
        skipped = 0
        buf = bytearray(_SKIP_CHUNK)
        view = memoryview(buf)
        while pos < stop:
            n = self.file.readinto(view[: min(len(buf), stop - pos)])
            if not n:
                break
            pos += n
            ends = buf.count(b"\n", 0, n)
            if ends:
                # Each newline ends one line (the supervisor writes no empty ones); what
                # follows the last is the start of the line read next.
                skipped += ends
                self.partial = bytes(view[buf.rfind(b"\n", 0, n) + 1 : n])
            else:
                self.partial += bytes(view[:n])
        view.release()
        return skipped

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _record_at(fd: int, offset: int, size: int) -> tuple[int, int | None] | None:
    """Where the first record starting at or after `offset` starts, and its number
    (None without one, or where it is still being written); None if none starts."""
    start = 0
    if offset:
        newline = os.pread(fd, _PROBE_BYTES, offset - 1).find(b"\n")
        if newline < 0:
            return None
        start = offset + newline
    if start >= size:
        return None
    return start, _record_number(os.pread(fd, _HEAD_BYTES, start))


def _record_number(head: bytes) -> int | None:
    """The number of the record `head` starts (None for records without one)."""
    match = _NUMBERED.match(head)
    return int(match[1]) if match else None


# The agent parses every stored line of every run: orjson (a fifth of json's time
# for a 200-character line),
# and a lookup table for the stream that skips the enum's per-call overhead.
_decode = json.JSONDecoder().decode
_STREAMS = {stream.value: stream for stream in LogStream}


def _parse_line(line: str) -> LogChunk:
    try:
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError:
            rec = _decode(line)  # what orjson refuses and json takes: lone surrogates
        return LogChunk(_STREAMS[rec["stream"]], str(rec["text"]), float(rec["ts"]))
    except (ValueError, KeyError, TypeError):
        return LogChunk(LogStream.STDOUT, line, time.time())
