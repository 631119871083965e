"""LiveTable: a windowed table over an ordered in-memory row source.

A plain DataTable re-measures all rows on a change, which costs ~120 ms per
cell update at 10,000 rows. This widget holds no rows of its own: it asks its
source for the keys in display order and renders only the lines on screen
(the Line API), so updating or inserting a row costs the same at 100 or 10,000
rows. The cursor follows a row's key, so rows arriving above it do not move
the user's selection.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Key = Hashable
_BREAKS = re.compile(r"[\r\n\t]")  # characters that move a terminal's cursor


@dataclass(frozen=True)
class Column:
    label: str
    width: int
    flex: int = 0  # share of the spare width
    justify: Literal["left", "right"] = "left"
    drop: int = 0  # when too narrow, the highest `drop` goes first; 0 never goes


class RowSource(Protocol):
    columns: Sequence[Column]

    def keys(self) -> Sequence[Any]:
        """Row keys in display order (the source's own list; not copied)."""
        ...

    def cells(self, key: Any) -> Sequence[str | Text]:
        """One cell per column."""
        ...

    def text(self, key: Any) -> str:
        """Plain text the filter matches against."""
        ...


class EmptySource:
    columns: Sequence[Column] = (Column("", 1, flex=1),)

    def keys(self) -> Sequence[Any]:
        return ()

    def cells(self, key: Any) -> Sequence[str | Text]:
        return ("",)

    def text(self, key: Any) -> str:
        return ""


class LiveTable(ScrollView, can_focus=True):
    """Keyboard-driven table.

    Posts Highlighted when the cursor row moves and Selected on a double click.
    """

    COMPONENT_CLASSES = {
        "live-table--header",
        "live-table--cursor",
        "live-table--empty",
    }

    BINDINGS = [
        Binding("up,k", "cursor_up", "Move up", show=False, id="cursor_up"),
        Binding("down,j", "cursor_down", "Move down", show=False, id="cursor_down"),
        Binding("pageup", "page_up", "Page up", show=False, id="page_up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="page_down"),
        Binding("home,g", "first", "First row", show=False, id="first"),
        Binding("end,G", "last", "Last row", show=False, id="last"),
        # enter is bound by each pane, which knows what opening its row means.
    ]

    class Highlighted(Message):
        def __init__(self, table: LiveTable, key: Any) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> LiveTable:
            return self.table

    class Selected(Message):
        def __init__(self, table: LiveTable, key: Any) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> LiveTable:
            return self.table

    def __init__(
        self,
        source: RowSource | None = None,
        *,
        empty_text: str = "nothing here yet",
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes)
        self.source: RowSource = source or EmptySource()
        self.empty_text = empty_text
        self.cursor = 0
        self._cursor_key: Any = None
        self._posted_key: Any = object()
        self._filter = ""
        self._filtered: list[Any] | None = None
        self._columns_cache: tuple[int, int, list[tuple[int, int, Column]]] | None = None

    # ------------------------------------------------------------------ data

    @property
    def view(self) -> Sequence[Any]:
        """Keys as displayed (filtered when a filter is set)."""
        return self._filtered if self._filtered is not None else self.source.keys()

    @property
    def row_count(self) -> int:
        return len(self.view)

    @property
    def cursor_key(self) -> Any:
        view = self.view
        return view[self.cursor] if 0 <= self.cursor < len(view) else None

    @property
    def filter_text(self) -> str:
        return self._filter

    def set_source(self, source: RowSource) -> None:
        self.source = source
        self._columns_cache = None
        self.cursor = 0
        self._cursor_key = None
        self.rows_changed()

    def set_filter(self, text: str) -> None:
        self._filter = text.strip().lower()
        self.rows_changed()

    def rows_changed(self) -> None:
        """Rows were added, removed or reordered: keep the cursor on its row."""
        if self._filter:
            needle = self._filter
            text = self.source.text
            self._filtered = [k for k in self.source.keys() if needle in text(k).lower()]
        else:
            self._filtered = None
        view = self.view
        if self._cursor_key is not None:
            index = self._index_near(view, self._cursor_key)
            if index is not None:
                self.cursor = index
        self.cursor = max(0, min(self.cursor, len(view) - 1))
        self._cursor_key = self.cursor_key
        self._sync_size()
        self._scroll_to_cursor()
        self.refresh()
        self._post_highlight()

    def row_changed(self, key: Any) -> None:
        """One row's cells changed: repaint that line if it is on screen."""
        view = self.view
        top = int(self.scroll_y)
        for offset, k in enumerate(view[top: top + self.size.height]):
            if k == key:
                self.refresh_line(top + offset + 1)
                return

    def refresh_rows(self) -> None:
        """Repaint the visible rows (e.g. ages ticking), without touching the order."""
        self.refresh()

    def move_to(self, key: Any) -> bool:
        index = self._index_near(self.view, key)
        if index is None:
            return False
        self._set_cursor(index)
        return True

    def _index_near(self, view: Sequence[Any], key: Any) -> int | None:
        # The cursor row usually stays near where it was; look there first.
        lo = max(0, self.cursor - 2)
        for i in range(lo, min(len(view), self.cursor + 3)):
            if view[i] == key:
                return i
        try:
            return view.index(key)  # type: ignore[attr-defined]
        except ValueError:
            return None

    # ------------------------------------------------------------------ cursor

    def _set_cursor(self, index: int) -> None:
        count = self.row_count
        index = max(0, min(index, count - 1)) if count else 0
        old = self.cursor
        self.cursor = index
        self._cursor_key = self.cursor_key
        self._scroll_to_cursor()
        self.refresh_line(old + 1)
        self.refresh_line(index + 1)
        self._post_highlight()

    def _post_highlight(self) -> None:
        key = self.cursor_key
        if key != self._posted_key:
            self._posted_key = key
            self.post_message(self.Highlighted(self, key))

    @property
    def _page(self) -> int:
        return max(1, self.size.height - 2)

    def _scroll_to_cursor(self) -> None:
        rows_visible = max(1, self.size.height - 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, force=True)
        elif self.cursor >= top + rows_visible:
            self.scroll_to(y=self.cursor - rows_visible + 1, animate=False, force=True)

    def action_cursor_up(self) -> None:
        self._set_cursor(self.cursor - 1)

    def action_cursor_down(self) -> None:
        self._set_cursor(self.cursor + 1)

    def action_page_up(self) -> None:
        self._set_cursor(self.cursor - self._page)

    def action_page_down(self) -> None:
        self._set_cursor(self.cursor + self._page)

    def action_first(self) -> None:
        self._set_cursor(0)

    def action_last(self) -> None:
        self._set_cursor(self.row_count - 1)

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.Selected(self, key))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        self._set_cursor(int(self.scroll_y) + offset.y - 1)
        if event.chain >= 2:
            self.action_select()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # ------------------------------------------------------------------ layout

    def _sync_size(self) -> None:
        # Never wider than the widget: columns are fitted, not scrolled sideways.
        self.virtual_size = Size(0, self.row_count + 1)

    def on_resize(self) -> None:
        self._columns_cache = None
        self._sync_size()
        self._scroll_to_cursor()

    def _layout(self, width: int) -> list[tuple[int, int, Column]]:
        """(column index, width, column) of the columns that fit, spare width shared out."""
        columns = self.source.columns
        if self._columns_cache and self._columns_cache[:2] == (width, id(columns)):
            return self._columns_cache[2]
        shown = list(enumerate(columns))

        def needed(cols: list[tuple[int, Column]]) -> int:
            return sum(c.width for _, c in cols) + len(cols) + 1

        while needed(shown) > width and any(c.drop for _, c in shown):
            worst = max(shown, key=lambda p: (p[1].drop, p[0]))
            shown.remove(worst)
        spare = max(0, width - needed(shown))
        weights = sum(c.flex for _, c in shown)
        out: list[tuple[int, int, Column]] = []
        given = 0
        flex_seen = 0
        for i, c in shown:
            extra = 0
            if weights and c.flex:
                flex_seen += c.flex
                extra = spare * flex_seen // weights - given
                given += extra
            out.append((i, c.width + extra, c))
        self._columns_cache = (width, id(columns), out)
        return out

    # ------------------------------------------------------------------ rendering

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            return self._render_header(width, base)
        view = self.view
        index = int(self.scroll_y) + y - 1
        if not view:
            if y == 1:
                style = base + self.get_component_rich_style("live-table--empty")
                return self._strip(Text(" " + self.empty_text, style=style), width, base)
            return Strip.blank(width, base)
        if index >= len(view):
            return Strip.blank(width, base)
        key = view[index]
        cells = self.source.cells(key)
        if index == self.cursor:
            # The CSS tells focused from unfocused (LiveTable:focus), so a focus change
            # restyles the bar without this code deciding anything.
            row_style = base + self.get_component_rich_style("live-table--cursor")
            # One colour on the cursor bar: state colours on it would be unreadable.
            plain = [c.plain if isinstance(c, Text) else c for c in cells]
            return self._render_cells(plain, width, row_style)
        return self._render_cells(cells, width, base)

    def _render_header(self, width: int, base: Style) -> Strip:
        style = base + self.get_component_rich_style("live-table--header")
        labels = [Text(c.label) for c in self.source.columns]
        return self._render_cells(labels, width, style)

    def _render_cells(self, cells: Sequence[str | Text], width: int, style: Style) -> Strip:
        line = Text(" ", style=style, no_wrap=True, end="")
        for i, cell_width, column in self._layout(width):
            cell = cells[i] if i < len(cells) else ""
            text = cell.copy() if isinstance(cell, Text) else Text(str(cell))
            if _BREAKS.search(text.plain):
                # A row is one line of the terminal: a newline in a cell (a failure
                # quoting the run's output) would move the cursor and draw its rest
                # over the row below. Same length, so styled spans keep their places.
                text.plain = _BREAKS.sub(" ", text.plain)
            text.no_wrap = True
            if text.cell_len > cell_width:
                text.truncate(cell_width, overflow="ellipsis")
            pad = cell_width - text.cell_len
            if column.justify == "right":
                line.append(" " * pad)
                line.append_text(text)
            else:
                line.append_text(text)
                line.append(" " * pad)
            line.append(" ")
        return self._strip(line, width, style)

    def _strip(self, line: Text, width: int, style: Style) -> Strip:
        line.truncate(width, overflow="crop", pad=True)
        # Text.render ignores the base style of a Text without spans; make it a span
        # (beneath the cells' own) so plain rows keep the row style too.
        line.stylize_before(style, 0, len(line))
        strip = Strip(line.render(self.app.console), width)
        return strip.crop_extend(0, width, style)
