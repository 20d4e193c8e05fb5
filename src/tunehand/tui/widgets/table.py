"""`Table`: a virtual list with columns and a cursor, for lists of any length.

Rows are any `Sequence` (a list of 50,000 tracks, the session's queue tuple) and are
formatted only when drawn: one `render_line` per visible line, so setting or drawing
a huge list costs the same as a short one. A header line stays on top. The table owns
only its cursor; what Enter means is up to the pane around it (bindings there), which
reads `cursor_row`. A double click posts `Table.Activated`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tunehand.core import names

RowT = TypeVar("RowT")


@dataclass(frozen=True, slots=True)
class Column:
    label: str
    width: int = 0
    """Cells wide; 0 shares the room left over with the other 0-width columns (by `flex`)."""
    flex: int = 1
    right: bool = False


class Table(ScrollView, Generic[RowT], can_focus=True):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "table--header",
        "table--cursor",
        "table--marked",
        "table--empty",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home,g", "jump(0)", "First", show=False),
        Binding("end,G", "jump(-1)", "Last", show=False),
    ]

    cursor_row: reactive[int] = reactive(0, always_update=True, init=False)

    class Activated(Message):
        """A row was double-clicked."""

        def __init__(self, table: Table[Any], row: int) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> Table[Any]:
            return self.table

    class Highlighted(Message):
        """The cursor moved to `row`."""

        def __init__(self, table: Table[Any], row: int) -> None:
            super().__init__()
            self.table = table
            self.row = row

        @property
        def control(self) -> Table[Any]:
            return self.table

    def __init__(
        self,
        columns: Sequence[Column],
        cells: Callable[[RowT], Sequence[str | Text]],
        *,
        marked: Callable[[RowT], bool] | None = None,
        number: Callable[[int, RowT], str] | None = None,
        empty: str = "nothing here",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns = tuple(columns)
        self._cells = cells
        self._marked = marked
        self._number = number
        """When set, the first column is `number(index, row)` (a position) before `cells`."""
        self.empty = empty
        self.rows: Sequence[RowT] = ()

    # --- data ---------------------------------------------------------------------

    def set_rows(self, rows: Sequence[RowT], *, cursor: int | None = None) -> None:
        """Show `rows` (not copied); keep the cursor where it was unless told."""
        self.rows = rows
        self.virtual_size = Size(0, len(rows) + 1)
        row = self.cursor_row if cursor is None else cursor
        self.cursor_row = max(0, min(row, len(rows) - 1))
        self.refresh()

    def set_empty(self, text: str) -> None:
        self.empty = text
        self.refresh()

    @property
    def current(self) -> RowT | None:
        if 0 <= self.cursor_row < len(self.rows):
            return self.rows[self.cursor_row]
        return None

    # --- cursor -------------------------------------------------------------------

    def watch_cursor_row(self, old: int, new: int) -> None:
        self._scroll_to_cursor()
        self.refresh()
        if old != new:
            self.post_message(self.Highlighted(self, new))

    def _scroll_to_cursor(self) -> None:
        body = max(1, self.scrollable_content_region.height - 1)
        top = round(self.scroll_y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + body:
            self.scroll_to(y=self.cursor_row - body + 1, animate=False, immediate=True)

    def _move(self, row: int) -> None:
        if self.rows:
            self.cursor_row = max(0, min(row, len(self.rows) - 1))

    def action_cursor(self, delta: int) -> None:
        self._move(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self._move(self.cursor_row + direction * max(1, self.scrollable_content_region.height - 2))

    def action_jump(self, row: int) -> None:
        self._move(row if row >= 0 else len(self.rows) - 1)

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(0, len(self.rows) + 1)
        self._scroll_to_cursor()

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        row = round(self.scroll_y) + event.y - 1
        if 0 <= row < len(self.rows):
            self.focus()
            self.cursor_row = row
            if event.chain >= 2:
                self.post_message(self.Activated(self, row))

    # --- drawing ------------------------------------------------------------------

    def _widths(self, total: int) -> list[int]:
        gaps = len(self.columns) - 1
        fixed = sum(c.width for c in self.columns)
        flexes = sum(c.flex for c in self.columns if c.width == 0)
        room = max(0, total - fixed - gaps - 1)
        widths, given = [], 0
        flex_cols = [i for i, c in enumerate(self.columns) if c.width == 0]
        for i, c in enumerate(self.columns):
            if c.width:
                widths.append(c.width)
            elif i == flex_cols[-1]:
                widths.append(max(1, room - given))
            else:
                w = room * c.flex // max(1, flexes)
                given += w
                widths.append(max(1, w))
        return widths

    def _line(self, cells: Sequence[str | Text], widths: list[int], style: Style) -> Strip:
        """One line; a cell is text, or a `Text` with a style of its own (over the row's)."""
        text = Text(" ", no_wrap=True, end="")
        for i, (cell, width, col) in enumerate(zip(cells, widths, self.columns, strict=False)):
            if isinstance(cell, Text):
                piece = cell.copy()
                piece.no_wrap, piece.end = True, ""
            else:
                piece = Text(names.line(cell), no_wrap=True, end="")  # no escape codes
            piece.truncate(width, overflow="ellipsis", pad=False)
            pad = " " * (width - piece.cell_len)
            if col.right:
                text.append(pad)
                text.append_text(piece)
            else:
                text.append_text(piece)
                text.append(pad)
            if i < len(widths) - 1:
                text.append(" ")
        text.stylize_before(style)
        return Strip(text.render(self.app.console), text.cell_len)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        widths = self._widths(width)
        if y == 0:
            style = base + self.get_component_rich_style("table--header")
            strip = self._line([c.label for c in self.columns], widths, style)
            return strip.extend_cell_length(width, style).crop(0, width)
        row = round(self.scroll_y) + y - 1
        if not self.rows:
            if y == 1:
                style = base + self.get_component_rich_style("table--empty")
                return Strip([Segment(f" {self.empty}"[:width], style)]).extend_cell_length(
                    width, base
                )
            return Strip.blank(width, base)
        if row >= len(self.rows):
            return Strip.blank(width, base)
        item = self.rows[row]
        style = base
        if self._marked is not None and self._marked(item):
            style += self.get_component_rich_style("table--marked")
        if row == self.cursor_row:
            style += self.get_component_rich_style("table--cursor")
        cells: Sequence[str | Text] = self._cells(item)
        if self._number is not None:
            cells = (self._number(row, item), *cells)
        strip = self._line(cells, widths, style)
        return strip.extend_cell_length(width, style).crop(0, width)
