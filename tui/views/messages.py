"""Messages: a live tail of one topic with a detail pane, and a produce dialog."""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

from aiokafka import TopicPartition
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.timer import Timer
from textual.worker import Worker, get_current_worker
from textual.widgets import Static

from tui.snapshot import Snapshot
from tui.source import describe_error
from tui.views.base import View
from tui.widgets.dialogs import PickTopic, ProduceRecord
from tui.widgets.record_log import TIMESTAMP, RecordLog, Row, describe

BACKLOG = 200  # records per partition shown from before the tail starts
BATCH = 5000  # records fetched per poll at most
IN_FLIGHT = 2  # batches sent to the UI and not yet appended, at most
DETAIL_EVERY = 0.25  # seconds between detail pane updates while following the tail


@dataclass
class RecordsArrived(Message):
    topic: str
    rows: list[Row]
    drawn: Callable[[], None]  # tells the tail's worker the UI took them


@dataclass
class TailFailed(Message):
    topic: str
    error: str


class MessagesView(View):
    MODE = "messages"
    BINDINGS = [
        Binding("t", "pick_topic", "Topic", id="messages.topic"),
        Binding("f", "cycle_format", "Format", id="messages.format"),
        Binding("p", "produce", "Produce", id="messages.produce"),
    ]

    def body(self) -> ComposeResult:
        yield Static(id="tail-summary", classes="box")
        with Horizontal():
            yield RecordLog(id="tail")
            with VerticalScroll(id="record-box", classes="box") as box:
                box.border_title = "Record"
                yield Static("", id="record")

    def on_mount(self) -> None:
        self.topic: str | None = None
        self.problem: str | None = None
        self._detail_timer: Timer | None = None
        self.show_summary()

    def show(self, snapshot: Snapshot) -> None:
        if self.topic is None and snapshot.topics:
            public = [t for t in snapshot.topics.values() if not t.internal]
            if public:
                self.tail(public[0].name)

    def show_summary(self) -> None:
        log = self.query_one(RecordLog)
        if self.topic is None:
            text = Text("no topic yet: press t to choose one", style="italic")
        else:
            text = Text.assemble(
                ("tail ", "dim"), (self.topic, "bold"), ("   format ", "dim"), log.form.value,
                ("   buffered ", "dim"), f"{len(log.rows):,}",
                ("   following" if log.following else "   paused (End follows)", "dim"))
            if self.problem:
                text.append(f"   ⚠ {self.problem}", style=self.app.theme_variables["error"])
        self.query_one("#tail-summary", Static).update(text, layout=False)

    def tail(self, topic: str) -> None:
        """Start tailing `topic` (the previous tail stops)."""
        self.topic, self.problem = topic, None
        self.query_one(RecordLog).clear()
        self.query_one("#record", Static).update("")
        self.show_summary()
        self._consume(topic)

    @work(thread=True, exclusive=True, group="tail", exit_on_error=False)
    def _consume(self, topic: str) -> None:
        """The tail's worker: a thread with an event loop of its own, so that fetching and
        decoding a busy topic costs the UI thread nothing; it only appends what it is sent."""
        asyncio.run(self._tail(topic, get_current_worker()))

    async def _tail(self, topic: str, worker: Worker) -> None:
        # At most IN_FLIGHT batches wait for the UI: a tail faster than the screen waits.
        in_flight = threading.Semaphore(IN_FLIGHT)

        def send(rows: list[Row]) -> None:
            while not in_flight.acquire(timeout=0.5):
                if worker.is_cancelled:
                    return
            self.post_message(RecordsArrived(topic, rows, in_flight.release))

        consumer = self.app.source.consumer()
        try:
            await consumer.start()
            partitions = sorted(consumer.partitions_for_topic(topic) or ())
            if not partitions:
                partitions = range(len(self.app.snapshot.topics[topic].partitions))
            assigned = [TopicPartition(topic, p) for p in partitions]
            consumer.assign(assigned)
            starts = await consumer.beginning_offsets(assigned)
            ends = await consumer.end_offsets(assigned)
            for tp in assigned:
                consumer.seek(tp, max(starts[tp], ends[tp] - BACKLOG))
            # The backlog arrives partition by partition: show it merged in time order.
            backlog: list[Row] = []
            while [tp for tp in assigned if await consumer.position(tp) < ends[tp]]:
                backlog += await self._poll(consumer)
            send(sorted(backlog, key=itemgetter(TIMESTAMP)))
            while not worker.is_cancelled:
                if rows := await self._poll(consumer):
                    send(rows)
        except Exception as exc:
            self.post_message(TailFailed(topic, describe_error(exc)))
        finally:
            await consumer.stop()

    @staticmethod
    async def _poll(consumer) -> list[Row]:
        batches = await consumer.getmany(timeout_ms=500, max_records=BATCH)
        return sorted(((m.partition, m.offset, m.timestamp, m.key, m.value,
                        tuple(m.headers or ()))
                       for messages in batches.values() for m in messages),
                      key=itemgetter(TIMESTAMP))

    @on(RecordsArrived)
    def _arrived(self, message: RecordsArrived) -> None:
        message.drawn()
        if message.topic == self.topic:
            self.query_one(RecordLog).append(message.rows)
            self.show_summary()

    @on(TailFailed)
    def _failed(self, message: TailFailed) -> None:
        if message.topic == self.topic:
            self.problem = message.error
            self.show_summary()

    @on(RecordLog.Highlighted)
    def _highlighted(self) -> None:
        """Show the selected record; while following, at most every DETAIL_EVERY seconds."""
        if not self.query_one(RecordLog).following:
            self._show_detail()
        elif self._detail_timer is None:
            self._detail_timer = self.set_timer(DETAIL_EVERY, self._show_detail)

    def _show_detail(self) -> None:
        self._detail_timer = None
        log = self.query_one(RecordLog)
        if log.selected is not None:
            self.query_one("#record", Static).update(Text(describe(log.selected, self.topic,
                                                                   log.form)))

    def action_cycle_format(self) -> None:
        log = self.query_one(RecordLog)
        log.form = log.form.next()
        self._show_detail()
        self.show_summary()

    @work
    async def action_pick_topic(self) -> None:
        if self.app.snapshot is None:
            return
        topic = await self.app.push_screen_wait(PickTopic(sorted(self.app.snapshot.topics)))
        if topic:
            self.tail(topic)

    @work
    async def action_produce(self) -> None:
        snapshot = self.app.snapshot
        if self.topic is None or snapshot is None or self.topic not in snapshot.topics:
            self.notify("choose a topic first (t)", severity="warning")
            return
        spec = await self.app.push_screen_wait(
            ProduceRecord(self.topic, len(snapshot.topics[self.topic].partitions)))
        if spec is None:
            return
        try:
            partition, offset = await self.app.source.produce(
                self.topic, spec.value, spec.key, spec.headers, spec.partition, spec.acks)
        except Exception as exc:
            self.notify(describe_error(exc), title="Produce failed", severity="error")
            return
        where = f"partition {partition}" + (f", offset {offset}" if offset >= 0 else "")
        self.notify(f"produced to {self.topic} {where}")
