"""Consumer groups: state, members and lag; the detail shows lag per partition."""
from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding

from tui.events import Severity
from tui.history import sparkline
from tui.snapshot import Group, Snapshot
from tui.views.base import View
from tui.widgets.chrome import Summary, toned
from tui.widgets.live_table import LiveTable


def find_group(snapshot: Snapshot, group_id: str) -> Group | None:
    return next((g for g in snapshot.groups if g.id == group_id), None)


class GroupsView(View):
    MODE = "groups"
    BINDINGS = [Binding("enter", "open", "Lag per partition", id="groups.open", priority=True)]

    def body(self) -> ComposeResult:
        yield Summary(id="groups-empty", classes="box hidden")
        yield LiveTable("group", "state", "members", "topics", "total lag", "trend",
                        id="groups")

    def show(self, snapshot: Snapshot) -> None:
        empty = self.query_one("#groups-empty", Summary)
        if snapshot.groups_error:
            empty.show(toned(self.app, "No consumer groups to show: the cluster answered "
                               f"{snapshot.groups_error}", Severity.WARN))
        elif not snapshot.groups:
            empty.show("No consumer groups on this cluster yet.")
        empty.set_class(bool(snapshot.groups), "hidden")
        rows = []
        for group in snapshot.groups:
            lags = snapshot.group_lag(group)
            topics = sorted({topic for topic, _ in group.committed}
                            | {topic for m in group.members for topic, _ in m.assignment})
            rows.append((group.id, (group.id, group.state, len(group.members), ", ".join(topics),
                                    f"{sum(lags.values()):,}",
                                    sparkline(self.app.history.series(f"group:{group.id}")))))
        self.query_one(LiveTable).sync(rows)

    @on(LiveTable.RowSelected)
    def action_open(self) -> None:
        selected = self.query_one(LiveTable).selected_key
        if selected:
            self.app.push_screen(GroupDetail(selected))


class GroupDetail(View):
    """One group: per partition its committed offset, end offset, lag and owner."""

    def __init__(self, group_id: str):
        super().__init__()
        self.group_id = group_id

    def body(self) -> ComposeResult:
        yield Summary(id="group-summary", classes="box")
        yield LiveTable("topic", "partition", "committed", "end offset", "lag", "member",
                        id="group-partitions")

    def show(self, snapshot: Snapshot) -> None:
        summary = self.query_one("#group-summary", Summary)
        group = find_group(snapshot, self.group_id)
        if group is None:
            summary.show(toned(self.app, f"group {self.group_id} is gone", Severity.BAD))
            self.query_one(LiveTable).sync([])
            return
        lags = snapshot.group_lag(group)
        summary.show(Text.assemble((group.id, "bold"), f"   state {group.state}"
                                     f"   members {len(group.members)}"
                                     f"   total lag {sum(lags.values()):,}"))
        owners = {tp: m.client_id or m.id for m in group.members for tp in m.assignment}
        rows = []
        for (topic, index) in sorted(set(group.committed) | set(owners)):
            committed = group.committed.get((topic, index), -1)
            end = snapshot.end_offset(topic, index)
            rows.append((f"{topic}-{index}", (
                topic, index, "-" if committed < 0 else f"{committed:,}",
                "?" if end is None else f"{end:,}", f"{lags.get((topic, index), 0):,}",
                owners.get((topic, index), "-"))))
        self.query_one(LiveTable).sync(rows)
