"""The agent keeps itself alive: a store fault in one step never stops the claim loop,
and a loop that keeps failing stops the agent with status `error` and the reason.

Faults are injected by a thin wrapper around the real service (the port the agent
talks through); the store, the backend and the jobs are real. What this does not
prove: how a real database outage looks from inside SQLAlchemy.
"""

from __future__ import annotations

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
                 garbage: bool = False) -> None:
        self._service = service
        self.faults = dict(faults)
        self.garbage = garbage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._service, name)

    def _maybe_fail(self, op: str) -> None:
        if self.faults.get(op, 0) > 0:
            self.faults[op] -= 1
            raise RuntimeError(f"injected fault in {op}: database is locked")

    async def claim_run(self, agent: str, queues: Any, **kw: Any) -> Any:
        self._maybe_fail("claim_run")
        result = await self._service.claim_run(agent, queues, **kw)
        # Something the loop cannot use: stands for a bug downstream of the store.
        return object() if self.garbage and result.run is not None else result


async def test_store_errors_while_claiming_do_not_stop_the_agent(lab: Lab) -> None:
    queue = await lab.queue()
    job = await lab.job({"main.py": "print('ran')\n"}, "python main.py")
    port = FaultyPort(lab.service, {"claim_run": 2})
    agent = LaunchAgent(port, [queue], poll_interval_s=0.2, cancel_grace_s=2.0)  # type: ignore[arg-type]
    lab.agents.append(agent)
    first = await lab.service.enqueue(job, queue)
    second = await lab.service.enqueue(job, queue)
    await agent.start()
    # The first two claims fail; the loop goes on and both items run, in order.
    run1 = await lab.run_of(first.id)
    run2 = await lab.run_of(second.id)
    for run in (run1, run2):
        assert (await lab.wait_run(run.id)).state == RunState.FINISHED
    logs = [e.message for e in await lab.service.agent_logs(agent.name)]
    assert sum("claim failed" in m and "database is locked" in m for m in logs) == 2, logs
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
