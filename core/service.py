"""LaunchService: the one way into the core.

The TUI, the CLI, in-process and headless agents are all clients of this
facade; each method hands the call to the domain module that owns it (catalog,
queues, dispatch, output, agents, feed). Commands are transactional, every state
change appends an event in the same transaction, and `subscribe()` tails those
events, so a client sees changes made by other processes too.

What it returns to people (queues, jobs, items, runs, previews) shows secrets
masked (`redact`); what it returns to agents through their port (`claim_run`,
`claim`, `acknowledge`, `agent_runs`, `take_over_runs`, `set_run_state`) is
whole, since a job needs the real values. The domain modules always work on
the real values among themselves.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch_tui.core import redact
from launch_tui.core.errors import ConflictError, NotFound
from launch_tui.core.events import AgentLog, Event
from launch_tui.core.feed import WATCHED_POLL_S, Feed
from launch_tui.core.ids import new_run_id
from launch_tui.core.listings import PAGE, Listings, pages
from launch_tui.core.model import (
    Agent,
    AgentFence,
    AgentStatus,
    ErrorStage,
    ItemState,
    Job,
    JobVersion,
    LogLine,
    LogStream,
    MetricRecord,
    OutputBatch,
    OutputLine,
    Priority,
    Project,
    Queue,
    QueueItem,
    Run,
    RunSpec,
    RunState,
)
from launch_tui.core.settings import Settings, load_settings
from launch_tui.core.store.session import Store

if TYPE_CHECKING:
    from launch_tui.core.agents import AGENT_STALE_S, Agents
    from launch_tui.core.backend import LogChunk
    from launch_tui.core.catalog import Catalog, JobVersionResult
    from launch_tui.core.dispatch import ClaimResult, Dispatch
    from launch_tui.core.output import Output
    from launch_tui.core.queues import Queues
    from launch_tui.core.retention import PruneReport
    from launch_tui.core.snapshot_blobs import SnapshotBlobs
    from launch_tui.core.surgery import Surgery

__all__ = ["AGENT_STALE_S", "ClaimResult", "JobVersionResult", "LaunchService", "PruneReport",
           "new_run_id"]

# Names this module offers from the domain modules, imported when first asked for:
# a command that only lists (`items`, `runs`) never imports job snapshots, the
# dispatch path or retention (~20 ms of every CLI start).
_LAZY = {"AGENT_STALE_S": "agents", "ClaimResult": "dispatch",
         "JobVersionResult": "catalog", "PruneReport": "retention"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"launch_tui.core.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_Config = dict[str, Any] | None  # an optional JSON object: config, schema, args or values


class LaunchService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The clock, run ids, host name and pid are looked up in this module at call
        # time: tui/demo.py replaces them here to seed a reproducible world.
        self._store = Store(settings.store_url, clock=lambda: time.time(),
                            readers=settings.store.pool_size,
                            statement_timeout_s=settings.store.statement_timeout_s)
        self._feed = Feed(self._store)
        self._store.on_commit = self._feed.wake
        self._listings = Listings(self._store, settings)

    # The domain modules behind the facade, each made (and imported) on first use.

    @functools.cached_property
    def _snapshots(self) -> SnapshotBlobs:
        from launch_tui.core.snapshot_blobs import SnapshotBlobs

        return SnapshotBlobs(self._store, self.settings.artifacts)

    @functools.cached_property
    def _catalog(self) -> Catalog:
        from launch_tui.core.catalog import Catalog

        return Catalog(self._store, self.settings, self._snapshots)

    @functools.cached_property
    def _queues(self) -> Queues:
        from launch_tui.core.queues import Queues

        return Queues(self._store, self.settings, self._catalog)

    @functools.cached_property
    def _surgery(self) -> Surgery:
        from launch_tui.core.surgery import Surgery

        return Surgery(self._store, self.settings, self._catalog)

    @functools.cached_property
    def _dispatch(self) -> Dispatch:
        from launch_tui.core.dispatch import Dispatch

        return Dispatch(self._store, self.settings, new_run_id=lambda: new_run_id())

    @functools.cached_property
    def _output(self) -> Output:
        from launch_tui.core.output import Output

        return Output(self._store)

    @functools.cached_property
    def _agents(self) -> Agents:
        from launch_tui.core.agents import Agents

        return Agents(self._store, self.settings, hostname=lambda: socket.gethostname(),
                      pid=lambda: os.getpid())

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(cls, store: str | None = None, home: Path | str | None = None) -> LaunchService:
        svc = cls(load_settings(Path(home) if home else None, store))
        try:
            await svc._store.prepare()
        except BaseException:
            await svc._store.dispose()
            raise
        return svc

    async def close(self) -> None:
        if not self._feed.closed:
            self._feed.close()
            await self._store.dispose()

    async def __aenter__(self) -> LaunchService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def artifacts(self) -> Path:
        return self.settings.artifacts

    def project_or_default(self, project: str | None) -> str:
        return project or self.settings.default_project

    # ------------------------------------------------------------------ catalog

    async def create_project(self, name: str) -> Project:
        return await self._catalog.create_project(name)

    async def list_projects(self) -> list[Project]:
        return await self._catalog.list_projects()

    async def create_code_job(
        self, path: str | Path, entrypoint: str | Sequence[str], *, name: str | None = None,
        project: str | None = None, aliases: Iterable[str] = (), config_defaults: _Config = None,
        input_schema: _Config = None, base_image: str | None = None,
    ) -> JobVersionResult:
        return _shown(await self._catalog.create_code_job(
            path, entrypoint, name=name, project=project, aliases=aliases,
            config_defaults=config_defaults, input_schema=input_schema, base_image=base_image))

    async def create_git_job(
        self, url: str, entrypoint: str | Sequence[str], *, ref: str | None = None,
        name: str | None = None, project: str | None = None, aliases: Iterable[str] = (),
        config_defaults: _Config = None, input_schema: _Config = None,
        base_image: str | None = None, requirements: str | None = "requirements.txt",
    ) -> JobVersionResult:
        return _shown(await self._catalog.create_git_job(
            url, entrypoint, ref=ref, name=name, project=project, aliases=aliases,
            config_defaults=config_defaults, input_schema=input_schema, base_image=base_image,
            requirements=requirements))

    async def create_image_job(
        self, image: str, *, entrypoint: str | Sequence[str] | None = None,
        name: str | None = None, project: str | None = None, aliases: Iterable[str] = (),
        config_defaults: _Config = None, input_schema: _Config = None,
    ) -> JobVersionResult:
        return _shown(await self._catalog.create_image_job(
            image, entrypoint=entrypoint, name=name, project=project, aliases=aliases,
            config_defaults=config_defaults, input_schema=input_schema))

    async def update_job_config(
        self, job_ref: str, config_defaults: dict[str, Any], *, project: str | None = None,
        input_schema: _Config = None, aliases: Iterable[str] = (),
    ) -> JobVersionResult:
        """Make a new version of a job with other config defaults (same code and entrypoint)."""
        return _shown(await self._catalog.update_job_config(
            job_ref, config_defaults, project=project, input_schema=input_schema, aliases=aliases))

    async def set_alias(self, job_ref: str, alias: str, *, project: str | None = None
                        ) -> JobVersion:
        return redact.version(await self._catalog.set_alias(job_ref, alias, project=project))

    async def list_jobs(self, project: str | None = None) -> list[Job]:
        return redact.each(await self._catalog.list_jobs(project), redact.job)

    async def get_job(self, name: str, *, project: str | None = None) -> Job:
        return redact.job(await self._catalog.get_job(name, project=project))

    async def job_version(self, job_ref: str, *, project: str | None = None) -> JobVersion:
        return redact.version(await self._catalog.job_version(job_ref, project=project))

    async def ensure_snapshot(self, digest: str, what: str) -> bool:
        """Make sure this machine's artifacts hold the code snapshot `digest` of `what`
        ("job:vN"), fetched from the store if need be (True when it was). BuildError,
        naming both, when neither has it."""
        return await self._snapshots.ensure_local(digest, what)

    # ------------------------------------------------------------------ queues and items

    async def create_queue(self, name: str, resource: str, config: _Config = None, *,
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
        self, job_ref: str, queue: str, *, project: str | None = None, config: _Config = None,
        resource_args: _Config = None, template_values: _Config = None,
    ) -> dict[str, Any]:
        """The resolved spec an item would run with (macros shown as placeholders)."""
        spec = await self._queues.preview(
            job_ref, queue, project=project, config=config, resource_args=resource_args,
            template_values=template_values)
        q = await self._queues.get_queue(queue, project=project)
        return redact.preview(spec, q.config)

    async def enqueue(
        self, job_ref: str, queue: str, *, project: str | None = None, config: _Config = None,
        resource_args: _Config = None, template_values: _Config = None,
        priority: Priority | str = Priority.MEDIUM,
    ) -> QueueItem:
        """Add an item to the queue. Its `position` is None when NEAR (1,000) or more
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

    # ------------------------------------------------------------------ queue surgery

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

    # ------------------------------------------------------------------ dispatch

    async def claim_run(self, agent: str, queue_names: Sequence[str], *,
                        project: str | None = None, fence: AgentFence | None = None,
                        probe: bool = False) -> ClaimResult:
        """In one transaction, turn the next pending item of the first queue (in the given
        order) that has one into a queued run owned by `agent`. Items that no longer
        resolve against their queue fail on the way and are listed in `refused`."""
        return await self._dispatch.claim_run(agent, queue_names, project=project, fence=fence,
                                              probe=probe)

    async def claim(self, agent: str, queue_names: Sequence[str], *, project: str | None = None,
                    lease_s: float | None = None) -> QueueItem | None:
        """Lease the next pending item of the first queue (in the given order) that has one."""
        return await self._dispatch.claim(agent, queue_names, project=project, lease_s=lease_s)

    async def expire_leases(self) -> None:
        await self._dispatch.expire_leases()

    async def renew_lease(self, item_id: int, agent: str, lease_s: float | None = None) -> None:
        await self._dispatch.renew_lease(item_id, agent, lease_s)

    async def release(self, item_id: int, agent: str, reason: str = "released") -> None:
        await self._dispatch.release(item_id, agent, reason)

    async def fail_item(self, item_id: int, agent: str, stage: ErrorStage, message: str) -> None:
        await self._dispatch.fail_item(item_id, agent, stage, message)

    async def acknowledge(self, item_id: int, agent: str) -> Run:
        """Turn a lease into a run (ValidationError, and the item failed, if it no
        longer resolves against its queue's config)."""
        return await self._dispatch.acknowledge(item_id, agent)

    async def get_run(self, run_id: str) -> Run:
        return redact.run(await self._dispatch.get_run(run_id))

    async def list_runs(
        self, queue: str | None = None, *, project: str | None = None,
        states: Iterable[RunState | str] | None = None, agent: str | None = None,
        limit: int | None = None, before: str | None = None, since: float | None = None,
    ) -> list[Run]:
        """Newest first; created at or after `since` (epoch seconds), older than the
        cursor `before` (`listings.cursor_of` the last run of the page before)."""
        return redact.each(
            await self._listings.list_runs(queue, project=project, states=states, agent=agent,
                                           limit=limit, before=before, since=since),
            redact.run)

    def run_pages(
        self, queue: str | None = None, *, project: str | None = None,
        states: Iterable[RunState | str] | None = None, agent: str | None = None,
        limit: int | None = None, since: float | None = None, page: int = PAGE,
    ) -> AsyncIterator[list[Run]]:
        """`list_runs` a page of `page` at a time, up to `limit` runs (None: all)."""
        states = None if states is None else tuple(states)
        return pages(lambda cursor, n: self.list_runs(
            queue, project=project, states=states, agent=agent, limit=n, before=cursor,
            since=since), limit, page)

    async def agent_runs(self, agent: str) -> list[Run]:
        """Runs an agent owns that have not ended (what it must re-attach to)."""
        return await self._dispatch.agent_runs(agent)

    async def take_over_runs(self, agent: str, queue_names: Sequence[str], *,
                             project: str | None = None, fence: AgentFence | None = None
                             ) -> list[Run]:
        """Give `agent` the unfinished runs of its queues whose agents are gone."""
        return await self._dispatch.take_over_runs(agent, queue_names, project=project,
                                                   fence=fence)

    async def set_run_state(
        self, run_id: str, state: RunState, *, reason: str | None = None,
        exit_code: int | None = None, error_stage: ErrorStage | None = None,
        error_message: str | None = None, handle: dict[str, Any] | None = None,
        spec: RunSpec | None = None, fence: AgentFence | None = None,
    ) -> Run:
        return await self._dispatch.set_run_state(
            run_id, state, reason=reason, exit_code=exit_code, error_stage=error_stage,
            error_message=error_message, handle=handle, spec=spec, fence=fence)

    async def update_run(
        self, run_id: str, *, handle: dict[str, Any] | None = None, spec: RunSpec | None = None,
        reason: str | None = None,
    ) -> None:
        """Record details (backend handle, resolved spec) without changing state."""
        await self._dispatch.update_run(run_id, handle=handle, spec=spec, reason=reason)

    # ------------------------------------------------------------------ output

    async def append_output(self, batches: Sequence[OutputBatch],
                            fence: AgentFence | None = None) -> None:
        """Store the lines and metric records of many runs in one (bulk) transaction,
        announced by one RunLogAppended / RunMetricsLogged per run."""
        await self._output.append_output(batches, fence)

    async def append_logs(self, run_id: str,
                          lines: Sequence[OutputLine]) -> None:
        """Store a batch of (timestamp, stream, text[, source]) lines and announce it with
        one event."""
        await self._output.append_logs(run_id, lines)

    async def full_output(self, run_id: str) -> AsyncIterator[LogChunk]:
        """Every line the run printed, read from where its backend keeps them (the
        store may hold only part: see core/gaps.py). ConflictError when the backend
        keeps no copy or it is not on this machine."""
        from launch_tui.core import fulllog

        run = await self.get_run(run_id)
        async for chunk in fulllog.full_output(self.settings, run):
            yield chunk

    async def run_logs(self, run_id: str, *, after: int = 0, limit: int = 1000,
                       streams: Iterable[LogStream | str] | None = None) -> list[LogLine]:
        return await self._output.run_logs(run_id, after=after, limit=limit, streams=streams)

    async def output_line_count(self, run_id: str) -> int:
        """Lines of the run's own output the store accounts for (stored lines, metric
        records, lines gap markers stand for), all sources together."""
        return await self._output.output_line_count(run_id)

    async def output_line_counts(self, run_id: str) -> dict[str | None, int]:
        """The same per source (None: a run's one output stream); a re-attaching agent
        skips that many lines of each source of the backend's replay."""
        return await self._output.output_line_counts(run_id)

    async def tail_logs(self, run_id: str, lines: int = 200) -> list[LogLine]:
        return await self._output.tail_logs(run_id, lines)

    async def record_metrics(self, run_id: str,
                             records: Sequence[tuple[int, float, dict[str, float]]]) -> None:
        await self._output.record_metrics(run_id, records)

    async def run_metrics(self, run_id: str) -> list[MetricRecord]:
        return await self._output.run_metrics(run_id)

    # ------------------------------------------------------------------ agents

    async def register_agent(self, name: str, queue_names: Sequence[str], *,
                             project: str | None = None, max_jobs: int = 1) -> Agent:
        """Record an agent as started. A name already used by a live agent is refused."""
        return await self._agents.register_agent(name, queue_names, project=project,
                                                 max_jobs=max_jobs)

    async def agent_heartbeat(self, name: str, status: AgentStatus, running: int,
                              fence: AgentFence | None = None) -> None:
        """FencedOut when `fence` no longer holds the name (another process took it)."""
        await self._agents.agent_heartbeat(name, status, running, fence)

    async def agent_log(self, name: str, message: str, *, level: str = "info",
                        run_id: str | None = None) -> None:
        await self._agents.agent_log(name, message, level=level, run_id=run_id)

    async def list_agents(self) -> list[Agent]:
        return await self._agents.list_agents()

    async def agent_logs(self, agent: str | None = None, limit: int = 200) -> list[AgentLog]:
        """The newest `limit` log lines (of one agent, or of all), oldest first."""
        return await self._agents.agent_logs(agent, limit)

    # ------------------------------------------------------------------ change feed

    async def last_event_seq(self) -> int:
        return await self._feed.last_event_seq()

    async def events_after(self, seq: int, limit: int = 500) -> list[Event]:
        return await self._feed.events_after(seq, limit)

    def subscribe(self, after: int | None = None, poll_s: float = 0.2, *, watch: bool = True,
                  watched_poll_s: float = WATCHED_POLL_S) -> AsyncIterator[Event]:
        """Every event after `after` (default: from now on), as any process writes it.
        This process's own changes wake subscribers at once; on SQLite, so do other
        processes' commits (the database's files are watched, see `dbwatch`), with a
        poll every `watched_poll_s` as a fallback; without a watch (`watch=False`,
        PostgreSQL, no inotify), others' changes are seen within `poll_s`."""
        return self._feed.subscribe(after, poll_s, watch=watch, watched_poll_s=watched_poll_s)

    # ------------------------------------------------------------------ retention

    async def prune(
        self, *, events_days: float | None = None, logs_days: float | None = None,
        dry_run: bool = False, batch: int = 1000, budget_s: float | None = 60.0,
        progress: Callable[[PruneReport], None] | None = None,
    ) -> PruneReport:
        """Delete the history the `[retention]` settings no longer keep (`events_days` and
        `logs_days` override them), `batch` rows per bulk write, for at most `budget_s`
        seconds (None: until done); `dry_run` only counts. See core/retention.py."""
        retention = self.settings.retention.replace(events_days=events_days,
                                                    logs_days=logs_days)
        from launch_tui.core.retention import prune_once

        return await prune_once(self._store, retention, batch=batch, budget_s=budget_s,
                                dry_run=dry_run, progress=progress)


def _shown(result: JobVersionResult) -> JobVersionResult:
    return dataclasses.replace(result, version=redact.version(result.version))
