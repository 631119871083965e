"""Dispatch: handing queue items to agents and turning them into runs.

An agent claims an item (a lease that runs out unless renewed), then either
gives it back, fails it, or acknowledges it, which resolves the item's spec for
real and creates its run. From then on the agent moves the run through its
states (see `transitions`) and records what it learns about it.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from launch_tui.core import resolve
from launch_tui.core.catalog import project_or_default, require_job
from launch_tui.core.catalog import require_version as require_job_version
from launch_tui.core.errors import ConflictError, NotFound, ValidationError
from launch_tui.core.events import RunStateChanged
from launch_tui.core.model import ErrorStage, ItemState, QueueItem, Run, RunSpec, RunState
from launch_tui.core.queues import require_queue, scope
from launch_tui.core.settings import Settings
from launch_tui.core.store import items as items_db
from launch_tui.core.store import rows
from launch_tui.core.store import runs as runs_db
from launch_tui.core.store.session import Conn, Store
from launch_tui.core.transitions import change_item, change_run, require_item, require_run

_RUN_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_run_id() -> str:
    """8 characters, starting with a letter so it never looks like an item number."""
    return secrets.choice(string.ascii_lowercase) + "".join(
        secrets.choice(_RUN_ID_ALPHABET) for _ in range(7)
    )


class Dispatch:
    def __init__(self, store: Store, settings: Settings, new_run_id: Callable[[], str]) -> None:
        self._store = store
        self._settings = settings
        self._new_run_id = new_run_id

    # ------------------------------------------------------------------ leases

    async def claim(self, agent: str, queue_names: Sequence[str], *, project: str | None,
                    lease_s: float | None) -> QueueItem | None:
        """Lease the next pending item of the first queue (in the given order) that has one."""
        project = project_or_default(self._settings, project)
        lease_s = lease_s if lease_s is not None else self._settings.lease_s
        now = self._store.now()
        async with self._store.tx() as conn:
            await self._expire_leases(conn, now)
            for name in queue_names:
                qrow = await require_queue(conn, project, name)
                item_id = await items_db.claim_next_pending(
                    conn, qrow.id, skip_locked=self._store.skip_locked
                )
                if item_id is None:
                    continue
                item = await require_item(conn, item_id)
                if await change_item(self._store, conn, item, ItemState.LEASED, agent=agent,
                                     reason=f"leased by {agent}", leased_by=agent,
                                     lease_expires=now + lease_s):
                    return await require_item(conn, item_id)
        return None

    async def expire_leases(self) -> None:
        async with self._store.tx() as conn:
            await self._expire_leases(conn, self._store.now())

    async def _expire_leases(self, conn: Conn, now: float) -> None:
        for item in await items_db.leased(conn, expired_before=now):
            await change_item(
                self._store, conn, item, ItemState.PENDING,
                reason=f"lease of {item.leased_by} expired unacknowledged",
                lease_expired_before=now, leased_by=None, lease_expires=None,
            )

    async def renew_lease(self, item_id: int, agent: str, lease_s: float | None) -> None:
        lease_s = lease_s if lease_s is not None else self._settings.lease_s
        async with self._store.tx() as conn:
            await _held(conn, item_id, agent)
            if not await items_db.renew_lease(conn, item_id, agent, self._store.now() + lease_s):
                raise _not_held(await require_item(conn, item_id), agent)

    async def release(self, item_id: int, agent: str, reason: str) -> None:
        async with self._store.tx() as conn:
            item = await _held(conn, item_id, agent)
            if not await change_item(self._store, conn, item, ItemState.PENDING, reason=reason,
                                     agent=agent, held_by=agent, leased_by=None,
                                     lease_expires=None):
                raise _not_held(await require_item(conn, item_id), agent)

    async def fail_item(self, item_id: int, agent: str, stage: ErrorStage, message: str) -> None:
        async with self._store.tx() as conn:
            item = await _held(conn, item_id, agent)
            if not await change_item(self._store, conn, item, ItemState.FAILED, reason=message,
                                     agent=agent, error_stage=stage, error_message=message,
                                     held_by=agent):
                raise _not_held(await require_item(conn, item_id), agent)

    async def acknowledge(self, item_id: int, agent: str) -> Run:
        """Turn a lease into a run: resolve the spec for real and record it.

        If the item no longer resolves (its queue config changed since it was
        enqueued), the item fails at stage `agent` and ValidationError is raised.
        """
        run_id = self._new_run_id()
        now = self._store.now()
        failed: ValidationError | None = None
        async with self._store.tx() as conn:
            item = await _held(conn, item_id, agent)
            qrow = await require_queue(conn, item.project, item.queue)
            job = await require_job(conn, item.project, item.job)
            vrow = await require_job_version(conn, job, f"v{item.version}")
            version = rows.to_version(item.project, item.job, vrow, ())
            try:
                spec = resolve.run_spec(run_id, item, version, rows.to_queue(qrow))
            except ValidationError as exc:
                failed = exc
                changed = await change_item(
                    self._store, conn, item, ItemState.FAILED, reason=str(exc), agent=agent,
                    error_stage=ErrorStage.AGENT, error_message=str(exc), held_by=agent,
                )
            else:
                await runs_db.add(
                    conn, run_id=run_id, item_id=item.id, queue_id=qrow.id, job_id=job.id,
                    version=item.version, agent=agent, spec=spec.to_dict(),
                    timestamps={"leased": item.updated_at, str(RunState.QUEUED): now}, now=now,
                )
                changed = await change_item(
                    self._store, conn, item, ItemState.CLAIMED, agent=agent,
                    reason=f"run {run_id}", held_by=agent, run_id=run_id, lease_expires=None,
                )
                if changed:
                    await self._store.emit(
                        conn,
                        RunStateChanged(project=item.project, queue=item.queue, run_id=run_id,
                                        item_id=item.id, state=str(RunState.QUEUED)),
                    )
            if not changed:
                # The lease went to another process after `_held` looked; raising also
                # rolls back the run added above.
                raise _not_held(await require_item(conn, item_id), agent)
        if failed is not None:
            raise failed
        return await self.get_run(run_id)

    # ------------------------------------------------------------------ runs

    async def get_run(self, run_id: str) -> Run:
        async with self._store.read() as conn:
            return await require_run(conn, run_id)

    async def list_runs(self, queue: str | None, *, project: str | None,
                        states: Iterable[RunState | str] | None, agent: str | None,
                        limit: int | None) -> list[Run]:
        """Newest first."""
        project = project_or_default(self._settings, project)
        async with self._store.read() as conn:
            queue_id = await scope(conn, project, queue)
            wanted = None if states is None else [RunState(s) for s in states]
            return await runs_db.listing(conn, project, queue_id, wanted, agent, limit)

    async def agent_runs(self, agent: str) -> list[Run]:
        """Runs an agent owns that have not ended (what it must re-attach to)."""
        async with self._store.read() as conn:
            return await runs_db.unfinished_of(conn, agent)

    async def set_run_state(
        self, run_id: str, state: RunState, *, reason: str | None, exit_code: int | None,
        error_stage: ErrorStage | None, error_message: str | None,
        handle: dict[str, Any] | None, spec: RunSpec | None,
    ) -> Run:
        async with self._store.tx() as conn:
            run = await require_run(conn, run_id)
            return await change_run(
                self._store, conn, run, state, reason=reason, exit_code=exit_code,
                error_stage=error_stage, error_message=error_message, handle=handle, spec=spec,
            )

    async def update_run(self, run_id: str, *, handle: dict[str, Any] | None,
                         spec: RunSpec | None, reason: str | None) -> None:
        """Record details (backend handle, resolved spec) without changing state."""
        values: dict[str, Any] = {"updated_at": self._store.now()}
        if handle is not None:
            values["handle"] = handle
        if spec is not None:
            values["spec"] = spec.to_dict()
        if reason is not None:
            values["reason"] = reason
        async with self._store.tx() as conn:
            if not await runs_db.set_details(conn, run_id, values):
                raise NotFound(f"run: '{run_id}' does not exist.")


async def _held(conn: Conn, item_id: int, agent: str) -> QueueItem:
    """The item, if `agent` holds its lease; else ConflictError saying who does."""
    item = await require_item(conn, item_id)
    if item.state != ItemState.LEASED or item.leased_by != agent:
        raise _not_held(item, agent)
    return item


def _not_held(item: QueueItem, agent: str) -> ConflictError:
    return ConflictError(
        f"item: #{item.id} is not leased by {agent} (it is {item.state}"
        + (f", leased by {item.leased_by}" if item.leased_by else "") + ")."
    )
