"""The base of every view: the shared chrome, the filter, and the snapshot hooks."""
from __future__ import annotations

from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from tui.snapshot import Snapshot
from tui.widgets.chrome import StatusLine, ViewBar
from tui.widgets.live_table import LiveTable

if TYPE_CHECKING:
    from tui.app import KraftboardApp


class View(Screen):
    """A screen that renders snapshots. Subclasses compose `body()` and implement `show`."""

    MODE = ""  # the app mode this view is the root of; empty for pushed screens
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="view.filter"),
        Binding("escape", "leave", "Back", show=False, id="view.leave"),
    ]
    app: "KraftboardApp"

    def compose(self) -> ComposeResult:
        yield Header()
        yield ViewBar(self.app.VIEW_TITLES, self.MODE or self.app.current_mode)
        yield from self.body()
        yield Input(placeholder="filter: part of any cell; Enter keeps it, Esc clears",
                    id="filter", classes="hidden")
        yield StatusLine()
        yield Footer()

    def body(self) -> ComposeResult:
        raise NotImplementedError

    def show(self, snapshot: Snapshot) -> None:
        """Render a snapshot; called on the UI thread after each refresh."""
        raise NotImplementedError

    def render_snapshot(self, snapshot: Snapshot) -> None:
        try:
            self.show(snapshot)
        except NoMatches:  # the app is shutting down and the view's widgets are gone
            pass

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # A view's `enter` ("open" the selected row) is a priority binding, so that help
        # and the footer show it rather than the table's own "Select"; it is off while the
        # filter box has the focus, which keeps Enter for itself.
        if action == "open":
            return isinstance(self.focused, LiveTable)
        return True

    def on_screen_resume(self) -> None:
        self.app.render_status(self)
        if self.app.snapshot is not None:
            self.render_snapshot(self.app.snapshot)

    # -- the filter ------------------------------------------------------------------

    def filterable(self) -> list[LiveTable]:
        return list(self.query(LiveTable))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        for table in self.filterable():
            table.set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.focus_next()

    def action_leave(self) -> None:
        """Esc: clear an open filter first, then leave a pushed screen."""
        box = self.query_one("#filter", Input)
        if box.value or not box.has_class("hidden"):
            box.value = ""
            box.add_class("hidden")
            for table in self.filterable():
                table.set_filter("")
            self.focus_next()
        elif not self.MODE:
            self.dismiss()
