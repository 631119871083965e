"""The life cycles of queue items and runs: which state may follow which, and the one
function through which each changes state.

Every change is written as a conditional update that names the states it may
start from, and announced with an event in the same transaction. Terminal run
states have no successors, which is what guarantees every run ends in exactly
one terminal state. These functions run inside a store transaction (on the
store's database thread), as parts of a domain command's closure.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from launch_tui.core.errors import ConflictError, NotFound, RunTaken
from launch_tui.core.events import ItemStateChanged, RunStateChanged
from launch_tui.core.model import (
    TERMINAL_RUN_STATES,
    ErrorStage,
    ItemState,
    QueueItem,
    Run,
    RunSpec,
    RunState,
)
from launch_tui.core.redact import mask_url
from launch_tui.core.store import items as items_db
from launch_tui.core.store import rows
from launch_tui.core.store import runs as runs_db
from launch_tui.core.store.session import Conn, Store

# Which run states may follow which. Terminal states are absent: nothing follows them.
RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.QUEUED: frozenset(
        {RunState.BUILDING, RunState.STARTING, RunState.RUNNING, RunState.STOPPING}
    ) | TERMINAL_RUN_STATES,
    RunState.BUILDING: frozenset({RunState.STARTING, RunState.RUNNING, RunState.STOPPING})
    | TERMINAL_RUN_STATES,
    RunState.STARTING: frozenset({RunState.RUNNING, RunState.STOPPING}) | TERMINAL_RUN_STATES,
    RunState.RUNNING: frozenset({RunState.STOPPING}) | TERMINAL_RUN_STATES,
    RunState.STOPPING: TERMINAL_RUN_STATES,
}

# pending -> leased -> claimed; a lease can also go back, fail or be cancelled.
# claim_run goes from pending straight to claimed (or failed, if it no longer resolves).
ITEM_TRANSITIONS: dict[ItemState, frozenset[ItemState]] = {
    ItemState.PENDING: frozenset(
        {ItemState.LEASED, ItemState.CLAIMED, ItemState.FAILED, ItemState.CANCELLED}
    ),
    ItemState.LEASED: frozenset(
        {ItemState.PENDING, ItemState.CLAIMED, ItemState.FAILED, ItemState.CANCELLED}
    ),
}

S = TypeVar("S", ItemState, RunState)


class RunHead(Protocol):
    """What a state change needs to know of a run: a `Run`, or the lighter row
    `runs.head` reads (without the spec and handle, which a change does not need)."""

    @property
    def id(self) -> str: ...
    @property
    def item_id(self) -> int: ...
    @property
    def project(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def job(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def agent(self) -> str | None: ...
    @property
    def timestamps(self) -> dict[str, float]: ...


def _predecessors(table: dict[S, frozenset[S]], state: S) -> frozenset[S]:
    """The states from which `state` may be reached: what a conditional update allows."""
    return frozenset(s for s, following in table.items() if state in following)


def require_item(conn: Conn, item_id: int) -> QueueItem:
    item = items_db.load(conn, item_id)
    if item is None:
        raise NotFound(f"item: #{item_id} does not exist.")
    return item


def require_run(conn: Conn, run_id: str) -> Run:
    run = runs_db.load(conn, run_id)
    if run is None:
        raise NotFound(f"run: '{run_id}' does not exist.")
    return run


def require_run_head(conn: Conn, run_id: str) -> RunHead:
    """The run's state and names, enough for `change_run`; NotFound if there is none."""
    head = runs_db.head(conn, run_id)
    if head is None:
        raise NotFound(f"run: '{run_id}' does not exist.")
    return head  # type: ignore[no-any-return]


def change_item(
    store: Store,
    conn: Conn,
    item: QueueItem,
    state: ItemState,
    *,
    reason: str | None = None,
    agent: str | None = None,
    error_stage: ErrorStage | None = None,
    error_message: str | None = None,
    held_by: str | None = None,
    lease_expired_before: float | None = None,
    from_states: tuple[ItemState, ...] | None = None,
    **values: Any,
) -> bool:
    """Move an item to `state` from any state that may precede it (or only from
    `from_states`; and, if given, only while `held_by` holds its lease, or only once
    that lease ran out), recording `values` too. False, with nothing changed or
    announced, when it was not so: the caller says what that means."""
    allowed = _predecessors(ITEM_TRANSITIONS, state)
    if from_states is not None:
        allowed = allowed & frozenset(from_states)
    changed = items_db.transition(
        conn, item.id, allowed,
        {
            "state": state, "updated_at": store.now(),
            # A change clears the error of an earlier state unless it sets its own.
            "error_stage": str(error_stage) if error_stage else None,
            "error_message": error_message, **values,
        },
        leased_by=held_by, lease_expired_before=lease_expired_before,
    )
    if changed:
        store.emit(
            conn,
            ItemStateChanged(project=item.project, queue=item.queue, item_id=item.id,
                             state=str(state), agent=agent, reason=_shown(reason)),
        )
    return changed


def change_run(
    store: Store,
    conn: Conn,
    run: Run | RunHead,
    state: RunState,
    *,
    reason: str | None = None,
    exit_code: int | None = None,
    error_stage: ErrorStage | None = None,
    error_message: str | None = None,
    handle: dict[str, Any] | None = None,
    spec: RunSpec | None = None,
    owner: str | None = None,
) -> Run:
    """Move a run to `state`, stamping the time of the transition; asking for the state
    it is already in changes nothing. ConflictError when the table forbids the move,
    also when another process changed the run first. Given an `owner` (the agent
    supervising the run), RunTaken when another agent has it now, whatever the state:
    an agent that was stopped or cut off while the run was taken over must not
    submit it a second time or end it."""
    if owner is not None and run.agent != owner:
        raise RunTaken(run.id, run.agent, owner)
    if state == run.state:
        return run if isinstance(run, Run) else require_run(conn, run.id)
    if state not in RUN_TRANSITIONS.get(run.state, frozenset()):
        raise ConflictError(f"run: {run.id} cannot go from {run.state} to {state}.")
    now = store.now()
    values: dict[str, Any] = {
        "state": state,
        "updated_at": now,
        "timestamps": {**run.timestamps, str(state): now},
        "reason": reason,
    }
    if exit_code is not None:
        values["exit_code"] = exit_code
    if error_stage is None and error_message is not None and state == RunState.FAILED:
        # A failure reported with its message but no stage happened while it ran; the
        # message must not be dropped (it is the run's "why").
        error_stage = ErrorStage.RUN
    if error_stage is not None:
        values["error_stage"] = str(error_stage)
        values["error_message"] = error_message
    if handle is not None:
        values["handle"] = handle
    if spec is not None:
        values["spec"] = spec.to_dict()
    row = runs_db.transition_returning(conn, run.id, _predecessors(RUN_TRANSITIONS, state),
                                       values, owner)
    if row is None:
        current = require_run(conn, run.id)
        if owner is not None and current.agent != owner:
            raise RunTaken(run.id, current.agent, owner)  # in the moment between
        if current.state == state:
            return current  # someone else made the same move first
        raise ConflictError(f"run: {run.id} cannot go from {current.state} to {state}.")
    store.emit(
        conn,
        RunStateChanged(project=run.project, queue=run.queue, run_id=run.id,
                        item_id=run.item_id, state=str(state), reason=_shown(reason)),
    )
    return rows.to_run(row, (run.project, run.queue, run.job))


def _shown(reason: str | None) -> str | None:
    # Events are read by everyone watching the feed; a failed git fetch quotes its URL.
    return mask_url(reason) if reason else reason
