"""The tail of a topic: one line per record, drawn on demand from a bounded ring buffer.

Only the visible lines are rendered (Textual's Line API), and the buffer keeps the last
`capacity` records, so a million records cost the same per frame as a hundred.
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


class Record(NamedTuple):  # a tuple: a tail makes thousands of these per second
    partition: int
    offset: int
    timestamp: int  # ms
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


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
        self.records: deque[Record] = deque(maxlen=capacity)
        self.dropped = 0  # records pushed out of the buffer: line i is record dropped + i
        self.cursor = -1  # absolute record number; -1 while following the end
        self.following = True

    def clear(self) -> None:
        self.records.clear()
        self.dropped, self.cursor, self.following = 0, -1, True
        self._resize()

    def append(self, records: list[Record]) -> None:
        overflow = max(len(self.records) + len(records) - self.records.maxlen, 0)
        self.records.extend(records)
        self.dropped += overflow
        if self.following and self.records:
            self._set_cursor(self.dropped + len(self.records) - 1)
        elif self.cursor < self.dropped:  # the selected record fell out of the buffer
            self._set_cursor(self.dropped)
        self._resize()
        if self.following:
            self.scroll_end(animate=False, immediate=True)
        self.refresh()

    @property
    def selected(self) -> Record | None:
        index = self.cursor - self.dropped
        return self.records[index] if 0 <= index < len(self.records) else None

    def _resize(self) -> None:
        if self.virtual_size.height != len(self.records):  # a full buffer stays the same size
            self.virtual_size = Size(self.size.width, len(self.records))

    def _set_cursor(self, cursor: int) -> None:
        if cursor != self.cursor:
            self.cursor = cursor
            if self.selected is not None:
                self.post_message(self.Highlighted(self.selected))

    def action_move(self, lines: int) -> None:
        if not self.records:
            return
        last = self.dropped + len(self.records) - 1
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
        self.action_move(-len(self.records))

    def action_follow(self) -> None:
        self.following = True
        self.append([])

    def watch_form(self) -> None:
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        if index >= len(self.records):
            return Strip.blank(width, self.rich_style)
        record = self.records[index]
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
