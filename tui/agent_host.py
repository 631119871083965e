"""In-process agents: started and stopped by the app, logging to the side panel.

`core.agent` is imported only when an agent is started, so the TUI opens fast
and still works in a build without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from launch_tui.core.errors import ConflictError, LaunchError
from launch_tui.core.service import LaunchService


class AgentUnavailable(LaunchError):
    """This build has no in-process agent."""


class AgentStopTimeout(LaunchError):
    """An agent's stop() did not finish in time."""


class AgentHost:
    def __init__(self, stop_timeout_s: float = 5.0) -> None:
        self._agents: dict[str, Any] = {}
        # Quitting must not hang on an agent that does not stop; past this we let go.
        self.stop_timeout_s = stop_timeout_s

    def names(self) -> list[str]:
        return list(self._agents)

    def served_queues(self) -> list[str]:
        """Queues the agents hosted in this app serve, in the order they were given."""
        return [q for agent in self._agents.values() for q in agent.queues]

    def is_mine(self, name: str) -> bool:
        return name in self._agents

    async def start(
        self, service: LaunchService, queues: Sequence[str], project: str | None
    ) -> str:
        try:
            from launch_tui.core.agent import LaunchAgent
        except ImportError as exc:
            raise AgentUnavailable(
                f"agent: the in-process agent is not available in this build ({exc})."
            ) from exc
        agent = LaunchAgent(service, list(queues), name=None, project=project, max_jobs=1)
        if agent.name in self._agents:
            raise ConflictError(f"agent: '{agent.name}' is already running in this app.")
        await agent.start()
        self._agents[agent.name] = agent
        return str(agent.name)

    async def stop(self, name: str) -> None:
        agent = self._agents.pop(name, None)
        if agent is None:
            return
        task = asyncio.ensure_future(agent.stop())
        done, _ = await asyncio.wait({task}, timeout=self.stop_timeout_s)
        if not done:
            raise AgentStopTimeout(
                f"agent: '{name}' did not stop within {self.stop_timeout_s:g}s; "
                "it is no longer managed by this app."
            )
        task.result()

    async def stop_all(self) -> None:
        for name in list(self._agents):
            try:
                await self.stop(name)
            except LaunchError:
                continue  # let go of it; closing the service ends what is left
