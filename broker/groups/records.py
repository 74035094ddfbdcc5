"""The records a group coordinator keeps in `__consumer_offsets`, in Kafka's own format.

Keys and values are Kafka's OffsetCommitKey/Value and GroupMetadataKey/Value: an int16
version, then the fields (schemas in broker/schemas/), so Kafka's own tools (the
offsets formatter of kafka-console-consumer) can read the topic. The key's version tells
the two kinds apart: 0 and 1 are offsets, 2 is a group. A null value is a tombstone.
Batches are built with aiokafka's record batch builder and read with its reader.
"""
from __future__ import annotations

import functools
import struct
import time
from dataclasses import dataclass
from typing import NamedTuple

from kafka.protocol.api_data import ApiData

import broker.schemas as schemas
from broker import codec
from broker.records import new_builder

GROUP_KEY_VERSION = 2
OFFSET_KEY_VERSION = 1
OFFSET_VALUE_VERSION = 3
OFFSET_VALUE_WITH_EXPIRY_VERSION = 1
GROUP_VALUE_VERSION = 3
NO_PRODUCER = -1


class OffsetCommitKey(ApiData, load_json=schemas): pass
class OffsetCommitValue(ApiData, load_json=schemas): pass
class GroupMetadataKey(ApiData, load_json=schemas): pass
class GroupMetadataValue(ApiData, load_json=schemas): pass


Member = GroupMetadataValue.MemberMetadata


class CommittedOffset(NamedTuple):  # a tuple: one is made for every commit, twice
    # OffsetCommitValue's fields, by name: the record is encoded straight from this.
    offset: int
    leader_epoch: int
    metadata: str
    commit_timestamp: int
    # Set by OffsetCommit v2-v4's retention time: the offset expires then, whatever the
    # group does (Kafka's old rule), and is stored as a v1 value, which has no leader epoch.
    expire_timestamp: int = -1
    log_offset: int = -1  # where the commit is in __consumer_offsets: a later one wins


@dataclass(frozen=True)
class OffsetRecord:
    group: str
    topic: str
    partition: int
    value: CommittedOffset | None  # None: the offset was deleted


@dataclass(frozen=True)
class GroupRecord:
    group: str
    value: GroupMetadataValue | None  # None: the group was deleted


@functools.lru_cache(maxsize=65536)  # a group commits the same partitions again and again
def offset_key(group: str, topic: str, partition: int) -> bytes:
    return bytes(OffsetCommitKey(version=OFFSET_KEY_VERSION, group=group, topic=topic,
                                 partition=partition).encode())


def offset_value(committed: CommittedOffset) -> bytes:
    # Every commit writes one. The tuple has the fields' names: no OffsetCommitValue is built.
    version = (OFFSET_VALUE_VERSION if committed.expire_timestamp < 0
               else OFFSET_VALUE_WITH_EXPIRY_VERSION)
    return codec.encode_data(OffsetCommitValue, version, committed)


def group_key(group: str) -> bytes:
    return bytes(GroupMetadataKey(version=GROUP_KEY_VERSION, group=group).encode())


def group_value(value: GroupMetadataValue) -> bytes:
    return bytes(value.encode(version=GROUP_VALUE_VERSION))


def decode(key: bytes, value: bytes | None, log_offset: int) -> OffsetRecord | GroupRecord | None:
    """One record of the topic, or None for a key of a kind this broker does not know."""
    version = struct.unpack_from(">h", key)[0]
    if version == GROUP_KEY_VERSION:
        name = codec.decode_data(GroupMetadataKey, key).group
        return GroupRecord(name, None if value is None
                           else codec.decode_data(GroupMetadataValue, value))
    if version in (0, OFFSET_KEY_VERSION):
        committed = None
        if value is not None:
            v = codec.decode_data(OffsetCommitValue, value)
            committed = CommittedOffset(v.offset, v.leader_epoch, v.metadata,
                                        v.commit_timestamp, v.expire_timestamp, log_offset)
        return OffsetRecord(*_offset_key_fields(key), committed)
    return None


@functools.lru_cache(maxsize=65536)  # loading reads the same keys again and again
def _offset_key_fields(key: bytes) -> tuple[str, str, int]:
    """(group, topic, partition) of an offset record's key."""
    k = codec.decode_data(OffsetCommitKey, key)
    return k.group, k.topic, k.partition


def build_batches(records: list[tuple[bytes, bytes | CommittedOffset | None]]) -> list[bytes]:
    """The records as v2 batches of at most BUILT_BATCH_BYTES each (a record bigger than
    that gets a batch of its own). A committed offset is encoded here: of a partition's
    commits queued together, only the last is written."""
    now_ms = int(time.time() * 1000)
    batches = []
    builder, delta = None, 0
    for key, value in records:
        if isinstance(value, CommittedOffset):
            value = offset_value(value)
        if builder is None or builder.append(delta, now_ms, key, value, []) is None:
            if builder is not None:
                batches.append(bytes(builder.build()))
            builder, delta = new_builder(0, NO_PRODUCER, NO_PRODUCER, NO_PRODUCER), 0
            builder.append(delta, now_ms, key, value, [])
        delta += 1
    if builder is not None:
        batches.append(bytes(builder.build()))
    return batches
