"""The metadata image: brokers, topics and partitions as every node knows them.

The active controller writes metadata records into the Raft log (`__cluster_metadata`);
every node applies them, in log order and only once committed, to its image. The image is
therefore the same on every node at the same offset. A record is a small JSON object
with a "type"; `encode_record` and `MetadataImage.apply` are the only places that know
the format.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from kafka import errors

from broker.errors import RequestError

NO_LEADER = -1
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})
LEGAL_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_NAME_LENGTH = 249


def check_topic_name(name: str | None) -> None:
    if not name:
        raise RequestError(errors.InvalidTopicError, "topic name is empty")
    if name in (".", ".."):
        raise RequestError(errors.InvalidTopicError, f"topic name {name!r} is not allowed")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise RequestError(errors.InvalidTopicError,
                           f"topic name is longer than {MAX_TOPIC_NAME_LENGTH} characters")
    if not LEGAL_TOPIC_NAME.match(name):
        raise RequestError(errors.InvalidTopicError,
                           f"topic name {name!r} may contain only ASCII letters, digits, '.', '_' and '-'")


@dataclass
class BrokerInfo:
    id: int
    endpoints: dict[str, tuple[str, int]]  # advertised (host, port) by listener name
    incarnation: str
    fenced: bool = True
    registered_at: int = -1  # offset of its registration record: unfenced once applied that far


@dataclass
class PartitionInfo:
    topic: str
    index: int
    replicas: list[int]
    isr: list[int]
    leader: int
    leader_epoch: int = 0
    partition_epoch: int = 0

    def as_record(self, topic_id: uuid.UUID) -> dict[str, Any]:
        return {"type": "partition", "topic_id": topic_id.hex, "index": self.index,
                "replicas": self.replicas, "isr": self.isr, "leader": self.leader,
                "leader_epoch": self.leader_epoch, "partition_epoch": self.partition_epoch}


@dataclass
class TopicInfo:
    name: str
    id: uuid.UUID
    configs: dict[str, Any]
    partitions: list[PartitionInfo] = field(default_factory=list)

    @property
    def internal(self) -> bool:
        return self.name in INTERNAL_TOPICS


def encode_record(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()


def cluster_record(cluster_id: str) -> dict[str, Any]:
    return {"type": "cluster", "id": cluster_id}


def register_broker_record(broker: BrokerInfo) -> dict[str, Any]:
    return {"type": "register_broker", "id": broker.id, "endpoints": broker.endpoints,
            "incarnation": broker.incarnation}


def producer_ids_record(broker_id: int, next_producer_id: int) -> dict[str, Any]:
    """A block of producer ids went to a broker: the next block starts at next_producer_id."""
    return {"type": "producer_ids", "broker_id": broker_id, "next": next_producer_id}


def topic_record(name: str, topic_id: uuid.UUID, configs: dict[str, Any]) -> dict[str, Any]:
    return {"type": "topic", "name": name, "id": topic_id.hex, "configs": configs}


def remove_topic_record(topic_id: uuid.UUID) -> dict[str, Any]:
    return {"type": "remove_topic", "id": topic_id.hex}


def topic_configs_record(topic_id: uuid.UUID, configs: dict[str, Any]) -> dict[str, Any]:
    return {"type": "topic_configs", "id": topic_id.hex, "configs": configs}


def fence_record(broker_id: int, fenced: bool) -> dict[str, Any]:
    return {"type": "fence_broker" if fenced else "unfence_broker", "id": broker_id}


class MetadataImage:
    def __init__(self) -> None:
        self.cluster_id: str | None = None
        self.brokers: dict[int, BrokerInfo] = {}
        self.topics: dict[str, TopicInfo] = {}
        self.topics_by_id: dict[uuid.UUID, TopicInfo] = {}
        self.offset = -1  # the last applied record's offset
        self.next_producer_id = 0  # the first id of the next block the controller hands out
        # Called with each PartitionInfo that changed (created, new leader, new ISR).
        self.partition_listeners: list[Callable[[PartitionInfo], None]] = []
        self.topic_removed_listeners: list[Callable[[TopicInfo], None]] = []

    def live_brokers(self) -> list[int]:
        return sorted(b.id for b in self.brokers.values() if not b.fenced)

    def live_endpoints(self, listener: str) -> dict[int, tuple[str, int]]:
        """Each live broker's (host, port) on `listener`, for a client that connected to
        it; as in Kafka, a broker without that listener is left out."""
        return {b: self.brokers[b].endpoints[listener] for b in self.live_brokers()
                if listener in self.brokers[b].endpoints}

    def apply(self, offset: int, value: bytes) -> None:
        record = json.loads(value)
        self.offset = offset
        getattr(self, "_apply_" + record.pop("type"))(**record)

    def _apply_cluster(self, id: str) -> None:
        self.cluster_id = id

    def _apply_register_broker(self, id: int, incarnation: str,
                               endpoints: dict[str, list] | None = None,
                               host: str | None = None, port: int | None = None) -> None:
        # Logs written before brokers had several listeners carry one PLAINTEXT host and port.
        endpoints = endpoints or {"PLAINTEXT": (host, port)}
        self.brokers[id] = BrokerInfo(id, {name: tuple(addr) for name, addr in endpoints.items()},
                                      incarnation, fenced=True, registered_at=self.offset)

    def _apply_fence_broker(self, id: int) -> None:
        self.brokers[id].fenced = True

    def _apply_unfence_broker(self, id: int) -> None:
        self.brokers[id].fenced = False

    def _apply_producer_ids(self, broker_id: int, next: int) -> None:
        self.next_producer_id = next

    def _apply_topic(self, name: str, id: str, configs: dict[str, Any]) -> None:
        topic = TopicInfo(name, uuid.UUID(hex=id), configs)
        self.topics[name] = topic
        self.topics_by_id[topic.id] = topic

    def _apply_topic_configs(self, id: str, configs: dict[str, Any]) -> None:
        self.topics_by_id[uuid.UUID(hex=id)].configs = configs

    def _apply_remove_topic(self, id: str) -> None:
        topic = self.topics_by_id.pop(uuid.UUID(hex=id))
        del self.topics[topic.name]
        for listener in self.topic_removed_listeners:
            listener(topic)

    def _apply_partition(self, topic_id: str, index: int, replicas: list[int], isr: list[int],
                         leader: int, leader_epoch: int, partition_epoch: int) -> None:
        topic = self.topics_by_id[uuid.UUID(hex=topic_id)]
        partition = PartitionInfo(topic.name, index, replicas, isr, leader, leader_epoch,
                                  partition_epoch)
        if index < len(topic.partitions):
            topic.partitions[index] = partition
        else:
            topic.partitions.append(partition)
        for listener in self.partition_listeners:
            listener(partition)
