"""The main screen: jobs, queues with their items, runs, agents and projects, live.

Wide terminals show every pane at once; narrow or short ones (80x24) show one
pane at a time with a tab bar, switched by tab or the pane's number. The side
panel (l) holds the agents' log and the selected run's log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static

from launch_tui.core import explain
from launch_tui.core.events import Event, ItemStateChanged, RunStateChanged
from launch_tui.core.model import ItemState, Priority, RunState
from launch_tui.tui import format as fmt
from launch_tui.tui.history import ItemHistorySource
from launch_tui.tui.live import Change, ItemList
from launch_tui.tui.logboxes import AgentLogBox, LogBox, RunLogBox
from launch_tui.tui.panes import (
    PANES,
    AgentsPane,
    ItemsPane,
    JobsPane,
    Pane,
    ProjectsPane,
    QueuesPane,
    RunsPane,
)
from launch_tui.tui.screens.confirm import ConfirmScreen
from launch_tui.tui.screens.pick import PickScreen
from launch_tui.tui.sources import (
    AgentsSource,
    ItemsSource,
    JobsSource,
    ProjectsSource,
    QueuesSource,
    RunsSource,
)
from launch_tui.tui.widgets.footer import KeysFooter
from launch_tui.tui.widgets.logview import LogView
from launch_tui.tui.widgets.table import LiveTable

if TYPE_CHECKING:
    from launch_tui.tui.app import LaunchApp

PANE_IDS = ("jobs", "queues", "items", "runs", "agents", "projects")
MIN_SPLIT = 4  # rows the list (a border, its header, a row) or the logs keep at least


class StatusLine(Static):
    """One line: project, totals, the in-process agent and where help is."""


class PaneBar(Static):
    """Tab bar for narrow terminals: which pane is showing and how to reach the others."""

    def show(self, active: str, side: bool) -> None:
        text = Text()
        for number, (pane_id, cls) in enumerate(zip(PANE_IDS, PANES, strict=True), 1):
            label = f" {number} {cls.TITLE} "
            text.append(label, style="reverse bold" if pane_id == active and not side else "")
        text.append(" l Logs ", style="reverse bold" if side else "")
        self.update(text)


_WAITING_ITEM_ACTIONS = frozenset({"cancel_items", "mark_item", "item_top", "item_bottom",
                                   "item_priority", "item_move_queue"})


class MainScreen(Screen[None]):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    BINDINGS = [
        Binding("q", "app.quit", "Quit", tooltip="Quit (asks first if an agent runs here)",
                id="quit"),
        Binding("e", "enqueue", "Enqueue",
                tooltip="Enqueue the selected job: version, queue, priority, config", id="enqueue"),
        Binding("l", "toggle_side", "Logs",
                tooltip="Show or hide the agent log and the selected run's log", id="toggle_side"),
        Binding("f", "toggle_follow", "Follow", show=False,
                tooltip="Pause or resume following the logs", id="toggle_follow"),
        Binding("left_square_bracket", "resize_split(-2)", "Shrink list", show=False,
                tooltip="With the logs under the list (80x24): give the logs more rows",
                id="shrink_list"),
        Binding("right_square_bracket", "resize_split(2)", "Grow list", show=False,
                tooltip="With the logs under the list (80x24): give the list more rows",
                id="grow_list"),
        Binding("slash", "find", "Filter",
                tooltip="Filter the focused list, or search the focused log", id="find"),
        Binding("a", "start_agent", "Start agent", show=False,
                tooltip="Start an agent in this app on the marked (or selected) queues",
                id="start_agent"),
        Binding("A", "stop_agent", "Stop agent", show=False,
                tooltip="Stop an agent running in this app (asks first)", id="stop_agent"),
        Binding("n", "new_queue", "New queue", show=False, tooltip="Create a queue in a form",
                id="new_queue"),
        Binding("tab", "next_pane", "Next pane", show=False, id="next_pane"),
        Binding("shift+tab", "previous_pane", "Previous pane", show=False, id="previous_pane"),
        Binding("1", "show_pane('jobs')", "Jobs", show=False, tooltip="Go to the Jobs pane",
                id="pane_jobs"),
        Binding("2", "show_pane('queues')", "Queues", show=False,
                tooltip="Go to the Queues pane", id="pane_queues"),
        Binding("3", "show_pane('items')", "Items", show=False,
                tooltip="Go to the selected queue's items", id="pane_items"),
        Binding("4", "show_pane('runs')", "Runs", show=False, tooltip="Go to the Runs pane",
                id="pane_runs"),
        Binding("5", "show_pane('agents')", "Agents", show=False,
                tooltip="Go to the Agents pane", id="pane_agents"),
        Binding("6", "show_pane('projects')", "Projects", show=False,
                tooltip="Go to the Projects pane", id="pane_projects"),
        Binding("ctrl+r", "reload", "Reload", show=False,
                tooltip="Reload everything from the store", id="reload"),
        Binding("escape", "back_out", "Back", show=False,
                tooltip="Clear the focused list's filter or log's search, then close the "
                        "logs panel; never quits", id="back_out"),
    ]

    active_pane: reactive[str] = reactive("jobs")
    side_visible: reactive[bool] = reactive(False)
    # On a narrow or short terminal with the logs shown: rows the list keeps above them.
    split_rows: reactive[int] = reactive(9)

    def __init__(self) -> None:
        super().__init__(id="main")
        self.marked_queues: set[str] = set()
        self.marked_items: set[int] = set()
        self.items_queue: str | None = None
        # The Items pane's history view (None: the waiting items), the Runs pane's.
        self.items_history: ItemHistorySource | None = None
        self.runs_history = False
        # An item just moved from here: the cursor follows it to its new place.
        self._moved_item: int | None = None

    @property
    def launch_app(self) -> LaunchApp:
        return cast("LaunchApp", self.app)

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield StatusLine(id="status")
        yield PaneBar(id="pane-bar")
        with Horizontal(id="body"):
            with Container(id="panes"):
                yield JobsPane(id="jobs")
                yield QueuesPane(id="queues")
                yield ItemsPane(id="items")
                yield RunsPane(id="runs")
                yield AgentsPane(id="agents")
                yield ProjectsPane(id="projects")
            with Vertical(id="side"):
                yield AgentLogBox(id="agent-log")
                yield RunLogBox(id="run-log")
        yield KeysFooter()

    def pane(self, pane_id: str) -> Pane:
        return self.query_one(f"#{pane_id}", Pane)

    @property
    def jobs(self) -> JobsPane:
        return self.query_one(JobsPane)

    @property
    def queues(self) -> QueuesPane:
        return self.query_one(QueuesPane)

    @property
    def items(self) -> ItemsPane:
        return self.query_one(ItemsPane)

    @property
    def runs(self) -> RunsPane:
        return self.query_one(RunsPane)

    @property
    def agents(self) -> AgentsPane:
        return self.query_one(AgentsPane)

    @property
    def projects(self) -> ProjectsPane:
        return self.query_one(ProjectsPane)

    @property
    def run_log(self) -> RunLogBox:
        return self.query_one(RunLogBox)

    @property
    def agent_log(self) -> AgentLogBox:
        return self.query_one(AgentLogBox)

    def on_mount(self) -> None:
        app = self.launch_app
        app.changes.subscribe(self, self.on_change, immediate=True)
        app.event_batches.subscribe(self, self.on_events, immediate=True)
        self.watch_active_pane(self.active_pane)
        self.watch_side_visible(False)
        self.update_status()
        self.jobs.table.focus()
        # Ages, heartbeats and running stages tick; repaint only what is on screen.
        self.set_interval(1.0, self._tick)
        if app.model is not None and app.model.loaded:
            self.on_change(Change("reset"))

    def _tick(self) -> None:
        for pane in (self.items, self.runs, self.agents):
            if pane.display:
                pane.table.refresh_rows()

    # ------------------------------------------------------------------ model changes

    def on_change(self, change: Change) -> None:
        model = self.launch_app.model
        if model is None:
            return
        kind = change.kind
        if kind == "reset":
            app = self.launch_app
            self.jobs.table.set_source(JobsSource(model))
            self.queues.table.set_source(QueuesSource(model, self.marked_queues))
            self.runs.table.set_source(RunsSource(model, app.now, history=self.runs_history))
            self.agents.table.set_source(AgentsSource(model, app.now, app.agent_host.is_mine))
            self.projects.table.set_source(ProjectsSource(model))
            first = model.queue_names[0] if model.queue_names else None
            keep = self.items_queue if self.items_queue in model.queues else first
            self.items_queue = None
            self.set_items_queue(keep)
            self._load_agent_log()
        elif kind == "jobs":
            self.jobs.table.rows_changed()
        elif kind == "job":
            self.jobs.table.row_changed(change.key)
        elif kind == "queues":
            self.queues.table.rows_changed()
            if self.items_queue is None and model.queue_names:
                self.set_items_queue(self.queues.table.cursor_key or model.queue_names[0])
        elif kind == "queue":
            self.queues.table.row_changed(change.key)
        elif kind == "items":
            if change.queue == self.items_queue and self.items_history is None:
                self.items.table.rows_changed()
                self._follow_moved_item()
        elif kind == "item":
            if change.queue == self.items_queue:
                items = model.item_list(self.items_queue)
                item = items.by_id.get(change.key)
                if item is not None:
                    self.items.table.row_changed(ItemList.sort_key(item))
        elif kind == "runs":
            self.runs.table.rows_changed()
        elif kind == "run":
            self.runs.table.row_changed(change.key)
        elif kind == "agents":
            self.agents.table.rows_changed()
            self.queues.table.refresh_rows()
        elif kind == "agent":
            self.agents.table.row_changed(change.key)
        elif kind == "projects":
            self.projects.table.rows_changed()
        if kind in ("reset", "jobs", "queues", "items", "runs", "agents", "projects"):
            for pane in self.query(Pane):
                pane.update_title()
        if kind != "item":
            self.update_status()

    def on_events(self, events: Sequence[Event]) -> None:
        """An item that fails before it has a run leaves the list; say why, once."""
        model = self.launch_app.model
        history_stale = False
        for ev in events:
            if (isinstance(ev, ItemStateChanged) and ev.state == ItemState.FAILED
                    and model is not None and ev.project == model.project):
                self.notify(f"Item #{ev.item_id} on {ev.queue} failed: {ev.reason}",
                            title="Item failed", severity="error", timeout=10)
            if (self.items_history is not None
                    and isinstance(ev, (ItemStateChanged, RunStateChanged))
                    and ev.queue == self.items_queue):
                history_stale = True
            if (isinstance(ev, RunStateChanged) and model is not None
                    and ev.project == model.project and RunState(ev.state).terminal):
                self._notify_run_end(ev.run_id)
        if history_stale:
            self._load_item_history()

    def _notify_run_end(self, run_id: str) -> None:
        """A notice for a run that ended while the user looks elsewhere: not for the
        run open in the run detail, nor the one under the Runs cursor."""
        app = self.launch_app
        model = app.model
        run = model.runs.get(run_id) if model is not None else None
        if run is None or not run.state.terminal:
            return
        looking = getattr(app.screen, "run_id", None) == run_id or (
            app.screen is self and self.active_pane == "runs" and self.selected_run() == run_id)
        if looking:
            return
        settings = app.service.settings.tui if app.service is not None else None
        failed = run.state in (RunState.FAILED, RunState.CRASHED, RunState.PREEMPTED)
        why = explain.run_why(run, app.now())
        if failed:
            self.notify(f"{run.id} ({run.job_ref} on {run.queue}): {why or run.state}",
                        title=f"Run {run.state}", severity="error", timeout=15)
            if settings is not None and settings.bell_on_failure:
                app.bell()
        elif run.state == RunState.FINISHED and (settings is None or settings.notify_finished):
            took = fmt.duration(fmt.stage_durations(run.timestamps, run.state,
                                                    app.now()).get("running"))
            self.notify(f"{run.id} ({run.job_ref} on {run.queue}) finished in {took}.",
                        title="Run finished", timeout=6)

    @work(group="agent-log-load", exclusive=True, exit_on_error=False)
    async def _load_agent_log(self) -> None:
        await self.agent_log.load()

    def set_items_queue(self, queue: str | None) -> None:
        if queue == self.items_queue:
            return
        self.items_queue = queue
        self.marked_items.clear()
        model = self.launch_app.model
        if model is None:
            return
        if self.items_history is not None:
            self.items_history = ItemHistorySource(queue, self.launch_app.now)
            self.items.table.set_source(self.items_history)
            self._load_item_history()
        else:
            self.items.table.set_source(ItemsSource(model, queue, self.launch_app.now,
                                                    self.marked_items))
        self._items_caption()

    def update_status(self) -> None:
        app = self.launch_app
        model = app.model
        text = Text(overflow="ellipsis")
        text.append(" launch-tui ", style="bold reverse")
        if model is None or not model.loaded:
            text.append("  " + (app.status_message or "opening the store…"))
            self.query_one(StatusLine).update(text)
            return
        pending = sum(len(items) for items in model.items.values())
        active = sum(1 for r in model.runs.values() if not r.state.terminal)
        text.append(f"  project {model.project}", style="bold")
        if self.marked_items:
            # Before the rest: at 80 columns the end of the line is cut.
            text.append(f"  ·  {len(self.marked_items)} marked (x cancels)", style="bold")
        if self.marked_queues:
            text.append(f"  ·  {len(self.marked_queues)} queues marked (a starts an agent)",
                        style="bold")
        detail = fmt.one_line(self.cursor_detail() or "")
        if detail:
            # The row under the cursor, whole: narrow columns cut names and reasons.
            text.append(f"  ·  {detail}")
            if not self.narrow:
                text.append(f"  ·  {pending:,} waiting · {active} active", style="dim")
        else:
            text.append(f"  ·  {len(model.queues)} queues · {pending:,} waiting · "
                        f"{active} active")
        names = app.agent_host.names()
        if names:
            text.append("  ·  agent here: ")
            for name in names:
                agent = model.agents.get(name)
                status = str(agent.status) if agent else "starting"
                text.append(f"{name} ({status}) ", style="green")
        self.query_one(StatusLine).update(text)

    # ------------------------------------------------------------------ panes & focus

    def watch_active_pane(self, active: str) -> None:
        for pane in self.query(Pane):
            pane.set_class(pane.id == active, "-active")
        self.query_one(PaneBar).show(active, self.side_visible)

    def watch_side_visible(self, visible: bool) -> None:
        self.set_class(visible, "-side")
        self.query_one(PaneBar).show(self.active_pane, visible)
        self._apply_split()
        self.refresh_bindings()

    def watch_split_rows(self, rows: int) -> None:
        self._apply_split()

    def on_resize(self) -> None:
        # The breakpoint classes (-narrow, -short) follow the size; so does the split.
        self.call_after_refresh(self._apply_split)

    def _apply_split(self) -> None:
        panes = self.query_one("#panes")
        if self.side_visible and self.narrow:
            panes.styles.height = self.split_rows
        else:
            panes.styles.height = "1fr"

    def action_resize_split(self, step: int) -> None:
        body = self.query_one("#body").size.height
        self.split_rows = max(MIN_SPLIT, min(body - MIN_SPLIT, self.split_rows + step))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "resize_split":
            return self.side_visible and self.narrow
        # The Items pane's keys for the view they act on: surgery on waiting items,
        # re-enqueue in the history (the footer then has room for what applies).
        if action in _WAITING_ITEM_ACTIONS:
            return self.items_history is None
        if action == "requeue_item":
            return self.items_history is not None
        return True

    def cursor_detail(self) -> str:
        """The whole of the focused list's cursor row (names a narrow column cuts, the
        why a column shortens), for the status line."""
        table = self.focused
        if not isinstance(table, LiveTable) or table.cursor_key is None:
            return ""
        source, key = table.source, table.cursor_key
        try:
            detail = getattr(source, "detail", None)
            return str(detail(key) if detail is not None else source.text(key))
        except (KeyError, IndexError):
            return ""  # the row went away meanwhile

    @on(LiveTable.Highlighted)
    def _highlighted(self, event: LiveTable.Highlighted) -> None:
        if event.table is self.focused:
            self.update_status()
        if event.table is self.queues.table and event.key is not None:
            self.set_items_queue(event.key)
        elif event.table is self.runs.table and event.key is not None:
            self.run_log.show_run(event.key)

    def on_descendant_focus(self, event: Any) -> None:
        self.update_status()
        widget = self.focused
        while widget is not None and not isinstance(widget, Pane):
            widget = widget.parent if isinstance(widget.parent, Widget) else None
        if isinstance(widget, Pane) and widget.id:
            self.active_pane = widget.id

    @property
    def narrow(self) -> bool:
        return self.has_class("-narrow") or self.has_class("-short")

    def action_show_pane(self, pane_id: str) -> None:
        self.active_pane = pane_id
        table = self.pane(pane_id).table
        # Focus now, not after the next refresh: a key typed right behind this one
        # ("3H", quickly) is already queued and goes to the focused pane. In narrow
        # mode the pane is displayable only once its styles are updated: done here.
        self.app.stylesheet.update_nodes(self.query(Pane), animate=False)
        self.set_focus(table)

    def _step_pane(self, step: int) -> None:
        focused = self.focused
        logs = [box.log_view for box in self.query(LogBox)] if self.side_visible else []
        if focused in logs:
            index = logs.index(cast(LogView, focused)) + step
            if 0 <= index < len(logs):
                logs[index].focus()
                return
            if self.narrow:
                # The list above the logs is the one pane shown: back to it.
                self.pane(self.active_pane).table.focus()
                return
            self.action_show_pane(PANE_IDS[0] if step > 0 else PANE_IDS[-1])
            return
        index = PANE_IDS.index(self.active_pane) + step
        if 0 <= index < len(PANE_IDS) and not (self.side_visible and self.narrow):
            self.action_show_pane(PANE_IDS[index])
        elif logs:
            (logs[0] if step > 0 else logs[-1]).focus()
        else:
            self.action_show_pane(PANE_IDS[index % len(PANE_IDS)])

    def action_next_pane(self) -> None:
        self._step_pane(1)

    def action_previous_pane(self) -> None:
        self._step_pane(-1)

    def action_toggle_side(self) -> None:
        self.side_visible = not self.side_visible
        if not self.side_visible:
            self.call_after_refresh(self.pane(self.active_pane).table.focus)

    def action_focus_agent_log(self) -> None:
        self.side_visible = True
        self.call_after_refresh(self.agent_log.log_view.focus)

    def action_toggle_follow(self) -> None:
        focused = self.focused
        if isinstance(focused, LogView):
            focused.toggle_follow()
            return
        boxes = list(self.query(LogBox))
        follow = not all(box.log_view.follow for box in boxes)
        for box in boxes:
            box.log_view.follow = follow
        self.notify("Following logs" if follow else "Paused following logs", timeout=2)

    def action_find(self) -> None:
        focused = self.focused
        node: Any = focused
        while node is not None and not isinstance(node, (Pane, LogBox)):
            node = node.parent
        if node is None:
            node = self.pane(self.active_pane)
        node.find_bar.open()

    # ------------------------------------------------------------------ selections

    def selected_job(self) -> str | None:
        return cast("str | None", self.jobs.table.cursor_key)

    def selected_queue(self) -> str | None:
        return cast("str | None", self.queues.table.cursor_key)

    def selected_run(self) -> str | None:
        return cast("str | None", self.runs.table.cursor_key)

    def selected_item(self) -> int | None:
        """The item under the Items cursor: the key is its number in the history view,
        its take-order key (number last) among the waiting."""
        key = self.items.table.cursor_key
        if key is None:
            return None
        return key if isinstance(key, int) else key[-1]

    # ------------------------------------------------------------------ actions

    def action_enqueue(self) -> None:
        job = self.selected_job()
        if job is None:
            self.notify("Select a job first (1 goes to Jobs).", severity="warning")
            return
        self.launch_app.open_enqueue(job)

    def action_edit_config(self) -> None:
        job = self.selected_job()
        if job is None:
            self.notify("Select a job first (1 goes to Jobs).", severity="warning")
            return
        self.launch_app.open_config_form(job)

    def action_edit_config_toml(self) -> None:
        job = self.selected_job()
        if job is None:
            self.notify("Select a job first (1 goes to Jobs).", severity="warning")
            return
        self.launch_app.edit_config_in_editor(job)

    def action_new_queue(self) -> None:
        self.launch_app.open_queue_form(None)

    def action_edit_queue(self) -> None:
        queue = self.selected_queue()
        if queue is None:
            self.notify("Select a queue first (2 goes to Queues).", severity="warning")
            return
        self.launch_app.open_queue_form(queue)

    def action_edit_queue_toml(self) -> None:
        queue = self.selected_queue()
        if queue is None:
            self.notify("Select a queue first (2 goes to Queues).", severity="warning")
            return
        self.launch_app.edit_queue_in_editor(queue)

    def action_show_items(self) -> None:
        queue = self.selected_queue()
        if queue is not None:
            self.set_items_queue(queue)
        self.action_show_pane("items")

    def action_mark_queue(self) -> None:
        queue = self.selected_queue()
        if queue is None:
            return
        if queue in self.marked_queues:
            self.marked_queues.discard(queue)
        else:
            self.marked_queues.add(queue)
        self.queues.table.row_changed(queue)
        self.update_status()

    def action_start_agent(self) -> None:
        # Marks count only while the cursor is on one of them: a mark left behind must
        # not quietly start an agent somewhere the user is not looking.
        cursor = self.selected_queue()
        if self.marked_queues and (cursor is None or cursor in self.marked_queues):
            queues = sorted(self.marked_queues)
        else:
            queues = [cursor] if cursor else []
        if not queues:
            self.notify("Select a queue first (2 goes to Queues).", severity="warning")
            return
        self.launch_app.start_agent(queues)
        if self.marked_queues:
            self.marked_queues.clear()
            self.queues.table.refresh_rows()
            self.update_status()

    def action_stop_agent(self) -> None:
        host = self.launch_app.agent_host
        names = host.names()
        if not names:
            self.notify("No agent is running in this app.", severity="warning")
            return
        highlighted = self.agents.table.cursor_key
        name = highlighted if highlighted in names else names[-1]
        self.launch_app.stop_agent(name)

    def action_open_run(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.launch_app.open_run(run)

    def action_open_item(self) -> None:
        item_id = self.selected_item()
        model = self.launch_app.model
        if item_id is None or model is None:
            return
        if self.items_history is not None:
            done = self.items_history.item(item_id)
            if done.run_id:
                self.launch_app.open_run(done.run_id)
            else:
                self.notify(f"Item #{item_id} never ran: {done.why or done.state}.", timeout=6)
            return
        run = model.run_for_item(item_id)
        if run is None:
            key, source = self.items.table.cursor_key, self.items.table.source
            why = source.why(key) if isinstance(source, ItemsSource) and key else ""
            self.notify(f"Item #{item_id} has no run yet: {why or 'it is still waiting'}.",
                        timeout=6)
            return
        self.launch_app.open_run(run.id)

    def action_cancel_item(self) -> None:
        item_id = self.selected_item()
        model = self.launch_app.model
        if item_id is None or model is None or self.items_queue is None:
            self.notify("Select a waiting item first (3 goes to Items).", severity="warning")
            return
        item = model.item_list(self.items_queue).by_id.get(item_id)
        what = f"item #{item_id}" + (f" ({item.job_ref}, {item.state})" if item else "")
        self._confirm_cancel(str(item_id), f"Cancel {what}?")

    def action_cancel_run(self) -> None:
        run_id = self.selected_run()
        model = self.launch_app.model
        if run_id is None or model is None:
            self.notify("Select a run first (4 goes to Runs).", severity="warning")
            return
        run = model.runs[run_id]
        if run.state.terminal or run.state == RunState.STOPPING:
            self.notify(f"Run {run_id} is already {run.state}.", severity="warning")
            return
        self._confirm_cancel(run_id, f"Cancel run {run_id} ({run.job_ref}, {run.state})?")

    @work(group="confirm", exit_on_error=False)
    async def _confirm_cancel(self, target: str, question: str) -> None:
        if await self.app.push_screen_wait(ConfirmScreen(question, "Cancel it", "Keep it")):
            await self.launch_app.cancel(target)

    def action_requeue_run(self) -> None:
        run_id = self.selected_run()
        if run_id is None:
            self.notify("Select a run first (4 goes to Runs).", severity="warning")
            return
        self.launch_app.open_requeue(run_id)

    def action_switch_project(self) -> None:
        project = self.projects.table.cursor_key
        if project is not None:
            self.launch_app.switch_project(project)

    def action_back_out(self) -> None:
        """escape, one step at a time: a filter or search on what has focus (or the
        active pane) goes first, then marks, then the logs panel."""
        node: Any = self.focused
        while node is not None and not isinstance(node, (Pane, LogBox)):
            node = node.parent
        if node is None:
            node = self.pane(self.active_pane)
        bar = node.find_bar
        if bar.value or bar.display:
            bar.action_close()
            return
        if self.marked_items or self.marked_queues:
            self.marked_items.clear()
            self.marked_queues.clear()
            self.items.table.refresh_rows()
            self.queues.table.refresh_rows()
            self.update_status()
            return
        if self.side_visible:
            self.action_toggle_side()

    def action_reload(self) -> None:
        self.launch_app.reload()


    # ------------------------------------------------------------------ queue surgery

    def _item_target(self) -> list[int]:
        """The marked items if the cursor is on one of them, else the cursor's item."""
        item_id = self.selected_item()
        if self.marked_items and (item_id is None or item_id in self.marked_items):
            return sorted(self.marked_items)
        return [item_id] if item_id is not None else []

    def _follow_moved_item(self) -> None:
        model = self.launch_app.model
        if self._moved_item is None or model is None:
            return
        item = model.item_list(self.items_queue).by_id.get(self._moved_item)
        if item is not None:
            key = ItemList.sort_key(item)
            if key is not None:
                self.items.table.move_to(key)

    def _clear_item_marks(self) -> None:
        if self.marked_items:
            self.marked_items.clear()
            self.items.table.refresh_rows()
            self.update_status()

    def action_mark_item(self) -> None:
        item_id = self.selected_item()
        if item_id is None:
            return
        if item_id in self.marked_items:
            self.marked_items.discard(item_id)
        else:
            self.marked_items.add(item_id)
        self.items.table.refresh_rows()
        self.items.table.action_cursor_down()
        self.update_status()

    def _waiting_item(self) -> int | None:
        # Only the waiting view reaches here: check_action keeps these keys to it.
        item_id = self.selected_item()
        if item_id is None:
            self.notify("Select a waiting item first (3 goes to Items; H leaves the history).",
                        severity="warning")
            return None
        return item_id

    def action_item_top(self) -> None:
        self._move_item("top")

    def action_item_bottom(self) -> None:
        self._move_item("bottom")

    @work(group="surgery", exit_on_error=False)
    async def _move_item(self, where: str) -> None:
        app = self.launch_app
        item_id = self._waiting_item()
        if item_id is None or app.service is None:
            return
        self._moved_item = item_id
        item = await app.call(app.service.move_item(item_id, where), title="Queue")
        if item is not None:
            self.notify(f"Item #{item.id} moved to the {where}: position "
                        f"{item.position or '-'} on {item.queue}, priority {item.priority}.",
                        timeout=4)

    @work(group="surgery", exit_on_error=False)
    async def action_item_priority(self) -> None:
        item_id = self._waiting_item()
        app = self.launch_app
        if item_id is None or app.service is None or self.items_queue is None:
            return
        item = app.model.item_list(self.items_queue).by_id.get(item_id) if app.model else None
        choices = [(str(p), str(p)) for p in Priority]
        picked = await app.push_screen_wait(PickScreen(
            f"Priority of item #{item_id}", choices, str(item.priority) if item else None))
        if picked is None or (item is not None and picked == str(item.priority)):
            return
        self._moved_item = item_id
        moved = await app.call(app.service.set_item_priority(item_id, picked), title="Queue")
        if moved is not None:
            self.notify(f"Item #{moved.id} now has priority {moved.priority} "
                        f"(position {moved.position or '-'}).", timeout=4)

    @work(group="surgery", exit_on_error=False)
    async def action_item_move_queue(self) -> None:
        item_id = self._waiting_item()
        app = self.launch_app
        if item_id is None or app.service is None or app.model is None:
            return
        others = [q for q in app.model.queue_names if q != self.items_queue]
        if not others:
            self.notify("There is no other queue to move it to (n creates one).",
                        severity="warning")
            return
        choices = [(q, f"{q} ({app.model.queues[q].resource})") for q in others]
        picked = await app.push_screen_wait(PickScreen(f"Move item #{item_id} to", choices))
        if picked is None:
            return
        moved = await app.call(app.service.move_item_to_queue(item_id, picked), title="Queue")
        if moved is not None:
            self.notify(f"Item #{moved.id} moved to {moved.queue} "
                        f"(position {moved.position or '-'}).", timeout=4)

    def action_cancel_items(self) -> None:
        targets = self._item_target()
        if not targets:
            self.notify("Select a waiting item first (3 goes to Items).", severity="warning")
            return
        if len(targets) == 1:
            self.action_cancel_item()
            return
        shown = ", ".join(f"#{i}" for i in targets[:8]) + (" …" if len(targets) > 8 else "")
        self._confirm_cancel_many(targets, f"Cancel {len(targets)} items ({shown})?")

    @work(group="confirm", exit_on_error=False)
    async def _confirm_cancel_many(self, targets: list[int], question: str) -> None:
        app = self.launch_app
        if app.service is None:
            return
        if not await app.push_screen_wait(ConfirmScreen(question, "Cancel them", "Keep them")):
            return
        results = await app.call(app.service.cancel_many([str(t) for t in targets]),
                                 title="Cancel")
        self._clear_item_marks()
        if results is None:
            return
        failed = [what for _t, done, what in results if not done]
        ok = len(results) - len(failed)
        if failed:
            self.notify(f"{ok} cancelled; {len(failed)} not: " + "; ".join(failed[:3]),
                        title="Cancel", severity="warning", timeout=10)
        else:
            self.notify(f"{ok} items cancelled.", title="Cancel")

    @work(group="surgery", exit_on_error=False)
    async def action_hold_queue(self) -> None:
        app = self.launch_app
        queue = self.selected_queue()
        if queue is None or app.service is None or app.model is None:
            self.notify("Select a queue first (2 goes to Queues).", severity="warning")
            return
        if app.model.queues[queue].held:
            done = await app.call(app.service.resume_queue(queue), title="Queue")
            if done is not None:
                self.notify(f"Queue {queue} resumed: agents take from it again.", timeout=4)
            return
        done = await app.call(app.service.hold_queue(queue, reason="held from launch-tui"),
                              title="Queue")
        if done is not None:
            self.notify(f"Queue {queue} held: agents take nothing from it (h resumes).",
                        timeout=6)

    # ------------------------------------------------------------------ history

    def action_toggle_item_history(self) -> None:
        model = self.launch_app.model
        if model is None:
            return
        self._clear_item_marks()
        if self.items_history is None:
            self.items_history = ItemHistorySource(self.items_queue, self.launch_app.now)
            self.items.table.set_source(self.items_history)
            self._load_item_history()
        else:
            self.items_history = None
            self.items.table.set_source(ItemsSource(model, self.items_queue,
                                                    self.launch_app.now, self.marked_items))
        self._items_caption()
        self.refresh_bindings()  # the footer shows the keys of the view now shown

    def _items_caption(self) -> None:
        queue = self.items_queue or ""
        history = self.items_history is not None
        self.items.caption = f"{queue} · history" if history else queue
        self.items.table.empty_text = (
            "nothing done with on this queue yet (H shows the waiting items)" if history
            else ItemsPane.EMPTY)
        self.items.table.refresh()
        self.items.update_title()

    @work(group="item-history", exclusive=True, exit_on_error=False)
    async def _load_item_history(self) -> None:
        source, app = self.items_history, self.launch_app
        if source is None or app.service is None or app.model is None:
            return
        await app.call(source.load(app.service, app.model.project), title="History")
        if source is self.items_history:
            self.items.table.rows_changed()
            self.items.update_title()

    def action_toggle_run_history(self) -> None:
        model = self.launch_app.model
        if model is None:
            return
        self.runs_history = not self.runs_history
        self.runs.table.set_source(RunsSource(model, self.launch_app.now,
                                              history=self.runs_history))
        self.runs.caption = "history" if self.runs_history else ""
        self.runs.table.empty_text = (
            "no run has ended yet (H shows every run)" if self.runs_history else RunsPane.EMPTY)
        self.runs.table.refresh()
        self.runs.update_title()

    @work(group="requeue", exit_on_error=False)
    async def action_requeue_item(self) -> None:
        from launch_tui.tui.screens.enqueue import Prefill

        app = self.launch_app
        item_id = self.selected_item()
        if item_id is None or app.service is None:
            self.notify("Select an item first (3 goes to Items).", severity="warning")
            return
        item = await app.call(app.service.get_item(item_id))
        if item is None:
            return
        run = await app.call(app.service.get_run(item.run_id)) if item.run_id else None
        app.open_enqueue(item.job, Prefill.from_item(item, run))
