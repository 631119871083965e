"""The contract between the agent and target resources (docs/architecture.md, "Backends").

A target resource is a `BackendPlugin` declared in the `launch_tui.backends`
entry-point group (see `registry`). The plugin itself is SDK-free data: its name,
its resource-args schema and two factories that import the backend module only
when a queue actually runs on it. Backends subclass `BackendBase`, which gives
the optional hooks no-op defaults, so the agent never asks which backend it has.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from launch_tui.core.model import LogStream, RunSpec, RunState


@dataclass(frozen=True)
class RunHandle:
    """What a backend needs to find a submitted run again; stored on the run as JSON."""

    backend: str
    run_id: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "run_id": self.run_id, "data": self.data}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunHandle:
        return cls(backend=d["backend"], run_id=d["run_id"], data=d.get("data", {}))


@dataclass(frozen=True)
class RunStatus:
    """A backend's view of a run. `state` is one of starting, running or a terminal state."""

    state: RunState
    reason: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True)
class LogChunk:
    stream: LogStream
    text: str  # one line, without its trailing newline
    ts: float
    # Which of the run's output streams it came from, for runs that have several read
    # at once (a pod of a Kubernetes Job); None for a run with one stream. A replay
    # after an agent restart keeps the order of each source, not their interleaving.
    source: str | None = None


@dataclass(frozen=True)
class SkippedLines:
    """Output lines a backend passed over unread, yielded by `logs` in their place.

    Only ever in answer to `lagging()`: the agent is storing none of that run's
    lines for now anyway, so a backend that keeps the full output (a file) counts
    the lines it skips instead of parsing each one. `count` is exact: it goes into
    the gap's marker and into what a re-attaching agent skips.
    """

    count: int
    source: str | None = None


# Asked by a backend's `logs` between reads: True while the agent is only counting
# the run's lines, not storing them (its buffer for the run is full).
Lagging = Callable[[], bool]


@dataclass(frozen=True)
class BuildResult:
    """What a builder made of a job version."""

    image: str | None = None  # the image to run, for container backends
    cached: bool = False  # True when nothing had to be built
    commit: str | None = None  # the resolved commit of a git job
    details: dict[str, Any] = field(default_factory=dict)  # backend-specific (venv python, …)


@dataclass(frozen=True)
class BackendContext:
    """Where a backend or builder may keep files, and its settings section."""

    home: Path
    artifacts: Path
    settings: dict[str, Any] = field(default_factory=dict)
    agent: str | None = None  # the agent's name, for targets that label what they make

    def snapshot_dir(self, digest: str) -> Path:
        return self.artifacts / "code" / digest

    @property
    def work_dir(self) -> Path:
        return self.home / "work"


BuildLog = Callable[[str], Awaitable[None]]

# What a backend gets when nothing was built for the run (an image job run as given).
NOTHING_BUILT = BuildResult()


@runtime_checkable
class Backend(Protocol):
    name: str
    resource_schema: dict[str, Any]

    async def submit(self, spec: RunSpec, build: BuildResult = NOTHING_BUILT) -> RunHandle:
        """Start the run with what the builder made of it.

        Idempotent on spec.run_id: a second call returns the same run.
        """
        ...

    async def status(self, handle: RunHandle) -> RunStatus: ...

    def watch(self, handle: RunHandle) -> AsyncIterator[RunStatus]:
        """The run's status each time it changes, ending with its terminal status.

        Backends that can be told (a supervisor's pipe, Docker's event stream, a
        Kubernetes watch) push; `BackendBase` polls `status()` with back-off for
        those that cannot (cloud APIs).
        """
        ...

    def logs(self, handle: RunHandle, follow: bool = True, *,
             lagging: Lagging | None = None, stored: int = 0
             ) -> AsyncIterator[LogChunk | SkippedLines]:
        """Log lines from the start of the run; with follow, until the run ends.

        While `lagging()` is true a backend that can pass over output cheaply may
        yield `SkippedLines` instead of the lines themselves (and says so with
        `skips_lagging_output`, see BackendBase); others ignore it. `stored`: how
        many of a one-source run's first lines the store has already (an agent
        re-attaching); a backend that can may pass over up to that many as
        `SkippedLines` instead of replaying them. Others replay from the start.
        """
        ...

    async def cancel(self, handle: RunHandle, grace_s: float) -> None:
        """Ask the run to stop; kill it if it has not stopped after grace_s."""
        ...

    async def find(self, run_id: str, spec: RunSpec | None = None) -> RunHandle | None:
        """Re-attach after an agent restart: the run's handle if it was ever submitted.

        `spec` says where to look on targets where that depends on the queue (a
        cluster's context and namespace)."""
        ...

    async def cleanup(self, handle: RunHandle) -> None:
        """Free what the backend keeps after a run ended, once its result is stored."""
        ...

    def output_location(self, handle: RunHandle) -> str | None:
        """Where the run's complete output is kept, for people to read when the store
        holds only part of it; None when the backend keeps no copy of its own."""
        ...


@runtime_checkable
class Builder(Protocol):
    name: str

    async def build(self, spec: RunSpec, log: BuildLog) -> BuildResult:
        """Make the job version runnable on the target (image, venv, checkout)."""
        ...


class BackendBase:
    """Defaults for the optional parts of the Backend protocol.

    Backends that keep finished resources around (containers, cluster objects)
    override `cleanup`; the agent calls it for every backend after a run's result
    and logs are stored.
    """

    name: str
    resource_schema: dict[str, Any]
    # Polling back-off for `watch` where the target cannot push: start fast so a
    # short run is seen ending promptly, slow down for long ones.
    watch_poll_s: tuple[float, float] = (0.1, 5.0)
    # True for a backend whose `logs` skips to the newest output cheaply while
    # `lagging()` is true: the agent then stops reading a run it is behind on until
    # it has room again. Others are read on (their streams must keep moving).
    skips_lagging_output: bool = False

    async def status(self, handle: RunHandle) -> RunStatus:
        raise NotImplementedError

    async def watch(self, handle: RunHandle) -> AsyncIterator[RunStatus]:
        delay, ceiling = self.watch_poll_s
        last: RunStatus | None = None
        while True:
            current = await self.status(handle)
            if current != last:
                yield current
                last = current
                delay = self.watch_poll_s[0]  # something moved: look again soon
            if current.state.terminal:
                return
            await asyncio.sleep(delay)
            delay = min(ceiling, delay * 1.5)

    async def cleanup(self, handle: RunHandle) -> None:
        return None

    def output_location(self, handle: RunHandle) -> str | None:
        return None


BackendFactory = Callable[[BackendContext], Backend]
# (effective resource args, queue config dict, queue name) -> None, or ValidationError
# naming the field: refuses what the queue does not allow (host networking, host
# paths, privileged pods). SDK-free; run at queue create/update and at enqueue.
ArgsPolicy = Callable[[dict[str, Any], dict[str, Any], str | None], None]
# (job kind, queue config dict, queue name, this machine's [backends.<name>] settings)
# -> None when the target can run jobs of that kind as the queue is configured, else
# one sentence saying why not and what to change. Run at enqueue, SDK-free.
JobPolicy = Callable[[str, dict[str, Any], str, dict[str, Any]], str | None]
BuilderFactory = Callable[[BackendContext], Builder]


@dataclass(frozen=True)
class BackendPlugin:
    """One target resource as the entry-point group declares it.

    Importing the module that defines a plugin must not import the backend's SDK:
    queues are validated and forms drawn from `resource_schema` on machines that
    lack the extra. `backend` and `builder` import the real code on first use;
    None means the resource is known (its queues can be configured) but cannot
    run in this version.
    """

    name: str
    resource_schema: dict[str, Any]
    backend: BackendFactory | None = None
    builder: BuilderFactory | None = None
    extra: str | None = None  # the pip extra that brings its SDK
    check_args: ArgsPolicy | None = None
    check_job: JobPolicy | None = None
    # Queue-config keys this target reads beyond the common ones (allow_volumes, …);
    # their values follow the key's form (core.queueconfig): `allow_…` a real boolean,
    # `…_env` a list of environment names.
    queue_keys: tuple[str, ...] = ()
    order: int = 100  # where it appears in menus; built-ins first
