"""Immutable snapshots of everything the service knows about.

Callers (TUI, CLI, agents) only ever see these frozen dataclasses; the store
builds them from rows and nothing outside the store mutates persisted state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Priority(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Lower rank is taken first."""
        return _PRIORITY_RANK[self]

    @classmethod
    def from_rank(cls, rank: int) -> Priority:
        return _RANK_PRIORITY[rank]


_PRIORITY_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}
_RANK_PRIORITY = {v: k for k, v in _PRIORITY_RANK.items()}


class JobKind(StrEnum):
    CODE = "code"
    GIT = "git"
    IMAGE = "image"


class ItemState(StrEnum):
    PENDING = "pending"
    LEASED = "leased"
    CLAIMED = "claimed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunState(StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    STARTING = "starting"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CRASHED = "crashed"
    STOPPING = "stopping"
    STOPPED = "stopped"
    PREEMPTED = "preempted"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_RUN_STATES


TERMINAL_RUN_STATES = frozenset(
    {RunState.FINISHED, RunState.FAILED, RunState.CRASHED, RunState.STOPPED, RunState.PREEMPTED}
)


class ErrorStage(StrEnum):
    AGENT = "agent"
    BUILD = "build"
    RUN = "run"


class AgentStatus(StrEnum):
    POLLING = "polling"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"  # stopped by a fault it could not recover from; the reason is in its log


class LogStream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    BUILD = "build"
    AGENT = "agent"


# A line of a run's output as the agent stores it, and a metric record: without or
# with the source it came from (see OutputBatch).
OutputLine = tuple[float, LogStream | str, str] | tuple[float, LogStream | str, str, str | None]
OutputMetric = (tuple[int, float, dict[str, float]]
                | tuple[int, float, dict[str, float], str | None])


@dataclass(frozen=True)
class OutputBatch:
    """What one run produced since the last write: log lines and metric records, in order."""

    run_id: str
    # (ts, stream, text) or (ts, stream, text, source), and (step, ts, values) or
    # (step, ts, values, source): the source (a pod's name) where a run has several.
    lines: tuple[OutputLine, ...] = ()
    metrics: tuple[OutputMetric, ...] = ()


@dataclass(frozen=True)
class Project:
    name: str
    created_at: float


@dataclass(frozen=True)
class JobVersion:
    project: str
    job: str
    kind: JobKind
    version: int
    digest: str
    entrypoint: tuple[str, ...]
    # code: {"snapshot": digest, "files": n, "bytes": n}; git: {"url", "ref"}; image: {"image"}
    source: dict[str, Any]
    # {"requirements": "requirements.txt"|None, "pyproject": bool, "dockerfile": str|None,
    #  "python": "3.11", "base_image": str|None}
    environment: dict[str, Any]
    config_defaults: dict[str, Any]
    input_schema: dict[str, Any]
    aliases: tuple[str, ...]
    created_at: float

    @property
    def ref(self) -> str:
        return f"{self.job}:v{self.version}"


@dataclass(frozen=True)
class Job:
    project: str
    name: str
    kind: JobKind
    versions: tuple[JobVersion, ...]
    aliases: dict[str, int]
    created_at: float

    @property
    def latest(self) -> JobVersion:
        return self.version(self.aliases["latest"])

    def version(self, number: int) -> JobVersion:
        for v in self.versions:
            if v.version == number:
                return v
        raise KeyError(number)


@dataclass(frozen=True)
class TemplateVariable:
    name: str
    schema: dict[str, Any]  # JSON schema: type, minimum, maximum, enum, default, description


@dataclass(frozen=True)
class QueueConfig:
    resource_args: dict[str, Any] = field(default_factory=dict)
    template_variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    # False: no raw resource overrides; True: any top-level key; list: only these keys
    allow_overrides: bool | tuple[str, ...] = False
    env: dict[str, str] = field(default_factory=dict)
    wandb_mode: str = "offline"
    # Every other key (base_image, secret_env, the target's policy keys such as
    # docker's allow_volumes); which are allowed and their forms: core.queueconfig
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        allow: bool | list[str] = (
            list(self.allow_overrides)
            if isinstance(self.allow_overrides, tuple)
            else self.allow_overrides
        )
        return {
            "resource_args": self.resource_args,
            "template_variables": self.template_variables,
            "allow_overrides": allow,
            "env": self.env,
            "wandb_mode": self.wandb_mode,
            **self.extra,
        }


@dataclass(frozen=True)
class Queue:
    project: str
    name: str
    resource: str
    config: QueueConfig
    created_at: float
    updated_at: float
    pending: int = 0
    # Set while the queue is held (agents take nothing from it), with why.
    held_at: float | None = None
    hold_reason: str | None = None

    @property
    def held(self) -> bool:
        return self.held_at is not None


@dataclass(frozen=True)
class QueueItem:
    id: int
    project: str
    queue: str
    job: str
    version: int
    config_overrides: dict[str, Any]
    resource_overrides: dict[str, Any]
    template_values: dict[str, Any]
    priority: Priority
    state: ItemState
    created_at: float
    updated_at: float
    leased_by: str | None = None
    lease_expires: float | None = None
    run_id: str | None = None
    error_stage: ErrorStage | None = None
    error_message: str | None = None
    # 1-based place in its queue for pending items (None otherwise)
    position: int | None = None
    # Its place within its priority (take order is priority, seq, id): when it joined
    # the queue, or earlier than the first item once moved to the top.
    seq: float = 0.0
    # Filled by listings and `get_item`, not stored: what became of it (the run's
    # state for a claimed item, else the item's own) and one sentence on why it waits
    # or how it ended (core/explain.py).
    outcome: str | None = None
    why: str | None = None
    ended_at: float | None = None
    duration_s: float | None = None  # how long its run ran (or waited, if it never ran)

    @property
    def job_ref(self) -> str:
        return f"{self.job}:v{self.version}"


@dataclass(frozen=True)
class RunSpec:
    """Everything a builder and a backend need to run one item, fully resolved."""

    run_id: str
    project: str
    queue: str
    resource: str
    job: str
    version: int
    kind: JobKind
    entrypoint: tuple[str, ...]
    config: dict[str, Any]
    resource_args: dict[str, Any]
    env: dict[str, str]
    source: dict[str, Any]
    environment: dict[str, Any]
    job_digest: str
    queue_config: dict[str, Any]
    image: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "project": self.project,
            "queue": self.queue,
            "resource": self.resource,
            "job": self.job,
            "version": self.version,
            "kind": str(self.kind),
            "entrypoint": list(self.entrypoint),
            "config": self.config,
            "resource_args": self.resource_args,
            "env": self.env,
            "source": self.source,
            "environment": self.environment,
            "job_digest": self.job_digest,
            "queue_config": self.queue_config,
            "image": self.image,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        return cls(
            run_id=d["run_id"],
            project=d["project"],
            queue=d["queue"],
            resource=d["resource"],
            job=d["job"],
            version=d["version"],
            kind=JobKind(d["kind"]),
            entrypoint=tuple(d["entrypoint"]),
            config=d["config"],
            resource_args=d["resource_args"],
            env=d["env"],
            source=d["source"],
            environment=d["environment"],
            job_digest=d["job_digest"],
            queue_config=d.get("queue_config", {}),
            image=d.get("image"),
        )


@dataclass(frozen=True)
class Run:
    id: str
    item_id: int
    project: str
    queue: str
    job: str
    version: int
    agent: str | None
    state: RunState
    spec: dict[str, Any]
    handle: dict[str, Any] | None
    # state name -> unix time it was entered (plus "leased")
    timestamps: dict[str, float]
    exit_code: int | None
    error_stage: ErrorStage | None
    error_message: str | None
    reason: str | None
    created_at: float
    updated_at: float

    @property
    def job_ref(self) -> str:
        return f"{self.job}:v{self.version}"


@dataclass(frozen=True)
class Agent:
    name: str
    queues: tuple[str, ...]
    project: str
    status: AgentStatus
    max_jobs: int
    running: int
    heartbeat_at: float
    started_at: float
    host: str
    pid: int


@dataclass(frozen=True)
class AgentFence:
    """Which process holds an agent's name: the fencing token of its writes.

    A process that lost its name (stopped for longer than the liveness window,
    then another process registered the name) finds its writes refused.
    """

    name: str
    host: str
    pid: int
    started_at: float

    @classmethod
    def of(cls, agent: Agent) -> AgentFence:
        return cls(agent.name, agent.host, agent.pid, agent.started_at)


@dataclass(frozen=True)
class LogLine:
    id: int
    run_id: str
    ts: float
    stream: LogStream
    text: str
    source: str | None = None  # the run's output stream it came from (a pod), if several


@dataclass(frozen=True)
class MetricRecord:
    run_id: str
    step: int
    ts: float
    values: dict[str, float]
    source: str | None = None
