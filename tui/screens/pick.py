"""Pick one of a few choices from the keyboard: a queue to move an item to, a priority.

Enter takes the highlighted choice, escape takes none; the first letter or the
number of a choice jumps to it (OptionList's own keys move the highlight).
"""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class PickScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape", "dismiss_none", "Cancel", id="dismiss_none")]

    def __init__(self, title: str, choices: Sequence[tuple[str, str]],
                 current: str | None = None) -> None:
        """`choices`: (value, label) pairs; `current` is highlighted first."""
        super().__init__(classes="pick")
        self.title_text = title
        self.choices = list(choices)
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="pick-box"):
            yield Static(self.title_text, id="pick-title")
            yield OptionList(*(Option(label, id=value) for value, label in self.choices),
                             id="pick-options")
            yield Static("enter picks · esc cancels", id="pick-help")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        values = [v for v, _ in self.choices]
        if self.current in values:
            options.highlighted = values.index(str(self.current))
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
