"""The tail of a topic: one line per record, drawn on demand from a bounded ring buffer.

Only the visible lines are rendered (Textual's Line API), and the buffer keeps the last
`capacity` records, so a million records cost the same per frame as a hundred.

The buffer holds plain tuples in `Record`'s field order, not `Record`s: CPython's cycle
collector stops tracking a plain tuple of numbers and bytes once it has seen it, but
never a tuple subclass. 100,000 tracked records made every full collection traverse
them all, a stall of up to 100 ms every few seconds while a busy topic streamed in.
"""
from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

CAPACITY = 100_000
PREVIEW_BYTES = 512  # a line shows at most this much of a value


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    HEX = "hex"

    def next(self) -> "Format":
        members = list(Format)
        return members[(members.index(self) + 1) % len(members)]


class Record(NamedTuple):  # how a record is read; the buffer keeps `Row`s
    partition: int
    offset: int
    timestamp: int  # ms
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


# What the buffer keeps: a Record's fields, in the same order, as a plain tuple.
Row = tuple
TIMESTAMP = Record._fields.index("timestamp")  # to merge partitions in time order


def show_bytes(data: bytes | None, form: Format, pretty: bool = False) -> str:
    """Bytes as text, JSON (pretty-printed when `pretty`) or hex; JSON falls back to text."""
    if data is None:
        return "null"
    if form is Format.HEX:
        if not pretty:
            return data[:PREVIEW_BYTES].hex(" ")
        return "\n".join(f"{i:08x}  {data[i:i + 16].hex(' '):<47}  "
                         + "".join(chr(b) if 32 <= b < 127 else "." for b in data[i:i + 16])
                         for i in range(0, len(data), 16))
    text = data.decode("utf-8", errors="replace")
    if form is Format.JSON:
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        return json.dumps(parsed, indent=2 if pretty else None, ensure_ascii=False)
    return text


def describe(record: Record, topic: str, form: Format) -> str:
    """The detail pane's text for one record."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.timestamp / 1000))
    headers = "\n".join(f"  {name}: {show_bytes(value, Format.TEXT)}"
                        for name, value in record.headers) or "  (none)"
    return (f"{topic}-{record.partition} @ offset {record.offset}\n"
            f"timestamp {stamp}.{record.timestamp % 1000:03d}\n"
            f"key {show_bytes(record.key, Format.TEXT)}\nheaders\n{headers}\n\n"
            f"{show_bytes(record.value, form, pretty=True)}")


class RecordLog(ScrollView, can_focus=True):
    """Records in arrival order; follows the end until the cursor moves up."""

    COMPONENT_CLASSES = {"record-log--cursor", "record-log--position"}
    DEFAULT_CSS = """
    RecordLog { height: 1fr; }
    RecordLog > .record-log--cursor { background: $accent 30%; }
    RecordLog > .record-log--position { color: $text-muted; }
    """
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False, id="tail.up"),
        Binding("down", "move(1)", "Down", show=False, id="tail.down"),
        Binding("pageup", "move(-20)", "Page up", show=False, id="tail.page_up"),
        Binding("pagedown", "move(20)", "Page down", show=False, id="tail.page_down"),
        Binding("home", "first", "First", show=False, id="tail.first"),
        Binding("end", "follow", "Follow", id="tail.follow"),
    ]

    form: reactive[Format] = reactive(Format.TEXT)

    @dataclass
    class Highlighted(Message):
        record: Record

    def __init__(self, capacity: int = CAPACITY, **kwargs):
        super().__init__(**kwargs)
        self.rows: deque[Row] = deque(maxlen=capacity)
        self.dropped = 0  # records pushed out of the buffer: line i is record dropped + i
        self.cursor = -1  # absolute record number; -1 while following the end
        self.following = True

    def clear(self) -> None:
        self.rows.clear()
        self.dropped, self.cursor, self.following = 0, -1, True
        self._resize()

    def append(self, rows: list[Row]) -> None:
        overflow = max(len(self.rows) + len(rows) - self.rows.maxlen, 0)
        self.rows.extend(rows)
        self.dropped += overflow
        if self.following and self.rows:
            self._set_cursor(self.dropped + len(self.rows) - 1)
        elif self.cursor < self.dropped:  # the selected record fell out of the buffer
            self._set_cursor(self.dropped)
        self._resize()
        if self.following:
            self.scroll_end(animate=False, immediate=True)
        self.refresh()

    def record(self, line: int) -> Record | None:
        """The record on line `line` of the buffer (0 is the oldest kept)."""
        return Record._make(self.rows[line]) if 0 <= line < len(self.rows) else None

    @property
    def selected(self) -> Record | None:
        return self.record(self.cursor - self.dropped)

    def _resize(self) -> None:
        if self.virtual_size.height != len(self.rows):  # a full buffer stays the same size
            self.virtual_size = Size(self.size.width, len(self.rows))

    def _set_cursor(self, cursor: int) -> None:
        if cursor != self.cursor:
            self.cursor = cursor
            if self.selected is not None:
                self.post_message(self.Highlighted(self.selected))

    def action_move(self, lines: int) -> None:
        if not self.rows:
            return
        last = self.dropped + len(self.rows) - 1
        self.following = False
        self._set_cursor(min(max(self.cursor + lines, self.dropped), last))
        line = self.cursor - self.dropped
        top = self.scroll_offset.y
        if line < top:
            self.scroll_to(y=line, animate=False)
        elif line >= top + self.size.height:
            self.scroll_to(y=line - self.size.height + 1, animate=False)
        self.refresh()

    def action_first(self) -> None:
        self.action_move(-len(self.rows))

    def action_follow(self) -> None:
        self.following = True
        self.append([])

    def watch_form(self) -> None:
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        record = self.record(index)
        if record is None:
            return Strip.blank(width, self.rich_style)
        base = (self.get_component_rich_style("record-log--cursor")
                if self.dropped + index == self.cursor else Style())
        muted = self.get_component_rich_style("record-log--position")
        key = show_bytes(record.key, Format.TEXT) if record.key is not None else "-"
        value = show_bytes(record.value[:PREVIEW_BYTES] if record.value else record.value,
                           self.form).replace("\n", " ")
        segments = [Segment(f"p{record.partition:<3}{record.offset:>10}  ", base + muted),
                    Segment(f"{key}  ", base + Style(bold=True)),
                    Segment(value, base)]
        strip = Strip(segments).crop_extend(scroll_x, scroll_x + width, base)
        return strip
