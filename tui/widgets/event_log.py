"""The event log widget: appends the app's events it has not shown yet."""
from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import RichLog

from tui.events import Event
from tui.widgets.chrome import toned


class EventLog(RichLog):
    DEFAULT_CSS = "EventLog { height: 1fr; }"

    def __init__(self, **kwargs):
        super().__init__(wrap=True, max_lines=1000, **kwargs)
        self.shown = 0  # how many events ever logged are written here already

    def show(self, events: list[Event], total: int) -> None:
        """`events` are the latest of `total` events logged so far."""
        for event in events[len(events) - min(total - self.shown, len(events)):]:
            stamp = time.strftime("%H:%M:%S", time.localtime(event.at))
            self.write(Text.assemble((stamp + "  ", "dim"),
                                     toned(self.app, event.text, event.severity)))
        self.shown = total
