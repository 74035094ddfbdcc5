"""What every view shares: the view bar, the status line, and theme-coloured text."""
from __future__ import annotations

import time

from rich.filesize import decimal
from rich.text import Text
from textual.app import App
from textual.widgets import Static

from tui.events import Severity
from tui.snapshot import BrokerState

# Theme variable for each severity, so the colour-blind theme recolours everything.
TONES = {Severity.GOOD: "success", Severity.WARN: "warning", Severity.BAD: "error",
         Severity.INFO: "foreground"}
STATE_SEVERITY = {BrokerState.ONLINE: Severity.GOOD, BrokerState.STARTING: Severity.WARN,
                  BrokerState.PAUSED: Severity.WARN, BrokerState.ISOLATED: Severity.WARN}


def toned(app: App, text: object, severity: Severity, bold: bool = False) -> Text:
    colour = app.theme_variables.get(TONES[severity], "")
    return Text(str(text), style=f"{'bold ' if bold else ''}{colour}")


def state_text(app: App, state: BrokerState) -> Text:
    return toned(app, state, STATE_SEVERITY.get(state, Severity.BAD))


def count_text(app: App, count: int) -> Text:
    """A count of problems: quiet at zero, red otherwise."""
    return toned(app, count, Severity.BAD if count else Severity.INFO, bold=bool(count))


def size_text(size: int | None) -> str:
    """Bytes on disk, in kB/MB/GB as `df -H` gives them; "-" when the cluster did not say."""
    return "-" if size is None else decimal(size)


def age(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.0f} min"


class ViewBar(Static):
    """The views and their number keys, the current one highlighted."""

    DEFAULT_CSS = "ViewBar { height: 1; background: $panel; padding: 0 1; }"

    def __init__(self, views: dict[str, str], current: str):
        super().__init__()
        self.views, self.current = views, current

    def render(self) -> Text:
        accent = self.app.theme_variables["accent"]
        text = Text()
        for number, (mode, title) in enumerate(self.views.items(), start=1):
            style = f"bold reverse {accent}" if mode == self.current else ""
            text.append(f" {number} {title} ", style=style)
            text.append(" ")
        return text


class Summary(Static):
    """Text redrawn from every snapshot. `Static.update` lays the whole screen out again,
    the biggest part of an idle console's CPU, so an unchanged text is left alone."""

    def show(self, content: Text | str) -> None:
        if content != getattr(self, "_shown", None):
            self._shown = content
            self.update(content)


class StatusLine(Static):
    """Which cluster, how fresh the data is, and what is wrong when it is not."""

    DEFAULT_CSS = "StatusLine { height: 1; background: $panel; padding: 0 1; }"

    def show_ok(self, where: str, taken_at: float, duration: float) -> None:
        self.update(Text.assemble(
            (where, "bold"), f"  refreshed {time.strftime('%H:%M:%S', time.localtime(taken_at))}"
            f" in {age(duration)}"), layout=False)

    def show_problem(self, where: str, problem: str, last_ok: float | None) -> None:
        since = "" if last_ok is None else f" (last data {age(time.time() - last_ok)} old)"
        self.update(Text.assemble((where, "bold"), "  ",
                                  toned(self.app, f"⚠ {problem}{since}", Severity.BAD)),
                    layout=False)
