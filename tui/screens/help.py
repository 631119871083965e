"""`?`: every key the app knows, grouped by where it works, with what it does."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from launch_tui.tui.commands import key_display, key_rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close help", id="close"),
        Binding("up,k", "scroll_up", "Scroll up", show=False, id="scroll_up"),
        Binding("down,j", "scroll_down", "Scroll down", show=False, id="scroll_down"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "Keys (escape closes · ctrl+p finds any action by name)"
            yield Static(self._table(), id="help-table")
            yield Static(
                "To change a key, name it in settings.toml, e.g.\n"
                "  [keys]\n  enqueue = \"E\"\n  cancel_items = \"x,delete\"\n"
                "The name of each key is the last column.", id="help-settings")

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 2), expand=True)
        table.add_column(justify="right", style="bold", no_wrap=True)
        table.add_column(ratio=1)
        table.add_column(style="dim", no_wrap=True)  # the [keys] name in settings.toml
        section = None
        for row in key_rows(getattr(self.app, "keymap", None)):
            if row.section != section:
                if section is not None:
                    table.add_row("", "", "")
                section = row.section
                table.add_row("", Text(section, style="bold underline"), "")
            keys = " ".join(key_display(self.app, k) for k in row.keys)
            table.add_row(keys, row.description, row.id)
        return table

    def action_close(self) -> None:
        self.dismiss(None)

    def action_scroll_up(self) -> None:
        self.query_one(VerticalScroll).scroll_up(animate=False)

    def action_scroll_down(self) -> None:
        self.query_one(VerticalScroll).scroll_down(animate=False)
