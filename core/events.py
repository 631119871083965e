"""Past-tense events: the change feed between the core and everything watching it.

Every state change appends one of these to the events table in the same
transaction, so a TUI in one process sees what an agent in another does.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "Event"
    seq: int = dataclasses.field(default=0, kw_only=True)
    ts: float = dataclasses.field(default=0.0, kw_only=True)

    def payload(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _payload_names(type(self))}


@functools.cache
def _payload_names(cls: type[Event]) -> tuple[str, ...]:
    # Events are written several times per claim; look their fields up once per class.
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("seq", "ts"))


@dataclass(frozen=True)
class ProjectCreated(Event):
    kind: ClassVar[str] = "ProjectCreated"
    project: str


@dataclass(frozen=True)
class JobVersionCreated(Event):
    kind: ClassVar[str] = "JobVersionCreated"
    project: str
    job: str
    version: int


@dataclass(frozen=True)
class JobAliasSet(Event):
    kind: ClassVar[str] = "JobAliasSet"
    project: str
    job: str
    alias: str
    version: int


@dataclass(frozen=True)
class QueueChanged(Event):
    kind: ClassVar[str] = "QueueChanged"
    project: str
    queue: str


@dataclass(frozen=True)
class ItemEnqueued(Event):
    kind: ClassVar[str] = "ItemEnqueued"
    project: str
    queue: str
    item_id: int
    priority: str


@dataclass(frozen=True)
class ItemStateChanged(Event):
    kind: ClassVar[str] = "ItemStateChanged"
    project: str
    queue: str
    item_id: int
    state: str
    agent: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class ItemMoved(Event):
    """A waiting item changed place: to the top or bottom, to another priority, or to
    another queue (`from_queue` names the one it left)."""

    kind: ClassVar[str] = "ItemMoved"
    project: str
    queue: str
    item_id: int
    priority: str
    how: str  # "top", "bottom", "priority" or "queue"
    from_queue: str | None = None


@dataclass(frozen=True)
class RunStateChanged(Event):
    kind: ClassVar[str] = "RunStateChanged"
    project: str
    queue: str
    run_id: str
    item_id: int
    state: str
    reason: str | None = None


@dataclass(frozen=True)
class RunLogAppended(Event):
    """A batch of log lines; read them with `LaunchService.run_logs(run_id, after=first-1)`."""

    kind: ClassVar[str] = "RunLogAppended"
    run_id: str
    first_id: int
    last_id: int
    lines: int


@dataclass(frozen=True)
class RunMetricsLogged(Event):
    kind: ClassVar[str] = "RunMetricsLogged"
    run_id: str
    step: int
    values: dict[str, float]


@dataclass(frozen=True)
class AgentHeartbeat(Event):
    kind: ClassVar[str] = "AgentHeartbeat"
    agent: str
    status: str
    running: int


@dataclass(frozen=True)
class AgentLog(Event):
    kind: ClassVar[str] = "AgentLog"
    agent: str
    level: str
    message: str
    run_id: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        ProjectCreated,
        JobVersionCreated,
        JobAliasSet,
        QueueChanged,
        ItemEnqueued,
        ItemStateChanged,
        ItemMoved,
        RunStateChanged,
        RunLogAppended,
        RunMetricsLogged,
        AgentHeartbeat,
        AgentLog,
    )
}


def decode(seq: int, ts: float, kind: str, payload: dict[str, Any]) -> Event | None:
    """Rebuild an event from its row; None for kinds this version does not know."""
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in payload.items() if k in names}, seq=seq, ts=ts)
