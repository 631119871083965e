"""service.agent_logs: one agent's log lines, however much other agents say."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from launch_tui.core.service import LaunchService


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[LaunchService]:
    svc = await LaunchService.open(home=tmp_path / "home")
    try:
        yield svc
    finally:
        await svc.close()


async def test_an_agents_log_is_not_crowded_out_by_a_chattier_agent(
    service: LaunchService,
) -> None:
    for i in range(5):
        await service.agent_log("quiet", f"quiet line {i}")
    for i in range(900):
        await service.agent_log("chatty", f"chatty line {i}")

    quiet = await service.agent_logs("quiet", limit=200)
    assert [e.message for e in quiet] == [f"quiet line {i}" for i in range(5)]
    assert {e.agent for e in quiet} == {"quiet"}

    chatty = await service.agent_logs("chatty", limit=3)
    assert [e.message for e in chatty] == [f"chatty line {i}" for i in (897, 898, 899)]
    everyone = await service.agent_logs(limit=2)
    assert [e.message for e in everyone] == ["chatty line 898", "chatty line 899"]
