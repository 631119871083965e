"""The main screen's panes: a titled box holding a LiveTable and its filter bar.

Each pane declares the keys that act on its selected row; the actions live on
the main screen (`screen.…`), which owns the service calls.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Input

from launch_tui.tui.widgets.findbar import FindBar
from launch_tui.tui.widgets.table import LiveTable, RowSource


class Pane(Vertical):
    """A bordered, numbered pane; its title shows the row count and any filter."""

    TITLE = ""
    NUMBER = 0
    EMPTY = "nothing here yet"

    def __init__(self, source: RowSource | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="pane")
        self.table = LiveTable(source, empty_text=self.EMPTY, id=f"{id}-table" if id else None)
        self.find_bar = FindBar(self.table)
        self.caption = ""

    def compose(self) -> ComposeResult:
        yield self.table
        yield self.find_bar

    def on_mount(self) -> None:
        self.update_title()

    def update_title(self) -> None:
        count = self.table.row_count
        title = f"{self.NUMBER} {self.TITLE}"
        if self.caption:
            title += f" · {self.caption}"
        total = len(self.table.source.keys())
        title += f" ({count:,})" if count == total else f" ({count:,} of {total:,})"
        self.border_title = title
        self.border_subtitle = f"/ {self.table.filter_text}" if self.table.filter_text else ""

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.update_title()

    async def on_live_table_selected(self, event: LiveTable.Selected) -> None:
        # A double click means the same as enter on the row.
        event.stop()
        for binding in self.BINDINGS:
            if isinstance(binding, Binding) and "enter" in binding.key.split(","):
                await self.run_action(binding.action)


class JobsPane(Pane):
    TITLE = "Jobs"
    NUMBER = 1
    EMPTY = "no jobs yet (launch-tui job create code PATH --entrypoint …)"
    BINDINGS = [
        Binding("enter", "screen.enqueue", "Enqueue", show=False,
                tooltip="Enqueue the selected job", id="select"),
        Binding("c", "screen.edit_config", "Edit config",
                tooltip="Edit the job's config defaults in a form; saving makes a new version",
                id="edit_config"),
        Binding("C", "screen.edit_config_toml", "Edit TOML",
                tooltip="Edit the job's config defaults as TOML in $EDITOR (new version)",
                id="edit_config_toml"),
    ]


class QueuesPane(Pane):
    TITLE = "Queues"
    NUMBER = 2
    EMPTY = "no queues yet (n creates one)"
    BINDINGS = [
        Binding("enter", "screen.show_items", "Items", show=False,
                tooltip="Show the selected queue's items", id="select"),
        Binding("space", "screen.mark_queue", "Mark",
                tooltip="Mark or unmark the queue for an agent (a starts it)", id="mark_queue"),
        Binding("a", "screen.start_agent", "Start agent",
                tooltip="Start an agent in this app on the marked queues (when the cursor is "
                        "on one of them), else on the selected queue", id="start_agent"),
        Binding("n", "screen.new_queue", "New", tooltip="Create a queue in a form",
                id="new_queue"),
        Binding("m", "screen.edit_queue", "Modify",
                tooltip="Modify the selected queue in a form", id="edit_queue"),
        Binding("M", "screen.edit_queue_toml", "TOML",
                tooltip="Modify the selected queue's config as TOML in $EDITOR",
                id="edit_queue_toml"),
        Binding("h", "screen.hold_queue", "Hold",
                tooltip="Hold the queue (agents take nothing from it) or resume it",
                id="hold_queue"),
    ]


class ItemsPane(Pane):
    TITLE = "Items"
    NUMBER = 3
    EMPTY = "no waiting items (H shows the history)"
    BINDINGS = [
        Binding("enter", "screen.open_item", "Open run", show=False,
                tooltip="Open the run of the selected item (or say why it has none)", id="select"),
        Binding("x,delete", "screen.cancel_items", "Cancel",
                tooltip="Cancel the marked items, or the selected one (asks first)",
                id="cancel_items"),
        Binding("space", "screen.mark_item", "Mark",
                tooltip="Mark or unmark the item (x then cancels every marked one)",
                id="mark_item"),
        Binding("H", "screen.toggle_item_history", "History",
                tooltip="Show the items done with (outcome, duration, why), or the waiting",
                id="toggle_item_history"),
        Binding("t", "screen.item_top", "Top", tooltip="Move the item to the top: taken next",
                id="item_top"),
        Binding("b", "screen.item_bottom", "Bottom",
                tooltip="Move the item to the bottom, as if enqueued now", id="item_bottom"),
        Binding("p", "screen.item_priority", "Priority",
                tooltip="Change the item's priority", id="item_priority"),
        Binding("v", "screen.item_move_queue", "Move queue",
                tooltip="Move the item to another queue (checked against its config)",
                id="item_move_queue"),
        Binding("r", "screen.requeue_item", "Re-enqueue",
                tooltip="Open the enqueue form prefilled from the selected item",
                id="requeue_item"),
    ]


class RunsPane(Pane):
    TITLE = "Runs"
    NUMBER = 4
    EMPTY = "no runs yet"
    BINDINGS = [
        Binding("enter", "screen.open_run", "Open run", show=False,
                tooltip="Open the run: timeline, logs, metrics, actions", id="select"),
        Binding("x,delete", "screen.cancel_run", "Cancel run",
                tooltip="Cancel the selected run (asks first)", id="cancel_run"),
        Binding("r", "screen.requeue_run", "Re-enqueue",
                tooltip="Open the enqueue form prefilled from the selected run", id="requeue_run"),
        Binding("H", "screen.toggle_run_history", "History",
                tooltip="Show only the runs that ended, or every run", id="toggle_run_history"),
    ]


class AgentsPane(Pane):
    TITLE = "Agents"
    NUMBER = 5
    EMPTY = "no agents (a starts one here on the selected queue)"
    BINDINGS = [
        Binding("enter", "screen.focus_agent_log", "Agent log",
                tooltip="Show the agents' log lines", id="focus_agent_log"),
        Binding("A", "screen.stop_agent", "Stop agent",
                tooltip="Stop the selected agent if it runs in this app (asks first)",
                id="stop_agent"),
    ]


class ProjectsPane(Pane):
    TITLE = "Projects"
    NUMBER = 6
    EMPTY = "no projects"
    BINDINGS = [
        Binding("enter", "screen.switch_project", "Switch", show=False,
                tooltip="Switch to the selected project", id="select"),
    ]


PANES: tuple[type[Pane], ...] = (
    JobsPane, QueuesPane, ItemsPane, RunsPane, AgentsPane, ProjectsPane,
)
