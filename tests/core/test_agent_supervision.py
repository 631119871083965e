"""The agent keeps itself alive: a store fault in one step never stops the claim loop,
and a loop that keeps failing stops the agent with status `error` and the reason.

Faults are injected by a thin wrapper around the real service (the port the agent
talks through); the store, the backend and the jobs are real. What this does not
prove: how a real database outage looks from inside SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from launch_tui.core.agent import LaunchAgent
from launch_tui.core.agent.loop import AgentFailed
from launch_tui.core.model import AgentStatus, RunState
from launch_tui.core.service import LaunchService
from tests.agent_harness import Lab, wait_for


class FaultyPort:
    """Delegates to the service; `faults` maps an operation to how many calls fail."""

    def __init__(self, service: LaunchService, faults: dict[str, int], *,
                 lease_s: float | None = None, garbage: bool = False) -> None:
        self._service = service
        self.faults = dict(faults)
        self.lease_s = lease_s
        self.garbage = garbage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    def _maybe_fail(self, op: str) -> None:
        if self.faults.get(op, 0) > 0:
            self.faults[op] -= 1
            raise RuntimeError(f"injected fault in {op}: database is locked")

    async def claim(self, agent: str, queues: Any, **kw: Any) -> Any:
        if self.lease_s is not None:
            kw["lease_s"] = self.lease_s
        return await self._service.claim(agent, queues, **kw)

    async def acknowledge(self, item_id: int, agent: str) -> Any:
        self._maybe_fail("acknowledge")
        run = await self._service.acknowledge(item_id, agent)
        return None if self.garbage else run  # None: a bug downstream of the store


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    lab = await Lab.open(tmp_path)
    try:
        yield lab
    finally:
        await lab.close()


async def test_a_store_error_in_acknowledge_does_not_stop_claiming(lab: Lab) -> None:
    queue = await lab.queue()
    job = await lab.job({"main.py": "print('ran')\n"}, "python main.py")
    port = FaultyPort(lab.service, {"acknowledge": 1}, lease_s=1.0)
    agent = LaunchAgent(port, [queue], poll_interval_s=0.2, cancel_grace_s=2.0)  # type: ignore[arg-type]
    lab.agents.append(agent)
    first = await lab.service.enqueue(job, queue)
    second = await lab.service.enqueue(job, queue)
    await agent.start()
    # The first acknowledge fails; the loop goes on with the second item at once...
    run2 = await lab.run_of(second.id)
    assert (await lab.wait_run(run2.id)).state == RunState.FINISHED
    # ...and the first item, its lease run out, is claimed again and runs.
    run1 = await lab.run_of(first.id, within=30)
    assert (await lab.wait_run(run1.id)).state == RunState.FINISHED
    logs = [e.message for e in await lab.service.agent_logs(agent.name)]
    assert any(f"could not acknowledge item #{first.id}" in m and "database is locked" in m
               for m in logs), logs
    assert agent.failure is None


async def test_a_loop_that_keeps_failing_stops_the_agent_with_status_error(lab: Lab) -> None:
    queue = await lab.queue()
    job = await lab.job({"main.py": "print('ran')\n"}, "python main.py")
    for _ in range(6):
        await lab.service.enqueue(job, queue)
    port = FaultyPort(lab.service, {}, garbage=True)
    agent = LaunchAgent(port, [queue], poll_interval_s=0.2)  # type: ignore[arg-type]
    lab.agents.append(agent)
    await agent.start()
    with pytest.raises(AgentFailed, match="the claim loop failed 5 times"):
        await wait_for(lambda: agent.failure, "the agent to give up", within=120)
        await agent.wait()
    (row,) = [a for a in await lab.service.list_agents() if a.name == agent.name]
    assert row.status == AgentStatus.ERROR
    logs = [e.message for e in await lab.service.agent_logs(agent.name)]
    assert any("restarting it in" in m for m in logs), logs
    assert any("the claim loop failed 5 times" in m for m in logs), logs
