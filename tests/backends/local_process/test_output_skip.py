"""A lagging agent passes over a local-process run's output by counting it.

While the agent stores none of a run's lines (its buffer for the run is full), the
backend counts the lines of output.jsonl instead of parsing each JSON record: the
count must be exact (it goes into the gap's marker and into what a re-attaching
agent skips), and the lines after the skip are the run's newest, in order.
Real supervisors and jobs (the `lp` harness), and files written by hand for the
chunk-boundary cases.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from lp_harness import Harness

from launch_tui.backends import local_runstate
from launch_tui.backends.local_runstate import OutputReader
from launch_tui.core.backend import LogChunk, SkippedLines
from launch_tui.core.model import RunState

NUMBERED = textwrap.dedent(
    """
    import sys, time
    w = sys.stdout.write
    for i in range({lines}):
        w(f"{{i:08d}} " + "y" * 90 + "\\n")
        if {pace} and i % 5000 == 0:
            sys.stdout.flush()
            time.sleep({pace})
    """
)


def numbers(chunks: list[LogChunk | SkippedLines]) -> list[int]:
    return [int(c.text.split()[0]) for c in chunks if isinstance(c, LogChunk)]


def skipped(chunks: list[LogChunk | SkippedLines]) -> int:
    return sum(c.count for c in chunks if isinstance(c, SkippedLines))


async def test_a_lagging_reader_counts_the_backlog_and_reads_only_the_newest(lp: Harness) -> None:
    lines = 100_000  # about 13 MB of output.jsonl
    handle = await lp.start({"main.py": NUMBERED.format(lines=lines, pace=0)}, "python main.py")
    assert (await lp.wait(handle)).state == RunState.FINISHED

    chunks = [c async for c in lp.backend.logs(handle, follow=True, lagging=lambda: True)]
    assert isinstance(chunks[0], SkippedLines)
    read = numbers(chunks)
    # Nothing lost or repeated: what was counted plus what was read is the whole output,
    # and what was read is the tail of it, in order.
    assert skipped(chunks) + len(read) == lines
    assert read == list(range(lines - len(read), lines))
    # Only about the last 128 KiB was parsed: about a thousand of the 100,000 records.
    assert 0 < len(read) < 2_000


async def test_counting_while_the_job_still_writes_stays_exact(lp: Harness) -> None:
    lines = 200_000
    handle = await lp.start({"main.py": NUMBERED.format(lines=lines, pace=0.02)},
                            "python main.py")
    # The agent lags every other time it is asked, as a buffer filling and draining would.
    asked = 0

    def lagging() -> bool:
        nonlocal asked
        asked += 1
        return asked % 2 == 0

    chunks = [c async for c in lp.backend.logs(handle, follow=True, lagging=lagging)]
    assert (await lp.wait(handle)).state == RunState.FINISHED
    read = numbers(chunks)
    assert skipped(chunks) > 0
    assert skipped(chunks) + len(read) == lines
    assert read == sorted(set(read)) and read[-1] == lines - 1


def write_records(path: Path, texts: list[str], tail: bytes = b"", *,
                  numbered: bool = False) -> None:
    """Records as the supervisor writes them; without numbers, as older ones did."""
    with open(path, "wb") as f:
        for n, text in enumerate(texts, 1):
            rec = {"ts": 1.0, "stream": "stdout", **({"n": n} if numbered else {}),
                   "text": text}
            f.write(json.dumps(rec).encode() + b"\n")
        f.write(tail)


async def test_the_supervisor_numbers_its_records(lp: Harness) -> None:
    """What the fast skip relies on: n counts the records of both streams from 1."""
    script = ("import sys\n"
              "for i in range(50):\n"
              "    print(i, file=sys.stderr if i % 3 else sys.stdout, flush=True)\n")
    handle = await lp.start({"main.py": script}, "python main.py")
    assert (await lp.wait(handle)).state == RunState.FINISHED
    path = Path(handle.data["run_dir"]) / "output.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["n"] for r in records] == list(range(1, 51))
    assert sorted(int(r["text"]) for r in records) == list(range(50))
    assert {r["stream"] for r in records} == {"stdout", "stderr"}


@pytest.mark.parametrize("keep", [300, 40, 0])
@pytest.mark.parametrize("numbered", [True, False], ids=["by-number", "by-count"])
@pytest.mark.parametrize("chunk", [7, 64, 4096])
def test_skipping_counts_lines_across_chunk_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, numbered: bool, keep: int
) -> None:
    # Small chunks put boundaries inside records, and a 5,000-character record spans
    # many chunks without a newline in them. A `keep` shorter than the newest
    # records (or none) falls back to the newest KEEP_AT_END, or to counting.
    monkeypatch.setattr(local_runstate, "_SKIP_CHUNK", chunk)
    monkeypatch.setattr(local_runstate, "_SKIP_MIN", 1)
    monkeypatch.setattr(local_runstate, "KEEP_AT_END", 2_000)
    monkeypatch.setattr(local_runstate, "_READ_CHUNK", 500)
    texts = [f"{i} " + ("z" * (5_000 if i == 40 else i % 17)) for i in range(120)]
    path = tmp_path / "output.jsonl"
    # A record being written at the end.
    write_records(path, texts, tail=b'{"ts": 1.0, "stream": "std', numbered=numbered)
    reader = OutputReader(path)
    first = reader.read_batch()  # the reader is somewhere in the file already
    count = reader.skip_backlog(keep)
    rest = []
    while batch := reader.read_batch():
        rest.extend(batch)
    reader.close()
    assert count > 0
    assert len(first) + count + len(rest) == len(texts)
    assert [c.text for c in rest] == texts[len(texts) - len(rest):]


def test_nothing_is_skipped_when_the_backlog_is_small(tmp_path: Path) -> None:
    path = tmp_path / "output.jsonl"
    write_records(path, [f"line {i}" for i in range(1_000)])  # about 60 KB
    reader = OutputReader(path)
    assert not reader.worth_skipping()
    assert reader.skip_backlog() == 0
    assert len(reader.read_batch()) == 1_000
    reader.close()


def test_a_skip_by_number_does_not_read_the_backlog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Numbered records are passed over by their numbers: counting is never reached,
    and the lines after the skip are the newest, in order."""
    def no_counting(self: OutputReader) -> int:
        raise AssertionError("counted newlines instead of reading the records' numbers")

    texts = [f"{i} " + "w" * 200 for i in range(20_000)]  # about 4.7 MB
    path = tmp_path / "output.jsonl"
    write_records(path, texts, numbered=True)
    reader = OutputReader(path)
    first = reader.read_batch()
    monkeypatch.setattr(local_runstate.OutputReader, "skip_backlog", no_counting)
    count = reader.skip_numbered()
    rest = []
    while batch := reader.read_batch():
        rest.extend(batch)
    reader.close()
    assert count is not None and count > 15_000
    assert len(first) + count + len(rest) == len(texts)
    assert [c.text for c in rest] == texts[len(texts) - len(rest):]


def test_records_without_numbers_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "output.jsonl"
    texts = [f"{i} " + "v" * 200 for i in range(5_000)]  # about 1.1 MB
    write_records(path, texts)
    reader = OutputReader(path)
    assert reader.skip_numbered() is None
    count = reader.skip_backlog()
    rest = []
    while batch := reader.read_batch():
        rest.extend(batch)
    reader.close()
    assert count > 0
    assert count + len(rest) == len(texts)
    assert [c.text for c in rest] == texts[count:]


@pytest.mark.parametrize("stored", [1, 2, 777, 2_999, 3_000, 3_001, 5_000])
def test_a_reattaching_reader_passes_over_what_the_store_has_by_number(
    tmp_path: Path, stored: int
) -> None:
    """An agent re-attaching to a run whose first lines the store already has starts
    reading right after them, without parsing them; a file holding fewer records
    is passed over to its last complete one."""
    texts = [f"{i} " + ("q" * (9_000 if i % 500 == 7 else i % 23)) for i in range(3_000)]
    path = tmp_path / "output.jsonl"
    write_records(path, texts, tail=b'{"ts": 1.0, "stream": "stdout", "n": 30', numbered=True)
    reader = OutputReader(path)
    passed = reader.seek_record(stored)
    rest = []
    while batch := reader.read_batch():
        rest.extend(batch)
    reader.close()
    assert passed == min(stored, len(texts))
    assert [c.text for c in rest] == texts[passed:]


def test_a_reattaching_reader_replays_records_without_numbers(tmp_path: Path) -> None:
    path = tmp_path / "output.jsonl"
    write_records(path, [f"line {i}" for i in range(100)])
    reader = OutputReader(path)
    assert reader.seek_record(40) is None
    assert len(reader.read_batch()) == 100  # nothing passed over: replayed from the start
    reader.close()


async def test_logs_after_a_restart_start_after_the_stored_lines(lp: Harness) -> None:
    lines = 50_000
    handle = await lp.start({"main.py": NUMBERED.format(lines=lines, pace=0)}, "python main.py")
    assert (await lp.wait(handle)).state == RunState.FINISHED
    chunks = [c async for c in lp.backend.logs(handle, follow=True, stored=45_000)]
    assert isinstance(chunks[0], SkippedLines) and chunks[0].count == 45_000
    assert numbers(chunks) == list(range(45_000, lines))


def test_records_are_read_whatever_json_they_hold(tmp_path: Path) -> None:
    # Records are parsed with orjson, which refuses lone surrogates that the
    # standard library writes and reads; such a record still reads as its text,
    # and a line that is no record at all is shown as it is.
    path = tmp_path / "output.jsonl"
    records = [{"ts": 1.0, "stream": "stdout", "n": 1, "text": "plain"},
               {"ts": 2.0, "stream": "stderr", "n": 2, "text": "half \ud800 pair"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    chunks = OutputReader(path).read_batch()
    assert [(c.stream, c.text, c.ts) for c in chunks[:2]] == [
        ("stdout", "plain", 1.0), ("stderr", "half \ud800 pair", 2.0)]
    assert (chunks[2].stream, chunks[2].text) == ("stdout", "not json")
