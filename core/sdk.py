"""The tiny in-job helper. Dependency-free: it only reads env vars and prints lines.

Inside a job (any backend), copy-free use:

    import launch_tui_sdk as lt          # provided on PYTHONPATH by the agent
    config = lt.init({"lr": 0.01})       # effective config (defaults ⊕ queued overrides)
    lt.log({"loss": 0.3})                # one metrics record; step counts up by itself

Metrics travel over stdout as `@@launch-tui {json}` lines, which every backend
already streams; the agent turns them into the run's metrics and keeps them out
of the visible log. Outside launch-tui, `init` returns the defaults it was given
and `log` prints the same lines harmlessly.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

MARKER = "@@launch-tui "
_step = 0


def init(defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return the run's effective config: `defaults` overlaid with what launch-tui passed."""
    raw = os.environ.get("LAUNCH_TUI_CONFIG") or os.environ.get("WANDB_CONFIG") or "{}"
    try:
        given = json.loads(raw)
    except ValueError:
        given = {}
    return {**(defaults or {}), **(given if isinstance(given, dict) else {})}


def run_id() -> str | None:
    return os.environ.get("LAUNCH_TUI_RUN_ID")


def log(values: dict[str, float], step: int | None = None) -> None:
    """Record numeric metrics for this run. Non-numeric or non-finite values are dropped."""
    global _step
    clean = {
        str(k): float(v)
        for k, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }
    if step is None:
        step = _step
    _step = step + 1
    record = {"type": "metrics", "step": step, "ts": time.time(), "values": clean}
    sys.stdout.write(MARKER + json.dumps(record) + "\n")
    sys.stdout.flush()


def parse_line(line: str) -> dict[str, Any] | None:
    """Agent side: the record carried by a helper line, or None for ordinary output."""
    if not line.startswith(MARKER):
        return None
    try:
        record = json.loads(line[len(MARKER) :])
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("type") != "metrics":
        return None
    values = record.get("values")
    if not isinstance(values, dict):
        return None
    return record
