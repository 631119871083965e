"""Small pure helpers that turn snapshots into short, readable cell text.

Colours are plain named ANSI colours so they survive 256-colour terminals, and
every state is also spelled out as a word so NO_COLOR loses nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

from rich.text import Text

from launch_tui.core.model import AgentStatus, ItemState, Priority, RunState

RUN_STATE_STYLE: dict[RunState, str] = {
    RunState.QUEUED: "dim",
    RunState.BUILDING: "yellow",
    RunState.STARTING: "yellow",
    RunState.RUNNING: "bold cyan",
    RunState.FINISHED: "green",
    RunState.FAILED: "bold red",
    RunState.CRASHED: "bold red",
    RunState.STOPPING: "magenta",
    RunState.STOPPED: "magenta",
    RunState.PREEMPTED: "yellow",
}

ITEM_STATE_STYLE: dict[ItemState, str] = {
    ItemState.PENDING: "",
    ItemState.LEASED: "bold yellow",
    ItemState.CLAIMED: "cyan",
    ItemState.FAILED: "bold red",
    ItemState.CANCELLED: "magenta",
}

PRIORITY_STYLE: dict[Priority, str] = {
    Priority.CRITICAL: "bold red",
    Priority.HIGH: "yellow",
    Priority.MEDIUM: "",
    Priority.LOW: "dim",
}

AGENT_STATUS_STYLE: dict[str, str] = {
    AgentStatus.POLLING: "green",
    AgentStatus.RUNNING: "bold cyan",
    AgentStatus.STOPPING: "magenta",
    AgentStatus.STOPPED: "dim",
    AgentStatus.ERROR: "bold red",
    "stale": "bold red",
}

# Stages a run passes through, in order; durations are measured between them.
STAGES: tuple[str, ...] = ("leased", "queued", "building", "starting", "running", "stopping")


# With NO_COLOR the app turns colours into greys, and a red "failed" becomes a dark
# grey on dark grey. Plain mode keeps only attributes (bold, dim, underline) instead.
_ATTRIBUTES = {"bold", "dim", "italic", "underline", "reverse", "strike"}
_plain = False


def set_plain(plain: bool) -> None:
    global _plain
    _plain = plain


def style_of(style: str) -> str:
    if not _plain:
        return style
    return " ".join(word for word in style.split() if word in _ATTRIBUTES)


def styled(text: str, style: str) -> Text:
    style = style_of(style)
    return Text(text, style=style) if style else Text(text)


def run_state(state: RunState) -> Text:
    return styled(str(state), RUN_STATE_STYLE.get(state, ""))


def item_state(state: ItemState) -> Text:
    return styled(str(state), ITEM_STATE_STYLE.get(state, ""))


def priority(value: Priority) -> Text:
    return styled(str(value), PRIORITY_STYLE.get(value, ""))


def agent_status(status: str) -> Text:
    return styled(status, AGENT_STATUS_STYLE.get(status, ""))


def age(seconds: float) -> str:
    """Compact age: 5s, 3m, 2h, 4d (never negative: clocks of two hosts may differ)."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def duration(seconds: float | None) -> str:
    """Stage duration with a little more precision than an age: 0.4s, 12s, 3m05s, 1h02m."""
    if seconds is None:
        return ""
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f}s"
    if s < 60:
        return f"{int(s)}s"
    if s < 3600:
        return f"{int(s) // 60}m{int(s) % 60:02d}s"
    return f"{int(s) // 3600}h{(int(s) % 3600) // 60:02d}m"


def clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def stage_durations(
    timestamps: Mapping[str, float], state: RunState, now: float
) -> dict[str, float]:
    """Seconds spent in each stage the run entered; the current stage is still ticking.

    A stage ends when the next recorded stage (or the terminal state) begins.
    """
    entered = sorted(
        ((ts, name) for name, ts in timestamps.items() if name in STAGES or name == str(state)),
        key=lambda p: p[0],
    )
    out: dict[str, float] = {}
    for i, (ts, name) in enumerate(entered):
        if name not in STAGES:
            continue
        if i + 1 < len(entered):
            out[name] = entered[i + 1][0] - ts
        elif not state.terminal:
            out[name] = now - ts
    return out


def short(value: Any, width: int) -> str:
    text = str(value)
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def aliases(mapping: Mapping[str, int]) -> str:
    """`latest=v3 prod=v1`, latest first, then by name."""
    names = sorted(mapping, key=lambda a: (a != "latest", a))
    return " ".join(f"{a}=v{mapping[a]}" for a in names)


STREAM_STYLE: dict[str, str] = {"stderr": "red", "build": "dim", "agent": "yellow"}
LEVEL_STYLE: dict[str, str] = {"error": "bold red", "warning": "yellow", "debug": "dim"}


def log_line(ts: float, stream: str, text: str, source: str | None = None) -> Text:
    """`12:03:04 text` — stderr in red, build and agent lines marked by stream name, a
    line from one of a run's several sources (a pod) as `[source] text`."""
    line = Text()
    line.append(clock(ts) + " ", style="dim")
    if source:
        line.append(f"[{source}] ", style=style_of("cyan"))
    style = style_of(STREAM_STYLE.get(stream, ""))
    if stream not in ("stdout", "stderr"):
        line.append(f"[{stream}] ", style=style)
    line.append(text.rstrip("\n").expandtabs(), style=style if stream == "stderr" else "")
    return line


def agent_line(ts: float, agent: str, level: str, message: str, run_id: str | None) -> Text:
    line = Text()
    line.append(clock(ts) + " ", style="dim")
    line.append(agent + " ", style="bold")
    level_style = style_of(LEVEL_STYLE.get(level, ""))
    if level != "info":
        line.append(f"{level}: ", style=level_style)
    if run_id:
        line.append(f"[{run_id}] ", style=style_of("cyan"))
    line.append(message, style=level_style)
    return line


_EXIT_CODE = re.compile(r"^\(exit code -?\d+\):?\s*")


def why_cell(why: str | None, state: str) -> str:
    """The core's sentence on how a run ended, for a column beside the state and exit
    columns: without the state word and exit code they already show ("failed (exit
    code 1): ValueError: …" -> "ValueError: …"). A failure that quotes the run's last
    output lines under its first ("exit code 1; last output:\n…\nValueError: …")
    shows its last line, the error itself. Status lines keep the sentence whole."""
    text = why or ""
    if text.startswith(state):
        text = text[len(state):].lstrip(": ")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        return lines[-1]
    return _EXIT_CODE.sub("", text)


def one_line(text: str) -> str:
    """Text that may span lines, for a place one line tall (the status line): its
    first line and, when there are more, its last ("failed (exit code 1): exit code
    1; last output: … ValueError: loss became NaN"), tabs and runs of spaces as one."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        return f"{lines[0]} … {lines[-1]}"
    return lines[0] if lines else ""
