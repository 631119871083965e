"""What the CLI's listing commands share: reading `--since`, and writing a listing
as one JSON array a page at a time.

A listing of any length is written as it is read: one page (a read transaction)
at a time, each row encoded with the C encoder (no indent), so memory stays that
of one page and the output is still one JSON document. Rows go one per line, so
line tools can follow the output as well.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, TextIO

from launch_tui.core.errors import ValidationError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_since(text: str, option: str = "--since", now: float | None = None) -> float:
    """The epoch time `text` names: a duration back from now (`90s`, `30m`, `2h`,
    `3d`, `1w`, or several, `1h30m`) or an ISO time (`2024-05-01`,
    `2024-05-01T12:00`, local time unless it gives an offset)."""
    raw = text.strip()
    parts = _DURATION.findall(raw)
    if parts and "".join(n + u for n, u in parts) == raw:
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
        return (time.time() if now is None else now) - seconds
    try:
        return datetime.fromisoformat(raw).timestamp()  # naive: local time
    except ValueError:
        pass
    raise ValidationError(f"{option}: '{text}' is neither a duration (like 30m, 2h or 3d) "
                          "nor an ISO time (like 2024-05-01T12:00).", field=option)


def jsonable(value: Any) -> Any:
    """What the JSON encoder cannot write by itself, one level down: a snapshot (a
    dataclass) as a dict of its fields plus its `ref` / `job_ref`, an enum as its
    value. The encoder calls it for such objects only, at any depth, so the rows'
    plain JSON (specs, configs) is walked in C, not in Python. Every `--json` of the
    CLI encodes through it."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        for prop in ("ref", "job_ref"):
            if hasattr(type(value), prop):
                out[prop] = getattr(value, prop)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


async def write_json_array(pages: AsyncIterator[Sequence[Any]], out: TextIO | None = None
                           ) -> int:
    """Write every row of `pages` as one JSON array, page by page; return the count."""
    out = out or sys.stdout
    # No indent, so json uses its C encoder: several times faster on big listings.
    encode = json.JSONEncoder(sort_keys=True, default=jsonable).encode
    count = 0
    out.write("[")
    async for page in pages:
        if not page:
            continue
        out.write(("\n" if count == 0 else ",\n")
                  + ",\n".join(encode(row) for row in page))
        count += len(page)
        out.flush()  # a reader sees each page as it is read
    out.write("\n]\n" if count else "]\n")
    out.flush()
    return count
