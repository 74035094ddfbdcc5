"""RecordBatch (magic v2) framing: validate what producers send, stamp offsets in place.

Batches stay opaque: the broker reads the 61-byte header, checks the CRC-32C over
bytes [21, end) and rewrites baseOffset and partitionLeaderEpoch, which the CRC does not
cover. Records themselves are decoded only by features that need them, with
kafka-python's record reader.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from crc32c import crc32c
from kafka import errors

from broker.errors import RequestError

HEADER = struct.Struct(">qiibIhiqqqhii")
HEADER_SIZE = HEADER.size  # 61
CRC_START = 21
LENGTH_OVERHEAD = 12  # baseOffset + batchLength precede the counted bytes
MAX_TIMESTAMP_AT = 35
ATTRIBUTES_AT = 21
CRC_AT = 17

CODEC_MASK = 0x07
LOG_APPEND_TIME = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20
KNOWN_CODECS = range(0, 5)  # none, gzip, snappy, lz4, zstd


@dataclass(slots=True)
class Batch:
    """One validated batch, ready to be stamped with its offset and stored."""

    data: bytearray
    record_count: int
    last_offset_delta: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    transactional: bool
    base_offset: int = 0
    leader_epoch: int = -1

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def last_sequence(self) -> int:
        return self.base_sequence + self.last_offset_delta

    def stamp(self, base_offset: int, leader_epoch: int) -> None:
        self.base_offset, self.leader_epoch = base_offset, leader_epoch
        struct.pack_into(">q", self.data, 0, base_offset)
        struct.pack_into(">i", self.data, 12, leader_epoch)

    def set_log_append_time(self, now_ms: int) -> None:
        """LogAppendTime topics: the broker's clock becomes the batch timestamp (CRC redone)."""
        attributes = struct.unpack_from(">h", self.data, ATTRIBUTES_AT)[0] | LOG_APPEND_TIME
        struct.pack_into(">h", self.data, ATTRIBUTES_AT, attributes)
        struct.pack_into(">q", self.data, MAX_TIMESTAMP_AT, now_ms)
        struct.pack_into(">I", self.data, CRC_AT, crc32c(memoryview(self.data)[CRC_START:]))
        self.max_timestamp = now_ms


def _frames(payload: bytes, max_batch_bytes: int):
    """Yield (batch, attributes) for each framed, CRC-checked v2 batch in `payload`."""
    view = memoryview(payload)
    pos = 0
    while pos < len(payload):
        if len(payload) - pos < HEADER_SIZE:
            raise RequestError(errors.CorruptRecordError, "truncated batch header")
        (base_offset, length, leader_epoch, magic, crc, attributes, last_offset_delta, _, max_ts,
         producer_id, producer_epoch, base_sequence, count) = HEADER.unpack_from(payload, pos)
        size = length + LENGTH_OVERHEAD
        if magic != 2:
            raise RequestError(errors.UnsupportedForMessageFormatError,
                               f"message format v{magic} is not supported; v2 only")
        if size < HEADER_SIZE or pos + size > len(payload):
            raise RequestError(errors.CorruptRecordError, "batch length does not match the payload")
        if size > max_batch_bytes:
            raise RequestError(errors.MessageSizeTooLargeError,
                               f"batch of {size} bytes is over max.message.bytes={max_batch_bytes}")
        if crc32c(view[pos + CRC_START:pos + size]) != crc:
            raise RequestError(errors.CorruptRecordError, "CRC-32C mismatch")
        yield Batch(
            data=bytearray(view[pos:pos + size]),
            record_count=count,
            last_offset_delta=last_offset_delta,
            max_timestamp=max_ts,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=base_sequence,
            transactional=bool(attributes & TRANSACTIONAL),
            base_offset=base_offset,
            leader_epoch=leader_epoch,
        ), attributes
        pos += size


def split_batches(payload: bytes, max_batch_bytes: int) -> list[Batch]:
    """Validate a produce payload and return its batches.

    Raises RequestError with the error code Apache Kafka answers for that fault.
    """
    if not payload:
        raise RequestError(errors.CorruptRecordError, "empty record set")
    batches = []
    for batch, attributes in _frames(payload, max_batch_bytes):
        if attributes & CODEC_MASK not in KNOWN_CODECS:
            raise RequestError(errors.UnsupportedCompressionTypeError, "unknown compression codec")
        if attributes & CONTROL:
            raise RequestError(errors.InvalidRecordError, "producers may not write control batches")
        if batch.record_count <= 0 or batch.last_offset_delta != batch.record_count - 1:
            raise RequestError(errors.InvalidRecordError,
                               "record count and last offset delta disagree")
        batches.append(batch)
    return batches


def replicated_batches(payload: bytes) -> list[Batch]:
    """Batches a follower fetched from its leader: already validated and stamped there,
    so only the framing and CRC are checked again."""
    return [batch for batch, _ in _frames(payload, len(payload))]
