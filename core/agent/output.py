"""Moving runs' output into the store without letting it stall anything else.

Every run of an agent hands its lines to one `OutputCollector`, which keeps a
bounded buffer per run and one writer task for the whole agent: it stores what
all runs produced in one `append_output` call (one transaction) every
FLUSH_S, so a hundred chatty runs cost a few large writes a second, not
thousands of small ones, and claims, heartbeats and cancels never queue behind
them. A run that prints faster than the store accepts keeps being read (its
backend keeps the full output); past its buffer's bound lines are counted, not
stored, and the gap becomes one marker line saying how many and where the full
log is (see `core.gaps`). Nothing is cut silently. Where a run has several output
sources (pods), a gap has one marker per source that lost lines, stored with that
source, so what a re-attaching agent skips of each source stays exact.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from launch_tui.core.errors import FencedOut
from launch_tui.core.gaps import gap_line
from launch_tui.core.model import LogStream, OutputBatch

log = logging.getLogger("launch_tui.agent.output")

# How long a line may wait to be stored while output keeps coming. A run that
# ended (`drain`) does not wait for it: its end is stored, and the run recorded
# finished, at the next write the store can take.
FLUSH_S = 0.25
# Lines of all runs taken in one round: large enough that a flood costs a few
# rounds a second (each waits on the event loop, which a flood keeps busy)...
MAX_BATCH_LINES = 16_000
# ...and stored as transactions of about this many lines, all handed to the store
# at once: the store's writer runs a waiting claim, heartbeat or cancel before the
# next of them, so none waits behind more than one (10-30 ms).
WRITE_LINES = 2_000
MAX_BUFFERED_PER_RUN = 5_000  # past this a run's lines are counted, not stored...
RESUME_AT = MAX_BUFFERED_PER_RUN // 2  # ...until its buffer has drained to this
# With many runs open each run's bound shrinks (resuming at half of it), so that
# together they buffer about MAX_BUFFERED_TOTAL lines (memory), never fewer than
# MIN_BUFFERED_PER_RUN each.
MAX_BUFFERED_TOTAL = 100_000
MIN_BUFFERED_PER_RUN = 500
# While dropping, the newest lines are kept aside and stored after the gap's marker,
# so the end of a run's output (where its errors are) is always in the store. Like
# the buffers, what is kept aside shrinks with many runs open: together about
# MAX_KEPT_TOTAL lines, never fewer than MIN_KEPT_PER_RUN each (a traceback's worth).
KEEP_NEWEST = 1_000
MAX_KEPT_TOTAL = 100_000
MIN_KEPT_PER_RUN = 100
RETRY_MAX_S = 5.0

Line = tuple[float, LogStream | str, str, str | None]  # (ts, stream, text, source)
Metric = tuple[int, float, dict[str, float], str | None]  # (step, ts, values, source)


class RunOutput:
    """One run's side of the collector: add lines and metric records, then drain."""

    def __init__(self, collector: OutputCollector, run_id: str, full_log: str | None) -> None:
        self._collector = collector
        self.run_id = run_id
        self.full_log = full_log
        # Lines and metric records in the order the run produced them.
        self.pending: collections.deque[tuple[str, Line | Metric]] = collections.deque()
        # Lines of the current gap, not yet announced by a marker, by source.
        self.dropped: dict[str | None, int] = {}
        self.dropped_total = 0
        self._dropping = False
        # At most the collector's `keep_newest` (which changes as runs open and close).
        self._newest: collections.deque[tuple[str, Line | Metric]] = collections.deque()
        self.drained = asyncio.Event()
        self.drained.set()
        self.discarded = False  # another agent has the run: nothing more is stored
        # Set while the buffer has room (drained to where lines are stored): a reader that can
        # pass over output cheaply waits for it instead of reading what is dropped.
        self._room = asyncio.Event()
        self._room.set()

    def discard(self) -> None:
        """Let go of everything buffered and store nothing more (the run has another
        agent now)."""
        self.discarded = True
        self.pending.clear()
        self._newest.clear()
        self.dropped.clear()
        self._dropping = False
        self._room.set()
        self.drained.set()

    def line(self, ts: float, stream: LogStream | str, text: str,
             source: str | None = None) -> None:
        self._add("line", (ts, stream, text, source), ts)

    def metric(self, step: int, ts: float, values: dict[str, float],
               source: str | None = None) -> None:
        self._add("metric", (step, ts, values, source), ts)

    def lagging(self) -> bool:
        """True while this run's lines are counted, not stored (see `Backend.logs`)."""
        return self._dropping

    async def wait_for_room(self) -> None:
        """Return once the buffer has drained to where this run's lines are stored again."""
        await self._room.wait()

    def room(self) -> None:
        """The collector stored some of this run's lines (or gave up on all of them)."""
        if len(self.pending) <= self._collector.resume_at:
            self._room.set()

    def skipped(self, count: int, source: str | None = None) -> None:
        """`count` lines the backend passed over unread: part of the current gap.

        The newest lines kept aside so far are older than the skipped ones, so they
        join the gap too: what follows its marker stays the run's newest output.
        """
        if self.discarded:
            return
        self._dropping = True
        if len(self.pending) > self._collector.resume_at:
            self._room.clear()
        for _, entry in self._newest:
            self.dropped[entry[3]] = self.dropped.get(entry[3], 0) + 1
        self.dropped_total += len(self._newest) + count
        self._newest.clear()
        self.dropped[source] = self.dropped.get(source, 0) + count

    def _add(self, kind: str, entry: Line | Metric, ts: float) -> None:
        if self.discarded:
            return
        size = len(self.pending)
        if self._dropping and size <= self._collector.resume_at:
            self._dropping = False
        if self._dropping or size >= self._collector.bound:
            if not self._dropping:
                self._dropping = True
                self._room.clear()
            while len(self._newest) >= self._collector.keep_newest:
                # The oldest kept line falls out: it is not stored.
                lost = self._newest.popleft()[1][3]
                self.dropped[lost] = self.dropped.get(lost, 0) + 1
                self.dropped_total += 1
            self._newest.append((kind, entry))
            return
        if self.dropped or self._newest:  # a gap just ended (a check per line, not a call)
            self._mark_gap(ts)
        self.pending.append((kind, entry))
        self.drained.clear()
        self._collector.kick()

    def _mark_gap(self, ts: float) -> None:
        """End a gap: its marker, then the newest lines kept aside while dropping."""
        for source, count in self.dropped.items():
            marker = gap_line(count, self.full_log)
            self.pending.append(("line", (ts, LogStream.AGENT, marker, source)))
        self.dropped.clear()
        if self._newest:
            self.pending.extend(self._newest)
            self._newest.clear()
        self._dropping = False
        if self.pending:
            self.drained.clear()

    async def drain(self) -> None:
        """Wait until everything this run produced is stored (or marked as not stored)."""
        if self.discarded:
            return
        self._mark_gap(time.time())
        self._collector.kick(now=True)
        await self.drained.wait()


class OutputCollector:
    def __init__(self, append: Callable[[list[OutputBatch]], Awaitable[set[str] | None]], *,
                 on_fenced: Callable[[FencedOut], Awaitable[None]] | None = None,
                 on_taken: Callable[[str], Awaitable[None]] | None = None) -> None:
        # `append` stores a write and returns the runs it left out because another
        # agent has taken them over (`on_taken` is told of each, once).
        self._append = append
        self._on_fenced = on_fenced
        self._on_taken = on_taken
        self._runs: dict[str, RunOutput] = {}
        self.bound = MAX_BUFFERED_PER_RUN  # per run, for the runs open now
        self.resume_at = RESUME_AT
        self.keep_newest = KEEP_NEWEST  # per run, likewise
        self._kick = asyncio.Event()
        self._now = asyncio.Event()  # a run ended: write without gathering a burst
        self._task: asyncio.Task[None] | None = None

    def open(self, run_id: str, full_log: str | None) -> RunOutput:
        out = RunOutput(self, run_id, full_log)
        self._runs[run_id] = out
        self._resize()
        self._ensure_writer()
        return out

    def close(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
        self._resize()

    def discard(self, run_id: str) -> None:
        """Store nothing more of this run (another agent has it now): what it has
        buffered, and what it produces from now on, is let go."""
        run = self._runs.get(run_id)
        if run is not None:
            run.discard()

    def _resize(self) -> None:
        share = MAX_BUFFERED_TOTAL // max(1, len(self._runs))
        self.bound = max(MIN_BUFFERED_PER_RUN, min(MAX_BUFFERED_PER_RUN, share))
        self.resume_at = self.bound // 2
        kept = MAX_KEPT_TOTAL // max(1, len(self._runs))
        self.keep_newest = max(MIN_KEPT_PER_RUN, min(KEEP_NEWEST, kept))

    def kick(self, *, now: bool = False) -> None:
        self._kick.set()
        if now:
            self._now.set()

    def _ensure_writer(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._writer(),
                                                                name="agent-output-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _take_batch(self) -> list[tuple[RunOutput, int, OutputBatch]]:
        """Up to MAX_BATCH_LINES entries, shared fairly between the runs that have some."""
        busy = [r for r in self._runs.values() if r.pending]
        if not busy:
            return []
        # A run's share fits one write: a run is never split across writes.
        share = max(1, min(WRITE_LINES, MAX_BATCH_LINES // len(busy)))
        out = []
        for run in busy:
            entries = [run.pending[i] for i in range(min(share, len(run.pending)))]
            lines = [e for k, e in entries if k == "line"]
            metrics = [e for k, e in entries if k == "metric"]
            batch = OutputBatch(run.run_id, tuple(lines), tuple(metrics))  # type: ignore[arg-type]
            out.append((run, len(entries), batch))
        return out

    async def _writer(self) -> None:
        delay = FLUSH_S
        flooded = False
        while True:
            await self._kick.wait()
            self._kick.clear()
            # Let a burst gather into one write; under a flood the buffers refill
            # while a round is written, and waiting would only leave the store idle.
            if not flooded and not self._now.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FLUSH_S):
                        await self._now.wait()
            self._now.clear()
            written = 0
            while batch := self._take_batch():
                writes = _split(batch, WRITE_LINES)
                outcomes = await asyncio.gather(
                    *(self._append([b for _, _, b in write]) for write in writes),
                    return_exceptions=True)
                failed: BaseException | None = None
                taken: list[str] = []
                for write, outcome in zip(writes, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        # Its runs keep their lines (buffers stay bounded) for the retry;
                        # a run is in one write only, so its lines stay in order.
                        failed = failed if isinstance(failed, FencedOut) else outcome
                        continue
                    for run, n, _ in write:
                        if outcome and run.run_id in outcome:
                            run.discard()
                            taken.append(run.run_id)
                            continue
                        written += n
                        for _ in range(n):
                            run.pending.popleft()
                        run.room()
                        if not run.pending:
                            run.drained.set()
                if self._on_taken is not None:
                    for run_id in taken:
                        await self._on_taken(run_id)
                if isinstance(failed, asyncio.CancelledError):
                    raise failed
                if isinstance(failed, FencedOut):
                    # Another process holds the agent's name: its agent stores these
                    # runs' output now; nothing of ours may be written.
                    for run in self._runs.values():
                        run.pending.clear()
                        run.room()
                        run.drained.set()
                    if self._on_fenced is not None:
                        await self._on_fenced(failed)
                    return
                if failed is not None:
                    log.error("storing run output failed; retrying in %.1fs", delay,
                              exc_info=failed)
                    await asyncio.sleep(delay)
                    delay = min(RETRY_MAX_S, delay * 2)
                    continue
                delay = FLUSH_S
            flooded = written >= MAX_BATCH_LINES


def _split(batch: list[tuple[RunOutput, int, OutputBatch]], lines: int
           ) -> list[list[tuple[RunOutput, int, OutputBatch]]]:
    """The batch as writes of about `lines` lines each, every run in exactly one."""
    writes: list[list[tuple[RunOutput, int, OutputBatch]]] = [[]]
    size = 0
    for entry in batch:
        if size and size + entry[1] > lines:
            writes.append([])
            size = 0
        writes[-1].append(entry)
        size += entry[1]
    return writes
