"""Agents as the control plane sees them: registration, heartbeats, and their log lines.

An agent's name is held by one live process at a time: registering a name whose
holder still heartbeats (and, on this host, still exists) is refused. Agent log
lines are events, so every watcher sees them live.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from launch_tui.core import jobs as jobrules
from launch_tui.core.errors import ConflictError, FencedOut, ValidationError
from launch_tui.core.events import AgentHeartbeat, AgentLog
from launch_tui.core.lookups import project_or_default, require_queue
from launch_tui.core.model import Agent, AgentFence, AgentStatus, ItemState
from launch_tui.core.redact import mask_url
from launch_tui.core.settings import Settings
from launch_tui.core.store import agents as agents_db
from launch_tui.core.store import eventlog
from launch_tui.core.store import items as items_db
from launch_tui.core.store.session import Conn, Row, Store
from launch_tui.core.transitions import change_item

# An agent whose heartbeat is older than this is considered gone (the default of the
# `[agent] stale_s` setting).
AGENT_STALE_S = 30.0


class Agents:
    def __init__(self, store: Store, settings: Settings, *, hostname: Callable[[], str],
                 pid: Callable[[], int]) -> None:
        self._store = store
        self._settings = settings
        self._hostname = hostname
        self._pid = pid

    async def register_agent(self, name: str, queue_names: Sequence[str], *,
                             project: str | None, max_jobs: int) -> Agent:
        """Record an agent as started. A name already used by a live agent is refused."""
        jobrules.check_name(name, "agent")
        if max_jobs < 1:
            raise ValidationError("max_jobs: must be at least 1.", field="max_jobs")
        if not queue_names:
            raise ValidationError("queues: an agent needs at least one queue (-q).", field="queues")
        project = project_or_default(self._settings, project)
        host = self._hostname()
        pid = self._pid()
        store = self._store

        def tx(conn: Conn) -> Agent:
            now = store.now()  # inside: on PostgreSQL, the database's time
            for q in queue_names:
                require_queue(conn, project, q)
            row = agents_db.find(conn, name, lock=True)
            if row is not None and _alive(row, now, host, pid, self._settings.agent_stale_s):
                raise ConflictError(
                    f"agent: '{name}' is already running (pid {row.pid} on {row.host}); "
                    "choose another --name."
                )
            # Leases this agent took in a previous life and never acknowledged go back.
            for item in items_db.leased(conn, by=name):
                change_item(
                    store, conn, item, ItemState.PENDING, agent=name,
                    reason=f"{name} restarted before acknowledging it", held_by=name,
                    leased_by=None, lease_expires=None,
                )
            values = dict(
                project=project, queues=list(queue_names), status=AgentStatus.POLLING,
                max_jobs=max_jobs, running=0, heartbeat_at=now, started_at=now, host=host,
                pid=pid,
            )
            if not agents_db.put(conn, name, values, exists=row is not None):
                raise ConflictError(
                    f"agent: another process is starting as '{name}' at this moment; "
                    "choose another --name.")
            store.emit(conn, AgentHeartbeat(agent=name, status=str(AgentStatus.POLLING),
                                            running=0))
            return agents_db.load(conn, name)

        return await store.write(tx)

    async def agent_heartbeat(self, name: str, status: AgentStatus, running: int,
                              fence: AgentFence | None = None) -> None:
        def tx(conn: Conn) -> None:
            check_fence(conn, fence)
            agents_db.heartbeat(conn, name, status, running, self._store.now())
            self._store.emit(conn, AgentHeartbeat(agent=name, status=str(status),
                                                  running=running))

        await self._store.write(tx)

    async def agent_log(self, name: str, message: str, *, level: str, run_id: str | None
                        ) -> None:
        # Stored as an event everyone watching the feed reads: no URL passwords.
        await self._store.write(self._store.emit, AgentLog(agent=name, level=level,
                                                           message=mask_url(message),
                                                           run_id=run_id))

    async def list_agents(self) -> list[Agent]:
        return await self._store.read(agents_db.every)

    async def agent_logs(self, agent: str | None, limit: int) -> list[AgentLog]:
        """The newest `limit` log lines (of one agent, or of all), oldest first."""
        return await self._store.read(eventlog.agent_logs, agent, limit)


def check_fence(conn: Conn, fence: AgentFence | None) -> None:
    """Refuse a write of an agent process that no longer holds its name (FencedOut)."""
    if fence is None or agents_db.holds(conn, fence) is not None:
        return
    row = agents_db.find(conn, fence.name)
    holder = f"pid {row.pid} on {row.host}" if row is not None else "nobody"
    raise FencedOut(
        f"agent: '{fence.name}' is now held by {holder}; this process (pid {fence.pid} on "
        f"{fence.host}) lost it and stops supervising."
    )


def _alive(row: Row, now: float, host: str, pid: int, stale_s: float) -> bool:
    """Whether the agent a row describes still runs, seen from process `pid` on `host`."""
    if row.status in (AgentStatus.STOPPED, AgentStatus.ERROR) or now - row.heartbeat_at > stale_s:
        return False
    if row.host == host:
        if row.pid == pid:
            return False  # this process restarting its own agent
        try:
            os.kill(row.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True
