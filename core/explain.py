"""Why an item waits and how a run ended, in one sentence each.

Every front end (the TUI's panes and run detail, the CLI's `items`, `runs` and
`describe`) shows these same sentences, so they are computed here from what the
store knows: the queue's hold, the agents that serve it (alive or not, busy or
not), the item's place, and the run's state, error and reason. Nothing here
reads the store; the facade gathers the inputs once per listing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from launch_tui.core.model import (
    Agent,
    AgentStatus,
    ErrorStage,
    ItemState,
    Queue,
    QueueItem,
    Run,
    RunState,
)


def ago(seconds: float) -> str:
    """A coarse age: "40 s", "12 min", "2 h", "3 days"."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{int(seconds)} s"
    if seconds < 90 * 60:
        return f"{int(seconds // 60)} min"
    if seconds < 36 * 3600:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"


@dataclass(frozen=True)
class Serving:
    """The agents of a project that name a queue, split by whether they are alive."""

    alive: tuple[Agent, ...]
    gone: tuple[Agent, ...]


def serving(agents: Iterable[Agent], project: str, queue: str, now: float, stale_s: float
            ) -> Serving:
    alive: list[Agent] = []
    gone: list[Agent] = []
    for agent in agents:
        if agent.project != project or queue not in agent.queues:
            continue
        live = (agent.status not in (AgentStatus.STOPPED, AgentStatus.ERROR)
                and now - agent.heartbeat_at <= stale_s)
        (alive if live else gone).append(agent)
    gone.sort(key=lambda a: a.heartbeat_at, reverse=True)
    return Serving(tuple(sorted(alive, key=lambda a: a.name)), tuple(gone))


def _nobody(queue: str, gone: Sequence[Agent], now: float) -> str:
    if not gone:
        return f"no agent serves queue {queue} (none ever has)"
    last = gone[0]
    how = {AgentStatus.STOPPED: "stopped", AgentStatus.ERROR: "stopped with an error"}.get(
        last.status, "stopped answering")
    return (f"no agent serves queue {queue} (last agent {last.name} {how} "
            f"{ago(now - last.heartbeat_at)} ago)")


def item_why(item: QueueItem, queue: Queue | None, agents: Sequence[Agent], now: float,
             stale_s: float, run: Run | None = None) -> str | None:
    """Why a waiting item waits, or how one that is done ended (None: nothing to say)."""
    if item.state == ItemState.LEASED:
        return f"being taken by agent {item.leased_by}" if item.leased_by else "being taken"
    if item.state == ItemState.CANCELLED:
        return item.error_message or "cancelled"
    if item.state == ItemState.FAILED:
        stage = f" at {item.error_stage}" if item.error_stage else ""
        return f"failed{stage}: {item.error_message}" if item.error_message else "failed"
    if item.state == ItemState.CLAIMED:
        return run_why(run, now) if run is not None else None
    # Pending.
    if queue is not None and queue.held:
        because = f": {queue.hold_reason}" if queue.hold_reason else ""
        return (f"queue {item.queue} is held{because} (since "
                f"{ago(now - (queue.held_at or now))} ago)")
    serve = serving(agents, item.project, item.queue, now, stale_s)
    if not serve.alive:
        return _nobody(item.queue, serve.gone, now)
    ahead = (item.position or 1) - 1
    place = ("next in line" if ahead == 0
             else f"{ahead} item{'s' if ahead != 1 else ''} ahead")
    free = [a for a in serve.alive if a.running < a.max_jobs]
    if free:
        return f"{place}; agent {free[0].name} has a free slot"
    busy = serve.alive[0]
    more = f" (and {len(serve.alive) - 1} more agents, all busy)" if len(serve.alive) > 1 else ""
    return f"{place}; agent {busy.name} is at max_jobs {busy.max_jobs}{more}"


def run_why(run: Run | None, now: float) -> str | None:
    """How a run ended, or what it waits for while it starts (None: nothing to say)."""
    if run is None:
        return None
    message = (run.error_message or "").strip()
    reason = (run.reason or "").strip()
    if run.state == RunState.FAILED:
        if run.error_stage == ErrorStage.BUILD:
            return f"failed at build: {message or reason or 'the build failed'}"
        if run.error_stage == ErrorStage.AGENT:
            return f"failed before it started: {message or reason}"
        code = f" (exit code {run.exit_code})" if run.exit_code is not None else ""
        return f"failed{code}: {message or reason}" if (message or reason) else f"failed{code}"
    if run.state in (RunState.CRASHED, RunState.STOPPED, RunState.PREEMPTED,
                     RunState.STOPPING):
        detail = reason or message
        return f"{run.state}: {detail}" if detail else str(run.state)
    if run.state in (RunState.QUEUED, RunState.BUILDING, RunState.STARTING):
        if reason:
            return reason
        who = f"agent {run.agent}" if run.agent else "its agent"
        doing = {RunState.QUEUED: "to take it up", RunState.BUILDING: "to build its image",
                 RunState.STARTING: "to start it"}[run.state]
        return f"waiting for {who} {doing}"
    return None
