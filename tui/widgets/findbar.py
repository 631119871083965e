"""FindBar: the one-line input `/` opens under a table (filter) or a log (search)."""

from __future__ import annotations

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Input

from launch_tui.tui.widgets.logview import LogView
from launch_tui.tui.widgets.table import LiveTable


class FindBar(Input):
    """Filters its target table or searches its target log as the user types."""

    BINDINGS = [
        Binding("escape", "close", "Clear and close", show=False, id="close"),
        Binding("down", "back", "Back to the list", show=False, id="back"),
    ]

    def __init__(self, target: Widget, *, id: str | None = None) -> None:
        placeholder = "search the log…" if isinstance(target, LogView) else "filter rows…"
        super().__init__(placeholder=placeholder, id=id, classes="find-bar")
        self.target = target
        self.display = False

    def open(self) -> None:
        self.display = True
        self.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        # Not stopped: the pane above retitles itself with the new row count.
        self._apply(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if isinstance(self.target, LogView) and self.target.match_count:
            self.target.action_next_match()
        if not self.value:
            self.display = False
        self.target.focus()

    def _apply(self, value: str) -> None:
        if isinstance(self.target, LiveTable):
            self.target.set_filter(value)
        elif isinstance(self.target, LogView):
            self.target.search(value)

    def action_close(self) -> None:
        self.value = ""
        self._apply("")
        self.display = False
        self.target.focus()

    def action_back(self) -> None:
        self.target.focus()
