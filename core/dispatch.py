"""Dispatch: handing queue items to agents and turning them into runs.

`claim_run` is the fast path: in one write transaction it takes the first
pending item of the agent's queues, resolves its spec and creates its run. The
older two-step protocol remains: an agent claims an item (a lease that runs out
unless renewed), then either gives it back, fails it, or acknowledges it, which
resolves the item's spec for real and creates its run. From then on the agent
moves the run through its states (see `transitions`) and records what it learns
about it. Each command is one function of a connection, run by the store's
writer thread as one transaction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from launch_tui.core import resolve
from launch_tui.core.agents import check_fence
from launch_tui.core.errors import ConflictError, NotFound, RunTaken, ValidationError
from launch_tui.core.events import AgentLog, ItemEnqueued, RunStateChanged
from launch_tui.core.lookups import project_or_default, require_queue
from launch_tui.core.model import (
    AgentFence,
    ErrorStage,
    ItemState,
    Priority,
    Queue,
    QueueItem,
    Run,
    RunSpec,
    RunState,
)
from launch_tui.core.settings import Settings
from launch_tui.core.store import agents as agents_db
from launch_tui.core.store import items as items_db
from launch_tui.core.store import rows
from launch_tui.core.store import runs as runs_db
from launch_tui.core.store.session import Conn, Store
from launch_tui.core.transitions import (
    change_item,
    change_run,
    require_item,
    require_run,
    require_run_head,
)
from launch_tui.core.versions import pinned_version, require_job, version_by_id

# Items a single claim_run fails for no longer resolving before it gives up and
# returns (bounding the transaction); the agent claims again at once when some were.
MAX_REFUSED_PER_CLAIM = 100


@dataclass(frozen=True)
class ClaimResult:
    """What `claim_run` did: the run it created (None: nothing to run), and the items
    it failed on the way because they no longer resolve, as (item id, message)."""

    run: Run | None
    refused: tuple[tuple[int, str], ...] = ()
    item: QueueItem | None = None  # the item `run` was made from


class Dispatch:
    def __init__(self, store: Store, settings: Settings, new_run_id: Callable[[], str]) -> None:
        self._store = store
        self._settings = settings
        self._new_run_id = new_run_id

    # ------------------------------------------------------------------ leases

    async def claim_run(self, agent: str, queue_names: Sequence[str], *,
                        project: str | None, fence: AgentFence | None = None,
                        probe: bool = False) -> ClaimResult:
        """Take the first pending item of the first queue (in the given order) that has
        one and turn it into a queued run owned by `agent`, in one transaction. Items
        whose spec no longer resolves fail at stage `agent` and the next is tried."""
        project = project_or_default(self._settings, project)
        names = list(dict.fromkeys(queue_names))
        store, skip_locked = self._store, self._store.skip_locked

        def worth_a_write(conn: Conn) -> bool:
            """A read first: an idle agent's poll never opens a write transaction."""
            found = False
            for name in names:
                require_queue(conn, project, name)  # NotFound for a queue that is gone
                found = found or items_db.next_pending_in(
                    conn, project, name, skip_locked=False) is not None
            return found or items_db.any_lease_expired(conn, store.now())

        # A poll that nothing signalled looks before it writes (an idle agent then
        # never opens a write transaction); a claim made because something changed
        # goes straight to the write.
        if probe and not await store.read(worth_a_write):
            return ClaimResult(None)

        def tx(conn: Conn) -> ClaimResult:
            check_fence(conn, fence)
            now = store.now()
            _expire_leases(store, conn, now)
            refused: list[tuple[int, str]] = []
            for name in names:
                while (row := items_db.next_pending_in(conn, project, name,
                                                       skip_locked=skip_locked)):
                    version = version_by_id(store, conn, row.job_id, row.version)
                    assert version is not None  # items reference versions, never deleted
                    item = rows.to_item(row, None, (project, name, version.job))
                    queue = Queue(project=project, name=name, resource=row.q_resource,
                                  config=rows.queue_config(row.q_config),
                                  created_at=row.q_created_at, updated_at=row.q_updated_at)
                    run_id = self._new_run_id()
                    try:
                        spec = resolve.run_spec(run_id, item, version, queue)
                    except ValidationError as exc:
                        change_item(store, conn, item, ItemState.FAILED, reason=str(exc),
                                    agent=agent, error_stage=ErrorStage.AGENT,
                                    error_message=str(exc), from_states=(ItemState.PENDING,))
                        refused.append((item.id, str(exc)))
                        if len(refused) >= MAX_REFUSED_PER_CLAIM:
                            return ClaimResult(None, tuple(refused))
                        continue
                    if not change_item(store, conn, item, ItemState.CLAIMED, agent=agent,
                                       reason=f"run {run_id}", run_id=run_id,
                                       from_states=(ItemState.PENDING,)):
                        continue  # cannot happen under the write lock / row lock; be safe
                    spec_dict = spec.to_dict()
                    timestamps = {"leased": now, str(RunState.QUEUED): now}
                    runs_db.add(conn, run_id=run_id, item_id=item.id, queue_id=row.queue_id,
                                job_id=row.job_id, version=item.version, agent=agent,
                                spec=spec_dict, timestamps=timestamps, now=now)
                    store.emit(conn, RunStateChanged(
                        project=project, queue=name, run_id=run_id, item_id=item.id,
                        state=str(RunState.QUEUED)))
                    run = Run(
                        id=run_id, item_id=item.id, project=project, queue=name,
                        job=item.job, version=item.version, agent=agent,
                        state=RunState.QUEUED, spec=rows.json_copy(spec_dict),
                        handle=None, timestamps=timestamps, exit_code=None, error_stage=None,
                        error_message=None, reason=None, created_at=now, updated_at=now,
                    )
                    return ClaimResult(run, tuple(refused), item)
                require_queue(conn, project, name)  # none pending: NotFound if no queue
            return ClaimResult(None, tuple(refused))

        return await store.write(tx)

    async def claim(self, agent: str, queue_names: Sequence[str], *, project: str | None,
                    lease_s: float | None) -> QueueItem | None:
        """Lease the next pending item of the first queue (in the given order) that has one."""
        project = project_or_default(self._settings, project)
        lease_s = lease_s if lease_s is not None else self._settings.lease_s
        store = self._store

        def tx(conn: Conn) -> QueueItem | None:
            now = store.now()  # inside: the database's time, on PostgreSQL
            _expire_leases(store, conn, now)
            for name in queue_names:
                qrow = require_queue(conn, project, name)
                if qrow.held_at is not None:
                    continue  # held: nothing is taken from it until it is resumed
                item_id = items_db.claim_next_pending(conn, qrow.id,
                                                      skip_locked=store.skip_locked)
                if item_id is None:
                    continue
                item = require_item(conn, item_id)
                if change_item(store, conn, item, ItemState.LEASED, agent=agent,
                               reason=f"leased by {agent}", leased_by=agent,
                               lease_expires=now + lease_s):
                    return require_item(conn, item_id)
            return None

        return await store.write(tx)

    async def expire_leases(self) -> None:
        await self._store.write(lambda conn: _expire_leases(self._store, conn,
                                                            self._store.now()))

    async def renew_lease(self, item_id: int, agent: str, lease_s: float | None) -> None:
        lease_s = lease_s if lease_s is not None else self._settings.lease_s

        def tx(conn: Conn) -> None:
            _held(conn, item_id, agent)
            if not items_db.renew_lease(conn, item_id, agent, self._store.now() + lease_s):
                raise _not_held(require_item(conn, item_id), agent)

        await self._store.write(tx)

    async def release(self, item_id: int, agent: str, reason: str) -> None:
        def tx(conn: Conn) -> None:
            item = _held(conn, item_id, agent)
            if not change_item(self._store, conn, item, ItemState.PENDING, reason=reason,
                               agent=agent, held_by=agent, leased_by=None, lease_expires=None):
                raise _not_held(require_item(conn, item_id), agent)

        await self._store.write(tx)

    async def fail_item(self, item_id: int, agent: str, stage: ErrorStage, message: str) -> None:
        def tx(conn: Conn) -> None:
            item = _held(conn, item_id, agent)
            if not change_item(self._store, conn, item, ItemState.FAILED, reason=message,
                               agent=agent, error_stage=stage, error_message=message,
                               held_by=agent):
                raise _not_held(require_item(conn, item_id), agent)

        await self._store.write(tx)

    async def acknowledge(self, item_id: int, agent: str) -> Run:
        """Turn a lease into a run: resolve the spec for real and record it.

        If the item no longer resolves (its queue config changed since it was
        enqueued), the item fails at stage `agent` and ValidationError is raised.
        """
        run_id = self._new_run_id()
        store = self._store

        def tx(conn: Conn) -> ValidationError | None:
            now = store.now()
            item = _held(conn, item_id, agent)
            qrow = require_queue(conn, item.project, item.queue)
            job = require_job(conn, item.project, item.job)
            version = pinned_version(store, conn, job, f"v{item.version}")
            try:
                spec = resolve.run_spec(run_id, item, version, rows.to_queue(qrow))
            except ValidationError as exc:
                failed: ValidationError | None = exc
                changed = change_item(
                    store, conn, item, ItemState.FAILED, reason=str(exc), agent=agent,
                    error_stage=ErrorStage.AGENT, error_message=str(exc), held_by=agent,
                )
            else:
                failed = None
                runs_db.add(
                    conn, run_id=run_id, item_id=item.id, queue_id=qrow.id, job_id=job.id,
                    version=item.version, agent=agent, spec=spec.to_dict(),
                    timestamps={"leased": item.updated_at, str(RunState.QUEUED): now}, now=now,
                )
                changed = change_item(
                    store, conn, item, ItemState.CLAIMED, agent=agent,
                    reason=f"run {run_id}", held_by=agent, run_id=run_id, lease_expires=None,
                )
                if changed:
                    store.emit(
                        conn,
                        RunStateChanged(project=item.project, queue=item.queue, run_id=run_id,
                                        item_id=item.id, state=str(RunState.QUEUED)),
                    )
            if not changed:
                # The lease went to another process after `_held` looked; raising also
                # rolls back the run added above.
                raise _not_held(require_item(conn, item_id), agent)
            return failed

        failed = await store.write(tx)
        if failed is not None:
            raise failed
        return await self.get_run(run_id)

    # ------------------------------------------------------------------ runs

    async def get_run(self, run_id: str) -> Run:
        return await self._store.read(require_run, run_id)

    async def agent_runs(self, agent: str) -> list[Run]:
        """Runs an agent owns that have not ended (what it must re-attach to)."""
        return await self._store.read(runs_db.unfinished_of, agent)

    async def take_over_runs(self, agent: str, queue_names: Sequence[str], *,
                             project: str | None, fence: AgentFence | None = None
                             ) -> list[Run]:
        """Give `agent` the unfinished runs of its queues whose agents are gone (no
        heartbeat for the `stale_s` setting and no clean stop), each by a conditional update,
        so two agents taking over at once never both get a run."""
        project = project_or_default(self._settings, project)
        store, stale_s = self._store, self._settings.agent_stale_s

        def anyone_gone(conn: Conn) -> bool:
            return any(a != agent for a in agents_db.stale(conn, store.now() - stale_s))

        if not await store.read(anyone_gone):  # the usual case: no write at all
            return []

        def tx(conn: Conn) -> list[Run]:
            check_fence(conn, fence)
            now = store.now()
            gone = [a for a in agents_db.stale(conn, now - stale_s) if a != agent]
            taken = []
            for run in runs_db.orphaned(conn, project, queue_names, gone):
                if run.agent and runs_db.reassign(conn, run.id, run.agent, agent, now):
                    store.emit(conn, AgentLog(
                        agent=agent, level="warning", run_id=run.id,
                        message=f"took over run {run.id} from {run.agent}, which stopped "
                                f"heartbeating"))
                    taken.append(runs_db.load(conn, run.id))
            return [r for r in taken if r is not None]

        return await store.write(tx)

    async def set_run_state(
        self, run_id: str, state: RunState, *, reason: str | None, exit_code: int | None,
        error_stage: ErrorStage | None, error_message: str | None,
        handle: dict[str, Any] | None, spec: RunSpec | None, fence: AgentFence | None = None,
    ) -> Run:
        def tx(conn: Conn) -> Run:
            check_fence(conn, fence)
            head = require_run_head(conn, run_id)
            run = change_run(
                self._store, conn, head, state, reason=reason,
                exit_code=exit_code, error_stage=error_stage, error_message=error_message,
                handle=handle, spec=spec, owner=fence.name if fence is not None else None,
            )
            if state in _RETRIED and head.state != state:
                run = _retry_after_crash(self._store, conn, run)
            return run

        return await self._store.write(tx)

    async def update_run(self, run_id: str, *, handle: dict[str, Any] | None,
                         spec: RunSpec | None, reason: str | None,
                         fence: AgentFence | None = None) -> None:
        """Record details (backend handle, resolved spec) without changing state; an
        agent's (fenced) write only while it has the run (RunTaken when another does)."""
        values: dict[str, Any] = {}
        if handle is not None:
            values["handle"] = handle
        if spec is not None:
            values["spec"] = spec.to_dict()
        if reason is not None:
            values["reason"] = reason

        owner = fence.name if fence is not None else None

        def tx(conn: Conn) -> None:
            check_fence(conn, fence)
            if runs_db.set_details(conn, run_id, {**values, "updated_at": self._store.now()},
                                   owner):
                return
            exists, agent = runs_db.agent_of(conn, run_id)
            if exists and owner is not None:
                raise RunTaken(run_id, agent, owner)
            raise NotFound(f"run: '{run_id}' does not exist.")

        await self._store.write(tx)


def _expire_leases(store: Store, conn: Conn, now: float) -> None:
    """Return to their queues the leased items whose lease ran out unacknowledged.
    One probe of ix_items_lease when there are none, so every claim can afford it."""
    if not items_db.any_lease_expired(conn, now):
        return
    for item in items_db.leased(conn, expired_before=now):
        change_item(
            store, conn, item, ItemState.PENDING,
            reason=f"lease of {item.leased_by} expired unacknowledged",
            lease_expired_before=now, leased_by=None, lease_expires=None,
        )


def _held(conn: Conn, item_id: int, agent: str) -> QueueItem:
    """The item, if `agent` holds its lease; else ConflictError saying who does."""
    item = require_item(conn, item_id)
    if item.state != ItemState.LEASED or item.leased_by != agent:
        raise _not_held(item, agent)
    return item


def _not_held(item: QueueItem, agent: str) -> ConflictError:
    return ConflictError(
        f"item: #{item.id} is not leased by {agent} (it is {item.state}"
        + (f", leased by {item.leased_by}" if item.leased_by else "") + ")."
    )


# Ends that are not the job's own doing: its agent or machine died (crashed), or the
# cluster evicted or preempted it (preempted). The job's own failure is never retried.
_RETRIED = (RunState.CRASHED, RunState.PREEMPTED)


def _retry_after_crash(store: Store, conn: Conn, run: Run) -> Run:
    """A run that crashed or was preempted (see _RETRIED) is enqueued again, in the
    same transaction, while its queue's `max_retries` allows."""
    qrow = require_queue(conn, run.project, run.queue)
    max_retries = int((qrow.config or {}).get("max_retries") or 0)
    retried = items_db.retry(conn, run.item_id, max_retries, store.now())
    if retried is None:
        return run
    new_id, attempt, rank = retried
    store.emit(conn, ItemEnqueued(project=run.project, queue=run.queue, item_id=new_id,
                                  priority=str(Priority.from_rank(rank))))
    reason = (f"{run.reason}; " if run.reason else "") + (
        f"requeued as item #{new_id} (retry {attempt} of {max_retries})")
    runs_db.set_details(conn, run.id, {"reason": reason})
    return dataclasses.replace(run, reason=reason)
