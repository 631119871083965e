"""The Items pane's history: items done with, by outcome, newest first.

The live model keeps only what waits; the history is read from the store (one
page of the newest `HISTORY_LIMIT`) when the view opens, and again when an item
of the queue ends, so it shows what the CLI's `items --all` shows: the outcome
(a claimed item's is its run's state), how long it took and the core's sentence
on how it ended.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text

from launch_tui.core.model import ItemState, QueueItem, RunState
from launch_tui.core.service import LaunchService
from launch_tui.tui import format as fmt
from launch_tui.tui.widgets.table import Column

HISTORY_LIMIT = 500
DONE_STATES = (ItemState.CLAIMED, ItemState.FAILED, ItemState.CANCELLED)
_GOING = {str(s) for s in RunState if not s.terminal}


def outcome(item: QueueItem) -> Text:
    value = item.outcome or str(item.state)
    if value in RunState.__members__.values():
        return fmt.run_state(RunState(value))
    return fmt.item_state(ItemState(value))


class ItemHistorySource:
    columns: Sequence[Column] = (
        Column("item", 7, justify="right"),
        Column("job", 12, flex=1),
        Column("outcome", 9),
        Column("took", 5, justify="right", drop=2),
        Column("ended", 5, justify="right", drop=3),
        Column("why", 16, flex=3, drop=1),
    )

    def __init__(self, queue: str | None, now: Callable[[], float]) -> None:
        self.queue = queue
        self.now = now
        self.items: dict[int, QueueItem] = {}
        self.order: list[int] = []
        self.loaded = False

    async def load(self, service: LaunchService, project: str) -> None:
        found = [] if self.queue is None else await service.list_items(
            self.queue, project=project, states=DONE_STATES, limit=HISTORY_LIMIT)
        # A claimed item whose run is still going is not history yet.
        found = [i for i in found if i.outcome not in _GOING]
        self.items = {i.id: i for i in found}
        self.order = [i.id for i in found]
        self.loaded = True

    def keys(self) -> Sequence[Any]:
        return self.order

    def cells(self, key: int) -> Sequence[str | Text]:
        item = self.items[key]
        ended = item.ended_at
        return (
            f"#{item.id}",
            item.job_ref,
            outcome(item),
            fmt.duration(item.duration_s),
            fmt.age(self.now() - ended) if ended else "",
            fmt.why_cell(item.why, str(item.outcome or item.state)),
        )

    def text(self, key: int) -> str:
        item = self.items[key]
        return f"#{item.id} {item.job_ref} {item.outcome or item.state} {item.why or ''}"

    def detail(self, key: int) -> str:
        item = self.items[key]
        # The why starts with the outcome when there is more to say ("failed (exit …").
        return f"#{item.id} {item.job_ref}: {item.why or item.outcome or item.state}"

    def item(self, key: int) -> QueueItem:
        return self.items[key]
