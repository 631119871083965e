"""The live model turns events into the fewest reads and the narrowest changes."""

from __future__ import annotations

from typing import Any

from launch_tui.core.events import AgentHeartbeat, ItemStateChanged
from launch_tui.core.model import ItemState, Priority
from launch_tui.core.service import LaunchService
from launch_tui.tui.demo import Demo
from launch_tui.tui.live import Change, ItemList, LiveModel


class CountingService:
    """Wraps the real service and counts the reads the model makes."""

    def __init__(self, service: LaunchService) -> None:
        self._service = service
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._service, name)
        if callable(attr):
            async def call(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return await attr(*args, **kwargs)
            return call
        return attr


async def test_a_state_change_of_a_known_item_is_one_row_and_no_read(
    service: LaunchService, world: Demo
) -> None:
    item = await service.enqueue("train", "local")
    counting = CountingService(service)
    changes: list[Change] = []
    model = LiveModel(counting, "default", changes.append)  # type: ignore[arg-type]
    await model.load()
    counting.calls.clear()
    changes.clear()
    # A lease moves the item to the head (order changes: one "items" notice).
    await model.apply([ItemStateChanged(project="default", queue="local", item_id=item.id,
                                        state="leased", agent="a1")])
    assert counting.calls == []
    assert Change("items", queue="local") in changes
    assert model.items["local"].by_id[item.id].leased_by == "a1"
    # A heartbeat of a known agent changes one row, read nothing.
    await service.register_agent("a1", ["local"])
    await model.apply([AgentHeartbeat(agent="a1", status="polling", running=0)])
    counting.calls.clear()
    changes.clear()
    await model.apply([AgentHeartbeat(agent="a1", status="running", running=1, ts=5.0)])
    assert counting.calls == []
    assert changes == [Change("agent", "a1")]


async def test_a_flood_of_new_items_is_one_read(service: LaunchService, world: Demo) -> None:
    counting = CountingService(service)
    changes: list[Change] = []
    model = LiveModel(counting, "default", changes.append)  # type: ignore[arg-type]
    await model.load()
    seq = await service.last_event_seq()
    for _ in range(150):
        await service.enqueue("train", "local")
    events = await service.events_after(seq, limit=1000)
    counting.calls.clear()
    await model.apply(events)
    assert counting.calls == ["list_items"]  # not 150 get_item calls
    assert len(model.items["local"]) == 150


def test_item_order_is_priority_then_first_in_first_out() -> None:
    from launch_tui.core.model import QueueItem

    def item(n: int, priority: Priority, state: ItemState = ItemState.PENDING) -> QueueItem:
        return QueueItem(id=n, project="p", queue="q", job="j", version=0, config_overrides={},
                         resource_overrides={}, template_values={}, priority=priority,
                         state=state, created_at=0.0, updated_at=0.0)

    items = ItemList([item(1, Priority.LOW), item(2, Priority.MEDIUM),
                      item(3, Priority.CRITICAL), item(4, Priority.MEDIUM)])
    assert [k[-1] for k in items.keys] == [3, 2, 4, 1]
    assert [items.position(k) for k in items.keys] == [1, 2, 3, 4]
    # Leased goes to the head and has no position; the rest move up.
    assert items.upsert(item(2, Priority.MEDIUM, ItemState.LEASED))
    assert [k[-1] for k in items.keys] == [2, 3, 4, 1]
    assert [items.position(k) for k in items.keys] == [None, 1, 2, 3]
    # Claimed leaves the waiting list.
    assert items.upsert(item(2, Priority.MEDIUM, ItemState.CLAIMED))
    assert 2 not in items.by_id and items.pending == 3
    # A place within the priority (seq) orders before the number: moved to the top.
    import dataclasses
    assert items.upsert(dataclasses.replace(item(1, Priority.CRITICAL), seq=-1.0))
    assert [k[-1] for k in items.keys] == [1, 3, 4]
    assert items.drop(1) and not items.drop(1)
    assert [k[-1] for k in items.keys] == [3, 4]


async def test_surgery_reaches_the_model_through_the_feed(
    service: LaunchService, world: Demo
) -> None:
    """Moves made by anyone (here, the service directly) reorder the model's lists."""
    a, b, c = [await service.enqueue("train", "local") for _ in range(3)]
    model = LiveModel(service, "default", lambda change: None)
    await model.load()
    seq = await service.last_event_seq()
    await service.move_item(c.id, "top")
    await service.move_item_to_queue(a.id, "gpu")
    await service.hold_queue("local")
    await model.apply(await service.events_after(seq))
    assert [k[-1] for k in model.items["local"].keys] == [c.id, b.id]
    assert a.id in model.items["gpu"].by_id
    assert model.queues["local"].held
