"""Drills: break the bundled cluster from the keyboard and watch it recover.

Broker drills act on the selected broker; `l` kills the leader of the selected
partition and `c` the active controller (the quorum leader). With `w` a verified
workload writes during the drills; stopping it reads everything back and writes a
report. Every drill except resume and heal asks first.
"""
from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tui.drill import DrillSession, workload_class
from tui.events import Event, Severity
from tui.local import DrillError
from tui.snapshot import BrokerState, Snapshot
from tui.source import describe_error
from tui.views.base import View
from tui.widgets.chrome import state_text, toned
from tui.widgets.dialogs import Confirm
from tui.widgets.event_log import EventLog
from tui.widgets.live_table import LiveTable

WORKLOAD_HELP = "w starts a verified workload (acks=all, idempotent) to check drills lose nothing"


class DrillsView(View):
    MODE = "drills"
    BINDINGS = [
        Binding("k", "broker_drill('kill')", "Kill", id="drills.kill"),
        Binding("s", "broker_drill('stop')", "Stop", id="drills.stop"),
        Binding("p", "toggle('pause', 'resume', 'paused')", "Pause/resume", id="drills.pause"),
        Binding("i", "toggle('isolate', 'heal', 'isolated')", "Isolate/heal",
                id="drills.isolate"),
        Binding("r", "broker_drill('restart')", "Restart", id="drills.restart"),
        Binding("l", "kill_leader", "Kill partition leader", id="drills.kill_leader"),
        Binding("c", "kill_controller", "Kill controller", id="drills.kill_controller"),
        Binding("w", "workload", "Workload", id="drills.workload"),
    ]

    def body(self) -> ComposeResult:
        yield Static(id="drills-unavailable", classes="box hidden")
        with Horizontal(id="drill-tables"):
            with Vertical(classes="box") as box:
                box.border_title = "Brokers (k s p i r)"
                yield LiveTable("id", "address", "state", "pid", "leaders", "role",
                                id="drill-brokers")
            with Vertical(classes="box") as box:
                box.border_title = "Partitions (l kills the leader)"
                yield LiveTable("partition", "leader", "ISR", id="drill-partitions")
        workload = Static(WORKLOAD_HELP, id="workload", classes="box")
        workload.border_title = "Verified workload (w)"
        yield workload
        log = EventLog(id="drill-events", classes="box")
        log.border_title = "Events"
        yield log

    def on_mount(self) -> None:
        self.session: DrillSession | None = None
        local = self.app.source.local
        if local is None:
            self._unavailable(f"Drills run only on the bundled cluster, which this console "
                              f"starts with `kraftboard`. It is connected to "
                              f"{self.app.source.bootstrap} over the Kafka protocol alone, "
                              f"with no supervisor to kill, pause or isolate brokers.")

    def _unavailable(self, why: str) -> None:
        note = self.query_one("#drills-unavailable", Static)
        note.update(why)
        note.remove_class("hidden")
        for widget in self.query("#drill-tables, #workload"):
            widget.add_class("hidden")

    def show(self, snapshot: Snapshot) -> None:
        if self.app.source.local is None:
            return
        leaders = snapshot.leader_counts()
        controller = snapshot.quorum.leader if snapshot.quorum else snapshot.controller_id
        local = snapshot.local or {}
        self.query_one("#drill-brokers", LiveTable).sync([
            (str(b), (str(b), self.app.addresses.get(b, "?"),
                      state_text(self.app, snapshot.broker_state(b)),
                      str(local[b].pid or "-") if b in local else "-", leaders.get(b, 0),
                      "controller" if b == controller else ""))
            for b in snapshot.broker_ids])
        self.query_one("#drill-partitions", LiveTable).sync([
            (p.name, (p.name, "none" if p.is_offline else str(p.leader), ",".join(map(str, p.isr))))
            for topic in snapshot.topics.values() if not topic.internal
            for p in topic.partitions])
        self.query_one(EventLog).show(self.app.events, self.app.events_total)
        self._show_workload()

    # -- drills ------------------------------------------------------------------------

    def _selected_broker(self) -> int | None:
        key = self.query_one("#drill-brokers", LiveTable).selected_key
        return int(key) if key else None

    def action_broker_drill(self, op: str) -> None:
        broker = self._selected_broker()
        if broker is not None:
            self.drill(op, broker, f"{op} broker {broker}")

    def action_toggle(self, on: str, off: str, state: str) -> None:
        """Pause or resume (isolate or heal) the selected broker, by its current state."""
        broker = self._selected_broker()
        if broker is None or self.app.snapshot is None:
            return
        if self.app.snapshot.broker_state(broker) == BrokerState(state):
            self.drill(off, broker, f"{off} broker {broker}", ask=False)
        else:
            self.drill(on, broker, f"{on} broker {broker}")

    def action_kill_leader(self) -> None:
        name = self.query_one("#drill-partitions", LiveTable).selected_key
        partition = next((p for p in self.app.snapshot.partitions if p.name == name), None) \
            if name and self.app.snapshot else None
        if partition is None or partition.is_offline:
            self.notify("select a partition that has a leader", severity="warning")
            return
        self.drill("kill", partition.leader,
                   f"kill broker {partition.leader}, leader of {partition.name}")

    def action_kill_controller(self) -> None:
        snapshot = self.app.snapshot
        if snapshot is None or snapshot.quorum is None:
            self.notify("no active controller known (DescribeQuorum did not answer)",
                        severity="warning")
            return
        leader = snapshot.quorum.leader
        self.drill("kill", leader, f"kill broker {leader}, the active controller")

    @work(group="drill")
    async def drill(self, op: str, broker: int, action: str, ask: bool = True) -> None:
        if ask and not await self.app.push_screen_wait(Confirm(f"{action[0].upper()}"
                                                               f"{action[1:]}?")):
            return
        try:
            await self.app.source.local.drill(op, broker)
        except DrillError as exc:
            self.notify(str(exc), title="Drill refused", severity="error", timeout=8)
            return
        if self.session:
            self.session.note(action)
        self.app.add_events([Event(time.time(), Severity.WARN, f"drill: {action}")])
        self.app.refresh_snapshot()

    # -- the verified workload -----------------------------------------------------------

    @work(group="workload", exclusive=True)
    async def action_workload(self) -> None:
        if self.app.source.local is None:
            return
        if workload_class() is None:
            self.notify("this build has no verified workload (broker.workload)",
                        severity="warning")
            return
        if self.session is None:
            session = DrillSession(self.app.source, self.app.source.local.data_dir / "drills")
            try:
                await session.start()
            except Exception as exc:
                self.notify(describe_error(exc), title="Workload did not start",
                            severity="error")
                return
            self.session = session
            self.app.add_events([Event(time.time(), Severity.INFO, "verified workload started")])
        else:
            session, self.session = self.session, None
            self.query_one("#workload", Static).update("stopping, reading everything back…")
            report, path = await session.finish()
            verdict = "nothing acknowledged was lost" if report.ok else "RECORDS LOST"
            self.app.add_events([Event(time.time(), Severity.GOOD if report.ok else Severity.BAD,
                                       f"workload verified: {verdict}; report {path}")])
            self.notify(f"report written to {path}", title=verdict, timeout=15)
            self.query_one("#workload", Static).update(Text.assemble(
                f"produced {report.produced:,}   acknowledged {report.acknowledged:,}   "
                f"consumed {report.consumed:,}   lost ", self._problems(report.lost),
                "   duplicated ", self._problems(report.duplicated), f"\nreport: {path}"))

    def _problems(self, count: int) -> Text:
        return toned(self.app, f"{count:,}", Severity.BAD if count else Severity.GOOD, bold=True)

    def _show_workload(self) -> None:
        if self.session is None or self.session.workload is None:
            return
        workload = self.session.workload
        self.session.update()
        text = Text(f"produced {workload.produced:,}   acknowledged {workload.acknowledged:,}"
                    "   (consumed, lost and duplicated: counted when it stops)")
        if self.session.drills:
            last = self.session.drills[-1]
            resumed = (f"writes resumed on every partition after {last.resumed_after:.2f} s"
                       if last.resumed_after is not None else
                       f"waiting for writes to resume ({time.monotonic() - last.moment:.1f} s)")
            text.append(f"\nlast drill: {last.action}: {resumed}")
        text.append("\nw stops it, reads everything back and writes the report")
        self.query_one("#workload", Static).update(text)
