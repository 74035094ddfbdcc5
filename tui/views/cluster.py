"""Cluster: brokers, the controller quorum, health counts and the event log."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical

from tui.events import Severity
from tui.snapshot import Snapshot
from tui.views.base import View
from tui.widgets.chrome import Summary, age, count_text, state_text, toned
from tui.widgets.event_log import EventLog
from tui.widgets.live_table import LiveTable


class ClusterView(View):
    MODE = "cluster"

    def body(self) -> ComposeResult:
        with Horizontal(id="cluster-top"):
            with Vertical(classes="box", id="brokers-box") as box:
                box.border_title = "Brokers"
                yield LiveTable("id", "address", "state", "leaders", "replicas", "role",
                                id="brokers")
            with Vertical(classes="box", id="quorum-box") as box:
                box.border_title = "Controller quorum"
                yield Summary(id="quorum-summary")
                yield LiveTable("voter", "log end", "lag", "last fetch", id="voters")
        health = Summary(id="health", classes="box")
        health.border_title = "Health"
        yield health
        log = EventLog(id="events", classes="box")
        log.border_title = "Events"
        yield log

    def show(self, snapshot: Snapshot) -> None:
        self._show_brokers(snapshot)
        self._show_quorum(snapshot)
        self._show_health(snapshot)
        self.query_one(EventLog).show(self.app.events, self.app.events_total)

    def _show_brokers(self, snapshot: Snapshot) -> None:
        leaders, replicas = snapshot.leader_counts(), snapshot.replica_counts()
        voters = {v.id for v in snapshot.quorum.voters} if snapshot.quorum else set()
        rows = []
        for broker_id in snapshot.broker_ids:
            broker = snapshot.brokers.get(broker_id)
            roles = []
            if broker_id == snapshot.controller_id:
                roles.append("controller")
            if snapshot.quorum and broker_id == snapshot.quorum.leader:
                roles.append("quorum leader")
            elif broker_id in voters:
                roles.append("voter")
            rows.append((str(broker_id), (
                str(broker_id), broker.address if broker else self._known_address(broker_id),
                state_text(self.app, snapshot.broker_state(broker_id)),
                leaders.get(broker_id, 0), replicas.get(broker_id, 0), ", ".join(roles))))
        self.query_one("#brokers", LiveTable).sync(rows)

    def _known_address(self, broker_id: int) -> str:
        """A broker missing from Metadata: its address from an earlier snapshot, if any."""
        return self.app.addresses.get(broker_id, "?")

    def _show_quorum(self, snapshot: Snapshot) -> None:
        summary = self.query_one("#quorum-summary", Summary)
        quorum = snapshot.quorum
        if quorum is None:
            summary.show(toned(self.app, f"DescribeQuorum: {snapshot.quorum_error}",
                                 Severity.WARN))
            self.query_one("#voters", LiveTable).sync([])
            return
        summary.show(Text.assemble(("leader ", "dim"), (f"{quorum.leader}", "bold"),
                                     ("  epoch ", "dim"), f"{quorum.epoch}",
                                     ("  high watermark ", "dim"), f"{quorum.high_watermark}"))
        rows = []
        for voter in quorum.voters + quorum.observers:
            lag = max(quorum.high_watermark - voter.log_end_offset, 0)
            fetched = ("-" if voter.id == quorum.leader or voter.last_fetch_ms < 0
                       else age(max(snapshot.taken_at - voter.last_fetch_ms / 1000, 0)))
            name = f"{voter.id}" + (" (leader)" if voter.id == quorum.leader else "")
            rows.append((str(voter.id), (name, voter.log_end_offset,
                                         count_text(self.app, lag), fetched)))
        self.query_one("#voters", LiveTable).sync(rows)

    def _show_health(self, snapshot: Snapshot) -> None:
        topics = snapshot.topics.values()
        counts = [("offline partitions", sum(t.offline for t in topics)),
                  ("under-replicated", sum(t.under_replicated for t in topics)),
                  ("under min ISR", sum(t.under_min_isr for t in topics))]
        online = sum(1 for b in snapshot.broker_ids if b in snapshot.brokers)
        text = Text.assemble(f"brokers online {online}/{len(snapshot.broker_ids)}   ",
                             f"topics {len(snapshot.topics)}   ",
                             f"partitions {len(snapshot.partitions)}   ")
        for label, count in counts:
            text.append_text(Text.assemble(f"{label} ", count_text(self.app, count), "   "))
        self.query_one("#health", Summary).show(text)
