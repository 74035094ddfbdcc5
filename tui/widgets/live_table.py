"""A table that follows a changing list of rows without losing its place.

Rows are kept in a list and drawn on demand, one line at a time (Textual's Line API),
so a table of 2,000 partitions costs a frame what a table of 40 does. Textual's
DataTable measured and rendered every row it was given: switching to a view of 2,000
rows stalled the screen for up to 250 ms, even when filled 200 rows per frame.
"""
from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cells = tuple[object, ...]
CELL_PADDING = 1  # columns of space either side of a cell
HEADER_LINES = 1


def plain(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


class LiveTable(ScrollView, can_focus=True):
    """Rows keyed by a stable string; `sync` replaces them all and redraws what changed.

    The cursor stays on the same row key and the scroll position is kept. Rows not
    matching `filter_text` (a case-insensitive substring of any cell) are hidden. A cell may
    be a rich Text with styles of its own.
    """

    COMPONENT_CLASSES = {"live-table--header", "live-table--cursor", "live-table--even-row"}
    DEFAULT_CSS = """
    LiveTable {
        height: 1fr;
        background: $surface;
        color: $foreground;
        & > .live-table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .live-table--even-row { background: $surface-lighten-1 50%; }
        &:dark > .live-table--even-row { background: $surface-darken-1 40%; }
        & > .live-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus {
            background-tint: $foreground 5%;
            & > .live-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
    }
    """
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False, id="table.up"),
        Binding("down", "move(1)", "Down", show=False, id="table.down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="table.page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="table.page_down"),
        Binding("home", "first", "First row", show=False, id="table.first"),
        Binding("end", "last", "Last row", show=False, id="table.last"),
        Binding("left", "scroll_left", "Scroll left", show=False, id="table.left"),
        Binding("right", "scroll_right", "Scroll right", show=False, id="table.right"),
        Binding("enter", "select", "Select", show=False, id="table.select"),
    ]

    @dataclass
    class RowSelected(Message):
        """Enter on a row, or a click on the row under the cursor."""
        table: "LiveTable"
        key: str

    def __init__(self, *columns: str, **kwargs):
        super().__init__(**kwargs)
        self.columns = columns
        self.filter_text = ""
        self._rows: list[tuple[str, Cells]] = []  # as last given to sync, unfiltered
        self.shown: list[tuple[str, Cells]] = []  # the rows drawn, in order
        self._positions: dict[str, int] = {}      # row key: its index in `shown`
        self._widths = [cell_len(c) for c in columns]
        self._strips: dict[str, tuple[Cells, Strip]] = {}  # each row drawn, unstyled
        self.cursor = 0
        self._cursor_key: str | None = None

    @property
    def row_count(self) -> int:
        return len(self.shown)

    @property
    def selected_key(self) -> str | None:
        return self.shown[self.cursor][0] if self.shown else None

    def sync(self, rows: list[tuple[str, Cells]]) -> None:
        self._rows = rows
        shown = [(key, cells) for key, cells in rows if self._matches(cells)]
        if shown == self.shown:
            return
        self.shown = shown
        self._positions = {key: n for n, (key, _) in enumerate(shown)}
        widths = [cell_len(c) for c in self.columns]
        for _, cells in shown:
            for column, cell in enumerate(cells):
                width = cell_len(plain(cell))
                if width > widths[column]:
                    widths[column] = width
        if widths != self._widths:
            self._widths = widths
            self._strips.clear()
        elif len(self._strips) > 2 * len(shown):  # rows come and go: drop the departed
            self._strips = {k: v for k, v in self._strips.items() if k in self._positions}
        # The cursor follows its row; where that row went away, it keeps its place.
        position = self._positions.get(self._cursor_key)
        self._set_cursor(self.cursor if position is None else position)
        self.virtual_size = Size(sum(self._widths) + 2 * CELL_PADDING * len(self._widths),
                                 len(shown) + HEADER_LINES)
        self.refresh()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.lower()
        self.sync(self._rows)

    def select_key(self, key: str) -> None:
        if key in self._positions:
            self._set_cursor(self._positions[key])
            self._scroll_to_cursor()

    def _matches(self, cells: Cells) -> bool:
        return not self.filter_text or any(self.filter_text in plain(c).lower() for c in cells)

    def _set_cursor(self, position: int) -> None:
        self.cursor = min(max(position, 0), max(len(self.shown) - 1, 0))
        self._cursor_key = self.selected_key
        self.refresh()

    # -- keys and the mouse --------------------------------------------------------------

    @property
    def _page(self) -> int:
        return max(self.scrollable_content_region.height - HEADER_LINES, 1)

    def action_move(self, rows: int) -> None:
        self._set_cursor(self.cursor + rows)
        self._scroll_to_cursor()

    def action_page(self, pages: int) -> None:
        self.action_move(pages * self._page)

    def action_first(self) -> None:
        self.action_move(-len(self.shown))

    def action_last(self) -> None:
        self.action_move(len(self.shown))

    def action_select(self) -> None:
        if self.shown:
            self.post_message(self.RowSelected(self, self.shown[self.cursor][0]))

    def on_click(self, event: Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < HEADER_LINES:
            return
        position = self.scroll_offset.y + offset.y - HEADER_LINES
        if position >= len(self.shown):
            return
        if position == self.cursor:
            self.action_select()
        else:
            self._set_cursor(position)

    def _scroll_to_cursor(self) -> None:
        top = self.scroll_offset.y
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + self._page:
            self.scroll_to(y=self.cursor - self._page + 1, animate=False, immediate=True)

    def on_focus(self) -> None:
        self.refresh()  # the cursor's colour follows the focus

    def on_blur(self) -> None:
        self.refresh()

    # -- drawing -------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        if y < HEADER_LINES:
            style = self.get_component_rich_style("live-table--header")
            strip = self._draw(self.columns).apply_style(style)
            return strip.crop_extend(scroll_x, scroll_x + width, style)
        position = scroll_y + y - HEADER_LINES
        if position >= len(self.shown):
            return Strip.blank(width, self.rich_style)
        key, cells = self.shown[position]
        drawn = self._strips.get(key)
        if drawn is None or drawn[0] != cells:
            drawn = self._strips[key] = (cells, self._draw(cells))
        if position == self.cursor:
            style = self.get_component_rich_style("live-table--cursor")
        elif position % 2:
            style = self.get_component_rich_style("live-table--even-row")
        else:
            style = Style()
        return drawn[1].apply_style(style).crop_extend(scroll_x, scroll_x + width, style)

    def _draw(self, cells: Cells) -> Strip:
        pad = Segment(" " * CELL_PADDING)
        segments: list[Segment] = []
        for cell, width in zip(cells, self._widths):
            segments.append(pad)
            if isinstance(cell, Text):
                segments += Segment.adjust_line_length(
                    list(cell.render(self.app.console)), width)
            else:
                segments.append(Segment(set_cell_size(str(cell), width)))
            segments.append(pad)
        return Strip(segments)
