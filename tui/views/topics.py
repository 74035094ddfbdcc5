"""Topics: partitions, replication, health, size and throughput; create, delete, grow."""
from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding

from tui.history import sparkline
from tui.snapshot import Snapshot
from tui.views.base import View
from tui.widgets.chrome import count_text, size_text
from tui.widgets.dialogs import AddPartitions, Confirm, CreateTopic
from tui.widgets.live_table import LiveTable


def rate_text(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.1f}"


class TopicsView(View):
    MODE = "topics"
    BINDINGS = [
        Binding("enter", "open", "Partitions", id="topics.open", priority=True),
        Binding("n", "create", "New topic", id="topics.create"),
        Binding("a", "add_partitions", "Add partitions", id="topics.add_partitions"),
        Binding("d", "delete", "Delete", id="topics.delete"),
        Binding("m", "tail", "Messages", id="topics.tail"),
        Binding("i", "toggle_internal", "Internal topics", id="topics.internal"),
    ]

    def body(self) -> ComposeResult:
        yield LiveTable("topic", "partitions", "RF", "under-replicated", "records", "size",
                        "in/s", "trend", id="topics")

    def on_mount(self) -> None:
        self.show_internal = False

    def show(self, snapshot: Snapshot) -> None:
        history = self.app.history
        rows = []
        for topic in snapshot.topics.values():
            if topic.internal and not self.show_internal:
                continue
            key = f"topic:{topic.name}"
            rows.append((topic.name, (
                topic.name, len(topic.partitions), topic.replication_factor,
                count_text(self.app, topic.under_replicated), f"{topic.records:,}",
                size_text(topic.size), rate_text(history.latest(key)), sparkline(history.series(key)))))
        self.query_one(LiveTable).sync(rows)

    @property
    def selected(self) -> str | None:
        return self.query_one(LiveTable).selected_key

    @on(LiveTable.RowSelected)
    def action_open(self) -> None:
        if self.selected:
            from tui.views.topic_detail import TopicDetail
            self.app.push_screen(TopicDetail(self.selected))

    def action_tail(self) -> None:
        if self.selected:
            self.app.tail_topic(self.selected)

    def action_toggle_internal(self) -> None:
        self.show_internal = not self.show_internal
        if self.app.snapshot:
            self.show(self.app.snapshot)

    @work
    async def action_create(self) -> None:
        brokers = len(self.app.snapshot.brokers) if self.app.snapshot else 1
        spec = await self.app.push_screen_wait(CreateTopic(default_rf=min(3, brokers)))
        if spec:
            await self.app.change(f"created topic {spec.name}", self.app.source.create_topic(
                spec.name, spec.partitions, spec.replication_factor, spec.configs))

    @work
    async def action_delete(self) -> None:
        name = self.selected
        if name and await self.app.push_screen_wait(Confirm(
                f"Delete topic {name} and all its records?", type_to_confirm=name)):
            await self.app.change(f"deleted topic {name}", self.app.source.delete_topic(name))

    @work
    async def action_add_partitions(self) -> None:
        name = self.selected
        topic = self.app.snapshot.topics.get(name) if name and self.app.snapshot else None
        if topic is None:
            return
        total = await self.app.push_screen_wait(AddPartitions(name, len(topic.partitions)))
        if total:
            await self.app.change(f"{name} now has {total} partitions",
                                  self.app.source.add_partitions(name, total))
