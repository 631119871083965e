"""The footer of every screen: the focused pane's keys, and `?` always in view.

Textual's footer lists keys left to right and cuts what does not fit; at 80
columns that cut `?`, the one key that lists the others. Here `?` is docked at
the right edge, where the command palette's key was (ctrl+p still opens it and
`?` names it), and is left out of the left-hand list.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

HELP_KEY = "question_mark"


class KeysFooter(Footer):
    DEFAULT_CSS = """
    KeysFooter FooterKey.-keys-help {
        dock: right;
        padding-left: 1;
        text-style: bold;
    }
    """

    def __init__(self) -> None:
        super().__init__(show_command_palette=False)

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, FooterKey) and widget.key == HELP_KEY:
                continue
            yield widget
        yield FooterKey(HELP_KEY, "?", "All keys", "app.help", classes="-keys-help",
                        tooltip="Every key of this screen, and what it does")
