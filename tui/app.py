"""The console app: views as modes, one refresh loop, themes and settings.

The refresh worker only fetches (`ClusterSource.snapshot`) and posts a typed message;
the handlers below render on the UI thread and arm the next refresh once the last one
has been rendered, so refreshes never overlap and a slow cluster slows the refresh
rate, never the UI.
"""
from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.message import Message
from textual.timer import Timer

from tui.config import Settings
from tui.demo import DemoProducer, create_demo_topics
from tui.events import Event, Severity, diff
from tui.history import History
from tui.snapshot import Snapshot
from tui.source import ClusterSource, describe_error
from tui.themes import DEFAULT_THEME, ThemeCommands, load_themes
from tui.views.base import View
from tui.views.cluster import ClusterView
from tui.views.drills import DrillsView
from tui.views.groups import GroupsView
from tui.views.messages import MessagesView
from tui.views.topics import TopicsView
from tui.widgets.chrome import StatusLine

SNAPSHOT_TIMEOUT = 10.0  # seconds before a refresh is reported as failed
MAX_EVENTS = 2000
DEMO_ATTEMPTS = 30  # one a second while a fresh cluster elects its controller


@dataclass
class SnapshotReady(Message):
    snapshot: Snapshot


@dataclass
class SnapshotFailed(Message):
    error: str


class KraftboardApp(App):
    TITLE = "kraftboard"
    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    VIEW_TITLES = {"cluster": "Cluster", "topics": "Topics", "groups": "Groups",
                   "messages": "Messages", "drills": "Drills"}
    MODES = {"cluster": ClusterView, "topics": TopicsView, "groups": GroupsView,
             "messages": MessagesView, "drills": DrillsView}
    DEFAULT_MODE = "cluster"
    # Refreshing may take this share of a core at most: a cluster whose refresh costs
    # more CPU than refresh_interval * REFRESH_CPU_SHARE (thousands of partitions,
    # hundreds of groups) is refreshed less often, so an idle console stays light.
    REFRESH_CPU_SHARE = 0.04
    COMMANDS = App.COMMANDS | {ThemeCommands}
    BINDINGS = [
        *(Binding(str(n), f"switch_mode('{mode}')", title, show=False, id=f"app.view.{mode}")
          for n, (mode, title) in enumerate(VIEW_TITLES.items(), start=1)),
        Binding("question_mark", "toggle_keys", "Keys", id="app.keys"),
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("D", "toggle_demo", "Demo on/off", id="app.demo"),
    ]

    def __init__(self, source: ClusterSource, where: str, settings: Settings | None = None,
                 demo: DemoProducer | None = None, refresh_interval: float = 1.0):
        super().__init__()
        self.source, self.where, self.demo = source, where, demo
        self.settings = settings or Settings()
        self.refresh_interval = refresh_interval
        self.snapshot: Snapshot | None = None
        self.problem: str | None = None
        self.events: list[Event] = []  # the latest MAX_EVENTS ...
        self.events_total = 0  # ... of this many
        self.history = History()
        self.addresses: dict[int, str] = {}  # last known address of each broker
        self._next_refresh: Timer | None = None
        self._refreshing = False
        self._refresh_cpu_mark = 0.0  # UI-thread CPU time when the running refresh began

    # -- lifecycle ---------------------------------------------------------------------

    def on_mount(self) -> None:
        themes, problems = load_themes()
        for theme in themes:
            self.register_theme(theme)
        for problem in problems:
            self.notify(problem, title="Theme refused", severity="warning", timeout=10,
                        markup=False)  # the reason may quote YAML with [brackets]
        self.theme = (self.settings.theme if self.settings.theme in self.available_themes
                      else DEFAULT_THEME)
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        self.sub_title = self.where
        # The ~100,000 objects of Textual, Rich and the Kafka clients live as long as the
        # app: moved out of the cycle collector's sight, a full collection takes well
        # under a millisecond instead of stalling frames for 40-80 ms every few seconds.
        self.call_after_refresh(gc.freeze)
        if self.demo:
            self.run_worker(self._run_demo(), name="demo producer", group="demo")
        self.refresh_snapshot()

    async def _run_demo(self) -> None:
        """Create the demo topics (retrying while the cluster settles), then produce."""
        for attempt in range(DEMO_ATTEMPTS):
            try:
                await create_demo_topics(self.source, replication_factor=3)
                break
            except Exception as exc:
                if attempt == DEMO_ATTEMPTS - 1:
                    self.notify(f"no demo topics: {describe_error(exc)}", severity="warning")
                    return
                await asyncio.sleep(1)
        await self.demo.run()

    async def on_unmount(self) -> None:
        await self.source.close()

    def _remember_theme(self, theme) -> None:
        if theme.name == self.settings.theme:
            return  # the theme set at start
        self.settings.theme = theme.name
        self.settings.save()
        if self.snapshot is not None:
            self.render_snapshot()

    # -- refresh -----------------------------------------------------------------------

    def refresh_snapshot(self) -> None:
        """Start a refresh now, unless one is running (it re-arms the next one itself)."""
        if self._refreshing:
            return
        if self._next_refresh is not None:
            self._next_refresh.stop()
        self._refreshing = True
        self._refresh_cpu_mark = time.thread_time()
        self.run_worker(self._fetch(), name="refresh", group="refresh", exit_on_error=False)

    async def _fetch(self) -> None:
        try:
            snapshot = await asyncio.wait_for(self.source.snapshot(), SNAPSHOT_TIMEOUT)
        except Exception as exc:  # any failure is a state to show, not a crash
            self.post_message(SnapshotFailed(describe_error(exc)))
        else:
            self.post_message(SnapshotReady(snapshot))

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        snapshot, first = message.snapshot, self.snapshot is None
        self.add_events(diff(self.snapshot, snapshot))
        self.snapshot, self.problem = snapshot, None
        for broker in snapshot.brokers.values():
            self.addresses[broker.id] = broker.address
        for topic in snapshot.topics.values():
            self.history.count(f"topic:{topic.name}", snapshot.taken_at, topic.end_offsets)
        for group in snapshot.groups:
            self.history.gauge(f"group:{group.id}", snapshot.taken_at,
                               sum(snapshot.group_lag(group).values()))
        self.history.forget({f"topic:{t}" for t in snapshot.topics}
                            | {f"group:{g.id}" for g in snapshot.groups})
        self.render_snapshot()
        self._arm_next_refresh(throttle=not first)  # the first pays for connecting

    def on_snapshot_failed(self, message: SnapshotFailed) -> None:
        if self.problem is None:
            self.add_events([Event(time.time(), Severity.BAD,
                                   f"cluster unreachable: {message.error}")])
        self.problem = message.error
        self.render_status(self.screen)
        self._arm_next_refresh(throttle=False)

    def _arm_next_refresh(self, throttle: bool) -> None:
        self._refreshing = False
        delay = self.refresh_interval
        if throttle:
            # The UI thread's CPU from the start of the fetch to the end of the rendering
            # (the Kafka clients run on its event loop), frames drawn meanwhile included.
            spent = time.thread_time() - self._refresh_cpu_mark
            delay = max(delay, spent / self.REFRESH_CPU_SHARE)
        self._next_refresh = self.set_timer(delay, self.refresh_snapshot)

    # -- rendering ---------------------------------------------------------------------

    def visible_view(self) -> View | None:
        """The top-most view once composed: a dialog may cover it, but it still shows."""
        view = next((s for s in reversed(self.screen_stack) if isinstance(s, View)), None)
        return view if view is not None and view.is_mounted else None

    def render_snapshot(self) -> None:
        view = self.visible_view()
        if view is not None and self.snapshot is not None:
            view.render_snapshot(self.snapshot)
            self.render_status(view)

    def render_status(self, view: object) -> None:
        if not isinstance(view, View) or not view.is_mounted:
            return
        for status in view.query(StatusLine):  # none while the app shuts down
            if self.problem is not None:
                status.show_problem(self.where, self.problem,
                                    self.snapshot.taken_at if self.snapshot else None)
            elif self.snapshot is not None:
                status.show_ok(self.where, self.snapshot.taken_at, self.snapshot.duration)
            else:
                status.update(f"{self.where}  connecting...")

    def add_events(self, events: list[Event]) -> None:
        self.events.extend(events)
        self.events_total += len(events)
        del self.events[:-MAX_EVENTS]

    # -- actions -----------------------------------------------------------------------

    async def change(self, done: str, operation: Awaitable) -> bool:
        """Run a change to the cluster; report it in the event log, then refresh now."""
        try:
            await operation
        except Exception as exc:
            self.notify(describe_error(exc), title="Refused", severity="error", timeout=8)
            return False
        self.notify(done)
        self.add_events([Event(time.time(), Severity.INFO, done)])
        self.refresh_snapshot()
        return True

    def action_toggle_keys(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def action_toggle_demo(self) -> None:
        self.demo.paused = not self.demo.paused
        self.notify("demo producer " + ("paused" if self.demo.paused else "running"))

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "toggle_demo":
            return self.demo is not None
        return True

    @work
    async def tail_topic(self, topic: str) -> None:
        """Open the messages view on a topic."""
        await self.switch_mode("messages")
        self.screen.tail(topic)
