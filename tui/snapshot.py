"""What one refresh saw of a cluster: plain immutable data, no I/O.

The data source builds a `Snapshot`; views render it; `events.diff` compares two.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

NO_LEADER = -1


class BrokerState(StrEnum):
    ONLINE = "online"  # registered and unfenced: listed in Metadata
    FENCED = "fenced"  # known (a replica or a voter) but missing from Metadata
    KILLED = "killed"  # the states below come from a local supervisor
    STOPPED = "stopped"
    PAUSED = "paused"
    ISOLATED = "isolated"
    STARTING = "starting"
    EXITED = "exited"


# Supervisor states that already say why a broker is not serving.
LOCAL_STATES = {state.value: state for state in BrokerState}


@dataclass(frozen=True)
class Broker:
    id: int
    host: str
    port: int
    rack: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Partition:
    topic: str
    index: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    offline: tuple[int, ...] = ()
    log_start: int | None = None
    high_watermark: int | None = None
    size: int | None = None  # bytes on the leader's disk (DescribeLogDirs); None if unknown

    @property
    def name(self) -> str:
        return f"{self.topic}-{self.index}"

    @property
    def under_replicated(self) -> bool:
        return len(self.isr) < len(self.replicas)

    @property
    def is_offline(self) -> bool:
        return self.leader == NO_LEADER

    @property
    def records(self) -> int:
        if self.log_start is None or self.high_watermark is None:
            return 0
        return self.high_watermark - self.log_start


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: tuple[Partition, ...]
    internal: bool = False
    min_isr: int | None = None

    @property
    def replication_factor(self) -> int:
        return max((len(p.replicas) for p in self.partitions), default=0)

    @property
    def under_replicated(self) -> int:
        return sum(p.under_replicated for p in self.partitions)

    @property
    def under_min_isr(self) -> int:
        if self.min_isr is None:
            return 0
        return sum(len(p.isr) < self.min_isr for p in self.partitions)

    @property
    def offline(self) -> int:
        return sum(p.is_offline for p in self.partitions)

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def size(self) -> int | None:
        """Bytes on the leaders' disks; None when no partition's size is known."""
        known = [p.size for p in self.partitions if p.size is not None]
        return sum(known) if known else None

    @property
    def end_offsets(self) -> int:
        """Every record ever written (the sum of high watermarks): its rate is records in/s."""
        return sum(p.high_watermark or 0 for p in self.partitions)


@dataclass(frozen=True)
class Voter:
    id: int
    log_end_offset: int
    last_fetch_ms: int  # wall-clock ms, -1 if unknown


@dataclass(frozen=True)
class Quorum:
    leader: int
    epoch: int
    high_watermark: int
    voters: tuple[Voter, ...]
    observers: tuple[Voter, ...] = ()


@dataclass(frozen=True)
class GroupMember:
    id: str
    client_id: str
    host: str
    assignment: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Group:
    id: str
    state: str
    protocol_type: str
    members: tuple[GroupMember, ...]
    committed: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class LocalNode:
    """A node as the local supervisor sees it."""
    id: int
    state: str
    pid: int | None


@dataclass(frozen=True)
class Snapshot:
    taken_at: float  # wall-clock seconds when the fetch finished
    duration: float  # seconds the fetch took
    cluster_id: str | None
    controller_id: int
    brokers: dict[int, Broker]
    topics: dict[str, Topic]
    quorum: Quorum | None = None
    quorum_error: str | None = None
    groups: tuple[Group, ...] = ()
    groups_error: str | None = None
    local: dict[int, LocalNode] | None = None

    # Cached: a snapshot never changes, and views and the event diff ask many times.
    @cached_property
    def partitions(self) -> list[Partition]:
        return [p for topic in self.topics.values() for p in topic.partitions]

    @cached_property
    def broker_ids(self) -> list[int]:
        """Every broker the cluster knows of, online or not."""
        ids = set(self.brokers)
        ids.update(r for p in self.partitions for r in p.replicas)
        if self.quorum:
            ids.update(v.id for v in self.quorum.voters)
        ids.update(self.local or ())
        return sorted(ids)

    def broker_state(self, broker_id: int) -> BrokerState:
        local = (self.local or {}).get(broker_id)
        if local and local.state in LOCAL_STATES and local.state != "running":
            return LOCAL_STATES[local.state]
        return BrokerState.ONLINE if broker_id in self.brokers else BrokerState.FENCED

    def leader_counts(self) -> Counter[int]:
        return Counter(p.leader for p in self.partitions)

    def replica_counts(self) -> Counter[int]:
        return Counter(replica for p in self.partitions for replica in p.replicas)

    def end_offset(self, topic: str, index: int) -> int | None:
        partitions = self.topics.get(topic)
        if partitions is None or index >= len(partitions.partitions):
            return None
        return partitions.partitions[index].high_watermark

    def group_lag(self, group: Group) -> dict[tuple[str, int], int]:
        """Per partition: end offset minus committed offset (partitions with both)."""
        lags = {}
        for (topic, index), committed in group.committed.items():
            end = self.end_offset(topic, index)
            if end is not None and committed >= 0:
                lags[(topic, index)] = max(end - committed, 0)
        return lags
