"""Queue surgery: holding and resuming a queue, and moving what waits on it.

Each operation is one conditional UPDATE inside one transaction, announced by an
event in the same transaction. The condition is what the operation assumes (the
item still pending in the queue it was seen in, the queue not already held), so
an agent claiming the item at the same moment either wins, and the operation
changes nothing and says so, or loses, and the claim takes the item in its new
place. On PostgreSQL a claim holds the item's row locked until it commits; the
UPDATE waits for it and then finds the item no longer pending.

Holding takes effect for claims that start after it commits: a claim reads the
queue's hold in the statement that picks its item (store/items.py).
"""

from __future__ import annotations

from typing import Any

from launch_tui.core import redact
from launch_tui.core.catalog import Catalog
from launch_tui.core.errors import ConflictError, ValidationError
from launch_tui.core.events import ItemMoved, QueueChanged
from launch_tui.core.lookups import project_or_default, require_queue
from launch_tui.core.model import ItemState, Priority, Queue, QueueItem
from launch_tui.core.queues import check_item, parse_priority
from launch_tui.core.settings import Settings
from launch_tui.core.store import items as items_db
from launch_tui.core.store import queues as queues_db
from launch_tui.core.store.session import Conn, Store
from launch_tui.core.transitions import require_item
from launch_tui.core.versions import version_by_id

MOVES = ("top", "bottom")
HOLD_REASON_MAX = 500


class Surgery:
    def __init__(self, store: Store, settings: Settings, catalog: Catalog) -> None:
        self._store = store
        self._settings = settings
        self._catalog = catalog

    # ------------------------------------------------------------------ queues

    async def hold_queue(self, name: str, *, project: str | None, reason: str | None) -> Queue:
        """Agents take nothing more from the queue until it is resumed; what runs
        goes on. ConflictError when it is already held."""
        project = project_or_default(self._settings, project)
        reason = (reason or "").strip() or None
        if reason is not None and len(reason) > HOLD_REASON_MAX:
            raise ValidationError(f"reason: must be at most {HOLD_REASON_MAX} characters "
                                  f"(got {len(reason)}).", field="reason")
        return await self._set_held(project, name, True, reason)

    async def resume_queue(self, name: str, *, project: str | None) -> Queue:
        """Agents take from the queue again. ConflictError when it is not held."""
        project = project_or_default(self._settings, project)
        return await self._set_held(project, name, False, None)

    async def _set_held(self, project: str, name: str, hold: bool, reason: str | None
                        ) -> Queue:
        store = self._store

        def tx(conn: Conn) -> Queue:
            row = require_queue(conn, project, name)
            if not queues_db.set_held(conn, row.id, store.now() if hold else None, reason):
                state = "already held" if hold else "not held"
                raise ConflictError(f"queue: '{name}' is {state}.")
            store.emit(conn, QueueChanged(project=project, queue=name))
            return queues_db.snapshot(conn, require_queue(conn, project, name))

        return redact.queue(await store.write(tx))

    # ------------------------------------------------------------------ items

    async def move_item(self, item_id: int, where: str) -> QueueItem:
        """Move a waiting item to the top (taken next: its priority is raised to the
        first item's if that is higher) or the bottom (taken last: lowered to the last
        item's if that is lower, and placed as if enqueued now)."""
        if where not in MOVES:
            raise ValidationError(f"where: '{where}' must be top or bottom.", field="where")
        store = self._store

        def tx(conn: Conn) -> QueueItem:
            item, queue_id, _ = _waiting(conn, item_id, "moved")
            edge = items_db.edge_pending(conn, queue_id, last=where == "bottom")
            assert edge is not None  # the item itself is pending there
            rank = item.priority.rank
            if edge.id == item.id:
                raise ConflictError(f"item: #{item.id} is already at the {where} of queue "
                                    f"'{item.queue}'.")
            if where == "top":
                values: dict[str, Any] = {"priority": min(rank, edge.priority),
                                          "seq": edge.seq - 1.0}
            else:
                # As if enqueued now: behind everything waiting, ahead of what comes later.
                values = {"priority": max(rank, edge.priority),
                          "seq": max(store.now(), edge.seq + 1e-3)}
            return _apply(store, conn, item, queue_id, values, where)

        return redact.item(await store.write(tx))

    async def set_item_priority(self, item_id: int, priority: Priority | str) -> QueueItem:
        """Give a waiting item another priority; it keeps its place by enqueue time
        among the items of its new priority."""
        new = parse_priority(priority)
        store = self._store

        def tx(conn: Conn) -> QueueItem:
            item, queue_id, _ = _waiting(conn, item_id, "changed")
            if item.priority == new:
                raise ConflictError(f"item: #{item.id} already has priority {new}.")
            return _apply(store, conn, item, queue_id, {"priority": new.rank}, "priority")

        return redact.item(await store.write(tx))

    async def move_item_to_queue(self, item_id: int, queue: str) -> QueueItem:
        """Move a waiting item to the back of its priority on another queue of its
        project, checked against that queue's config as an enqueue would be."""
        store, settings = self._store, self._settings

        def tx(conn: Conn) -> QueueItem:
            item, queue_id, job_id = _waiting(conn, item_id, "moved")
            if queue == item.queue:
                raise ConflictError(f"item: #{item.id} is already on queue '{queue}'.")
            target = require_queue(conn, item.project, queue)
            version = version_by_id(store, conn, job_id, item.version)
            assert version is not None  # items reference versions, never deleted
            # Template values belong to a queue's template: keep those the target
            # declares too (checked against its rules); its defaults fill in the rest.
            declared = (target.config or {}).get("template_variables") or {}
            kept = {k: v for k, v in item.template_values.items() if k in declared}
            try:
                values = check_item(settings, version, target, item.config_overrides,
                                    item.resource_overrides, kept)
            except ValidationError as exc:
                raise ValidationError(f"queue: item #{item.id} cannot move to '{queue}': "
                                      f"{exc}", field="queue") from exc
            return _apply(store, conn, item, queue_id, {
                "queue_id": target.id, "seq": store.now(), "template_values": values,
            }, "queue", target_queue=queue)

        return redact.item(await store.write(tx))


def _waiting(conn: Conn, item_id: int, done: str) -> tuple[QueueItem, int, int]:
    """The item and the ids of its queue and job, if it is pending; else ConflictError
    saying what it is now and that it was not `done`."""
    item = require_item(conn, item_id)
    if item.state != ItemState.PENDING:
        now = f"{item.state}"
        if item.state == ItemState.LEASED and item.leased_by:
            now = f"being taken by agent {item.leased_by}"
        elif item.state == ItemState.CLAIMED and item.run_id:
            now = f"claimed as run {item.run_id}"
        raise ConflictError(f"item: #{item.id} is no longer waiting ({now}); it was not "
                            f"{done}.")
    queue_id, job_id = items_db.refs(conn, item.id)
    return item, queue_id, job_id


def _apply(store: Store, conn: Conn, item: QueueItem, queue_id: int, values: dict[str, Any],
           how: str, *, target_queue: str | None = None) -> QueueItem:
    values = {**values, "updated_at": store.now()}
    if not items_db.move_pending(conn, item.id, queue_id, values):
        # Read again: under PostgreSQL the claim that won committed while we waited.
        now = require_item(conn, item.id)
        raise ConflictError(f"item: #{item.id} was taken meanwhile (now {now.state}); "
                            "nothing changed.")
    moved = require_item(conn, item.id)
    store.emit(conn, ItemMoved(project=item.project, queue=moved.queue, item_id=item.id,
                               priority=str(moved.priority), how=how,
                               from_queue=item.queue if target_queue else None))
    return moved
