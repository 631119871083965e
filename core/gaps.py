"""The marker a run's stored log carries where output was not stored.

When a run prints faster than the store accepts, the agent keeps reading (so
nothing stalls) and stores a bounded rate; each gap becomes one `agent` line:

    [launch-tui] 12,400 lines not stored (output arrived faster than the store
    accepts it); full log at /home/…/work/abc123/output.jsonl

The count in the marker is part of how many output lines a run has produced,
which a re-attaching agent skips, so the format is parsed here and only here.
"""

from __future__ import annotations

import re

GAP_PREFIX = "[launch-tui] "
_GAP = re.compile(r"^\[launch-tui\] ([0-9,]+) lines? not stored\b")


def gap_line(count: int, full_log: str | None) -> str:
    where = f"full log at {full_log}" if full_log else "the backend keeps no full copy"
    noun = "line" if count == 1 else "lines"
    return (f"{GAP_PREFIX}{count:,} {noun} not stored (output arrived faster than the store "
            f"accepts it); {where}")


def gap_count(text: str) -> int:
    """Lines a marker stands for; 0 for any other line."""
    m = _GAP.match(text)
    return int(m.group(1).replace(",", "")) if m else 0
