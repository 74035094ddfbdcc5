"""Log compaction with real clients: a compacted topic keeps the newest value of each key
at its original offset, tombstones go after `delete.retention.ms`, consumers read across
the gaps, and `__consumer_offsets` is compacted too without losing a commit.
"""
from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from conftest import NodeProcess

WAIT_S = 30  # upper bound for anything a test waits for; never asserted on
KEYS = [f"k{i}".encode() for i in range(10)]
ROUNDS = 5


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("compaction"), **{
        "log.cleaner.backoff.ms": 100, "offsets.topic.num.partitions": 1}).start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def admin(node):
    client = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    yield client
    client.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def produce_rounds(node, topic: str) -> dict[bytes, int]:
    """ROUNDS values of every key, a batch per round, then a tombstone for k0 and one more
    record; returns the offset of each key's last write."""
    producer = Producer({"bootstrap.servers": node.bootstrap, "linger.ms": 0})
    offsets: dict[bytes, int] = {}

    def written(err, message):
        assert err is None, err
        offsets[message.key()] = message.offset()

    for round_ in range(ROUNDS):
        for key in KEYS:
            producer.produce(topic, key=key, value=b"%s-%d" % (key, round_), on_delivery=written)
        producer.flush(WAIT_S)
    producer.produce(topic, key=KEYS[0], value=None, on_delivery=written)
    producer.flush(WAIT_S)
    producer.produce(topic, key=b"last", value=b"newest batch", on_delivery=written)
    producer.flush(WAIT_S)
    return offsets


def read_all(node, topic: str) -> list[tuple[int, bytes, bytes | None]]:
    """(offset, key, value) of every record, from offset 0 (inside a gap once cleaned)."""
    consumer = Consumer({"bootstrap.servers": node.bootstrap, "group.id": unique("reader"),
                         "enable.auto.commit": False, "enable.partition.eof": True})
    consumer.assign([ConfluentTopicPartition(topic, 0, 0)])
    records = []
    end = time.monotonic() + WAIT_S
    try:
        while time.monotonic() < end:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                if message.error().code() == message.error()._PARTITION_EOF:
                    return records
                raise AssertionError(message.error())
            records.append((message.offset(), message.key(), message.value()))
    finally:
        consumer.close()
    raise AssertionError(f"did not reach the end of {topic}")


def wait_for(what: str, probe):
    end = time.monotonic() + WAIT_S
    while time.monotonic() < end:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("tombstones_expire", [True, False])
def test_compacted_topic_keeps_the_newest_value_per_key(node, admin, tombstones_expire):
    topic = unique("compacted")
    configs = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}
    if tombstones_expire:
        configs["delete.retention.ms"] = "0"
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
    newest = produce_rounds(node, topic)

    expected = [(newest[key], key, b"%s-%d" % (key, ROUNDS - 1)) for key in KEYS[1:]]
    if not tombstones_expire:
        expected.append((newest[KEYS[0]], KEYS[0], None))  # kept for delete.retention.ms
    expected.append((newest[b"last"], b"last", b"newest batch"))
    # Every record keeps its offset; the log end stays where it was.
    assert wait_for("the cleaner", lambda: read_all(node, topic) == sorted(expected) or None)


def test_consumer_offsets_are_compacted_without_losing_a_commit(node_factory):
    node = node_factory("offsets", **{"log.cleaner.backoff.ms": 100,
                                      "offsets.topic.num.partitions": 1})
    topic, group = unique("topic"), unique("group")
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])
        for offset in range(100):
            admin.alter_group_offsets(group, {TopicPartition(topic, p): OffsetAndMetadata(
                offset + p, f"commit {offset}", -1) for p in range(2)})
        # 100 commits of 2 partitions: cleaned down to a few records.
        wait_for("__consumer_offsets to be compacted",
                 lambda: len(read_all(node, "__consumer_offsets")) < 20)
    finally:
        admin.close()
    node.kill()
    node.start()  # the coordinator loads the compacted log
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        offsets = wait_for("the offsets", lambda: admin.list_group_offsets({group: None})[group])
        assert {tp.partition: (o.offset, o.metadata) for tp, o in offsets.items()} == \
            {0: (99, "commit 99"), 1: (100, "commit 99")}
    finally:
        admin.close()
