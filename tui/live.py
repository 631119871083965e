"""The TUI's in-memory picture of one project, kept current from the change feed.

Panes render from this model; they never query the service themselves. Each
batch of events is turned into the fewest service reads possible (state changes
of known items are applied locally, new items are fetched once per batch, a
flood of new items reloads that queue once), and into `Change` notices precise
enough that a pane repaints one row rather than rebuilding a table.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from launch_tui.core.errors import NotFound
from launch_tui.core.events import (
    AgentHeartbeat,
    Event,
    ItemEnqueued,
    ItemMoved,
    ItemStateChanged,
    JobAliasSet,
    JobVersionCreated,
    ProjectCreated,
    QueueChanged,
    RunStateChanged,
)
from launch_tui.core.model import (
    Agent,
    AgentStatus,
    ItemState,
    Job,
    Project,
    Queue,
    QueueItem,
    Run,
)
from launch_tui.core.service import LaunchService

ChangeKind = Literal[
    "reset", "projects", "jobs", "job", "queues", "queue", "items", "item", "runs", "run",
    "agents", "agent",
]

# Above this many new items in one queue in one batch, re-reading the whole queue
# in one query is cheaper than one read per item.
RELOAD_THRESHOLD = 100
# Runs kept in memory (newest first); older ones are still reachable through the CLI.
MAX_RUNS = 2000
ACTIVE_ITEM_STATES = (ItemState.PENDING, ItemState.LEASED)


@dataclass(frozen=True)
class Change:
    """What changed. `key` is a job name, queue name, item id, run id or agent name.

    Singular kinds ("item", "run", …) mean one row's cells changed in place;
    plural kinds mean rows were added, removed or reordered.
    """

    kind: ChangeKind
    key: Any = None
    queue: str | None = None


# (group: 0 leased / 1 pending, priority rank, place within the priority, item id):
# the store's take order. The item id is always last.
ItemKey = tuple[int, int, float, int]


class ItemList:
    """One queue's waiting items in the order they will be taken.

    Leased items come first (an agent is taking them now), then pending items by
    priority and first-in-first-out, exactly as the store's claim orders them.
    Keys are kept sorted, so an insert is a bisect, and a pending item's
    position is its index minus the leased items ahead of it.
    """

    def __init__(self, items: Iterable[QueueItem] = ()) -> None:
        self.by_id: dict[int, QueueItem] = {}
        self.keys: list[ItemKey] = []
        for item in items:
            key = self.sort_key(item)
            if key is not None:
                self.by_id[item.id] = item
                self.keys.append(key)
        self.keys.sort()

    @staticmethod
    def sort_key(item: QueueItem) -> ItemKey | None:
        if item.state == ItemState.LEASED:
            return (0, item.priority.rank, item.seq, item.id)
        if item.state == ItemState.PENDING:
            return (1, item.priority.rank, item.seq, item.id)
        return None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def leased(self) -> int:
        return bisect.bisect_left(self.keys, (1, -1, float("-inf"), -1))

    @property
    def pending(self) -> int:
        return len(self.keys) - self.leased

    def position(self, key: ItemKey) -> int | None:
        """1-based place among pending items (None for leased ones)."""
        if key[0] == 0:
            return None
        return bisect.bisect_left(self.keys, key) - self.leased + 1

    def item(self, key: ItemKey) -> QueueItem:
        return self.by_id[key[-1]]

    def drop(self, item_id: int) -> bool:
        """Take an item out (it moved to another queue); False if it was not here."""
        old = self.by_id.pop(item_id, None)
        key = self.sort_key(old) if old is not None else None
        if key is None:
            return False
        del self.keys[bisect.bisect_left(self.keys, key)]
        return True

    def upsert(self, item: QueueItem) -> bool:
        """Place, move or drop an item; True when the order changed (not just its cells)."""
        old = self.by_id.get(item.id)
        new_key = self.sort_key(item)
        old_key = self.sort_key(old) if old is not None else None
        if old_key == new_key:
            if new_key is not None:
                self.by_id[item.id] = item
            return False
        if old_key is not None:
            del self.keys[bisect.bisect_left(self.keys, old_key)]
            del self.by_id[item.id]
        if new_key is not None:
            bisect.insort(self.keys, new_key)
            self.by_id[item.id] = item
        return True


class LiveModel:
    """Jobs, queues (with their items), runs and agents of one project."""

    def __init__(
        self,
        service: LaunchService,
        project: str,
        publish: Callable[[Change], None],
    ) -> None:
        self.service = service
        self.project = project
        self._publish = publish
        self.loaded = False
        self.projects: list[Project] = []
        self.jobs: dict[str, Job] = {}
        self.job_names: list[str] = []
        self.queues: dict[str, Queue] = {}
        self.queue_names: list[str] = []
        self.items: dict[str, ItemList] = {}
        self.runs: dict[str, Run] = {}
        self.run_order: list[str] = []  # newest first
        self.agents: dict[str, Agent] = {}
        self.agent_names: list[str] = []

    # ------------------------------------------------------------------ loading

    async def load(self) -> None:
        """Read everything this model shows, then announce a reset."""
        svc = self.service
        self.projects = await svc.list_projects()
        if self.project not in {p.name for p in self.projects}:
            # Nothing to show yet; the project appears once someone creates it.
            jobs: list[Job] = []
            queues: list[Queue] = []
            items: list[QueueItem] = []
            runs: list[Run] = []
        else:
            jobs = await svc.list_jobs(project=self.project)
            queues = await svc.list_queues(project=self.project)
            # The panes work out each item's why from the model (sources.ItemsSource).
            items = await svc.list_items(project=self.project, states=ACTIVE_ITEM_STATES,
                                         explain=False)
            runs = await svc.list_runs(project=self.project, limit=MAX_RUNS)
        agents = await svc.list_agents()
        self.jobs = {j.name: j for j in jobs}
        self.job_names = sorted(self.jobs)
        self.queues = {q.name: q for q in queues}
        self.queue_names = sorted(self.queues)
        by_queue: dict[str, list[QueueItem]] = {q: [] for q in self.queues}
        for item in items:
            by_queue.setdefault(item.queue, []).append(item)
        self.items = {q: ItemList(its) for q, its in by_queue.items()}
        self.runs = {r.id: r for r in runs}
        self.run_order = [r.id for r in runs]
        self._set_agents(agents)
        self.loaded = True
        self._publish(Change("reset"))

    def _set_agents(self, agents: Sequence[Agent]) -> None:
        mine = [a for a in agents if a.project == self.project]
        self.agents = {a.name: a for a in mine}
        self.agent_names = sorted(self.agents)

    # ------------------------------------------------------------------ queries

    def item_list(self, queue: str | None) -> ItemList:
        if queue is None:
            return ItemList()
        return self.items.setdefault(queue, ItemList())

    def active_runs(self, queue: str) -> int:
        return sum(1 for r in self.runs.values() if r.queue == queue and not r.state.terminal)

    def run_for_item(self, item_id: int) -> Run | None:
        for run in self.runs.values():
            if run.item_id == item_id:
                return run
        return None

    # ------------------------------------------------------------------ events

    async def apply(self, events: Sequence[Event]) -> None:
        """Bring the model up to date with a batch of events and announce what changed."""
        if not self.loaded:
            return
        want_projects = False
        want_agents = False
        jobs: set[str] = set()
        queues: set[str] = set()
        fetch_items: dict[str, set[int]] = {}
        runs: list[str] = []
        item_changes: dict[str, set[int]] = {}
        reordered: set[str] = set()
        agent_changes: set[str] = set()
        for ev in events:
            if isinstance(ev, ProjectCreated):
                want_projects = True
            elif isinstance(ev, (JobVersionCreated, JobAliasSet)):
                if ev.project == self.project:
                    jobs.add(ev.job)
            elif isinstance(ev, QueueChanged):
                if ev.project == self.project:
                    queues.add(ev.queue)
            elif isinstance(ev, ItemEnqueued):
                if ev.project == self.project:
                    fetch_items.setdefault(ev.queue, set()).add(ev.item_id)
            elif isinstance(ev, ItemStateChanged):
                if ev.project == self.project:
                    self._item_state(ev, fetch_items, item_changes, reordered)
            elif isinstance(ev, ItemMoved):
                if ev.project == self.project:
                    left = self.items.get(ev.from_queue or "")
                    if left is not None and left.drop(ev.item_id):
                        reordered.add(str(ev.from_queue))
                    fetch_items.setdefault(ev.queue, set()).add(ev.item_id)
            elif isinstance(ev, RunStateChanged):
                if ev.project == self.project and ev.run_id not in runs:
                    runs.append(ev.run_id)
            elif isinstance(ev, AgentHeartbeat):
                agent = self.agents.get(ev.agent)
                if agent is None:
                    want_agents = True
                else:
                    self.agents[ev.agent] = dataclasses.replace(
                        agent, status=AgentStatus(ev.status), running=ev.running,
                        heartbeat_at=ev.ts or agent.heartbeat_at,
                    )
                    agent_changes.add(ev.agent)
        if want_projects:
            await self._reload_projects()
        for name in sorted(jobs):
            await self._refresh_job(name)
        for name in sorted(queues):
            await self._refresh_queue(name)
        for queue, ids in fetch_items.items():
            await self._fetch_items(queue, ids, item_changes, reordered)
        for run_id in runs:
            await self._refresh_run(run_id)
        if want_agents:
            self._set_agents(await self.service.list_agents())
            self._publish(Change("agents"))
        else:
            for name in sorted(agent_changes):
                self._publish(Change("agent", name))
        for queue in sorted(reordered):
            self._publish(Change("items", queue=queue))
            self._publish(Change("queue", queue))
        for queue, ids in item_changes.items():
            if queue not in reordered:
                for item_id in sorted(ids):
                    self._publish(Change("item", item_id, queue=queue))

    def _item_state(
        self,
        ev: ItemStateChanged,
        fetch: dict[str, set[int]],
        changed: dict[str, set[int]],
        reordered: set[str],
    ) -> None:
        items = self.items.get(ev.queue)
        current = items.by_id.get(ev.item_id) if items is not None else None
        state = ItemState(ev.state)
        if current is None or items is None:
            if state in ACTIVE_ITEM_STATES:
                # An item we never saw (e.g. a lease expired on an item loaded as leased
                # elsewhere): read it once.
                fetch.setdefault(ev.queue, set()).add(ev.item_id)
            return
        leased_by = ev.agent if state == ItemState.LEASED else None
        updated = dataclasses.replace(current, state=state, leased_by=leased_by,
                                      updated_at=ev.ts or current.updated_at)
        if items.upsert(updated):
            reordered.add(ev.queue)
        else:
            changed.setdefault(ev.queue, set()).add(ev.item_id)

    async def _fetch_items(
        self,
        queue: str,
        ids: set[int],
        changed: dict[str, set[int]],
        reordered: set[str],
    ) -> None:
        if queue not in self.queues:
            await self._refresh_queue(queue)
        items = self.item_list(queue)
        if len(ids) > RELOAD_THRESHOLD:
            try:
                fresh = await self.service.list_items(
                    queue, project=self.project, states=ACTIVE_ITEM_STATES, explain=False
                )
            except NotFound:
                return
            self.items[queue] = ItemList(fresh)
            reordered.add(queue)
            return
        for item_id in sorted(ids):
            try:
                item = await self.service.get_item(item_id, explain=False)
            except NotFound:
                continue
            if items.upsert(item):
                reordered.add(queue)
            else:
                changed.setdefault(queue, set()).add(item_id)

    async def _reload_projects(self) -> None:
        self.projects = await self.service.list_projects()
        self._publish(Change("projects"))

    async def _refresh_job(self, name: str) -> None:
        try:
            job = await self.service.get_job(name, project=self.project)
        except NotFound:
            if self.jobs.pop(name, None) is not None:
                self.job_names.remove(name)
                self._publish(Change("jobs"))
            return
        known = name in self.jobs
        self.jobs[name] = job
        if known:
            self._publish(Change("job", name))
        else:
            bisect.insort(self.job_names, name)
            self._publish(Change("jobs"))

    async def _refresh_queue(self, name: str) -> None:
        try:
            queue = await self.service.get_queue(name, project=self.project)
        except NotFound:
            return
        known = name in self.queues
        self.queues[name] = queue
        self.items.setdefault(name, ItemList())
        if known:
            self._publish(Change("queue", name))
        else:
            bisect.insort(self.queue_names, name)
            self._publish(Change("queues"))

    async def _refresh_run(self, run_id: str) -> None:
        try:
            run = await self.service.get_run(run_id)
        except NotFound:
            return
        known = run_id in self.runs
        self.runs[run_id] = run
        if known:
            self._publish(Change("run", run_id))
            self._publish(Change("queue", run.queue))  # its running count may have changed
            return
        # New runs are the newest; keep the list bounded.
        self.run_order.insert(0, run_id)
        if len(self.run_order) > MAX_RUNS:
            for old in self.run_order[MAX_RUNS:]:
                self.runs.pop(old, None)
            del self.run_order[MAX_RUNS:]
        self._publish(Change("runs"))
        self._publish(Change("queue", run.queue))
