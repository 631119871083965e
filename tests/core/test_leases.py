"""The lease protocol, including many claimers across tasks and OS processes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from launch_tui.core.errors import ConflictError, ValidationError
from launch_tui.core.model import ErrorStage, ItemState, RunState
from launch_tui.core.service import LaunchService
from tests.core.conftest import REPO


@pytest.fixture
async def queue(service: LaunchService, code_dir: Path) -> str:
    await service.create_code_job(code_dir, "python train.py", name="train",
                                  config_defaults={"lr": 0.1})
    await service.create_queue("q", "local-process")
    return "q"


async def test_claim_acknowledge_creates_a_run(service: LaunchService, queue: str) -> None:
    item = await service.enqueue("train", queue, config={"lr": 0.3})
    leased = await service.claim("a1", [queue])
    assert leased is not None and leased.id == item.id and leased.state == ItemState.LEASED
    assert leased.leased_by == "a1" and leased.lease_expires > time.time()
    assert await service.claim("a2", [queue]) is None
    run = await service.acknowledge(item.id, "a1")
    assert run.state == RunState.QUEUED and run.agent == "a1"
    assert set(run.timestamps) == {"leased", "queued"}
    assert run.spec["config"] == {"lr": 0.3}
    assert json.loads(run.spec["env"]["WANDB_CONFIG"]) == {"lr": 0.3}
    assert run.spec["env"]["WANDB_RUN_ID"] == run.id
    assert run.spec["env"]["WANDB_MODE"] == "offline"
    assert (await service.get_item(item.id)).state == ItemState.CLAIMED
    with pytest.raises(ConflictError):
        await service.acknowledge(item.id, "a1")


async def test_release_fail_and_cancel(service: LaunchService, queue: str) -> None:
    a = await service.enqueue("train", queue)
    b = await service.enqueue("train", queue)
    c = await service.enqueue("train", queue)
    await service.claim("a1", [queue])
    await service.release(a.id, "a1")
    assert (await service.get_item(a.id)).state == ItemState.PENDING
    await service.claim("a1", [queue])
    await service.fail_item(a.id, "a1", ErrorStage.AGENT, "no backend")
    failed = await service.get_item(a.id)
    assert failed.state == ItemState.FAILED and failed.error_message == "no backend"
    assert await service.cancel(str(c.id)) == f"item #{c.id} cancelled"
    assert [i.id for i in await service.list_items(queue)] == [b.id]
    with pytest.raises(ConflictError, match="already cancelled"):
        await service.cancel(c.id)


async def test_renew_keeps_and_expiry_returns_the_item(service: LaunchService,
                                                       queue: str) -> None:
    item = await service.enqueue("train", queue)
    await service.claim("a1", [queue], lease_s=0.3)
    await service.renew_lease(item.id, "a1", lease_s=0.6)
    await asyncio.sleep(0.35)
    assert await service.claim("a2", [queue]) is None  # renewed: still a1's
    await asyncio.sleep(0.4)
    again = await service.claim("a2", [queue])  # expired: back to pending, then a2's
    assert again is not None and again.id == item.id and again.leased_by == "a2"
    with pytest.raises(ConflictError, match="not leased by a1"):
        await service.acknowledge(item.id, "a1")
    reasons = [e.reason for e in await service.events_after(0)
               if getattr(e, "item_id", None) == item.id and getattr(e, "state", "") == "pending"]
    assert "lease of a1 expired unacknowledged" in reasons


async def test_acknowledge_fails_an_item_that_no_longer_resolves(
        service: LaunchService, queue: str) -> None:
    await service.update_queue(queue, {"template_variables": {
        "t": {"type": "integer", "default": 5}}, "resource_args": {"timeout_s": "{{t}}"}})
    item = await service.enqueue("train", queue)
    await service.update_queue(queue, {
        "template_variables": {"t": {"type": "integer", "maximum": 3, "default": 1}},
        "resource_args": {"timeout_s": "{{t}}"}})
    await service.claim("a1", [queue])
    with pytest.raises(ValidationError, match="greater than the maximum of 3"):
        await service.acknowledge(item.id, "a1")
    got = await service.get_item(item.id)
    assert got.state == ItemState.FAILED and got.error_stage == ErrorStage.AGENT


CLAIMER = r"""
import asyncio, json, sys
from launch_tui.core.service import LaunchService
async def main(home, name, tasks):
    svc = await LaunchService.open(home=home)
    got = []
    async def worker(i):
        while True:
            item = await svc.claim(f"{name}-{i}", ["q"])
            if item is None:
                return
            got.append(item.id)
            await svc.acknowledge(item.id, f"{name}-{i}")
    await asyncio.gather(*(worker(i) for i in range(tasks)))
    await svc.close()
    print(json.dumps(got))
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_two_processes_and_many_tasks_claim_each_item_once(
        service: LaunchService, queue: str, home: Path) -> None:
    n = 500
    for i in range(n):
        await service.enqueue("train", queue, priority=("low", "high", "medium")[i % 3])
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - started once; waited for in threads below
            [sys.executable, "-c", CLAIMER, str(home), f"p{k}", "4"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in range(2)
    ]
    outs = [await asyncio.to_thread(p.communicate, timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    claimed = [json.loads(out) for out, _ in outs]
    everything = claimed[0] + claimed[1]
    assert len(everything) == n and len(set(everything)) == n
    assert claimed[0] and claimed[1], "both processes should have claimed some items"
    runs = await service.list_runs(queue)
    assert len(runs) == n and len({r.item_id for r in runs}) == n
    assert await service.list_items(queue) == []
