"""LogView: a following log with pause/resume and search, rendered line by line.

Following means new lines scroll into view; moving up pauses it (so a line a
user is reading does not run away) and `end` or `f` resumes. Searching jumps
between matches and highlights them; it pauses following for the same reason.
`w` wraps long lines at the view's width (and back): wrapped, each line is one
or more display rows, kept in step with the lines as they arrive.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip


class LogView(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {"log-view--match", "log-view--current", "log-view--empty"}

    BINDINGS = [
        Binding("up,k", "line_up", "Scroll up", show=False, id="line_up"),
        Binding("down,j", "line_down", "Scroll down", show=False, id="line_down"),
        Binding("pageup", "page_up_lines", "Page up", show=False, id="page_up_lines"),
        Binding("pagedown", "page_down_lines", "Page down", show=False, id="page_down_lines"),
        Binding("home,g", "top", "First line", show=False, id="top"),
        Binding("end,G", "bottom", "Last line, follow", show=False, id="bottom"),
        Binding("n", "next_match", "Next match", show=False, id="next_match"),
        Binding("N", "previous_match", "Previous match", show=False, id="previous_match"),
        Binding("w", "toggle_wrap", "Wrap", tooltip="Wrap long lines, or cut them (and scroll "
                "sideways)", id="toggle_wrap"),
    ]

    follow: reactive[bool] = reactive(True)
    wrap: reactive[bool] = reactive(False)

    class StateChanged(Message):
        """Following, unseen-line count or search results changed (for titles)."""

        def __init__(self, log: LogView) -> None:
            super().__init__()
            self.log = log

        @property
        def control(self) -> LogView:
            return self.log

    def __init__(
        self,
        *,
        max_lines: int = 10_000,
        empty_text: str = "no lines yet",
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.max_lines = max_lines
        self.empty_text = empty_text
        self.lines: list[Text] = []
        self.unseen = 0
        self._width = 0
        self._term = ""
        self._matches: list[int] = []
        self._match = -1
        # Wrapped: the display rows (line index, piece of it) and each line's first row.
        self._rows: list[tuple[int, Text]] = []
        self._first_row: list[int] = []
        self._wrap_width = 0

    # ------------------------------------------------------------------ content

    def clear(self, empty_text: str | None = None) -> None:
        self.lines.clear()
        self._width = 0
        self.unseen = 0
        self._matches = []
        self._match = -1
        self._rows.clear()
        self._first_row.clear()
        if empty_text is not None:
            self.empty_text = empty_text
        self.virtual_size = Size(0, 0)
        self.scroll_to(0, 0, animate=False, force=True)
        self.refresh()
        self.post_message(self.StateChanged(self))

    def write_lines(self, lines: Iterable[Text]) -> None:
        new = list(lines)
        if not new:
            return
        start = len(self.lines)
        self.lines.extend(new)
        self._width = max(self._width, *(cell_len(t.plain) for t in new))
        dropped = len(self.lines) - self.max_lines
        if dropped > 0:
            del self.lines[:dropped]
            start -= dropped
            self._matches = [m - dropped for m in self._matches if m >= dropped]
            self._match = min(self._match, len(self._matches) - 1)
        if self.wrap:
            if dropped > 0:
                self._rewrap()
            else:
                self._wrap_from(start)
        if self._term:
            needle = self._term
            self._matches.extend(
                i for i, t in enumerate(self.lines[start:], start) if needle in t.plain.lower()
            )
        self._resize_virtual()
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        else:
            self.unseen += len(new)
        self.refresh()
        self.post_message(self.StateChanged(self))

    # ------------------------------------------------------------------ follow

    def on_resize(self) -> None:
        if self.wrap and self._view_width() != self._wrap_width:
            self._rewrap()
            self._resize_virtual()
        # Lines written while hidden (size 0) must still end up showing the newest.
        if self.follow:
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self.unseen = 0
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        if self.is_mounted:
            self.post_message(self.StateChanged(self))

    def toggle_follow(self) -> None:
        self.follow = not self.follow

    # ------------------------------------------------------------------ wrap

    def action_toggle_wrap(self) -> None:
        self.wrap = not self.wrap

    def watch_wrap(self, wrap: bool) -> None:
        if wrap:
            self._rewrap()
        else:
            self._rows.clear()
            self._first_row.clear()
        self._resize_virtual()
        self.scroll_to(x=0, animate=False, force=True)
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()
        if self.is_mounted:
            self.post_message(self.StateChanged(self))

    def _view_width(self) -> int:
        return max(10, self.scrollable_content_region.width or self.size.width or 80)

    def _rewrap(self) -> None:
        self._rows.clear()
        self._first_row.clear()
        self._wrap_width = self._view_width()
        self._wrap_from(0)

    def _wrap_from(self, start: int) -> None:
        width = self._wrap_width or self._view_width()
        for index in range(start, len(self.lines)):
            line = self.lines[index]
            self._first_row.append(len(self._rows))
            length = len(line)
            if line.cell_len <= width or length == 0:
                self._rows.append((index, line))
                continue
            # Cut every `width` characters (log lines are mostly single-width text; a
            # wide character may make a piece a cell longer, which the crop hides).
            for piece in line.divide(range(width, length, width)):
                self._rows.append((index, piece))

    def _resize_virtual(self) -> None:
        if self.wrap:
            self.virtual_size = Size(self._wrap_width, len(self._rows))
        else:
            self.virtual_size = Size(self._width, len(self.lines))

    def _row_of(self, line: int) -> int:
        """The display row a line starts on."""
        if self.wrap and 0 <= line < len(self._first_row):
            return self._first_row[line]
        return line

    def action_line_up(self) -> None:
        self.follow = False
        self.scroll_relative(y=-1, animate=False)

    def action_line_down(self) -> None:
        self.scroll_relative(y=1, animate=False)

    def action_page_up_lines(self) -> None:
        self.follow = False
        self.scroll_relative(y=-max(1, self.size.height - 1), animate=False)

    def action_page_down_lines(self) -> None:
        self.scroll_relative(y=max(1, self.size.height - 1), animate=False)

    def action_top(self) -> None:
        self.follow = False
        self.scroll_to(y=0, animate=False)

    def action_bottom(self) -> None:
        self.follow = True

    # ------------------------------------------------------------------ search

    @property
    def search_term(self) -> str:
        return self._term

    @property
    def match_count(self) -> int:
        return len(self._matches)

    @property
    def match_index(self) -> int:
        return self._match

    def search(self, term: str) -> None:
        """Highlight `term` (case-insensitive) and jump to the last match on or above view."""
        self._term = term.strip().lower()
        if not self._term:
            self._matches = []
            self._match = -1
        else:
            self.follow = False
            needle = self._term
            self._matches = [i for i, t in enumerate(self.lines) if needle in t.plain.lower()]
            bottom = int(self.scroll_y) + self.size.height - 1
            above = [n for n, i in enumerate(self._matches) if i <= bottom]
            self._match = above[-1] if above else (0 if self._matches else -1)
            self._show_match()
        self.refresh()
        self.post_message(self.StateChanged(self))

    def action_next_match(self) -> None:
        if self._matches:
            self.follow = False
            self._match = (self._match + 1) % len(self._matches)
            self._show_match()

    def action_previous_match(self) -> None:
        if self._matches:
            self.follow = False
            self._match = (self._match - 1) % len(self._matches)
            self._show_match()

    def _show_match(self) -> None:
        if 0 <= self._match < len(self._matches):
            line = self._row_of(self._matches[self._match])
            top = int(self.scroll_y)
            if not top <= line < top + self.size.height:
                self.scroll_to(y=max(0, line - self.size.height // 2), animate=False, force=True)
        self.refresh()
        self.post_message(self.StateChanged(self))

    # ------------------------------------------------------------------ rendering

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        index = scroll_y + y
        if not self.lines:
            # The empty text can be a sentence (how a run ended): wrapped, never cut.
            style = base + self.get_component_rich_style("log-view--empty")
            pieces = Text(self.empty_text, style=style, end="").wrap(
                self.app.console, max(width, 1))
            if y < len(pieces):
                text = pieces[y]
                text.end = ""
                text.stylize_before(style, 0, len(text))
                return Strip(text.render(self.app.console)).crop_extend(0, width, base)
            return Strip.blank(width, base)
        if self.wrap:
            if index >= len(self._rows):
                return Strip.blank(width, base)
            line, piece = self._rows[index]
            text = Text(style=base, no_wrap=True, end="")
            text.append_text(piece)
            if self._term:
                self._highlight(text, line)
            text.stylize_before(base, 0, len(text))
            return Strip(text.render(self.app.console), text.cell_len).crop_extend(0, width, base)
        if index >= len(self.lines):
            return Strip.blank(width, base)
        text = Text(style=base, no_wrap=True, end="")
        text.append_text(self.lines[index])
        if self._term:
            self._highlight(text, index)
        text.stylize_before(base, 0, len(text))  # see LiveTable._strip
        strip = Strip(text.render(self.app.console), text.cell_len)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _highlight(self, text: Text, index: int) -> None:
        current = (
            0 <= self._match < len(self._matches) and self._matches[self._match] == index
        )
        name = "log-view--current" if current else "log-view--match"
        style: Style = self.get_component_rich_style(name)
        plain = text.plain.lower()
        start = plain.find(self._term)
        while start >= 0:
            text.stylize(style, start, start + len(self._term))
            start = plain.find(self._term, start + len(self._term))
