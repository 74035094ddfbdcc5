"""Topic detail: every partition with leader, replicas, ISR and offsets."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding

from tui.events import Severity
from tui.snapshot import NO_LEADER, Partition, Snapshot
from tui.views.base import View
from tui.widgets.chrome import Summary, size_text, toned
from tui.widgets.live_table import LiveTable


def offset_text(offset: int | None) -> str:
    return "?" if offset is None else f"{offset:,}"


class TopicDetail(View):
    BINDINGS = [Binding("m", "tail", "Messages", id="topic.tail")]

    def __init__(self, topic: str):
        super().__init__()
        self.topic = topic

    def body(self) -> ComposeResult:
        yield Summary(id="topic-summary", classes="box")
        yield LiveTable("partition", "leader", "replicas", "ISR", "log start",
                        "high watermark", "records", "size", id="partitions")

    def replicas_text(self, partition: Partition) -> Text | str:
        """Replicas, with those out of the ISR (or offline) marked ✗ in the error colour."""
        if not partition.under_replicated and not partition.offline:
            return ",".join(map(str, partition.replicas))  # the usual case, kept cheap
        text = Text()
        for n, replica in enumerate(partition.replicas):
            if n:
                text.append(",")
            if replica in partition.isr and replica not in partition.offline:
                text.append(str(replica))
            else:
                text.append_text(toned(self.app, f"{replica}✗", Severity.BAD, bold=True))
        return text

    def show(self, snapshot: Snapshot) -> None:
        summary = self.query_one("#topic-summary", Summary)
        topic = snapshot.topics.get(self.topic)
        if topic is None:
            summary.show(toned(self.app, f"topic {self.topic} does not exist (any more)",
                                 Severity.BAD))
            self.query_one(LiveTable).sync([])
            return
        summary.show(Text.assemble(
            (self.topic, "bold"), f"   partitions {len(topic.partitions)}"
            f"   replication factor {topic.replication_factor}"
            f"   min.insync.replicas {topic.min_isr or '?'}"
            f"   under-replicated {topic.under_replicated}   records {topic.records:,}"
            f"   size {size_text(topic.size)}"))
        rows = []
        for p in topic.partitions:
            leader = (toned(self.app, "none", Severity.BAD, bold=True) if p.leader == NO_LEADER
                      else str(p.leader))
            rows.append((str(p.index), (
                str(p.index), leader, self.replicas_text(p), ",".join(map(str, p.isr)),
                offset_text(p.log_start), offset_text(p.high_watermark), f"{p.records:,}",
                size_text(p.size))))
        self.query_one(LiveTable).sync(rows)

    def action_tail(self) -> None:
        self.app.tail_topic(self.topic)
