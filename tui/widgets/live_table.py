"""A DataTable that follows a changing list of rows without losing its place."""
from __future__ import annotations

from rich.text import Text
from textual.geometry import Offset
from textual.widgets import DataTable

Cells = tuple[object, ...]


def plain(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


class LiveTable(DataTable):
    """Rows keyed by a stable string; `sync` updates changed cells in place.

    The cursor stays on the same row key and the scroll position is kept. Rows not
    matching `filter_text` (a case-insensitive substring of any cell) are hidden. New
    rows are added FILL_CHUNK per frame: a table of thousands fills over a few frames
    and the screen stays live meanwhile (adding 2,000 rows at once froze it for 0.8 s).
    """

    DEFAULT_CSS = "LiveTable { height: 1fr; }"
    FILL_CHUNK = 200

    def __init__(self, *columns: str, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._columns = columns
        self.filter_text = ""
        self._rows: list[tuple[str, Cells]] = []
        self._shown: dict[str, Cells] = {}  # the cells last given for each row shown
        self._fill_pending = False
        self._restore: tuple[str | None, Offset] | None = None  # once a rebuild is filled

    def on_mount(self) -> None:
        self.column_keys = self.add_columns(*self._columns)

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value

    def sync(self, rows: list[tuple[str, Cells]]) -> None:
        self._rows = rows
        wanted = [(key, cells) for key, cells in rows if self._matches(cells)]
        current = [row.key.value for row in self.ordered_rows]
        keys = [key for key, _ in wanted]
        kept, added = set(current) & set(keys), set(keys) - set(current)
        # In place only if removing rows and appending new ones gives the wanted order.
        if [k for k in current if k in kept] + [k for k in keys if k in added] != keys:
            if self._restore is None:
                self._restore = (self.selected_key, self.scroll_offset)
            self.clear()
            current, kept = [], set()
        for key in set(current) - kept:
            self.remove_row(key)
        budget = self.FILL_CHUNK
        for key, cells in wanted:
            if key not in self.rows:  # new rows all come last (see above)
                if not budget:
                    self._fill_later()
                    break
                self.add_row(*cells, key=key)
                budget -= 1
                continue
            shown = self._shown.get(key)
            if shown != cells:
                for column, old, new in zip(self.column_keys, shown or self.get_row(key), cells):
                    if old != new:
                        self.update_cell(key, column, new)
        else:
            self._filled()
        self._shown = {key: cells for key, cells in wanted if key in self.rows}

    def set_filter(self, text: str) -> None:
        self.filter_text = text.lower()
        self.sync(self._rows)

    def select_key(self, key: str) -> None:
        if key in self.rows:
            self.move_cursor(row=self.get_row_index(key))

    def _matches(self, cells: Cells) -> bool:
        return not self.filter_text or any(self.filter_text in plain(c).lower() for c in cells)

    def _fill_later(self) -> None:
        if not self._fill_pending:
            self._fill_pending = True
            self.call_after_refresh(self._fill_more)

    def _fill_more(self) -> None:
        self._fill_pending = False
        self.sync(self._rows)

    def _filled(self) -> None:
        """Every wanted row is in: after a rebuild, back to the row and scroll position."""
        if self._restore is not None:
            selected, scroll = self._restore
            self._restore = None
            if selected is not None:
                self.select_key(selected)
            self.scroll_to(scroll.x, scroll.y, animate=False)
