"""The facade's agent commands: registration, heartbeats and agent logs, the change
feed, and pruning history."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING

from launch_tui.core.events import AgentLog, Event
from launch_tui.core.facade.parts import Parts
from launch_tui.core.feed import WATCHED_POLL_S
from launch_tui.core.model import Agent, AgentFence, AgentStatus

if TYPE_CHECKING:
    from launch_tui.core.retention import PruneReport


class AgentCommands(Parts):
    async def register_agent(self, name: str, queue_names: Sequence[str], *,
                             project: str | None = None, max_jobs: int = 1) -> Agent:
        """Record an agent as started. A name already used by a live agent is refused."""
        return await self._agents.register_agent(name, queue_names, project=project,
                                                 max_jobs=max_jobs)

    async def agent_heartbeat(self, name: str, status: AgentStatus, running: int,
                              fence: AgentFence | None = None) -> None:
        """FencedOut when `fence` no longer holds the name (another process took it)."""
        await self._agents.agent_heartbeat(name, status, running, fence)

    async def agent_log(self, name: str, message: str, *, level: str = "info",
                        run_id: str | None = None) -> None:
        await self._agents.agent_log(name, message, level=level, run_id=run_id)

    async def list_agents(self) -> list[Agent]:
        return await self._agents.list_agents()

    async def agent_logs(self, agent: str | None = None, limit: int = 200) -> list[AgentLog]:
        """The newest `limit` log lines (of one agent, or of all), oldest first."""
        return await self._agents.agent_logs(agent, limit)

    # The change feed.

    async def last_event_seq(self) -> int:
        return await self._feed.last_event_seq()

    async def events_after(self, seq: int, limit: int = 500) -> list[Event]:
        return await self._feed.events_after(seq, limit)

    def subscribe(self, after: int | None = None, poll_s: float = 0.2, *, watch: bool = True,
                  watched_poll_s: float = WATCHED_POLL_S) -> AsyncIterator[Event]:
        """Every event after `after` (default: from now on), as any process writes it.
        This process's own changes wake subscribers at once; on SQLite, so do other
        processes' commits (the database's files are watched, see `dbwatch`), with a
        poll every `watched_poll_s` as a fallback; without a watch (`watch=False`,
        PostgreSQL, no inotify), others' changes are seen within `poll_s`."""
        return self._feed.subscribe(after, poll_s, watch=watch, watched_poll_s=watched_poll_s)

    # Retention.

    async def prune(
        self, *, events_days: float | None = None, logs_days: float | None = None,
        dry_run: bool = False, batch: int = 1000, budget_s: float | None = 60.0,
        progress: Callable[[PruneReport], None] | None = None,
    ) -> PruneReport:
        """Delete the history the `[retention]` settings no longer keep (`events_days` and
        `logs_days` override them), `batch` rows per bulk write, for at most `budget_s`
        seconds (None: until done); `dry_run` only counts. See core/retention.py."""
        retention = self.settings.retention.replace(events_days=events_days,
                                                    logs_days=logs_days)
        from launch_tui.core.retention import prune_once

        return await prune_once(self._store, retention, batch=batch, budget_s=budget_s,
                                dry_run=dry_run, progress=progress)
