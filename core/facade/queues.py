"""The facade's queue commands: queue config, enqueue, items, cancel, queue surgery."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from launch_tui.core import redact
from launch_tui.core.errors import ConflictError, NotFound
from launch_tui.core.facade.parts import Config, Parts
from launch_tui.core.listings import PAGE, pages
from launch_tui.core.model import ItemState, Priority, Queue, QueueItem


class QueueCommands(Parts):
    async def create_queue(self, name: str, resource: str, config: Config = None, *,
                           project: str | None = None) -> Queue:
        return redact.queue(await self._queues.create_queue(name, resource, config,
                                                            project=project))

    async def update_queue(self, name: str, config: dict[str, Any], *,
                           resource: str | None = None, project: str | None = None) -> Queue:
        """Replace a queue's config (and optionally its resource). Pending items keep
        their overrides; they are resolved against the new config when claimed. Values
        that still read as `get_queue` showed them (masked secrets) keep what is stored."""
        return redact.queue(await self._queues.update_queue(name, config, resource=resource,
                                                            project=project))

    async def list_queues(self, project: str | None = None) -> list[Queue]:
        return redact.each(await self._queues.list_queues(project), redact.queue)

    async def get_queue(self, name: str, *, project: str | None = None) -> Queue:
        return redact.queue(await self._queues.get_queue(name, project=project))

    async def preview(
        self, job_ref: str, queue: str, *, project: str | None = None, config: Config = None,
        resource_args: Config = None, template_values: Config = None,
    ) -> dict[str, Any]:
        """The resolved spec an item would run with (macros shown as placeholders)."""
        spec = await self._queues.preview(
            job_ref, queue, project=project, config=config, resource_args=resource_args,
            template_values=template_values)
        q = await self._queues.get_queue(queue, project=project)
        return redact.preview(spec, q.config)

    async def enqueue(
        self, job_ref: str, queue: str, *, project: str | None = None, config: Config = None,
        resource_args: Config = None, template_values: Config = None,
        priority: Priority | str = Priority.MEDIUM,
    ) -> QueueItem:
        """Add an item to the queue. Its `position` is None when NEAR (100) or more
        items are ahead of it: counting them all for every item of a sweep would cost
        it the square of its size. `get_item` counts them."""
        return redact.item(await self._queues.enqueue(
            job_ref, queue, project=project, config=config, resource_args=resource_args,
            template_values=template_values, priority=priority))

    async def placed(self, item: QueueItem) -> QueueItem:
        """`item` as enqueue returned it, with its place counted if enqueue left it out
        (None still, if an agent has taken it meanwhile)."""
        if item.position is not None or item.state != ItemState.PENDING:
            return item
        return await self.get_item(item.id, explain=False)

    async def requeue(self, target: str | int, *, priority: Priority | str | None = None
                      ) -> QueueItem:
        """Enqueue again what a run or item ran, with the same overrides."""
        return redact.item(await self._queues.requeue(target, priority=priority))

    async def get_item(self, item_id: int, *, explain: bool = True) -> QueueItem:
        """The item, with its outcome and why it waits or how it ended. `explain=False`
        leaves those out and saves a read of its queue, agents and run: for callers
        that work them out from what they hold (the TUI's live model)."""
        item = redact.item(await self._queues.get_item(item_id))
        return await self._explained(item) if explain else item

    async def list_items(
        self, queue: str | None = None, *, project: str | None = None,
        states: Iterable[ItemState | str] | None = (ItemState.PENDING,), limit: int | None = None,
        after: str | None = None, since: float | None = None, explain: bool = True,
    ) -> list[QueueItem]:
        """Waiting items in the order they will be taken (queue by queue, priority, then
        first in first out), then the others newest first; created at or after `since`
        (epoch seconds), continuing after the cursor `after` (`listings.cursor_of` an item).
        Each carries its outcome (a claimed item's is its run's state), end, duration and
        one sentence on why it waits or how it ended (`why`), unless `explain=False`
        (see `get_item`)."""
        found = redact.each(
            await self._listings.list_items(queue, project=project, states=states, limit=limit,
                                            after=after, since=since),
            redact.item)
        return await self._listings.explained(found) if explain else found

    def item_pages(
        self, queue: str | None = None, *, project: str | None = None,
        states: Iterable[ItemState | str] | None = (ItemState.PENDING,), limit: int | None = None,
        since: float | None = None, page: int = PAGE,
    ) -> AsyncIterator[list[QueueItem]]:
        """`list_items` a page of `page` at a time, up to `limit` items (None: all)."""
        states = None if states is None else tuple(states)
        return pages(lambda cursor, n: self.list_items(
            queue, project=project, states=states, limit=n, after=cursor, since=since),
            limit, page)

    async def cancel(self, target: str | int, *, reason: str = "cancelled by user") -> str:
        """Cancel a pending item, or ask the agent to stop a run. Returns what was done."""
        return await self._queues.cancel(target, reason=reason)

    async def cancel_many(self, targets: Sequence[str | int], *,
                          reason: str = "cancelled by user") -> list[tuple[str, bool, str]]:
        """Cancel several items or runs, each as its own conditional change: one that an
        agent took or that ended meanwhile is reported, not an error for the others.
        Returns (target, done, what was done or why not) per target, in order."""
        results: list[tuple[str, bool, str]] = []
        for target in targets:
            try:
                results.append((str(target), True, await self.cancel(target, reason=reason)))
            except (ConflictError, NotFound) as exc:
                results.append((str(target), False, str(exc)))
        return results

    # Queue surgery.

    async def hold_queue(self, name: str, *, project: str | None = None,
                         reason: str | None = None) -> Queue:
        """Agents take nothing more from the queue until it is resumed (what runs goes
        on). ConflictError when it is already held."""
        return await self._surgery.hold_queue(name, project=project, reason=reason)

    async def resume_queue(self, name: str, *, project: str | None = None) -> Queue:
        return await self._surgery.resume_queue(name, project=project)

    async def move_item(self, item_id: int, where: str) -> QueueItem:
        """Move a waiting item to the "top" (taken next) or "bottom" (taken last) of its
        queue, raising or lowering its priority to its neighbour's when needed."""
        return await self._explained(await self._surgery.move_item(item_id, where))

    async def set_item_priority(self, item_id: int, priority: Priority | str) -> QueueItem:
        return await self._explained(await self._surgery.set_item_priority(item_id, priority))

    async def move_item_to_queue(self, item_id: int, queue: str) -> QueueItem:
        """Move a waiting item to another queue of its project, checked against that
        queue's config as an enqueue is."""
        return await self._explained(await self._surgery.move_item_to_queue(item_id, queue))

    async def _explained(self, item: QueueItem) -> QueueItem:
        """A (redacted) item as `get_item` gives it: with its outcome and why."""
        return (await self._listings.explained([item]))[0]
