"""The agent's output collector against the real store: many runs' lines go in bounded
writes handed to the store together, each run whole within one write, and a write
that fails keeps its runs' lines, in order, for the retry while the others are stored.

The failure is injected by wrapping `append_output` (the store itself does not fail
on demand); what that proves is the collector's bookkeeping, not how a real store
error looks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from launch_tui.core.agent import output as collector_module
from launch_tui.core.agent.output import (
    KEEP_NEWEST,
    MAX_BUFFERED_PER_RUN,
    MAX_BUFFERED_TOTAL,
    MAX_KEPT_TOTAL,
    MIN_BUFFERED_PER_RUN,
    MIN_KEPT_PER_RUN,
    RESUME_AT,
    WRITE_LINES,
    OutputCollector,
)
from launch_tui.core.gaps import gap_count
from launch_tui.core.model import LogStream, OutputBatch
from launch_tui.core.service import LaunchService


async def runs(service: LaunchService, code_dir: Path, count: int) -> list[str]:
    await service.create_code_job(code_dir, "python train.py", name="train")
    await service.create_queue("q", "local-process")
    for _ in range(count):
        await service.enqueue("train", "q")
    ids = []
    for _ in range(count):
        run = (await service.claim_run("agent", ["q"])).run
        assert run is not None
        ids.append(run.id)
    return ids


async def feed(collector: OutputCollector, run_ids: list[str], lines: int) -> None:
    outs = [collector.open(run_id, None) for run_id in run_ids]
    now = time.time()
    for i in range(lines):
        for out in outs:
            out.line(now, LogStream.STDOUT, f"{out.run_id} {i}")
    for out in outs:
        await out.drain()


async def stored(service: LaunchService, run_id: str) -> list[str]:
    return [x.text for x in await service.run_logs(run_id, limit=100_000)]


async def test_many_runs_are_stored_in_bounded_writes_each_run_whole_in_one(
    service: LaunchService, code_dir: Path
) -> None:
    ids = await runs(service, code_dir, 12)
    writes: list[dict[str, int]] = []

    async def append(batches: Sequence[OutputBatch]) -> None:
        writes.append({b.run_id: len(b.lines) for b in batches})
        await service.append_output(batches)

    collector = OutputCollector(append)
    await feed(collector, ids, 1_500)  # 18,000 lines, under every run's buffer bound
    await collector.stop()

    for run_id in ids:
        assert await stored(service, run_id) == [f"{run_id} {i}" for i in range(1_500)]
    # More than one write, none over the bound; a run's lines of one round in one write.
    assert len(writes) > 1
    assert all(sum(w.values()) <= WRITE_LINES for w in writes)
    assert sum(sum(w.values()) for w in writes) == 12 * 1_500


async def test_a_run_that_ended_is_stored_without_waiting_for_a_burst_to_gather(
    service: LaunchService, code_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines wait up to FLUSH_S for others to share their write, but not the last
    lines of a run that ended: the run is recorded finished once they are stored."""
    monkeypatch.setattr(collector_module, "FLUSH_S", 60.0)
    [running, ended] = await runs(service, code_dir, 2)
    collector = OutputCollector(service.append_output)
    still = collector.open(running, None)
    still.line(time.time(), LogStream.STDOUT, "still going")
    out = collector.open(ended, None)
    out.line(time.time(), LogStream.STDOUT, "last words")
    async with asyncio.timeout(20):  # a third of the gathering window
        await out.drain()
    assert await stored(service, ended) == ["last words"]
    # The write took what the other run had too: one write for both, no extra one.
    assert await stored(service, running) == ["still going"]
    await collector.stop()


async def test_a_failed_write_keeps_its_runs_lines_in_order_for_the_retry(
    service: LaunchService, code_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(collector_module, "FLUSH_S", 0.01)
    ids = await runs(service, code_dir, 6)
    unlucky = ids[3]
    failures = 0

    async def append(batches: Sequence[OutputBatch]) -> None:
        nonlocal failures
        if failures < 2 and any(b.run_id == unlucky for b in batches):
            failures += 1
            raise OSError("disk I/O error (injected)")
        await service.append_output(batches)

    collector = OutputCollector(append)
    await feed(collector, ids, 1_000)
    await collector.stop()

    assert failures == 2
    for run_id in ids:
        # Nothing lost, nothing twice, in order: the failed write's runs were retried
        # whole and the other writes of the same round were stored once.
        assert await stored(service, run_id) == [f"{run_id} {i}" for i in range(1_000)]


async def test_with_many_runs_open_each_buffers_less_and_marks_the_rest(
    service: LaunchService, code_dir: Path
) -> None:
    """Memory stays bounded across runs: with 100 runs open a run buffers a
    hundredth of the total (1,000 lines), not 5,000; what does not fit is counted
    in a marker, never cut silently."""
    ids = await runs(service, code_dir, 1)
    collector = OutputCollector(service.append_output)
    quiet = [collector.open(f"other{i}", None) for i in range(99)]
    chatty = collector.open(ids[0], None)
    bound = MAX_BUFFERED_TOTAL // 100
    assert MIN_BUFFERED_PER_RUN <= bound < MAX_BUFFERED_PER_RUN
    assert (collector.bound, collector.resume_at) == (bound, bound // 2)
    now = time.time()
    for i in range(3_000):  # at once: more than the run's bound before the first write
        chatty.line(now, LogStream.STDOUT, f"line {i}")
    await chatty.drain()
    for out in quiet:
        collector.close(out.run_id)
    collector.close(ids[0])
    assert (collector.bound, collector.resume_at) == (MAX_BUFFERED_PER_RUN, RESUME_AT)
    await collector.stop()

    lines = await service.run_logs(ids[0], limit=10_000)
    texts = [x.text for x in lines if x.stream == LogStream.STDOUT]
    gaps = sum(gap_count(x.text) for x in lines if x.stream == LogStream.AGENT)
    assert gaps > 0 and len(texts) + gaps == 3_000
    assert texts[:bound] == [f"line {i}" for i in range(bound)]  # the bound, stored
    assert texts[-1] == "line 2999"  # the newest, after the marker


async def test_with_many_runs_open_each_keeps_fewer_newest_lines_aside(
    service: LaunchService, code_dir: Path
) -> None:
    """The newest lines a dropping run keeps aside, to store after its marker so the
    end of its output is there, shrink with the runs open too: with 1,000 runs open
    a run keeps its newest 100 lines aside, not 1,000 (a thousand runs would
    otherwise hold a million lines in the agent)."""
    ids = await runs(service, code_dir, 1)
    collector = OutputCollector(service.append_output)
    quiet = [collector.open(f"other{i}", None) for i in range(999)]
    chatty = collector.open(ids[0], None)
    keep, bound = collector.keep_newest, collector.bound
    assert keep == max(MIN_KEPT_PER_RUN, MAX_KEPT_TOTAL // 1_000) < KEEP_NEWEST
    now = time.time()
    for i in range(5_000):  # at once: far more than the run's bound (500) before a write
        chatty.line(now, LogStream.STDOUT, f"line {i}")
    await chatty.drain()
    for out in quiet:
        collector.close(out.run_id)
    collector.close(ids[0])
    assert collector.keep_newest == KEEP_NEWEST
    await collector.stop()

    lines = await service.run_logs(ids[0], limit=10_000)
    marker = max(i for i, x in enumerate(lines) if x.stream == LogStream.AGENT)
    assert gap_count(lines[marker].text) == 5_000 - bound - keep
    assert [x.text for x in lines[:bound]] == [f"line {i}" for i in range(bound)]
    after = [x.text for x in lines[marker + 1:]]
    assert after == [f"line {i}" for i in range(5_000 - keep, 5_000)]

