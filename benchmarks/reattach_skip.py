"""Re-attaching to a chatty local-process run: passing over the lines the store has.

    .venv/bin/python benchmarks/reattach_skip.py [--lines 2000000]

An agent that restarts (or takes over a dead agent's runs) reads each run's
output.jsonl again and must pass over the lines the store already holds. This
writes a file of --lines numbered records as the supervisor does (200-byte lines,
about 270 bytes a record), then times passing over all but the last 1,000:

  by number    OutputReader.seek_record: a binary search by the records' numbers
  baseline     reading and parsing every record up to there, as a replay does
               (what the agent did before records were numbered)

Both start from a file in the page cache; the first read of a cold file costs
the disk's time on top, which the baseline pays for every byte and the search
for a few dozen small reads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from launch_tui.backends.local_runstate import OutputReader


def write(path: Path, lines: int) -> None:
    text = "x" * 199
    with open(path, "w") as f:
        for n in range(1, lines + 1):
            f.write(f'{{"ts": 1764000000.123456, "stream": "stdout", "n": {n}, '
                    f'"text": "{text}"}}\n')


def by_number(path: Path, stored: int) -> tuple[float, int]:
    reader = OutputReader(path)
    started = time.perf_counter()
    passed = reader.seek_record(stored) or 0
    took = time.perf_counter() - started
    reader.close()
    return took, passed


def by_parsing(path: Path, stored: int) -> tuple[float, int]:
    reader = OutputReader(path)
    started = time.perf_counter()
    passed = 0
    while passed < stored and (batch := reader.read_batch()):
        passed += len(batch)
    took = time.perf_counter() - started
    reader.close()
    return took, min(passed, stored)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=2_000_000)
    args = parser.parse_args()
    stored = args.lines - 1_000
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "output.jsonl"
        write(path, args.lines)
        size = path.stat().st_size
        path.read_bytes()  # into the page cache for both
        base, base_passed = by_parsing(path, stored)
        ours, passed = by_number(path, stored)
    assert passed == base_passed == stored, (passed, base_passed, stored)
    print(f"passing over {stored:,} of {args.lines:,} records ({size / 1e6:,.0f} MB)")
    print(f"  baseline: parsing every record    {base * 1000:10.1f} ms")
    print(f"  by number: OutputReader.seek_record {ours * 1000:8.2f} ms "
          f"({base / ours:,.0f}x faster)")


if __name__ == "__main__":
    main()
