"""The footer of every screen: the focused pane's keys, and `?` always in view.

Textual's footer lists keys left to right and cuts what does not fit; at 80
columns that cut `?`, the one key that lists the others. Here `?` is docked at
the right edge, where the command palette's key was (ctrl+p still opens it and
`?` names it), and is left out of the left-hand list. Keys that do not fit
before it are left out whole (`?` lists them), never cut mid-word.
"""

from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

HELP_KEY = "question_mark"


class KeysFooter(Footer):
    DEFAULT_CSS = """
    KeysFooter FooterKey.-keys-help {
        dock: right;
        text-style: bold;
    }
    """

    def __init__(self) -> None:
        super().__init__(show_command_palette=False)
        self._laid_out_for = 0

    def compose(self) -> ComposeResult:
        keys = list(super().compose())
        # The key help is bound to here (`?`, or what settings' [keys] made it).
        bound = next((w for w in keys if isinstance(w, FooterKey) and w.action == "help"),
                     None)
        key, shown = (bound.key, bound.key_display) if bound is not None else (HELP_KEY, "?")
        help_key = FooterKey(key, shown, "All keys", "app.help", classes="-keys-help",
                             tooltip="Every key of this screen, and what it does")
        # Before the first layout the width is unknown (0): show everything then.
        room = self.size.width - _width(help_key) if self.size.width else None
        for widget in keys:
            if isinstance(widget, FooterKey):
                if widget is bound:
                    continue
                if room is not None:
                    room -= _width(widget)
                    if room < 0:
                        break
            yield widget
        yield help_key

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._laid_out_for:
            self._laid_out_for = event.size.width
            self.refresh(recompose=True)  # which keys fit depends on the width


def _width(key: FooterKey) -> int:
    """Cells a key takes in the footer: ` key ` then `description `."""
    return cell_len(key.key_display) + cell_len(key.description) + 3
