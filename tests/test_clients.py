"""Real clients against a real node: aiokafka, kafka-python, confluent-kafka and kcat.

Every round trip compares the bytes of keys, values and headers that come back with
what was sent. Tests share one node and use topics of their own.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid

import kafka.codec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition as AioTopicPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource as ConfluentConfigResource
from confluent_kafka.admin import NewTopic, OffsetSpec
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import errors as kafka_errors
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.protocol.metadata import MetadataRequest, MetadataResponse

from conftest import NodeProcess
from test_bad_input import UNKNOWN_TOPIC_OR_PARTITION, Raw, batch

RETENTION_CHECK_MS = 200
WAIT_S = 20  # upper bound for anything a test waits for; never asserted on
LOG_APPEND_TIME = 1

# (key, value, headers): binary, empty and null parts, unicode header keys, repeated keys.
SAMPLES = [
    (b"key-0", b"plain value", [("h", b"v")]),
    (None, bytes(range(256)), []),
    (b"", b"", [("empty", b"")]),
    (b"\x00\xff\x00", b"\x00" * 10 + b"\xff" * 10, [("ключ", b"\x00\x01"), ("🔑", b"\xff\xfe")]),
    (b"repeat", "ünïcödé välüe".encode(), [("same", b"1"), ("same", b"2"), ("other", b"3")]),
    (b"big", bytes(range(256)) * 400, [("size", b"102400")]),
    (b"tombstone", None, []),
]


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("clients"), **{
        "log.retention.check.interval.ms": RETENTION_CHECK_MS}).start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def admin(node):
    client = KafkaAdminClient(bootstrap_servers=node.bootstrap, client_id="clients-test")
    yield client
    client.close()


@pytest.fixture(scope="module")
def confluent_admin(node):
    client = AdminClient({"bootstrap.servers": node.bootstrap})
    yield client
    del client  # librdkafka closes the handle with its last reference, before the node stops


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_topic(admin, partitions: int = 1, configs: dict | None = None,
                 prefix: str = "topic") -> str:
    name = unique(prefix)
    admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1,
                                "configs": configs or {}}})
    return name


def now_ms() -> int:
    return int(time.time() * 1000)


def deadline() -> float:
    return time.monotonic() + WAIT_S


def headers_of(headers) -> list[tuple[str, bytes]]:
    return [(k, bytes(v)) for k, v in headers or []]


# -- readers: every client's consumer, by assignment (the node has no group coordinator) --


async def aiokafka_read(node, topic: str, partitions: int, count: int) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=node.bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([AioTopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        records = []
        end = deadline()
        while len(records) < count and time.monotonic() < end:
            for batch_records in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch_records)
        return records
    finally:
        await consumer.stop()


def kafka_python_read(node, topic: str, partitions: int, count: int) -> list:
    consumer = KafkaConsumer(bootstrap_servers=node.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        records = []
        end = deadline()
        while len(records) < count and time.monotonic() < end:
            for batch_records in consumer.poll(timeout_ms=500).values():
                records.extend(batch_records)
        return records
    finally:
        consumer.close()


def confluent_read(node, topic: str, start: dict[int, int], count: int) -> list:
    """Reads `count` messages from {partition: offset}."""
    consumer = Consumer({"bootstrap.servers": node.bootstrap, "group.id": unique("unused"),
                         "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        consumer.assign([ConfluentTopicPartition(topic, p, o) for p, o in start.items()])
        messages = []
        end = deadline()
        while len(messages) < count and time.monotonic() < end:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            messages.append(message)
        return messages
    finally:
        consumer.close()


def as_rows(records) -> list[tuple]:
    """(partition, offset, key, value, headers) of aiokafka / kafka-python records."""
    return sorted((r.partition, r.offset, r.key, r.value, headers_of(r.headers)) for r in records)


def confluent_rows(messages) -> list[tuple]:
    return sorted((m.partition(), m.offset(), m.key(), m.value(), headers_of(m.headers()))
                  for m in messages)


# -- aiokafka --------------------------------------------------------------------------


@pytest.mark.parametrize("acks", [1, "all"])
async def test_aiokafka_round_trip(node, admin, acks):
    partitions = 3
    topic = create_topic(admin, partitions, prefix="aiokafka")
    producer = AIOKafkaProducer(bootstrap_servers=node.bootstrap, acks=acks,
                                max_request_size=1 << 20)
    await producer.start()
    sent = []
    try:
        for i, (key, value, headers) in enumerate(SAMPLES * 2):
            meta = await producer.send_and_wait(topic, value, key=key, partition=i % partitions,
                                                headers=headers)
            sent.append((meta.partition, meta.offset, key, value, headers))
        # A batch of many records on one partition, sent without waiting in between.
        futures = [await producer.send(topic, b"bulk-%d" % i, key=b"k%d" % i, partition=0)
                   for i in range(50)]
        for i, future in enumerate(futures):
            meta = await future
            sent.append((0, meta.offset, b"k%d" % i, b"bulk-%d" % i, []))
    finally:
        await producer.stop()
    assert len({(p, o) for p, o, *_ in sent}) == len(sent)
    received = await aiokafka_read(node, topic, partitions, len(sent))
    assert as_rows(received) == sorted(sent)
    # Offsets on each partition are dense from 0.
    for p in range(partitions):
        offsets = [o for q, o, *_ in sorted(sent) if q == p]
        assert offsets == list(range(len(offsets)))


async def test_aiokafka_long_poll_gets_a_later_record(node, admin):
    topic = create_topic(admin, prefix="long-poll")
    consumer = AIOKafkaConsumer(bootstrap_servers=node.bootstrap, group_id=None,
                                enable_auto_commit=False, fetch_max_wait_ms=5000)
    producer = AIOKafkaProducer(bootstrap_servers=node.bootstrap)
    await consumer.start()
    await producer.start()
    try:
        consumer.assign([AioTopicPartition(topic, 0)])
        await consumer.seek_to_end()
        waiting = asyncio.create_task(consumer.getone())
        await asyncio.sleep(0.5)  # let the consumer's fetch reach the node and wait there
        assert not waiting.done()
        await producer.send_and_wait(topic, b"later", key=b"k", partition=0)
        record = await asyncio.wait_for(waiting, WAIT_S)
        assert (record.offset, record.key, record.value) == (0, b"k", b"later")
    finally:
        await producer.stop()
        await consumer.stop()


async def test_log_append_time_replaces_producer_timestamps(node, admin):
    topic = create_topic(admin, configs={"message.timestamp.type": "LogAppendTime"},
                         prefix="log-append")
    producer_timestamp = 1_000_000_000_000  # 2001
    producer = AIOKafkaProducer(bootstrap_servers=node.bootstrap)
    await producer.start()
    before = now_ms()
    try:
        metas = [await producer.send_and_wait(topic, b"v%d" % i, timestamp_ms=producer_timestamp)
                 for i in range(5)]
    finally:
        await producer.stop()
    after = now_ms()
    records = await aiokafka_read(node, topic, 1, 5)
    assert [r.value for r in records] == [b"v%d" % i for i in range(5)]
    for meta, record in zip(metas, records):
        assert record.timestamp_type == LOG_APPEND_TIME
        assert before <= record.timestamp <= after
        assert before <= meta.timestamp <= after  # the produce response's log_append_time_ms


# -- kafka-python ----------------------------------------------------------------------


def test_kafka_python_idempotent_producer_lands_once_in_order(node, admin):
    topic = create_topic(admin, 2, prefix="idempotent")
    producer = KafkaProducer(bootstrap_servers=node.bootstrap, linger_ms=5)
    assert producer.config["enable_idempotence"]  # kafka-python 3's default
    try:
        futures = [producer.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=i % 2,
                                 headers=[("seq", str(i).encode())])
                   for i in range(400)]
        producer.flush()
        offsets = [f.get(timeout=WAIT_S).offset for f in futures]
        for key, value, headers in SAMPLES:
            producer.send(topic, key=key, value=value, partition=0, headers=headers)
        producer.flush()
    finally:
        producer.close()
    assert offsets[0::2] == list(range(200)) and offsets[1::2] == list(range(200))
    records = kafka_python_read(node, topic, 2, 400 + len(SAMPLES))
    for p in (0, 1):
        values = [r.value for r in sorted(records, key=lambda r: r.offset) if r.partition == p]
        expected = [b"v%d" % i for i in range(p, 400, 2)]
        if p == 0:
            expected += [value for _, value, _ in SAMPLES]
        assert values == expected
    tail = sorted((r for r in records if r.partition == 0), key=lambda r: r.offset)[-len(SAMPLES):]
    assert [(r.key, r.value, headers_of(r.headers)) for r in tail] == SAMPLES


def create_result(admin, topics: dict, validate_only: bool = False) -> dict[str, tuple]:
    """{name: (error class, message)} of a CreateTopics call."""
    response = admin.create_topics(topics, validate_only=validate_only, raise_errors=False)
    return {t["name"]: (kafka_errors.for_code(t["error_code"]), t["error_message"])
            for t in response["topics"]}


def topic_configs(admin, topic: str) -> dict[str, tuple[str, str]]:
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                       config_filter="all")
    return {k: (v["value"], v["config_source"]) for k, v in described["topic"][topic].items()}


def partition_count(admin, topic: str) -> int:
    (described,) = admin.describe_topics([topic])
    return len(described["partitions"])


def test_kafka_python_admin_topic_lifecycle(node, admin):
    name = unique("admin")
    ok = kafka_errors.NoError
    # validate_only checks but creates nothing
    assert create_result(admin, {name: {"num_partitions": 2, "replication_factor": 1}},
                         validate_only=True)[name][0] is ok
    assert name not in admin.list_topics()

    configs = {"retention.ms": "3600000", "cleanup.policy": "delete", "max.message.bytes": "50000"}
    assert create_result(admin, {name: {"num_partitions": 2, "replication_factor": 1,
                                        "configs": configs}})[name][0] is ok
    assert name in admin.list_topics()
    assert partition_count(admin, name) == 2
    described = topic_configs(admin, name)
    for key, value in configs.items():
        assert described[key] == (value, "DYNAMIC_TOPIC_CONFIG")
    assert described["retention.bytes"] == ("-1", "DEFAULT_CONFIG")

    # incremental alter: SET one key, DELETE another back to its default
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs={
        "retention.bytes": ("SET", "123456"), "max.message.bytes": ("DELETE", None)})],
        incremental=True)
    described = topic_configs(admin, name)
    assert described["retention.bytes"] == ("123456", "DYNAMIC_TOPIC_CONFIG")
    assert described["retention.ms"] == ("3600000", "DYNAMIC_TOPIC_CONFIG")
    assert described["max.message.bytes"] == ("1048588", "DEFAULT_CONFIG")

    # validate_only alter changes nothing
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                        configs={"retention.ms": ("SET", "1000")})],
                        validate_only=True, incremental=True)
    assert topic_configs(admin, name)["retention.ms"] == ("3600000", "DYNAMIC_TOPIC_CONFIG")

    admin.create_partitions({name: 5}, validate_only=True)
    assert partition_count(admin, name) == 2
    admin.create_partitions({name: 5})
    assert partition_count(admin, name) == 5

    response = admin.delete_topics([name])
    assert [t["error_code"] for t in response["topics"]] == [0]
    assert name not in admin.list_topics()


def test_incremental_append_starts_from_the_default(node, admin):
    """Kafka appends to the current value, the default when the topic sets none."""
    name = create_topic(admin, prefix="append")
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs={
        "cleanup.policy": ("APPEND", "compact")})], incremental=True)
    assert topic_configs(admin, name)["cleanup.policy"] == ("delete,compact", "DYNAMIC_TOPIC_CONFIG")
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs={
        "cleanup.policy": ("SUBTRACT", "compact")})], incremental=True)
    assert topic_configs(admin, name)["cleanup.policy"] == ("delete", "DYNAMIC_TOPIC_CONFIG")


def test_kafka_python_create_topic_with_node_defaults(node, admin):
    name = unique("defaults")
    admin.create_topics([name])  # partitions and replication factor -1: the node's defaults
    assert partition_count(admin, name) == 1
    assert topic_configs(admin, name)["retention.ms"] == ("604800000", "DEFAULT_CONFIG")


def test_kafka_python_admin_errors(node, admin):
    existing = create_topic(admin, 2, prefix="admin-errors")
    fresh = unique("admin-errors")

    error, _ = create_result(admin, {existing: {"num_partitions": 1, "replication_factor": 1}})[existing]
    assert error is kafka_errors.TopicAlreadyExistsError

    for configs, key in [({"no.such.config": "1"}, "no.such.config"),
                         ({"retention.ms": "soon"}, "retention.ms"),
                         ({"cleanup.policy": "shred"}, "cleanup.policy")]:
        error, message = create_result(admin, {fresh: {"num_partitions": 1, "replication_factor": 1,
                                                       "configs": configs}})[fresh]
        assert error is kafka_errors.InvalidConfigurationError
        assert key in message

    error, _ = create_result(admin, {fresh: {"num_partitions": 1, "replication_factor": 3}})[fresh]
    assert error is kafka_errors.InvalidReplicationFactorError
    error, _ = create_result(admin, {fresh: {"num_partitions": 0, "replication_factor": 1}})[fresh]
    assert error is kafka_errors.InvalidPartitionsError
    assert fresh not in admin.list_topics()

    for count in (2, 1):  # not more than the current count
        with pytest.raises(kafka_errors.InvalidPartitionsError):
            admin.create_partitions({existing: count})
    with pytest.raises(kafka_errors.UnknownTopicOrPartitionError):
        admin.create_partitions({fresh: 3})

    with pytest.raises(kafka_errors.UnknownTopicOrPartitionError):
        admin.delete_topics([fresh])

    result = admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, existing,
                                                 configs={"retention.ms": ("SET", "never")})],
                                 incremental=True)
    outcome = str(result["topic"][existing])  # kafka-python reports errors as text here
    assert "InvalidConfigurationError" in outcome and "retention.ms" in outcome


def test_kafka_python_describe_cluster(node, admin):
    cluster = admin.describe_cluster()
    assert cluster["controller_id"] == 1
    assert [(b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"]] \
        == [(1, "127.0.0.1", node.port)]
    assert cluster["cluster_id"]


def test_delete_records_moves_the_log_start(node, admin):
    topic = create_topic(admin, prefix="delete-records")
    producer = KafkaProducer(bootstrap_servers=node.bootstrap)
    try:
        for i in range(10):  # one batch each
            producer.send(topic, value=b"v%d" % i).get(timeout=WAIT_S)
    finally:
        producer.close()
    result = admin.delete_records({TopicPartition(topic, 0): 4})
    assert result[TopicPartition(topic, 0)]["low_watermark"] == 4
    records = kafka_python_read(node, topic, 1, 6)
    assert [(r.offset, r.value) for r in records] == [(i, b"v%d" % i) for i in range(4, 10)]


async def test_delete_records_inside_a_batch(node, admin):
    topic = create_topic(admin, prefix="delete-mid-batch")
    producer = AIOKafkaProducer(bootstrap_servers=node.bootstrap, linger_ms=50)
    await producer.start()
    try:
        futures = [await producer.send(topic, b"v%d" % i, partition=0) for i in range(10)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    admin.delete_records({TopicPartition(topic, 0): 3})
    records = await aiokafka_read(node, topic, 1, 7)
    assert [(r.offset, r.value) for r in records] == [(i, b"v%d" % i) for i in range(3, 10)]


# -- confluent-kafka -------------------------------------------------------------------


def confluent_produce(node, topic: str, messages, **config) -> list[tuple[int, int]]:
    """Produces (partition, key, value, headers[, timestamp]) messages; returns their
    (partition, offset) in the order given."""
    producer = Producer({"bootstrap.servers": node.bootstrap, "linger.ms": 5, **config})
    reports: dict[int, tuple[int, int]] = {}

    def delivered(index, err, msg):
        assert err is None, err
        reports[index] = (msg.partition(), msg.offset())

    for index, (partition, key, value, headers, *timestamp) in enumerate(messages):
        producer.produce(topic, value=value, key=key, partition=partition, headers=headers,
                         timestamp=timestamp[0] if timestamp else 0,
                         on_delivery=lambda err, msg, index=index: delivered(index, err, msg))
    assert producer.flush(WAIT_S) == 0
    return [reports[i] for i in range(len(messages))]


@pytest.mark.parametrize("idempotence", [True, False])
def test_confluent_round_trip(node, admin, idempotence):
    topic = create_topic(admin, 2, prefix="confluent")
    messages = [(i % 2, key, value, headers) for i, (key, value, headers) in enumerate(SAMPLES * 3)]
    messages += [(0, b"k%d" % i, b"v%d" % i, [("i", b"%d" % i)]) for i in range(200)]
    reports = confluent_produce(node, topic, messages, **{"enable.idempotence": idempotence,
                                                          "acks": "all"})
    expected = sorted((p, o, k, v, h) for (p, o), (_, k, v, h) in zip(reports, messages))
    received = confluent_read(node, topic, {0: 0, 1: 0}, len(messages))
    assert confluent_rows(received) == expected


def test_confluent_message_size_limits(node, admin):
    topic = create_topic(admin, prefix="large")
    producer = Producer({"bootstrap.servers": node.bootstrap, "message.max.bytes": 4_000_000,
                         "enable.idempotence": False, "retries": 0})
    outcomes = []
    for size in (900_000, 2_000_000):
        producer.produce(topic, value=b"x" * size, partition=0,
                         on_delivery=lambda err, msg: outcomes.append(err and err.code()))
        assert producer.flush(WAIT_S) == 0
    # Over the node's message.max.bytes (1048588): the broker's MESSAGE_TOO_LARGE.
    assert outcomes == [None, KafkaError.MSG_SIZE_TOO_LARGE]
    (message,) = confluent_read(node, topic, {0: 0}, 1)
    assert message.value() == b"x" * 900_000


def test_confluent_consumer_from_an_explicit_offset(node, admin):
    topic = create_topic(admin, prefix="confluent-offset")
    confluent_produce(node, topic, [(0, None, b"v%d" % i, None) for i in range(10)])
    received = confluent_read(node, topic, {0: 6}, 4)
    assert [(m.offset(), m.value()) for m in received] == [(i, b"v%d" % i) for i in range(6, 10)]


def test_confluent_admin_create_topics(node, confluent_admin):
    name = unique("confluent-create")
    futures = confluent_admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1,
                                                      config={"retention.ms": "86400000"})])
    futures[name].result(WAIT_S)
    assert len(confluent_admin.list_topics(timeout=WAIT_S).topics[name].partitions) == 3
    again = confluent_admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    with pytest.raises(KafkaException) as raised:
        again[name].result(WAIT_S)
    assert raised.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def confluent_config_resource(topic: str, **set_config) -> ConfluentConfigResource:
    return ConfluentConfigResource(ConfluentConfigResource.Type.TOPIC, topic, set_config=set_config)


def confluent_configs(confluent_admin, topic: str) -> dict:
    resource = confluent_config_resource(topic)
    return confluent_admin.describe_configs([resource])[resource].result(WAIT_S)


def test_confluent_admin_configs_and_delete(node, admin, confluent_admin):
    name = create_topic(admin, 3, configs={"retention.ms": "86400000", "retention.bytes": "99999"},
                        prefix="confluent-admin")
    configs = confluent_configs(confluent_admin, name)
    assert (configs["retention.ms"].value, configs["retention.ms"].is_default) == ("86400000", False)
    assert (configs["cleanup.policy"].value, configs["cleanup.policy"].is_default) == ("delete", True)

    # AlterConfigs (not incremental) replaces the topic's whole set of configs.
    resource = confluent_config_resource(name, **{"retention.ms": "7200000"})
    confluent_admin.alter_configs([resource])[resource].result(WAIT_S)
    configs = confluent_configs(confluent_admin, name)
    assert configs["retention.ms"].value == "7200000"
    assert (configs["retention.bytes"].value, configs["retention.bytes"].is_default) == ("-1", True)

    # Not a number, and past Kafka's INT (max.message.bytes is an int in Kafka's ConfigDef).
    for key, value in [("retention.ms", "never"), ("max.message.bytes", str(2**31))]:
        bad = confluent_config_resource(name, **{key: value})
        with pytest.raises(KafkaException) as raised:
            confluent_admin.alter_configs([bad])[bad].result(WAIT_S)
        assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG
        assert key in raised.value.args[0].str()
    assert confluent_configs(confluent_admin, name)["retention.ms"].value == "7200000"

    confluent_admin.delete_topics([name])[name].result(WAIT_S)
    assert name not in confluent_admin.list_topics(timeout=WAIT_S).topics
    for future in (confluent_admin.delete_topics([name])[name],
                   confluent_admin.describe_configs([resource])[resource]):
        with pytest.raises(KafkaException) as raised:
            future.result(WAIT_S)
        assert raised.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def list_offset(confluent_admin, topic: str, spec) -> tuple[int, int]:
    tp = ConfluentTopicPartition(topic, 0)
    result = confluent_admin.list_offsets({tp: spec})[tp].result(WAIT_S)
    return result.offset, result.timestamp


def test_confluent_list_offsets(node, admin, confluent_admin):
    topic = create_topic(admin, prefix="list-offsets")
    base = now_ms() - 60_000
    # Timestamps out of order, in several batches and within one.
    stamps = [100, 300, 200, 400, 400, 500, 250]
    confluent_produce(node, topic, [(0, None, b"a", None, base + stamps[0])])
    confluent_produce(node, topic, [(0, None, b"b", None, base + t) for t in stamps[1:4]])
    confluent_produce(node, topic, [(0, None, b"c", None, base + t) for t in stamps[4:]])

    assert list_offset(confluent_admin, topic, OffsetSpec.earliest())[0] == 0
    assert list_offset(confluent_admin, topic, OffsetSpec.latest())[0] == len(stamps)
    for wanted in (0, 100, 150, 250, 300, 301, 400, 450, 500):
        first = next(o for o, t in enumerate(stamps) if t >= wanted)
        assert list_offset(confluent_admin, topic, OffsetSpec.for_timestamp(base + wanted)) \
            == (first, base + stamps[first]), wanted
    assert list_offset(confluent_admin, topic, OffsetSpec.for_timestamp(base + 501))[0] == -1
    assert list_offset(confluent_admin, topic, OffsetSpec.max_timestamp()) == (5, base + 500)

    admin.delete_records({TopicPartition(topic, 0): 2})
    assert list_offset(confluent_admin, topic, OffsetSpec.earliest())[0] == 2


def test_list_offsets_by_timestamp_never_answers_below_the_log_start(node, admin, confluent_admin):
    topic = create_topic(admin, prefix="list-offsets-start")
    base = now_ms() - 60_000
    confluent_produce(node, topic, [(0, None, b"v%d" % i, None, base + i) for i in range(10)],
                      **{"linger.ms": 100})  # one batch
    admin.delete_records({TopicPartition(topic, 0): 5})
    assert list_offset(confluent_admin, topic, OffsetSpec.earliest())[0] == 5
    # Like Kafka: the first offset at or after both the timestamp and the log start.
    for wanted in (0, 3, 5):
        assert list_offset(confluent_admin, topic, OffsetSpec.for_timestamp(base + wanted)) \
            == (5, base + 5)


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip(node, admin, codec):
    topic = create_topic(admin, prefix=f"compressed-{codec}")
    messages = [(0, key, value, headers) for key, value, headers in SAMPLES]
    messages += [(0, b"k%d" % i, b"repetitive " * 50, [("i", b"%d" % i)]) for i in range(100)]
    reports = confluent_produce(node, topic, messages, **{"compression.type": codec})
    assert [o for _, o in reports] == list(range(len(messages)))
    expected = [(p, o, k, v, h) for (p, o), (_, k, v, h) in zip(reports, messages)]
    assert confluent_rows(confluent_read(node, topic, {0: 0}, len(messages))) == expected
    if getattr(kafka.codec, f"has_{codec}")():  # kafka-python's codec libraries are optional
        assert as_rows(kafka_python_read(node, topic, 1, len(messages))) == expected


# -- kcat ------------------------------------------------------------------------------


def kcat(node, *args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(["kcat", "-b", node.bootstrap, *args], input=stdin,
                            capture_output=True, timeout=WAIT_S)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def test_kcat_metadata(node, admin):
    topic = create_topic(admin, 3, prefix="kcat-meta")
    text = kcat(node, "-L").decode()
    assert f"broker 1 at 127.0.0.1:{node.port}" in text
    assert f'topic "{topic}" with 3 partitions' in text

    listing = json.loads(kcat(node, "-L", "-J"))
    assert listing["brokers"] == [{"id": 1, "name": f"127.0.0.1:{node.port}"}]
    assert listing["controllerid"] == 1
    (described,) = [t for t in listing["topics"] if t["topic"] == topic]
    assert [(p["partition"], p["leader"], p["replicas"], p["isrs"]) for p in described["partitions"]] \
        == [(i, 1, [{"id": 1}], [{"id": 1}]) for i in range(3)]


def test_kcat_produce_then_consume(node, admin):
    topic = create_topic(admin, prefix="kcat")
    lines = ["k1:first value", "k2:välue with ünïcode", "k3:a:b:c", "k4:  spaces  "]
    kcat(node, "-P", "-t", topic, "-p", "0", "-K:", "-H", "trace=abc", "-H", "ключ=значение",
         stdin="\n".join(lines).encode() + b"\n")
    out = kcat(node, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k|%s|%h|%o\n")
    expected = "".join(f"{line.split(':', 1)[0]}|{line.split(':', 1)[1]}|trace=abc,ключ=значение|{i}\n"
                       for i, line in enumerate(lines))
    assert out == expected.encode()
    # Another client sees the same bytes.
    records = kafka_python_read(node, topic, 1, len(lines))
    assert [(r.key, r.value, headers_of(r.headers)) for r in records] == [
        (line.split(":", 1)[0].encode(), line.split(":", 1)[1].encode(),
         [("trace", b"abc"), ("ключ", "значение".encode())]) for line in lines]


def test_kcat_consumes_what_python_produced(node, admin):
    topic = create_topic(admin, 2, prefix="kcat-consume")
    messages = [(i % 2, b"key%d" % i, "välue %d" % i, [("h", b"x%d" % i)]) for i in range(6)]
    reports = confluent_produce(node, topic, [(p, k, v.encode(), h) for p, k, v, h in messages])
    out = kcat(node, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p|%k|%s|%h|%o\n")
    expected = sorted(f"{p}|{k.decode()}|{v}|h={h[0][1].decode()}|{o}"
                      for (p, k, v, h), (_, o) in zip(messages, reports))
    assert sorted(out.decode().splitlines()) == expected


# -- auto topic creation ---------------------------------------------------------------


def metadata_error(node, topic: str, allow_auto_create: bool) -> int:
    with Raw(node) as raw:
        response = raw.call(MetadataRequest(
            version=9, topics=[MetadataRequest.MetadataRequestTopic(name=topic)],
            allow_auto_topic_creation=allow_auto_create), MetadataResponse)
    (result,) = response.topics
    assert result.name == topic
    return result.error_code


def test_metadata_creates_missing_topic_by_default(node, admin):
    topic = unique("auto")
    assert confluent_produce(node, topic, [(-1, b"k", b"v", None)]) == [(0, 0)]
    assert topic in admin.list_topics()
    assert partition_count(admin, topic) == 1  # num.partitions

    other = unique("auto")
    assert metadata_error(node, other, allow_auto_create=False) == UNKNOWN_TOPIC_OR_PARTITION
    assert other not in admin.list_topics()
    assert metadata_error(node, other, allow_auto_create=True) == 0
    assert other in admin.list_topics()


def test_auto_create_off(node_factory):
    node = node_factory(**{"auto.create.topics.enable": False})
    topic = unique("missing")
    client = AdminClient({"bootstrap.servers": node.bootstrap})
    metadata = client.list_topics(topic=topic, timeout=WAIT_S)
    assert metadata.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert metadata_error(node, topic, allow_auto_create=True) == UNKNOWN_TOPIC_OR_PARTITION
    with Raw(node) as raw:
        assert raw.produce(topic, batch())[0] == UNKNOWN_TOPIC_OR_PARTITION
    assert topic not in client.list_topics(timeout=WAIT_S).topics


# -- retention -------------------------------------------------------------------------


def wait_for_log_start(confluent_admin, topic: str, at_least: int) -> int:
    """The partition's log start once retention has moved it to `at_least` (or the deadline)."""
    end = deadline()
    while True:
        start = list_offset(confluent_admin, topic, OffsetSpec.earliest())[0]
        if start >= at_least or time.monotonic() > end:
            return start
        time.sleep(RETENTION_CHECK_MS / 1000)


def test_retention_bytes_drops_oldest_batches(node, admin, confluent_admin):
    topic = create_topic(admin, configs={"retention.bytes": "3000"}, prefix="retention-bytes")
    for i in range(20):  # 20 batches of one record, each between 1000 and 1500 bytes
        confluent_produce(node, topic, [(0, None, b"%04d" % i + b"." * 1000, None)])
    # Like Kafka, retention deletes the oldest batches only while the rest still holds at
    # least retention.bytes: three batches stay.
    assert wait_for_log_start(confluent_admin, topic, 17) == 17
    assert list_offset(confluent_admin, topic, OffsetSpec.latest())[0] == 20
    records = kafka_python_read(node, topic, 1, 3)
    assert [(r.offset, r.value[:4]) for r in records] == [(17, b"0017"), (18, b"0018"), (19, b"0019")]


def test_retention_ms_drops_old_batches(node, admin, confluent_admin):
    topic = create_topic(admin, configs={"retention.ms": "600000"}, prefix="retention-ms")
    hour_ago = now_ms() - 3_600_000
    confluent_produce(node, topic, [(0, None, b"old-%d" % i, None, hour_ago) for i in range(3)])
    confluent_produce(node, topic, [(0, None, b"old-3", None, hour_ago)])
    confluent_produce(node, topic, [(0, None, b"new-%d" % i, None) for i in range(2)])
    assert wait_for_log_start(confluent_admin, topic, 4) == 4
    records = kafka_python_read(node, topic, 1, 2)
    assert [(r.offset, r.value) for r in records] == [(4, b"new-0"), (5, b"new-1")]
