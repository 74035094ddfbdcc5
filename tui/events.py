"""The event log: what changed between two snapshots, in words an operator expects."""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tui.snapshot import NO_LEADER, BrokerState, Snapshot


class Severity(StrEnum):
    INFO = "info"
    GOOD = "good"
    WARN = "warn"
    BAD = "bad"


@dataclass(frozen=True)
class Event:
    at: float  # wall-clock seconds
    severity: Severity
    text: str


def _members(ids) -> str:
    return ",".join(str(i) for i in sorted(ids))


def diff(old: Snapshot | None, new: Snapshot) -> list[Event]:
    """Events that explain how `old` became `new` (none for the first snapshot)."""
    if old is None:
        return []
    events: list[Event] = []

    def add(severity: Severity, text: str) -> None:
        events.append(Event(new.taken_at, severity, text))

    for broker_id in new.broker_ids:
        was, now = old.broker_state(broker_id), new.broker_state(broker_id)
        if was != now:
            good = now == BrokerState.ONLINE
            add(Severity.GOOD if good else Severity.BAD,
                f"broker {broker_id} is {now}" + (" again" if good else f" (was {was})"))
    if old.controller_id != new.controller_id:
        add(Severity.WARN, f"controller moved from broker {old.controller_id} "
                           f"to broker {new.controller_id}")
    if old.quorum and new.quorum and old.quorum.leader != new.quorum.leader:
        add(Severity.WARN, f"quorum leader elected: broker {new.quorum.leader} "
                           f"(epoch {new.quorum.epoch}, was broker {old.quorum.leader})")

    before = {(p.topic, p.index): p for p in old.partitions}
    for p in new.partitions:
        prior = before.get((p.topic, p.index))
        if prior is None:
            continue
        if prior.leader != p.leader:
            if p.leader == NO_LEADER:
                add(Severity.BAD, f"{p.name} is offline: no leader (was broker {prior.leader})")
            else:
                was = "none" if prior.leader == NO_LEADER else f"broker {prior.leader}"
                add(Severity.WARN, f"leader election on {p.name}: broker {p.leader} "
                                   f"(was {was})")
        if prior.isr == p.isr:
            continue
        lost, gained = set(prior.isr) - set(p.isr), set(p.isr) - set(prior.isr)
        if lost:
            add(Severity.BAD, f"ISR shrink on {p.name}: {_members(prior.isr)} -> {_members(p.isr)}")
        if gained:
            add(Severity.GOOD, f"ISR expand on {p.name}: {_members(prior.isr)} -> "
                               f"{_members(p.isr)}")
    created = set(new.topics) - set(old.topics)
    deleted = set(old.topics) - set(new.topics)
    for name in sorted(created):
        count = len(new.topics[name].partitions)
        add(Severity.INFO, f"topic {name} created ({count} partition{'s' * (count != 1)})")
    for name in sorted(deleted):
        add(Severity.INFO, f"topic {name} deleted")
    return events
