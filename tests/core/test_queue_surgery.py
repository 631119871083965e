"""Queue surgery through the facade: hold and resume, top and bottom, priority, another
queue, cancelling several; each a conditional change that loses to a claim and says so.

Every test runs on the store the run was started with (--store sqlite|postgres).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from launch_tui.core.errors import ConflictError, ValidationError
from launch_tui.core.model import AgentStatus, ItemState, Priority
from launch_tui.core.service import LaunchService
from launch_tui.core.store.items import NEAR


@pytest.fixture
async def seeded(service: LaunchService, code_dir: Path) -> LaunchService:
    await service.create_queue("cpu", "local-process")
    await service.create_queue("other", "local-process")
    await service.create_code_job(code_dir, "python train.py", name="train")
    return service


async def _enqueue(svc: LaunchService, n: int, queue: str = "cpu",
                   priority: str = "medium") -> list[int]:
    return [(await svc.enqueue("train", queue, priority=priority)).id for _ in range(n)]


async def _order(svc: LaunchService, queue: str = "cpu") -> list[int]:
    return [i.id for i in await svc.list_items(queue)]


async def test_a_held_queue_gives_nothing_out_until_resumed(seeded: LaunchService) -> None:
    svc = seeded
    [item] = await _enqueue(svc, 1)
    held = await svc.hold_queue("cpu", reason="cluster maintenance")
    assert held.held and held.hold_reason == "cluster maintenance"
    assert (await svc.get_queue("cpu")).held
    got = await svc.claim_run("a1", ["cpu"])
    assert got.run is None
    assert await svc.claim("a1", ["cpu"]) is None  # the two-step claim honours it too
    why = (await svc.get_item(item)).why
    assert why is not None and why.startswith("queue cpu is held: cluster maintenance")
    with pytest.raises(ConflictError, match="queue: 'cpu' is already held"):
        await svc.hold_queue("cpu")
    resumed = await svc.resume_queue("cpu")
    assert not resumed.held
    with pytest.raises(ConflictError, match="queue: 'cpu' is not held"):
        await svc.resume_queue("cpu")
    got = await svc.claim_run("a1", ["cpu"])
    assert got.run is not None and got.run.item_id == item


async def test_top_and_bottom_change_the_take_order(seeded: LaunchService) -> None:
    svc = seeded
    a, b, c, d = await _enqueue(svc, 4)
    moved = await svc.move_item(c, "top")
    assert moved.position == 1
    assert await _order(svc) == [c, a, b, d]
    await svc.move_item(a, "bottom")
    assert await _order(svc) == [c, b, d, a]
    # Bottom means "as if enqueued now": what comes later queues behind it.
    [e] = await _enqueue(svc, 1)
    assert await _order(svc) == [c, b, d, a, e]
    # The store's claim follows the same order as the listing.
    taken = [(await svc.claim_run("a1", ["cpu"])).run for _ in range(5)]
    assert [r.item_id for r in taken if r] == [c, b, d, a, e]


async def test_top_raises_priority_to_the_head_and_bottom_lowers_it(
        seeded: LaunchService) -> None:
    svc = seeded
    [high] = await _enqueue(svc, 1, priority="high")
    [low] = await _enqueue(svc, 1, priority="low")
    [mid] = await _enqueue(svc, 1)
    top = await svc.move_item(low, "top")
    assert top.priority == Priority.HIGH and top.position == 1
    bottom = await svc.move_item(high, "bottom")
    assert bottom.priority == Priority.MEDIUM
    assert await _order(svc) == [low, mid, high]
    with pytest.raises(ConflictError, match="already at the top"):
        await svc.move_item(low, "top")
    with pytest.raises(ValidationError, match="where: 'middle' must be top or bottom"):
        await svc.move_item(low, "middle")


async def test_priority_change_keeps_fifo_within_the_new_priority(
        seeded: LaunchService) -> None:
    svc = seeded
    a, b = await _enqueue(svc, 2, priority="high")
    [c] = await _enqueue(svc, 1)
    changed = await svc.set_item_priority(c, "critical")
    assert changed.priority == Priority.CRITICAL
    assert await _order(svc) == [c, a, b]
    await svc.set_item_priority(a, "low")
    assert await _order(svc) == [c, b, a]
    with pytest.raises(ValidationError, match="priority: 'urgent' must be one of"):
        await svc.set_item_priority(a, "urgent")
    with pytest.raises(ConflictError, match="already has priority low"):
        await svc.set_item_priority(a, "low")


async def test_move_to_another_queue_is_checked_against_its_config(
        seeded: LaunchService, code_dir: Path) -> None:
    svc = seeded
    [item] = await _enqueue(svc, 1)
    [there] = await _enqueue(svc, 1, queue="other")
    moved = await svc.move_item_to_queue(item, "other")
    assert moved.queue == "other" and moved.state == ItemState.PENDING
    assert await _order(svc, "other") == [there, item]
    assert await _order(svc) == []
    # The target queue's template variables apply: their defaults are filled in.
    await svc.create_queue("tuned", "local-process", {
        "template_variables": {"threads": {"type": "integer", "default": 4}}})
    tuned = await svc.move_item_to_queue(there, "tuned")
    assert tuned.template_values == {"threads": 4}
    await svc.create_queue("img", "docker")
    await svc.create_image_job("python:3.11-slim", name="img-job",
                               entrypoint=["python", "-c", "pass"])
    [image_item] = [(await svc.enqueue("img-job", "img")).id]
    with pytest.raises(ValidationError,
                       match=r"cannot move to 'cpu'.*cannot run an image job"):
        await svc.move_item_to_queue(image_item, "cpu")
    assert (await svc.get_item(image_item)).queue == "img"  # nothing half-moved
    with pytest.raises(ConflictError, match="already on queue 'img'"):
        await svc.move_item_to_queue(image_item, "img")


async def test_surgery_on_an_item_an_agent_took_changes_nothing(
        seeded: LaunchService) -> None:
    svc = seeded
    [item] = await _enqueue(svc, 1)
    got = await svc.claim_run("a1", ["cpu"])
    assert got.run is not None
    for attempt in (svc.move_item(item, "top"), svc.set_item_priority(item, "high"),
                    svc.move_item_to_queue(item, "other")):
        with pytest.raises(ConflictError,
                           match=rf"item: #{item} is no longer waiting \(claimed as run "):
            await attempt
    after = await svc.get_item(item)
    assert after.queue == "cpu" and after.priority == Priority.MEDIUM


async def test_claims_racing_moves_take_each_item_exactly_once(seeded: LaunchService) -> None:
    """Moves and claims at the same moment: every item is run once, and every move
    either took effect on a waiting item or reported that an agent had it."""
    svc = seeded
    ids = await _enqueue(svc, 40)

    async def claimer() -> list[int]:
        taken: list[int] = []
        while (got := await svc.claim_run("a1", ["cpu"])).run is not None:
            taken.append(got.run.item_id)
        return taken

    async def mover() -> tuple[int, int]:
        moved = lost = 0
        for n, item in enumerate(reversed(ids)):
            try:
                await (svc.move_item(item, "top") if n % 2 else
                       svc.move_item_to_queue(item, "other"))
                moved += 1
            except ConflictError:
                lost += 1
        return moved, lost

    taken, (moved, lost) = await asyncio.gather(claimer(), mover())
    rest = [i.id for i in await svc.list_items("other")]
    assert sorted(taken + rest + [i.id for i in await svc.list_items("cpu")]) == sorted(ids)
    assert len(set(taken)) == len(taken)
    assert moved + lost == len(ids)


async def test_cancel_many_reports_each(seeded: LaunchService) -> None:
    svc = seeded
    a, b, c = await _enqueue(svc, 3)
    got = await svc.claim_run("a1", ["cpu"])
    assert got.run is not None and got.run.item_id == a
    await svc.cancel(str(c))
    results = await svc.cancel_many([str(a), str(b), str(c), "999"])
    assert results[0][1] and results[0][2] == f"run {got.run.id} stopping"
    assert results[1] == (str(b), True, f"item #{b} cancelled")
    assert results[2] == (str(c), False, f"item: #{c} is already cancelled.")
    assert results[3] == ("999", False, "item: #999 does not exist.")


async def test_why_an_item_waits(seeded: LaunchService) -> None:
    svc = seeded
    a, b, c = await _enqueue(svc, 3)
    assert (await svc.get_item(a)).why == "no agent serves queue cpu (none ever has)"
    await svc.register_agent("vm-local", ["cpu"], max_jobs=1)
    assert (await svc.get_item(a)).why == "next in line; agent vm-local has a free slot"
    got = await svc.claim_run("vm-local", ["cpu"])
    assert got.run is not None
    await svc.agent_heartbeat("vm-local", AgentStatus.RUNNING, 1)
    items = await svc.list_items("cpu")
    assert [i.why for i in items] == [
        "next in line; agent vm-local is at max_jobs 1",
        "1 item ahead; agent vm-local is at max_jobs 1",
    ]
    await svc.agent_heartbeat("vm-local", AgentStatus.STOPPED, 0)
    why = (await svc.get_item(c)).why
    assert why is not None and why.startswith("no agent serves queue cpu (last agent vm-local "
                                              "stopped ")
    assert b in [i.id for i in items]


async def test_history_keeps_outcomes(seeded: LaunchService) -> None:
    svc = seeded
    a, b, c = await _enqueue(svc, 3)
    run = (await svc.claim_run("a1", ["cpu"])).run
    assert run is not None
    from launch_tui.core.model import ErrorStage, RunState
    await svc.set_run_state(run.id, RunState.FAILED, error_stage=ErrorStage.BUILD,
                            error_message="pip could not find torch==9.9")
    await svc.cancel(str(b))
    history = await svc.list_items("cpu", states=None)
    by_id = {i.id: i for i in history}
    assert by_id[a].state == ItemState.CLAIMED and by_id[a].outcome == "failed"
    assert by_id[a].why == "failed at build: pip could not find torch==9.9"
    assert by_id[a].ended_at is not None and by_id[a].duration_s is not None
    assert by_id[b].outcome == "cancelled" and by_id[b].why == "cancelled by user"
    assert by_id[c].outcome == "pending"
    # Waiting first in take order, then the rest newest first.
    assert [i.id for i in history] == [c, b, a]


async def test_enqueue_refuses_what_the_target_cannot_run(seeded: LaunchService) -> None:
    svc = seeded
    await svc.create_image_job("python:3.11-slim", name="img-job",
                               entrypoint=["python", "-c", "pass"])
    with pytest.raises(ValidationError, match="queue: 'cpu' runs jobs as local processes, "
                                              "which cannot run an image job"):
        await svc.enqueue("img-job", "cpu")
    with pytest.raises(ValidationError, match="cannot run an image job"):
        await svc.preview("img-job", "cpu")
    await svc.create_queue("k8s", "kubernetes")
    with pytest.raises(ValidationError, match=r"builder.destination: queue 'k8s' names no "
                                              r"registry to push this code job's image to"):
        await svc.enqueue("train", "k8s")
    assert (await svc.enqueue("img-job", "k8s")).state == ItemState.PENDING
    await svc.update_queue("k8s", {"builder": {"destination": "127.0.0.1:5000/team"}})
    assert (await svc.enqueue("train", "k8s")).state == ItemState.PENDING
    assert [i.job for i in await svc.list_items("cpu")] == []


async def test_enqueue_places_items_near_the_head_and_leaves_far_ones_to_get_item(
        seeded: LaunchService) -> None:
    """An enqueue counts up to NEAR items ahead; further back its place is None (a
    sweep would otherwise count its whole backlog per item), and `placed` counts it."""
    svc = seeded
    places = [(await svc.enqueue("train", "cpu")).position for _ in range(NEAR + 2)]
    assert places == [*range(1, NEAR + 1), None, None]
    assert (await svc.enqueue("train", "cpu", priority="high")).position == 1
    low = await svc.enqueue("train", "cpu", priority="low")
    assert low.position is None
    assert (await svc.placed(low)).position == NEAR + 4
    far = await svc.enqueue("train", "cpu")
    assert (far.position, (await svc.placed(far)).position) == (None, NEAR + 4)
    assert (await svc.get_item(low.id)).position == NEAR + 5  # behind the medium one
    near = await svc.enqueue("train", "cpu", priority="high")
    assert near.position == 2 and (await svc.placed(near)) == near
