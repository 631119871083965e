"""The narrow port through which an agent talks to the control plane.

The agent needs a dozen operations, not the whole `LaunchService`: register
itself, claim and acknowledge items, move its runs through their states, store
their output, heartbeat, log, follow the change feed and prune old history.
`LaunchService` satisfies this Protocol structurally; a client of a remote
control plane could too, without the agent changing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from launch_tui.core.dispatch import ClaimResult
from launch_tui.core.events import Event
from launch_tui.core.model import (
    Agent,
    AgentFence,
    AgentStatus,
    ErrorStage,
    LogStream,
    OutputBatch,
    QueueItem,
    Run,
    RunSpec,
    RunState,
)
from launch_tui.core.retention import PruneReport
from launch_tui.core.settings import Settings


class AgentPort(Protocol):
    settings: Settings  # this machine's settings: home, poll interval, backend sections

    async def register_agent(
        self, name: str, queue_names: Sequence[str], *, project: str | None = None,
        max_jobs: int = 1,
    ) -> Agent: ...

    async def claim(
        self, agent: str, queue_names: Sequence[str], *, project: str | None = None,
        lease_s: float | None = None,
    ) -> QueueItem | None: ...

    async def acknowledge(self, item_id: int, agent: str) -> Run: ...

    async def claim_run(
        self, agent: str, queue_names: Sequence[str], *, project: str | None = None,
        fence: AgentFence | None = None, probe: bool = False,
    ) -> ClaimResult: ...

    async def take_over_runs(
        self, agent: str, queue_names: Sequence[str], *, project: str | None = None,
        fence: AgentFence | None = None,
    ) -> list[Run]: ...

    async def agent_runs(self, agent: str) -> list[Run]: ...

    async def get_run(self, run_id: str) -> Run: ...

    async def set_run_state(
        self, run_id: str, state: RunState, *, reason: str | None = None,
        exit_code: int | None = None, error_stage: ErrorStage | None = None,
        error_message: str | None = None, handle: dict[str, Any] | None = None,
        spec: RunSpec | None = None, fence: AgentFence | None = None,
    ) -> Run: ...

    async def update_run(
        self, run_id: str, *, handle: dict[str, Any] | None = None, spec: RunSpec | None = None,
        reason: str | None = None, fence: AgentFence | None = None,
    ) -> None: ...

    async def append_logs(
        self, run_id: str, lines: Sequence[tuple[float, LogStream | str, str]],
        fence: AgentFence | None = None,
    ) -> None: ...

    async def record_metrics(
        self, run_id: str, records: Sequence[tuple[int, float, dict[str, float]]]
    ) -> None: ...

    async def append_output(
        self, batches: Sequence[OutputBatch], fence: AgentFence | None = None
    ) -> set[str]:
        """Store many runs' output; the runs another agent has taken over are left
        out and returned."""
        ...

    async def output_line_counts(self, run_id: str) -> dict[str | None, int]:
        """Lines of the run's output the store accounts for, per source (None: a run's
        one stream): what a re-attaching agent skips of each source's replay."""
        ...

    async def ensure_snapshot(self, digest: str, what: str) -> bool:
        """Put the code snapshot `digest` of `what` ("job:vN") into this machine's
        artifacts unless it is there (True when it was fetched); BuildError if it
        cannot be had."""
        ...

    async def agent_heartbeat(
        self, name: str, status: AgentStatus, running: int, fence: AgentFence | None = None
    ) -> None: ...

    async def agent_log(
        self, name: str, message: str, *, level: str = "info", run_id: str | None = None
    ) -> None: ...

    def subscribe(self, after: int | None = None, poll_s: float = 0.2) -> AsyncIterator[Event]:
        ...

    async def prune(self) -> PruneReport:
        """Delete history the retention settings no longer keep (a bounded while)."""
        ...
