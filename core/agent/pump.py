"""A run's output on its way from the backend to the store, and the agent's record of
the run it belongs to.

`pump_output` reads what a backend delivers and hands it to the agent's
`OutputCollector` (lines, metrics from the SDK helper's lines, counts of lines
passed over); `await_output` is how a run that ended waits for that to finish
before its conclusion is recorded, so a stored log is never cut short silently.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from launch_tui.core import sdk
from launch_tui.core.agent.output import OutputCollector
from launch_tui.core.backend import Backend, RunHandle, SkippedLines
from launch_tui.core.model import LogStream

FAIL_TAIL_LINES = 10
# How long a run's output may keep arriving after the backend says it ended.
DRAIN_S = 10.0

AppendLogs = Callable[[str, list[tuple[float, LogStream, str]]], Awaitable[None]]


@dataclass
class ActiveRun:
    """What the agent knows of a run it is working on."""

    run_id: str
    task: asyncio.Task[None] | None = None
    handle: RunHandle | None = None
    backend: Backend | None = None
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    # The run's last lines, quoted when it fails.
    tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=FAIL_TAIL_LINES)
    )
    taken: bool = False  # another agent took the run over: this one lets go of it
    consumed: int = 0  # output chunks read from the backend: the drain's sign of progress
    read_all: bool = False  # the backend's output ended; what is left is storing it


async def await_output(pump: asyncio.Task[None], active: ActiveRun,
                       append_logs: AppendLogs) -> None:
    """Let the pump read and store everything the run wrote before it ended.

    However long that takes while the backend keeps delivering (a flood is read
    to its end, what the store cannot take is marked, not dropped silently); a
    backend that delivers nothing for DRAIN_S is given up on, and that is said
    in the run's log. A pump that failed is left for the caller to report.
    """
    seen = -1
    while not pump.done():
        if active.read_all:
            # Everything is read; the collector stores it at the store's pace.
            await asyncio.wait({pump})
            break
        if active.consumed == seen:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            await append_logs(active.run_id, [(
                time.time(), LogStream.AGENT,
                f"[launch-tui] output after line {active.consumed:,} was not collected: "
                f"the backend delivered nothing for {DRAIN_S:g}s after the run ended.",
            )])
            return
        seen = active.consumed
        await asyncio.wait({pump}, timeout=DRAIN_S)


async def pump_output(output: OutputCollector, active: ActiveRun, backend: Backend,
                      handle: RunHandle, skip: dict[str | None, int]) -> None:
    """Hand the run's output to the agent's collector; helper lines become metrics.

    The collector stores it within FLUSH_S, bounded per run, so reading never
    waits for the store (see core/agent/output.py). `skip`: how many lines of each
    source the store already has (from before an agent restart); the backend
    replays from the start, and each source in its own order, however several
    sources interleave.
    """
    run_id = active.run_id
    out = output.open(run_id, backend.output_location(handle))
    skip = {source: n for source, n in skip.items() if n > 0}
    # A backend that passes over output cheaply is not read while the run's lines
    # would only be counted; once there is room it is told to skip to the newest
    # (lagging() stays true until it has). Others are read on, so their streams
    # keep moving, and what does not fit is counted.
    wait_for_room = getattr(backend, "skips_lagging_output", False)
    behind = False

    def lagging() -> bool:
        nonlocal behind
        behind = behind or out.lagging()
        return behind

    stored = False
    try:
        # A one-source run's stored lines may be passed over by the backend
        # (SkippedLines, counted against `skip` below) instead of replayed.
        already = skip.get(None, 0) if set(skip) <= {None} else 0
        async for chunk in backend.logs(handle, follow=True, lagging=lagging,
                                        stored=already):
            if wait_for_room and out.lagging():
                behind = True
                await out.wait_for_room()
            if isinstance(chunk, SkippedLines):
                behind = False
                active.consumed += chunk.count
                unseen = chunk.count - skip.pop(chunk.source, 0)
                if unseen < 0:  # all of them stored before an agent restart
                    skip[chunk.source] = -unseen
                elif unseen:
                    out.skipped(unseen, chunk.source)
                continue
            active.consumed += 1
            source = chunk.source
            if source in skip:
                skip[source] -= 1  # already stored before an agent restart
                if not skip[source]:
                    del skip[source]
                continue
            record = sdk.parse_line(chunk.text) if chunk.stream == LogStream.STDOUT else None
            if record is not None:
                out.metric(int(record.get("step", 0)), float(record.get("ts", chunk.ts)),
                           record["values"], source)
            else:
                out.line(chunk.ts, chunk.stream, chunk.text, source)
                active.tail.append(chunk.text if source is None
                                   else f"[{source}] {chunk.text}")
        active.read_all = True
        # The run's conclusion waits until all it printed is stored (or marked):
        # however long the store takes, nothing is dropped here.
        await out.drain()
        stored = True
    finally:
        if not stored:
            # Stopping (or the backend failed): store what was read, bounded,
            # since the store itself may be what fails.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(out.drain()), timeout=DRAIN_S)
        output.close(run_id)
