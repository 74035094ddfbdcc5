"""A DataTable that follows a changing list of rows without losing its place."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

Cells = tuple[object, ...]


def plain(cell: object) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


class LiveTable(DataTable):
    """Rows keyed by a stable string; `sync` updates changed cells in place.

    The cursor stays on the same row key and the scroll position is kept. Rows not
    matching `filter_text` (a case-insensitive substring of any cell) are hidden.
    """

    DEFAULT_CSS = "LiveTable { height: 1fr; }"

    def __init__(self, *columns: str, **kwargs):
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._columns = columns
        self.filter_text = ""
        self._rows: list[tuple[str, Cells]] = []
        self._shown: dict[str, Cells] = {}  # the cells last given for each row shown

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
            self._rebuild(wanted)
            return
        for key in set(current) - kept:
            self.remove_row(key)
        for key, cells in wanted:
            if key not in self.rows:
                self.add_row(*cells, key=key)
                continue
            shown = self._shown.get(key)
            if shown != cells:
                for column, old, new in zip(self.column_keys, shown or self.get_row(key), cells):
                    if old != new:
                        self.update_cell(key, column, new)
        self._shown = dict(wanted)

    def set_filter(self, text: str) -> None:
        self.filter_text = text.lower()
        self.sync(self._rows)

    def select_key(self, key: str) -> None:
        if key in self.rows:
            self.move_cursor(row=self.get_row_index(key))

    def _matches(self, cells: Cells) -> bool:
        return not self.filter_text or any(self.filter_text in plain(c).lower() for c in cells)

    def _rebuild(self, wanted: list[tuple[str, Cells]]) -> None:
        selected, scroll = self.selected_key, self.scroll_offset
        self.clear()
        for key, cells in wanted:
            self.add_row(*cells, key=key)
        self._shown = dict(wanted)
        if selected is not None:
            self.select_key(selected)
        self.scroll_to(scroll.x, scroll.y, animate=False)
