"""Bad input never kills the node: raw frames over a socket, then a normal client.

Requests are built with kafka-python's protocol classes (or broken on purpose from their
bytes); every test ends by checking that the node still serves a real client.
"""
from __future__ import annotations

import random
import socket
import struct
import time
import uuid

import pytest
from confluent_kafka import Producer
from crc32c import crc32c
from kafka.protocol.admin import (
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    DescribeQuorumRequest, DescribeQuorumResponse, ElectLeadersRequest, ElectLeadersResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    ListGroupsRequest, ListGroupsResponse,
)
from kafka.protocol.consumer import (
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
)
from kafka.protocol.metadata import (
    ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    MetadataRequest, MetadataResponse,
)
from kafka.protocol.producer import (
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
)
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.legacy_records import LegacyRecordBatchBuilder

from broker.server import MAX_IN_FLIGHT, READ_AHEAD_BYTES
from conftest import NodeProcess

REQUEST_MAX_BYTES = 64 * 1024
NODE_MESSAGE_MAX_BYTES = 16 * 1024
PRODUCE_V, FETCH_V, LIST_OFFSETS_V, METADATA_V, CREATE_TOPICS_V = 9, 12, 7, 12, 7

# Kafka error codes
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
NOT_ENOUGH_REPLICAS = 19
INVALID_TOPIC_EXCEPTION = 17
INVALID_REQUIRED_ACKS = 21
UNSUPPORTED_VERSION = 35
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
UNSUPPORTED_COMPRESSION_TYPE = 76
INVALID_RECORD = 87

LATEST = -1
CRC_AT, CRC_START, RECORD_COUNT_AT = 17, 21, 57


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("bad-input"), **{
        "socket.request.max.bytes": REQUEST_MAX_BYTES,
        "message.max.bytes": NODE_MESSAGE_MAX_BYTES,
    }).start()
    yield node
    node.stop()


@pytest.fixture
def topic(node) -> str:
    """A fresh one-partition topic."""
    name = "t-" + uuid.uuid4().hex[:8]
    with Raw(node) as raw:
        assert raw.create_topics([name])[name] == 0
    return name


@pytest.fixture(autouse=True)
def still_serving(node):
    """After every test, the node is alive and a real client can produce to it."""
    yield
    assert node.alive(), node.log_text()[-3000:]
    delivered = []
    producer = Producer({"bootstrap.servers": node.bootstrap, "message.timeout.ms": 10000})
    producer.produce("still-serving", b"ping",
                     on_delivery=lambda err, msg: delivered.append((err, msg.offset())))
    producer.flush(15)
    assert len(delivered) == 1 and delivered[0][0] is None, delivered


# -- raw connection -------------------------------------------------------------------


class Raw:
    """One client socket speaking the Kafka protocol with kafka-python's classes."""

    def __init__(self, node: NodeProcess, port: int | None = None):
        self.sock = socket.create_connection(("127.0.0.1", port or node.port), timeout=15)
        self.correlation_id = 0

    def __enter__(self) -> "Raw":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def frame(self, request) -> bytes:
        self.correlation_id += 1
        request.with_header(correlation_id=self.correlation_id, client_id="bad-input")
        return bytes(request.encode(header=True, framed=True))

    def send(self, request) -> None:
        self.sock.sendall(self.frame(request))

    def receive(self, response_class, version: int, correlation_id: int | None = None):
        """The next response, which must answer `correlation_id` (default: the last sent)."""
        size = struct.unpack(">i", self._read_exactly(4))[0]
        response = response_class.decode(self._read_exactly(size), version=version, header=True)
        assert response.header.correlation_id == (correlation_id or self.correlation_id)
        return response

    def call(self, request, response_class):
        self.send(request)
        return self.receive(response_class, request.API_VERSION)

    def assert_closed(self) -> None:
        """The node closes the connection without sending anything (more)."""
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return
        assert data == b"", f"expected the connection to close, got {data[:64]!r}"

    def _read_exactly(self, n: int) -> bytes:
        data = self.sock.recv(n, socket.MSG_WAITALL)
        assert len(data) == n, f"connection closed after {len(data)} of {n} bytes"
        return data

    # -- requests the tests repeat --

    def create_topics(self, names, partitions: int = 1, configs=None) -> dict[str, int]:
        Topic = CreateTopicsRequest.CreatableTopic
        response = self.call(CreateTopicsRequest(
            version=CREATE_TOPICS_V, timeout_ms=10000, validate_only=False,
            topics=[Topic(name=name, num_partitions=partitions, replication_factor=1, assignments=[],
                          configs=[Topic.CreatableTopicConfig(name=k, value=v)
                                   for k, v in (configs or {}).items()])
                    for name in names]), CreateTopicsResponse)
        return {t.name: t.error_code for t in response.topics}

    def produce(self, topic: str, records: bytes, partition: int = 0, acks: int = 1):
        """Sends one partition's records; returns its (error code, base offset)."""
        request = produce_request(topic, {partition: records}, acks)
        if acks == 0:
            self.send(request)
            return None
        response = self.call(request, ProduceResponse)
        part = response.responses[0].partition_responses[0]
        return part.error_code, part.base_offset

    def produce_pipelined(self, topic: str, batches: list[bytes], window: int = 50) -> list[tuple]:
        """Sends batches to partition 0 `window` requests at a time without waiting for
        answers in between; returns each (error code, base offset)."""
        results = []
        for start in range(0, len(batches), window):
            frames = [self.frame(produce_request(topic, {0: b})) for b in batches[start:start + window]]
            first = self.correlation_id - len(frames) + 1
            self.sock.sendall(b"".join(frames))
            for correlation_id in range(first, self.correlation_id + 1):
                part = self.receive(ProduceResponse, PRODUCE_V, correlation_id) \
                    .responses[0].partition_responses[0]
                results.append((part.error_code, part.base_offset))
        return results

    def fetch(self, topic: str, offset: int, partition: int = 0, wait_ms: int = 0):
        """One partition's fetch result; with `wait_ms`, waits for data as consumers do."""
        Topic = FetchRequest.FetchTopic
        response = self.call(FetchRequest(
            version=FETCH_V, max_wait_ms=wait_ms, min_bytes=1 if wait_ms else 0, max_bytes=1 << 20,
            topics=[Topic(topic=topic, partitions=[Topic.FetchPartition(
                partition=partition, fetch_offset=offset, partition_max_bytes=1 << 20)])]),
            FetchResponse)
        return response.responses[0].partitions[0]

    def latest_offset(self, topic: str, partition: int = 0) -> int:
        Topic = ListOffsetsRequest.ListOffsetsTopic
        response = self.call(ListOffsetsRequest(
            version=LIST_OFFSETS_V, replica_id=-1, isolation_level=0,
            topics=[Topic(name=topic, partitions=[Topic.ListOffsetsPartition(
                partition_index=partition, timestamp=LATEST)])]), ListOffsetsResponse)
        result = response.topics[0].partitions[0]
        assert result.error_code == 0
        return result.offset

    def producer_id(self) -> tuple[int, int]:
        response = self.call(InitProducerIdRequest(
            version=4, transactional_id=None, transaction_timeout_ms=60000), InitProducerIdResponse)
        assert response.error_code == 0
        return response.producer_id, response.producer_epoch


def produce_request(topic: str, records: dict[int, bytes], acks: int = 1,
                    version: int = PRODUCE_V) -> ProduceRequest:
    """A produce of {partition: record set} to one topic."""
    Topic = ProduceRequest.TopicProduceData
    return ProduceRequest(
        version=version, transactional_id=None, acks=acks, timeout_ms=10000,
        topic_data=[Topic(name=topic, partition_data=[
            Topic.PartitionProduceData(index=p, records=data) for p, data in records.items()])])


def batch(values=(b"value",), producer=(-1, -1), base_sequence: int = -1, codec: int = 0) -> bytes:
    """A v2 record batch as a producer would send it (offsets from 0)."""
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=codec, is_transactional=False, producer_id=-1,
        producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    if base_sequence >= 0:
        builder.set_producer_state(producer[0], producer[1], base_sequence, False)
    for offset, value in enumerate(values):
        builder.append(offset, timestamp=None, key=b"key", value=value, headers=[])
    return bytes(builder.build())


def with_version(frame: bytes, version: int) -> bytes:
    """The same frame claiming another API version (bytes 6-7 after the size)."""
    return frame[:6] + struct.pack(">h", version) + frame[8:]


def framed(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


# -- every advertised version answers ------------------------------------------------

TOPIC_RESOURCE = 2


def sweep_request(api_key: int, version: int, topic: str):
    """A valid request of `api_key` at `version` about `topic` (which it may delete)."""
    if api_key == 0:
        return produce_request(topic, {0: batch()}, version=version)
    if api_key == 1:
        Topic = FetchRequest.FetchTopic
        return FetchRequest(version=version, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, topics=[
            Topic(topic=topic, partitions=[Topic.FetchPartition(partition=0, fetch_offset=0,
                                                                partition_max_bytes=1 << 20)])])
    if api_key == 2:
        Topic = ListOffsetsRequest.ListOffsetsTopic
        return ListOffsetsRequest(version=version, replica_id=-1, topics=[Topic(
            name=topic, partitions=[Topic.ListOffsetsPartition(partition_index=0, timestamp=LATEST)])])
    if api_key == 3:
        return MetadataRequest(version=version, topics=[MetadataRequest.MetadataRequestTopic(name=topic)],
                               allow_auto_topic_creation=False)
    if api_key == 8:
        Topic = OffsetCommitRequest.OffsetCommitRequestTopic
        return OffsetCommitRequest(version=version, group_id=topic, member_id="", topics=[Topic(
            name=topic, partitions=[Topic.OffsetCommitRequestPartition(
                partition_index=0, committed_offset=0, committed_metadata="sweep")])])
    if api_key == 9:
        Group = OffsetFetchRequest.OffsetFetchRequestGroup
        return OffsetFetchRequest(version=version, group_id=topic, topics=None, groups=[
            Group(group_id=topic, topics=None)])
    if api_key == 10:
        return FindCoordinatorRequest(version=version, key="group", key_type=0,
                                      coordinator_keys=["group"])
    if api_key == 15:
        return DescribeGroupsRequest(version=version, groups=[topic])
    if api_key == 16:
        return ListGroupsRequest(version=version)
    if api_key == 18:
        return ApiVersionsRequest(version=version, client_software_name="sweep",
                                  client_software_version="1")
    if api_key == 19:
        Topic = CreateTopicsRequest.CreatableTopic
        return CreateTopicsRequest(version=version, timeout_ms=10000, topics=[Topic(
            name=topic + "-new", num_partitions=1, replication_factor=1, assignments=[],
            configs=[Topic.CreatableTopicConfig(name="retention.ms", value="100000")])])
    if api_key == 20:
        return DeleteTopicsRequest(version=version, timeout_ms=10000, topic_names=[topic], topics=[
            DeleteTopicsRequest.DeleteTopicState(name=topic)])
    if api_key == 21:
        Topic = DeleteRecordsRequest.DeleteRecordsTopic
        return DeleteRecordsRequest(version=version, timeout_ms=10000, topics=[Topic(
            name=topic, partitions=[Topic.DeleteRecordsPartition(partition_index=0, offset=0)])])
    if api_key == 22:
        return InitProducerIdRequest(version=version, transactional_id=None,
                                     transaction_timeout_ms=60000)
    if api_key == 32:
        return DescribeConfigsRequest(version=version, resources=[
            DescribeConfigsRequest.DescribeConfigsResource(
                resource_type=TOPIC_RESOURCE, resource_name=topic, configuration_keys=None)])
    if api_key in (33, 44):
        request_class = AlterConfigsRequest if api_key == 33 else IncrementalAlterConfigsRequest
        Resource = request_class.AlterConfigsResource
        change = {"name": "retention.ms", "value": "200000"}
        if api_key == 44:
            change["config_operation"] = 0  # SET
        return request_class(version=version, validate_only=False, resources=[Resource(
            resource_type=TOPIC_RESOURCE, resource_name=topic,
            configs=[Resource.AlterableConfig(**change)])])
    if api_key == 35:
        return DescribeLogDirsRequest(version=version, topics=[
            DescribeLogDirsRequest.DescribableLogDirTopic(topic=topic, partitions=[0])])
    if api_key == 37:
        return CreatePartitionsRequest(version=version, timeout_ms=10000, validate_only=False, topics=[
            CreatePartitionsRequest.CreatePartitionsTopic(name=topic, count=2, assignments=None)])
    if api_key == 43:  # every partition: those already led by their preferred replica are left out
        return ElectLeadersRequest(version=version, election_type=0, topic_partitions=None,
                                   timeout_ms=10000)
    if api_key == 55:
        Topic = DescribeQuorumRequest.TopicData
        return DescribeQuorumRequest(version=version, topics=[Topic(
            topic_name="__cluster_metadata", partitions=[Topic.PartitionData(partition_index=0)])])
    if api_key == 60:
        return DescribeClusterRequest(version=version)
    raise ValueError(f"no sweep request for API key {api_key}")


RESPONSES = {r.API_KEY: r for r in [
    ProduceResponse, FetchResponse, ListOffsetsResponse, MetadataResponse, OffsetCommitResponse,
    OffsetFetchResponse, FindCoordinatorResponse, DescribeGroupsResponse, ListGroupsResponse,
    ApiVersionsResponse, CreateTopicsResponse, DeleteTopicsResponse, DeleteRecordsResponse,
    InitProducerIdResponse, DescribeConfigsResponse, AlterConfigsResponse,
    IncrementalAlterConfigsResponse, DescribeLogDirsResponse, CreatePartitionsResponse,
    ElectLeadersResponse,
    DescribeQuorumResponse, DescribeClusterResponse]}


def error_codes(value) -> list[int]:
    """Every error_code field anywhere in a decoded response."""
    if isinstance(value, dict):
        return [c for k, v in value.items()
                for c in ([v] if k == "error_code" else error_codes(v))]
    if isinstance(value, list):
        return [c for item in value for c in error_codes(item)]
    return []


def advertised(node) -> list[tuple[int, int]]:
    with Raw(node) as raw:
        ranges = raw.call(ApiVersionsRequest(version=0), ApiVersionsResponse).api_keys
    return [(k.api_key, v) for k in ranges for v in range(k.min_version, k.max_version + 1)]


COORDINATOR_ERRORS = (14, 15, 16)  # loading, not available, not the coordinator


def wait_for_coordinator(node, group: str) -> None:
    """Until this (single) node coordinates `group`: the offsets topic exists, loaded."""
    for _ in range(200):
        with Raw(node) as raw:
            error = raw.call(OffsetFetchRequest(version=2, group_id=group, topics=None),
                             OffsetFetchResponse).error_code
            if error not in COORDINATOR_ERRORS:
                return
            raw.call(FindCoordinatorRequest(version=0, key=group), FindCoordinatorResponse)
        time.sleep(0.05)
    raise AssertionError(f"no coordinator for {group}")


@pytest.mark.parametrize("api_key", sorted(RESPONSES))
def test_every_advertised_version_answers(node, api_key):
    """Each version the node advertises decodes and answers without error."""
    versions = [v for key, v in advertised(node) if key == api_key]
    assert versions
    failures = {}
    for version in versions:
        name = "sweep-" + uuid.uuid4().hex[:8]
        with Raw(node) as raw:
            assert raw.create_topics([name]) == {name: 0}
            if api_key in (8, 9, 15):  # group APIs: the topic's name is the group's
                wait_for_coordinator(node, name)
            raw.send(sweep_request(api_key, version, name))
            try:
                response = raw.receive(RESPONSES[api_key], version)
            except (AssertionError, OSError) as exc:
                failures[version] = f"no answer: {exc}"
                continue
            codes = error_codes(response.to_dict())
            if any(code != 0 for code in codes):
                failures[version] = f"error codes {codes}"
    assert not failures, f"{RESPONSES[api_key].name}: {failures}"


# -- framing ---------------------------------------------------------------------------


def test_api_versions_answers_every_version(node):
    with Raw(node) as raw:
        for version in range(ApiVersionsRequest.max_version + 1):
            response = raw.call(ApiVersionsRequest(
                version=version, client_software_name="bad-input",
                client_software_version="1"), ApiVersionsResponse)
            assert response.error_code == 0
            keys = {k.api_key for k in response.api_keys}
            assert {0, 1, 2, 3, 18} <= keys


@pytest.mark.parametrize("seed", range(8))
def test_random_garbage_closes_only_that_connection(node, seed):
    garbage = random.Random(seed).randbytes(random.Random(seed).randint(1, 4096))
    with Raw(node) as raw, Raw(node) as bystander:
        raw.sock.sendall(garbage)
        raw.sock.shutdown(socket.SHUT_WR)  # a frame waiting for more bytes sees EOF
        while raw.sock.recv(65536):  # whatever came back, the node ends the connection
            pass
        assert bystander.call(MetadataRequest(version=METADATA_V, topics=None),
                              MetadataResponse).brokers


@pytest.mark.parametrize("size", [-1, -(2**31), 0, 7, REQUEST_MAX_BYTES + 1, 2**31 - 1])
def test_frame_size_out_of_range_closes_connection(node, size):
    with Raw(node) as raw:
        raw.sock.sendall(struct.pack(">i", size) + b"\x00" * 8)
        raw.assert_closed()


def test_frame_of_exactly_the_request_limit_is_read(node):
    name = "limit-" + uuid.uuid4().hex[:8]
    partitions = 6
    with Raw(node) as raw:
        assert raw.create_topics([name], partitions=partitions)[name] == 0
        # One batch per partition, each under message.max.bytes; the last value pads
        # the frame to exactly socket.request.max.bytes.
        padding = 1000
        for _ in range(5):
            values = [b"x" * 10500] * (partitions - 1) + [b"p" * padding]
            request = produce_request(name, {p: batch([v]) for p, v in enumerate(values)})
            size = len(raw.frame(request)) - 4
            if size == REQUEST_MAX_BYTES:
                break
            padding += REQUEST_MAX_BYTES - size
        assert size == REQUEST_MAX_BYTES
        response = raw.call(request, ProduceResponse)
        assert [(p.error_code, p.base_offset) for p in response.responses[0].partition_responses] \
            == [(0, 0)] * partitions


def test_unknown_api_key_closes_connection(node):
    with Raw(node) as raw:
        frame = raw.frame(MetadataRequest(version=1, topics=None))
        raw.sock.sendall(frame[:4] + struct.pack(">h", 9999) + frame[6:])
        raw.assert_closed()


@pytest.mark.parametrize("request_, version", [
    (produce_request("any", {0: b""}), 2),                         # below our minimum
    (FetchRequest(version=13, topics=[]), 13),                # above our maximum
    (MetadataRequest(version=13, topics=None), 13),
], ids=["produce-v2", "fetch-v13", "metadata-v13"])
def test_unsupported_version_closes_connection(node, request_, version):
    with Raw(node) as raw:
        request_.API_VERSION = version
        raw.send(request_)
        raw.assert_closed()


def test_api_versions_too_new_gets_v0_error_with_ranges(node):
    with Raw(node) as raw:
        supported = raw.call(ApiVersionsRequest(version=0), ApiVersionsResponse).api_keys
        frame = raw.frame(ApiVersionsRequest(version=3, client_software_name="future",
                                             client_software_version="9"))
        raw.sock.sendall(with_version(frame, 127))
        response = raw.receive(ApiVersionsResponse, 0)
        assert response.error_code == UNSUPPORTED_VERSION
        assert [tuple(k) for k in response.api_keys] == [tuple(k) for k in supported]
        assert (18, 0, 4) in [(k.api_key, k.min_version, k.max_version) for k in response.api_keys]
        # The client retries at a version from the ranges, on the same connection.
        retry = raw.call(ApiVersionsRequest(version=3, client_software_name="future",
                                            client_software_version="9"), ApiVersionsResponse)
        assert retry.error_code == 0


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_truncated_body_closes_connection(node, cut):
    with Raw(node) as raw:
        frame = raw.frame(MetadataRequest(version=4, topics=[
            MetadataRequest.MetadataRequestTopic(name="some-topic")],
            allow_auto_topic_creation=False))
        raw.sock.sendall(framed(frame[4:-cut]))
        raw.assert_closed()


def test_closed_connection_does_not_disturb_pipelined_answers(node, topic):
    """Requests before the bad frame are answered; then the connection closes."""
    with Raw(node) as raw:
        good = raw.frame(produce_request(topic, {0: batch()}))
        raw.sock.sendall(good + struct.pack(">i", -1))
        part = raw.receive(ProduceResponse, PRODUCE_V).responses[0].partition_responses[0]
        assert part.error_code == 0
        raw.assert_closed()


def test_frame_sent_one_byte_at_a_time_is_read(node):
    with Raw(node) as raw:
        raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in raw.frame(ApiVersionsRequest(version=2)):
            raw.sock.sendall(bytes([byte]))
        assert raw.receive(ApiVersionsResponse, 2).error_code == 0


def test_null_client_id_is_accepted(node):
    with Raw(node) as raw:
        request = MetadataRequest(version=1, topics=None)
        request.with_header(correlation_id=77, client_id=None)
        raw.sock.sendall(bytes(request.encode(header=True, framed=True)))
        assert raw.receive(MetadataResponse, 1, correlation_id=77).brokers


def test_pipelined_requests_are_answered_in_order(node, topic):
    """More requests written at once than the node reads ahead per connection: answers
    keep request order, appends keep it too."""
    count = MAX_IN_FLIGHT + 100
    with Raw(node) as raw:
        frames, ids = [], []
        for i in range(count):
            request = (produce_request(topic, {0: batch([b"%d" % i])}) if i % 4 else
                       ApiVersionsRequest(version=0))
            frames.append(raw.frame(request))
            ids.append((raw.correlation_id, request))
        raw.sock.sendall(b"".join(frames))
        offsets = []
        for correlation_id, request in ids:
            if isinstance(request, ProduceRequest):
                response = raw.receive(ProduceResponse, PRODUCE_V, correlation_id)
                part = response.responses[0].partition_responses[0]
                assert part.error_code == 0
                offsets.append(part.base_offset)
            else:
                assert raw.receive(ApiVersionsResponse, 0, correlation_id).error_code == 0
        assert offsets == list(range(len(offsets)))
        values = [r.value for r in iter_records(raw.fetch(topic, 0).records)]
        assert values == [b"%d" % i for i in range(count) if i % 4]


def test_frames_past_the_read_ahead_budget_are_read_once_answers_go_out(node_factory):
    """More frame bytes pipelined behind a waiting request than a connection reads ahead:
    the node stops reading until answers go out, then reads on, and answers every request
    in order."""
    roomy = node_factory("roomy")  # default limits: 100 MB frames, 1 MB batches
    big = batch([b"x" * (2 << 20)])  # over message.max.bytes: refused, nothing stored
    count = READ_AHEAD_BYTES // len(big) + 4
    Topic = FetchRequest.FetchTopic
    with Raw(roomy) as raw:
        assert raw.create_topics(["roomy"])["roomy"] == 0
        # A fetch that waits a second for data that never comes holds up what follows it.
        waiting = raw.frame(FetchRequest(
            version=FETCH_V, max_wait_ms=1000, min_bytes=1, max_bytes=1 << 20,
            topics=[Topic(topic="roomy", partitions=[Topic.FetchPartition(
                partition=0, fetch_offset=0, partition_max_bytes=1 << 20)])]))
        raw.sock.sendall(waiting + b"".join(raw.frame(produce_request("roomy", {0: big}))
                                            for _ in range(count)))
        first = raw.correlation_id - count
        assert raw.receive(FetchResponse, FETCH_V, first).responses[0].partitions[0].records in (
            b"", None)
        for correlation_id in range(first + 1, raw.correlation_id + 1):
            part = raw.receive(ProduceResponse, PRODUCE_V, correlation_id).responses[0] \
                .partition_responses[0]
            assert (part.error_code, part.base_offset) == (MESSAGE_TOO_LARGE, -1)


def test_stalled_partial_frame_does_not_block_others(node):
    with Raw(node) as stalled, Raw(node) as other:
        stalled.sock.sendall(struct.pack(">i", 1000) + b"\x00\x03")  # and never the rest
        assert other.call(MetadataRequest(version=METADATA_V, topics=None), MetadataResponse).brokers


def test_many_connections_at_once(node):
    connections = [Raw(node) for _ in range(200)]
    try:
        for raw in connections:
            raw.send(ApiVersionsRequest(version=1))
        for raw in connections:
            assert raw.receive(ApiVersionsResponse, 1).error_code == 0
    finally:
        for raw in connections:
            raw.sock.close()


# -- produce ---------------------------------------------------------------------------


def test_bad_crc_is_corrupt_message(node, topic):
    data = bytearray(batch([b"a", b"b"]))
    data[-1] ^= 0xFF
    with Raw(node) as raw:
        assert raw.produce(topic, bytes(data))[0] == CORRUPT_MESSAGE
        assert raw.latest_offset(topic) == 0
        assert raw.produce(topic, batch()) == (0, 0)  # the connection still works


def with_byte(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + bytes([value]) + data[at + 1:]


def legacy_message() -> bytes:
    builder = LegacyRecordBatchBuilder(magic=1, compression_type=0, batch_size=1 << 20)
    builder.append(0, timestamp=None, key=b"key", value=b"value")
    return bytes(builder.build())


# Kafka (ProduceRequest.validateRecords, ByteBufferLogInputStream) answers a v3+ produce
# whose record set holds no whole batch, or more than one, with INVALID_RECORD; a batch
# length under 14 or a magic outside 0..2 with CORRUPT_MESSAGE.
@pytest.mark.parametrize("records, error", [
    pytest.param(b"", INVALID_RECORD, id="empty"),
    pytest.param(b"\x00" * 10, INVALID_RECORD, id="shorter-than-length-field"),
    pytest.param(batch()[:-3], INVALID_RECORD, id="truncated"),
    pytest.param(batch() + batch(), INVALID_RECORD, id="two-batches"),
    pytest.param(legacy_message(), INVALID_RECORD, id="magic-1"),
    pytest.param(with_byte(batch(), 16, 3), CORRUPT_MESSAGE, id="magic-3"),
    pytest.param(struct.pack(">qi", 0, 5) + batch()[12:], CORRUPT_MESSAGE, id="length-under-14"),
])
def test_malformed_record_set(node, topic, records, error):
    with Raw(node) as raw:
        assert raw.produce(topic, records)[0] == error
        assert raw.latest_offset(topic) == 0


def test_trailing_partial_batch_is_trimmed(node, topic):
    whole = batch([b"whole"])
    with Raw(node) as raw:
        assert raw.produce(topic, whole + b"\x00\x01") == (0, 0)
        assert raw.fetch(topic, 0).records[16:] == whole[16:]


def test_record_count_disagreeing_with_offsets_is_invalid_record(node, topic):
    data = bytearray(batch([b"a", b"b"]))
    struct.pack_into(">i", data, RECORD_COUNT_AT, 3)
    struct.pack_into(">I", data, CRC_AT, crc32c(bytes(data[CRC_START:])))
    with Raw(node) as raw:
        assert raw.produce(topic, bytes(data))[0] == INVALID_RECORD
        assert raw.latest_offset(topic) == 0


def test_batch_over_topic_max_message_bytes(node):
    name = "small-" + uuid.uuid4().hex[:8]
    with Raw(node) as raw:
        assert raw.create_topics([name], configs={"max.message.bytes": "1000"})[name] == 0
        assert raw.produce(name, batch([b"x" * 2000]))[0] == MESSAGE_TOO_LARGE
        assert raw.produce(name, batch([b"x" * 500])) == (0, 0)


def test_batch_over_node_message_max_bytes(node, topic):
    with Raw(node) as raw:
        assert raw.produce(topic, batch([b"x" * (NODE_MESSAGE_MAX_BYTES + 100)]))[0] == MESSAGE_TOO_LARGE
        assert raw.latest_offset(topic) == 0


@pytest.mark.parametrize("name", ["bad topic!", "", ".", "..", "x" * 250, "topic/slash", "ümlaut"])
def test_invalid_topic_name_in_create_topics(node, name):
    with Raw(node) as raw:
        assert raw.create_topics([name]) == {name: INVALID_TOPIC_EXCEPTION}


def test_longest_legal_topic_name_is_accepted(node):
    name = "y" * 249
    with Raw(node) as raw:
        assert raw.create_topics([name]) == {name: 0}


def test_acks_all_with_fewer_replicas_than_min_insync(node):
    name = "min-isr-" + uuid.uuid4().hex[:8]
    with Raw(node) as raw:
        assert raw.create_topics([name], configs={"min.insync.replicas": "2"}) == {name: 0}
        assert raw.produce(name, batch(), acks=-1)[0] == NOT_ENOUGH_REPLICAS
        assert raw.produce(name, batch(), acks=1) == (0, 0)


def test_zstd_before_produce_v7_is_unsupported(node, topic):
    zstd = batch([b"compressed"] * 3, codec=DefaultRecordBatchBuilder.CODEC_ZSTD)
    with Raw(node) as raw:
        old = raw.call(produce_request(topic, {0: zstd}, version=6), ProduceResponse)
        assert old.responses[0].partition_responses[0].error_code == UNSUPPORTED_COMPRESSION_TYPE
        assert raw.produce(topic, zstd) == (0, 0)  # v7 and later take it


def test_produce_to_missing_topic(node):
    with Raw(node) as raw:
        assert raw.produce("no-such-topic-" + uuid.uuid4().hex, batch())[0] == UNKNOWN_TOPIC_OR_PARTITION


@pytest.mark.parametrize("partition", [1, 7, -1])
def test_produce_to_partition_out_of_range(node, topic, partition):
    with Raw(node) as raw:
        assert raw.produce(topic, batch(), partition=partition)[0] == UNKNOWN_TOPIC_OR_PARTITION


@pytest.mark.parametrize("acks", [5, 2, -2])
def test_invalid_acks(node, topic, acks):
    with Raw(node) as raw:
        assert raw.produce(topic, batch(), acks=acks)[0] == INVALID_REQUIRED_ACKS
        assert raw.latest_offset(topic) == 0


def test_acks_zero_with_bad_batch_closes_without_response(node, topic):
    data = bytearray(batch())
    data[-1] ^= 0xFF
    with Raw(node) as raw:
        raw.produce(topic, bytes(data), acks=0)
        raw.send(ApiVersionsRequest(version=0))  # queued behind it: never answered
        raw.assert_closed()
    with Raw(node) as raw:
        assert raw.latest_offset(topic) == 0


def test_acks_zero_good_batch_is_appended_without_response(node, topic):
    with Raw(node) as raw:
        raw.produce(topic, batch([b"1", b"2"]), acks=0)
        # The next answer on the connection is for the next request: none came for acks=0.
        assert raw.call(ApiVersionsRequest(version=0), ApiVersionsResponse).error_code == 0
        part = raw.fetch(topic, 0, wait_ms=10000)  # acks=0: the append may still be committing
        assert [r.value for r in DefaultRecordBatch(part.records)] == [b"1", b"2"]


# -- fetch -----------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [3, 1000, -5])
def test_fetch_outside_log_is_offset_out_of_range(node, topic, offset):
    with Raw(node) as raw:
        assert raw.produce(topic, batch([b"a", b"b"])) == (0, 0)
        assert raw.fetch(topic, offset).error_code == OFFSET_OUT_OF_RANGE
        at_end = raw.fetch(topic, 2)
        assert (at_end.error_code, at_end.records, at_end.high_watermark) == (0, b"", 2)


def test_fetch_inside_a_batch_returns_the_whole_batch(node, topic):
    with Raw(node) as raw:
        assert raw.produce(topic, batch([b"a", b"b", b"c", b"d"])) == (0, 0)
        assert raw.produce(topic, batch([b"e"])) == (0, 4)
        records = list(iter_records(raw.fetch(topic, 2).records))
        assert [(r.offset, r.value) for r in records] == list(enumerate([b"a", b"b", b"c", b"d", b"e"]))


def test_first_batch_is_returned_even_over_the_byte_limits(node, topic):
    """KIP-74: a consumer never stalls on a batch bigger than its fetch sizes."""
    big = batch([b"x" * 5000])
    with Raw(node) as raw:
        assert raw.produce(topic, big) == (0, 0)
        assert raw.produce(topic, batch([b"small"])) == (0, 1)
        Topic = FetchRequest.FetchTopic
        response = raw.call(FetchRequest(
            version=FETCH_V, max_wait_ms=0, min_bytes=1, max_bytes=100,
            topics=[Topic(topic=topic, partitions=[Topic.FetchPartition(
                partition=0, fetch_offset=0, partition_max_bytes=100)])]), FetchResponse)
        part = response.responses[0].partitions[0]
        assert part.error_code == 0
        assert [r.value for r in iter_records(part.records)] == [b"x" * 5000]


def test_fetch_unknown_topic_and_partition(node, topic):
    with Raw(node) as raw:
        assert raw.fetch("no-such-topic-" + uuid.uuid4().hex, 0).error_code == UNKNOWN_TOPIC_OR_PARTITION
        assert raw.fetch(topic, 0, partition=3).error_code == UNKNOWN_TOPIC_OR_PARTITION


# -- idempotent producer ---------------------------------------------------------------


def test_sequence_gap_is_out_of_order(node, topic):
    with Raw(node) as raw:
        producer = raw.producer_id()
        assert raw.produce(topic, batch([b"a", b"b"], producer, base_sequence=0)) == (0, 0)
        # Next expected sequence is 2; 3 leaves a gap.
        assert raw.produce(topic, batch([b"c"], producer, base_sequence=3))[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert raw.produce(topic, batch([b"c"], producer, base_sequence=2)) == (0, 2)
        assert raw.latest_offset(topic) == 3


def test_new_producer_epoch_must_start_at_sequence_zero(node, topic):
    with Raw(node) as raw:
        producer = raw.producer_id()
        assert raw.produce(topic, batch([b"a"], producer, base_sequence=0)) == (0, 0)
        bumped = (producer[0], producer[1] + 1)
        assert raw.produce(topic, batch([b"b"], bumped, base_sequence=5))[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert raw.produce(topic, batch([b"b"], bumped, base_sequence=0)) == (0, 1)


def test_unknown_producer_may_start_at_any_sequence(node, topic):
    """Kafka accepts any first sequence from a producer it holds no state for (KIP-360):
    its state may be gone with the batches retention or DeleteRecords removed."""
    with Raw(node) as raw:
        producer = raw.producer_id()
        assert raw.produce(topic, batch([b"a"], producer, base_sequence=7)) == (0, 0)
        assert raw.produce(topic, batch([b"b"], producer, base_sequence=9))[0] == OUT_OF_ORDER_SEQUENCE_NUMBER
        assert raw.produce(topic, batch([b"b"], producer, base_sequence=8)) == (0, 1)


def test_older_producer_epoch_is_refused(node, topic):
    with Raw(node) as raw:
        producer_id, epoch = raw.producer_id()
        assert raw.produce(topic, batch([b"a"], (producer_id, epoch + 1), base_sequence=0)) == (0, 0)
        assert raw.produce(topic, batch([b"b"], (producer_id, epoch), base_sequence=0))[0] \
            == INVALID_PRODUCER_EPOCH
        assert raw.latest_offset(topic) == 1


def test_retried_batch_gets_original_offset_and_no_new_records(node, topic):
    with Raw(node) as raw:
        producer = raw.producer_id()
        first = batch([b"a", b"b"], producer, base_sequence=0)
        second = batch([b"c", b"d", b"e"], producer, base_sequence=2)
        assert raw.produce(topic, first) == (0, 0)
        assert raw.produce(topic, second) == (0, 2)
        # Both retried (the producer never saw the acks): original offsets, nothing added.
        assert raw.produce(topic, first) == (0, 0)
        assert raw.produce(topic, second) == (0, 2)
        assert raw.latest_offset(topic) == 5
        values = [r.value for r in iter_records(raw.fetch(topic, 0).records)]
        assert values == [b"a", b"b", b"c", b"d", b"e"]


def iter_batches(data: bytes):
    """Concatenated v2 batches, each read with kafka-python's reader, as a consumer would."""
    pos = 0
    while pos < len(data):
        size = struct.unpack_from(">i", data, pos + 8)[0] + 12
        yield DefaultRecordBatch(data[pos:pos + size])
        pos += size


def iter_records(data: bytes):
    """Records of concatenated v2 batches, as a consumer reads them."""
    for batch in iter_batches(data):
        yield from batch
