"""Property tests of batch validation (`broker.records.split_batches`).

Batches come from kafka-python's DefaultRecordBatchBuilder, the same code a producer
runs; what the broker stamps is read back with kafka-python's DefaultRecordBatch.
"""
from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from kafka import errors
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from broker.errors import RequestError
from broker.records import replicated_batches, split_batches

CRC_AT = 17
LENGTH_AT = 8
MAGIC_AT = 16
PRODUCE_VERSION = 9  # any v7+ version: every codec is allowed
NO_LIMIT = 1 << 30
CODECS = [DefaultRecordBatchBuilder.CODEC_NONE, DefaultRecordBatchBuilder.CODEC_GZIP]

FEW = settings(max_examples=60, deadline=None)

record = st.tuples(
    st.none() | st.binary(max_size=40),                                    # key
    st.none() | st.binary(max_size=300),                                   # value
    st.lists(st.tuples(st.text(max_size=10), st.binary(max_size=20)), max_size=3),  # headers
    st.integers(min_value=0, max_value=2**41),                             # timestamp
)
producer_state = st.none() | st.tuples(
    st.integers(min_value=0, max_value=2**62),       # producer id
    st.integers(min_value=0, max_value=2**15 - 1),   # epoch
    st.integers(min_value=0, max_value=2**31 - 1000),  # base sequence
)


def build(records, codec=0, producer=None) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=False, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=NO_LIMIT)
    if producer is not None:
        builder.set_producer_state(*producer, is_transactional=False)
    for offset, (key, value, headers, timestamp) in enumerate(records):
        builder.append(offset, timestamp=timestamp, key=key, value=value, headers=headers)
    return bytes(builder.build())


@st.composite
def batches(draw) -> tuple[bytes, list, tuple | None]:
    records = draw(st.lists(record, min_size=1, max_size=15))
    producer = draw(producer_state)
    return build(records, draw(st.sampled_from(CODECS)), producer), records, producer


def reject_code(payload: bytes, max_batch_bytes: int = NO_LIMIT) -> int | None:
    """The Kafka error code split_batches answers with, None when it accepts."""
    try:
        split_batches(payload, max_batch_bytes, PRODUCE_VERSION)
    except RequestError as exc:
        return exc.code
    return None


@FEW
@given(batches())
def test_valid_batch_is_accepted_as_sent(built):
    data, records, producer = built
    (batch,) = split_batches(data, len(data), PRODUCE_VERSION)
    assert bytes(batch.data) == data
    assert batch.record_count == len(records)
    assert batch.last_offset_delta == len(records) - 1
    assert batch.max_timestamp == max(r[3] for r in records)
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) \
        == (producer if producer else (-1, -1, -1))
    assert not batch.transactional


@FEW
@given(batches(), st.integers(min_value=0, max_value=2**62), st.integers(min_value=0, max_value=2**31 - 1))
def test_stamped_offset_keeps_the_crc_valid(built, base_offset, leader_epoch):
    data, records, _ = built
    (batch,) = split_batches(data, NO_LIMIT, PRODUCE_VERSION)
    batch.stamp(base_offset, leader_epoch)
    stored = DefaultRecordBatch(bytes(batch.data))
    assert stored.validate_crc()
    assert (stored.base_offset, stored.leader_epoch) == (base_offset, leader_epoch)
    assert [(r.offset, r.key, r.value, r.headers, r.timestamp) for r in stored] \
        == [(base_offset + i, k, v, h, t) for i, (k, v, h, t) in enumerate(records)]
    # What the broker stored is still a batch it accepts.
    assert reject_code(bytes(batch.data)) is None


@FEW
@given(batches(), st.integers(min_value=0, max_value=2**41))
def test_log_append_time_rewrites_timestamps_with_a_valid_crc(built, now_ms):
    data, records, _ = built
    (batch,) = split_batches(data, NO_LIMIT, PRODUCE_VERSION)
    batch.stamp(7, 0)
    batch.set_log_append_time(now_ms)
    stored = DefaultRecordBatch(bytes(batch.data))
    assert stored.validate_crc()
    assert stored.timestamp_type == 1 and stored.max_timestamp == now_ms == batch.max_timestamp
    assert [(r.offset, r.timestamp, r.value) for r in stored] \
        == [(7 + i, now_ms, v) for i, (_, v, _, _) in enumerate(records)]


@FEW
@given(batches(), st.data())
def test_any_flipped_byte_under_the_crc_is_corrupt(built, data):
    payload, _, _ = built
    at = data.draw(st.integers(min_value=CRC_AT, max_value=len(payload) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    damaged = bytearray(payload)
    damaged[at] ^= flip
    assert reject_code(bytes(damaged)) == errors.CorruptRecordError.errno


@FEW
@given(batches(), st.integers(min_value=0, max_value=CRC_AT - 1), st.integers(min_value=1, max_value=255))
def test_flipped_byte_before_the_crc(built, at, flip):
    """baseOffset and partitionLeaderEpoch are the broker's to overwrite; a changed length
    or magic is refused with a Kafka error, never another exception."""
    payload, records, _ = built
    damaged = bytearray(payload)
    damaged[at] ^= flip
    if LENGTH_AT <= at < MAGIC_AT - 4 or at == MAGIC_AT:
        assert reject_code(bytes(damaged)) is not None
    else:
        (batch,) = split_batches(bytes(damaged), NO_LIMIT, PRODUCE_VERSION)
        assert batch.record_count == len(records)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_request_errors(payload):
    reject_code(payload)


@settings(max_examples=100, deadline=None)
@given(batches(), st.binary(min_size=1, max_size=80), st.integers(min_value=0, max_value=400))
def test_batch_with_random_bytes_spliced_in_raises_only_request_errors(built, noise, at):
    payload, _, _ = built
    at = min(at, len(payload))
    reject_code(payload[:at] + noise + payload[at:])


@FEW
@given(st.lists(batches(), min_size=1, max_size=5))
def test_concatenated_batches_split_back(built):
    """A follower's fetch carries many batches: they split back as they were built."""
    payloads = [data for data, _, _ in built]
    split = replicated_batches(b"".join(payloads))
    assert [bytes(b.data) for b in split] == payloads
    assert [b.record_count for b in split] == [len(records) for _, records, _ in built]


@FEW
@given(st.lists(batches(), min_size=2, max_size=4))
def test_a_produce_carries_exactly_one_batch(built):
    assert reject_code(b"".join(data for data, _, _ in built)) == errors.InvalidRecordError.errno


@FEW
@given(batches(), st.data())
def test_truncated_batch_is_rejected(built, data):
    payload, _, _ = built
    cut = data.draw(st.integers(min_value=1, max_value=len(payload) - 1))
    # Kafka answers INVALID_RECORD when no whole batch is left, CORRUPT_MESSAGE for a
    # length field under the v0 minimum.
    assert reject_code(payload[:cut]) in (errors.InvalidRecordError.errno,
                                          errors.CorruptRecordError.errno)


@FEW
@given(batches())
def test_max_message_bytes_is_inclusive(built):
    payload, _, _ = built
    assert reject_code(payload, len(payload)) is None
    assert reject_code(payload, len(payload) - 1) == errors.MessageSizeTooLargeError.errno


def test_batch_without_records_is_invalid():
    empty = build([])
    assert struct.unpack_from(">i", empty, 57)[0] == 0  # recordCount
    assert reject_code(empty) == errors.InvalidRecordError.errno


def test_empty_payload_is_rejected():
    assert reject_code(b"") is not None
