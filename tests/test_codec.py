"""`broker.codec` against kafka-python's own `encode` and `decode`: the same bytes and the
same messages, for every API version a node serves or sends, and for offset records."""
from __future__ import annotations

import pytest
from kafka.protocol.admin import DescribeLogDirsResponse
from kafka.protocol.consumer import OffsetCommitRequest, OffsetCommitResponse
from kafka.protocol.metadata import ApiVersionsResponse
from kafka.protocol.producer import ProduceRequest

import broker.apis  # noqa: F401  (registers every API module)
from broker import codec
from broker.apis import offset_commit
from broker.groups.records import (
    CommittedOffset, GroupMetadataKey, GroupMetadataValue, OffsetCommitKey, OffsetCommitValue,
    offset_value,
)
from broker.protocol import REGISTRY

VERSIONS = [(api.request, version) for api in REGISTRY.values()
            for version in range(api.min_version, api.max_version + 1)]


def round_trip(message) -> None:
    frame = codec.encode(message)
    assert bytes(frame) == bytes(message.encode(header=True, framed=True))
    version = message.version
    decoded = codec.decode(type(message), bytes(frame[4:]), version)
    assert decoded == type(message).decode(bytes(frame[4:]), version=version, header=True)
    assert decoded == message
    assert decoded.header == message.header


@pytest.mark.parametrize("request_class, version", VERSIONS,
                         ids=[f"{cls.__name__}-v{v}" for cls, v in VERSIONS])
def test_every_request_and_response_version_matches_kafka_python(request_class, version):
    request = request_class(version=version)
    request.with_header(correlation_id=2**31 - 1, client_id="client-ü")
    round_trip(request)
    response = request.header.get_response_class()[None](version=version)
    response.with_header(correlation_id=-5)
    # The server gives the header's fields rather than building a header.
    assert codec.encode(response, codec.ResponseHeaderFields(-5)) == codec.encode(response)
    # An answer encoded once is sent again with another correlation id.
    assert codec.EncodedResponse.of(response).frame(-5) == codec.encode(response)
    if isinstance(response, ApiVersionsResponse):
        # Its header is v0 even in flexible versions; kafka-python decodes it its own way.
        assert bytes(codec.encode(response)) == bytes(response.encode(header=True, framed=True))
    else:
        round_trip(response)


def test_nested_fields_and_records_survive():
    Topic = OffsetCommitRequest.OffsetCommitRequestTopic
    commit = OffsetCommitRequest(version=3, group_id="g", generation_id_or_member_epoch=7,
                                 member_id="m", retention_time_ms=-1, topics=[
                                     Topic(name="t", partitions=[
                                         Topic.OffsetCommitRequestPartition(
                                             partition_index=i, committed_offset=10 * i,
                                             committed_metadata=None if i else "meta")
                                         for i in range(3)])])
    commit.with_header(correlation_id=1, client_id=None)
    round_trip(commit)
    Data = ProduceRequest.TopicProduceData
    produce = ProduceRequest(version=9, transactional_id=None, acks=-1, timeout_ms=100,
                             topic_data=[Data(name="t", partition_data=[
                                 Data.PartitionProduceData(index=0, records=b"\x00" * 70)])])
    produce.with_header(correlation_id=3, client_id="c")
    round_trip(produce)


def test_an_offset_commit_record_is_written_as_kafka_python_writes_it():
    value = OffsetCommitValue(version=3, offset=2**40, leader_epoch=-1, metadata="ü" * 3,
                              commit_timestamp=1_700_000_000_000)
    assert codec.encode_data(OffsetCommitValue, 3, value) == bytes(value.encode())
    assert OffsetCommitValue.decode(codec.encode_data(OffsetCommitValue, 3, value)) == value
    committed = CommittedOffset(2**40, -1, "ü" * 3, 1_700_000_000_000, log_offset=7)
    assert offset_value(committed) == bytes(value.encode())
    # An offset with an expire timestamp of its own is a v1 value, as Kafka writes it.
    expiring = committed._replace(expire_timestamp=1_700_000_060_000)
    assert offset_value(expiring) == bytes(OffsetCommitValue(
        version=1, offset=2**40, metadata="ü" * 3, commit_timestamp=1_700_000_000_000,
        expire_timestamp=1_700_000_060_000).encode())


@pytest.mark.parametrize("version", range(2, 10))
def test_an_offset_commit_answer_of_tuples_is_the_answer_of_objects(version):
    Topic = OffsetCommitResponse.OffsetCommitResponseTopic
    Partition = Topic.OffsetCommitResponsePartition

    def objects(topics):
        return OffsetCommitResponse(version=version, throttle_time_ms=0, topics=[
            Topic(version=version, name=name, partitions=[
                Partition(version=version, partition_index=i, error_code=error)
                for i, error in partitions])
            for name, partitions in topics])

    header = codec.ResponseHeaderFields(9)
    results = [(("t", 0), 0), (("t", 1), 16), (("ü", 5), 3)]
    assert codec.encode(offset_commit.response(version, results), header) == codec.encode(
        objects([("t", [(0, 0), (1, 16)]), ("ü", [(5, 3)])]), header)
    # The usual answer, kept encoded: every partition stored.
    assert offset_commit.answer(version, (("t", 0), ("ü", 5), ("t", 1))).frame(9) == codec.encode(
        objects([("t", [(0, 0), (1, 0)]), ("ü", [(5, 0)])]), header)


@pytest.mark.parametrize("version", range(1, 6))
def test_a_log_dirs_answer_of_tuples_is_the_answer_of_objects(version):
    Result = DescribeLogDirsResponse.DescribeLogDirsResult
    Topic = Result.DescribeLogDirsTopic
    Partition = Topic.DescribeLogDirsPartition
    stored = [("t", [(0, 1234, 0, False), (1, 0, 7, False)]), ("ü", [(5, 1 << 40, 0, False)])]

    def answer(topics):
        return DescribeLogDirsResponse(version=version, throttle_time_ms=0, error_code=0, results=[
            Result(version=version, error_code=0, log_dir="/data", topics=topics,
                   total_bytes=10 << 30, usable_bytes=1 << 30, is_cordoned=False)])

    objects = answer([Topic(version=version, name=name, partitions=[
        Partition(version=version, partition_index=i, partition_size=size, offset_lag=lag,
                  is_future_key=future) for i, size, lag, future in partitions])
        for name, partitions in stored])
    header = codec.ResponseHeaderFields(9)
    assert codec.encode(answer(stored), header) == codec.encode(objects, header)


def test_records_of_every_version_are_read_as_kafka_python_reads_them():
    Member = GroupMetadataValue.MemberMetadata
    records = [
        OffsetCommitKey(version=0, group="g", topic="t", partition=3),
        OffsetCommitKey(version=1, group="g-ü", topic="t", partition=2**31 - 1),
        OffsetCommitValue(version=1, offset=5, metadata="m", commit_timestamp=7,
                          expire_timestamp=9),
        OffsetCommitValue(version=3, offset=2**40, leader_epoch=4, metadata="",
                          commit_timestamp=1_700_000_000_000),
        GroupMetadataKey(version=2, group="g"),
        GroupMetadataValue(version=3, protocol_type="consumer", generation=4,
                           protocol="range", leader="m-1", current_state_timestamp=8,
                           members=[Member(version=3, member_id="m-1", group_instance_id=None,
                                           client_id="c", client_host="/127.0.0.1",
                                           rebalance_timeout=300, session_timeout=100,
                                           subscription=b"\x00\x01", assignment=b"")]),
    ]
    for record in records:
        data = bytes(record.encode())
        assert codec.decode_data(type(record), data) == type(record).decode(data) == record
