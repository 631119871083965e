"""Row sources: how each pane turns the live model into cells.

A source holds no rows; it reads the model's ordered keys and formats one row
when the table asks for it, so only rows on screen are ever formatted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from rich.text import Text

from launch_tui.core import explain
from launch_tui.core.model import AgentStatus
from launch_tui.core.service import AGENT_STALE_S
from launch_tui.tui import format as fmt
from launch_tui.tui.live import ItemKey, LiveModel
from launch_tui.tui.widgets.table import Column

Clock = Callable[[], float]


class JobsSource:
    columns: Sequence[Column] = (
        Column("job", 12, flex=2),
        Column("kind", 5, drop=3),
        Column("versions", 8, justify="right"),
        Column("aliases", 12, flex=3, drop=2),
        Column("entrypoint", 14, flex=2, drop=4),
    )

    def __init__(self, model: LiveModel) -> None:
        self.model = model

    def keys(self) -> Sequence[Any]:
        return self.model.job_names

    def cells(self, key: str) -> Sequence[str | Text]:
        job = self.model.jobs[key]
        latest = job.latest
        return (
            Text(job.name, style="bold"),
            str(job.kind),
            # Versions as a range: v0 alone, or v0-v3 when there are several.
            f"v{job.versions[0].version}" if len(job.versions) == 1
            else f"v{job.versions[0].version}-v{job.versions[-1].version}",
            fmt.aliases(job.aliases),
            " ".join(latest.entrypoint) or str(latest.source.get("image", "")),
        )

    def text(self, key: str) -> str:
        job = self.model.jobs[key]
        return f"{job.name} {job.kind} {fmt.aliases(job.aliases)} {' '.join(job.latest.entrypoint)}"


class QueuesSource:
    columns: Sequence[Column] = (
        Column("queue", 10, flex=2),
        Column("resource", 13, flex=1, drop=1),
        Column("pending", 7, justify="right"),
        Column("active", 6, justify="right"),
        Column("agents", 6, justify="right", drop=2),
    )

    def __init__(self, model: LiveModel, marked: set[str]) -> None:
        self.model = model
        self.marked = marked

    def keys(self) -> Sequence[Any]:
        return self.model.queue_names

    def cells(self, key: str) -> Sequence[str | Text]:
        queue = self.model.queues[key]
        items = self.model.items.get(key)
        pending = items.pending if items is not None else queue.pending
        agents = sum(
            1 for a in self.model.agents.values()
            if key in a.queues and a.status != AgentStatus.STOPPED
        )
        name = Text()
        name.append("● " if key in self.marked else "  ", style=fmt.style_of("bold green"))
        name.append(queue.name, style="bold")
        if queue.held:
            name.append(" held", style=fmt.style_of("bold yellow"))
        return (
            name,
            queue.resource,
            f"{pending:,}",
            str(self.model.active_runs(key)),
            str(agents),
        )

    def text(self, key: str) -> str:
        q = self.model.queues[key]
        return f"{q.name} {q.resource}"


class ItemsSource:
    """The selected queue's waiting items, in the order they will run."""

    columns: Sequence[Column] = (
        Column("pos", 6, justify="right"),
        Column("item", 7, justify="right", drop=2),
        Column("job", 12, flex=2),
        Column("priority", 8, drop=3),
        Column("state", 8, drop=5),
        Column("age", 4, justify="right", drop=4),
        Column("why", 16, flex=3, drop=1),
    )

    def __init__(self, model: LiveModel, queue: str | None, now: Clock,
                 marked: set[int] | None = None) -> None:
        self.model = model
        self.queue = queue
        self.now = now
        self.marked = marked if marked is not None else set()

    def why(self, key: ItemKey) -> str:
        """The core's sentence on why the item waits, from what the model knows now."""
        items = self.model.item_list(self.queue)
        item = dataclasses.replace(items.item(key), position=items.position(key))
        queue = self.model.queues.get(item.queue)
        stale_s = self.model.service.settings.agent_stale_s
        return explain.item_why(item, queue, list(self.model.agents.values()), self.now(),
                                stale_s) or ""

    def keys(self) -> Sequence[Any]:
        return self.model.item_list(self.queue).keys

    def cells(self, key: ItemKey) -> Sequence[str | Text]:
        items = self.model.item_list(self.queue)
        item = items.item(key)
        position = items.position(key)
        place = Text()
        place.append("● " if item.id in self.marked else "", style=fmt.style_of("bold green"))
        if position is None:
            place.append("→", style=fmt.style_of("bold yellow"))
        else:
            place.append(f"{position:,}")
        return (
            place,
            f"#{item.id}",
            item.job_ref,
            fmt.priority(item.priority),
            fmt.item_state(item.state),
            fmt.age(self.now() - item.created_at),
            self.why(key),
        )

    def text(self, key: ItemKey) -> str:
        item = self.model.item_list(self.queue).item(key)
        return f"#{item.id} {item.job_ref} {item.priority} {item.state} {item.leased_by or ''}"

    def detail(self, key: ItemKey) -> str:
        item = self.model.item_list(self.queue).item(key)
        return f"#{item.id} {item.job_ref} ({item.priority}): {self.why(key)}"


class RunsSource:
    columns: Sequence[Column] = (
        Column("run", 8),
        Column("job", 10, flex=2),
        Column("state", 9),
        Column("queue", 8, flex=1, drop=7),
        Column("agent", 8, flex=1, drop=8),
        Column("wait", 5, justify="right", drop=6),
        Column("build", 5, justify="right", drop=5),
        Column("run", 6, justify="right", drop=2),
        Column("exit", 4, justify="right", drop=1),
        Column("age", 4, justify="right", drop=4),
        # How it ended or what it waits for (the core's sentence; the status line has
        # it whole): kept over the queue and agent columns when the pane is narrow.
        Column("why", 14, flex=3, drop=3),
    )

    def __init__(self, model: LiveModel, now: Clock, *, history: bool = False) -> None:
        self.model = model
        self.now = now
        # The history view: only runs that ended, newest first.
        self.history = history

    def keys(self) -> Sequence[Any]:
        if self.history:
            runs = self.model.runs
            return [r for r in self.model.run_order if runs[r].state.terminal]
        return self.model.run_order

    def cells(self, key: str) -> Sequence[str | Text]:
        run = self.model.runs[key]
        stages = fmt.stage_durations(run.timestamps, run.state, self.now())
        wait = sum(stages.get(s, 0.0) for s in ("leased", "queued")) if stages else None
        return (
            run.id,
            run.job_ref,
            fmt.run_state(run.state),
            run.queue,
            run.agent or "",
            fmt.duration(wait),
            fmt.duration(stages.get("building")),
            fmt.duration(stages.get("running")),
            "" if run.exit_code is None else str(run.exit_code),
            fmt.age(self.now() - run.created_at),
            fmt.why_cell(explain.run_why(run, self.now()), str(run.state)),
        )

    def text(self, key: str) -> str:
        r = self.model.runs[key]
        why = explain.run_why(r, self.now()) or ""
        return f"{r.id} {r.job_ref} {r.state} {r.queue} {r.agent or ''} {why}"

    def detail(self, key: str) -> str:
        r = self.model.runs[key]
        why = explain.run_why(r, self.now())
        return f"{r.id} {r.job_ref} on {r.queue}: {why or r.state}"


class AgentsSource:
    columns: Sequence[Column] = (
        Column("agent", 12, flex=2),
        Column("status", 8),
        Column("queues", 10, flex=2, drop=2),
        Column("jobs", 5, justify="right", drop=3),
        Column("beat", 5, justify="right", drop=4),
        Column("host", 10, flex=1, drop=1),
    )

    def __init__(self, model: LiveModel, now: Clock, mine: Callable[[str], bool]) -> None:
        self.model = model
        self.now = now
        self.mine = mine

    def keys(self) -> Sequence[Any]:
        return self.model.agent_names

    def status(self, key: str) -> str:
        agent = self.model.agents[key]
        if agent.status != AgentStatus.STOPPED and self.now() - agent.heartbeat_at > AGENT_STALE_S:
            return "stale"
        return str(agent.status)

    def cells(self, key: str) -> Sequence[str | Text]:
        agent = self.model.agents[key]
        name = Text(agent.name, style="bold")
        if self.mine(key):
            name.append(" (here)", style="dim")
        return (
            name,
            fmt.agent_status(self.status(key)),
            ",".join(agent.queues),
            f"{agent.running}/{agent.max_jobs}",
            fmt.age(self.now() - agent.heartbeat_at),
            f"{agent.host}:{agent.pid}",
        )

    def text(self, key: str) -> str:
        a = self.model.agents[key]
        return f"{a.name} {a.status} {' '.join(a.queues)} {a.host}"


class ProjectsSource:
    columns: Sequence[Column] = (Column("project", 10, flex=1),)

    def __init__(self, model: LiveModel) -> None:
        self.model = model

    def keys(self) -> Sequence[Any]:
        return [p.name for p in self.model.projects]

    def cells(self, key: str) -> Sequence[str | Text]:
        if key == self.model.project:
            return (Text(f"● {key}", style="bold"),)
        return (f"  {key}",)

    def text(self, key: str) -> str:
        return key

