"""Log compaction with real clients: a compacted topic keeps the newest value of each key
at its original offset, tombstones go after `delete.retention.ms`, consumers read across
the gaps, and `__consumer_offsets` is compacted too without losing a commit.
"""
from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

from conftest import NodeProcess
from test_bad_input import Raw, iter_batches
from test_groups import WAIT_S, unique, wait_for

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


def value(key: bytes, round_: int) -> bytes:
    # Repeated, so that a round's batch compresses: librdkafka sends a batch uncompressed
    # when compressing would not make it smaller.
    return b"%s-%d " % (key, round_) * 10


def produce_rounds(bootstrap: str, topic: str, codec: str = "none") -> dict[bytes, int]:
    """ROUNDS values of every key, a batch per round, then a tombstone for k0 and one more
    record; returns the offset of each key's last write. Each value has its round as a
    header."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0,
                         "compression.type": codec})
    offsets: dict[bytes, int] = {}

    def written(err, message):
        assert err is None, err
        offsets[message.key()] = message.offset()

    for round_ in range(ROUNDS):
        for key in KEYS:
            producer.produce(topic, key=key, value=value(key, round_),
                             headers=[("round", b"%d" % round_)], on_delivery=written)
        producer.flush(WAIT_S)
    producer.produce(topic, key=KEYS[0], value=None, on_delivery=written)
    producer.flush(WAIT_S)
    producer.produce(topic, key=b"last", value=b"newest batch", on_delivery=written)
    producer.flush(WAIT_S)
    return offsets


def read_all(bootstrap: str, topic: str) -> list[tuple]:
    """(offset, key, value, headers) of every record, from offset 0 (inside a gap once
    cleaned)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"),
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
            records.append((message.offset(), message.key(), message.value(),
                            message.headers()))
    finally:
        consumer.close()
    raise AssertionError(f"did not reach the end of {topic}")


def compacted(newest: dict[bytes, int], tombstone_kept: bool) -> list[tuple]:
    """What reading produce_rounds' records back shows once cleaned, in offset order."""
    last_round = [("round", b"%d" % (ROUNDS - 1))]
    expected = [(newest[key], key, value(key, ROUNDS - 1), last_round) for key in KEYS[1:]]
    if tombstone_kept:  # for delete.retention.ms
        expected.append((newest[KEYS[0]], KEYS[0], None, None))
    expected.append((newest[b"last"], b"last", b"newest batch", None))
    return sorted(expected)


# The last round's batch loses k0 to its tombstone: it is rewritten, in its own codec.
@pytest.mark.parametrize("tombstones_expire, codec",
                         [(True, "none"), (False, "none"), (True, "zstd"), (False, "snappy")])
def test_compacted_topic_keeps_the_newest_value_per_key(node, admin, tombstones_expire, codec):
    topic = unique("compacted")
    configs = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01"}
    if tombstones_expire:
        configs["delete.retention.ms"] = "0"
    admin.create_topics([NewTopic(topic, 1, 1, topic_configs=configs)])
    newest = produce_rounds(node.bootstrap, topic, codec)

    expected = compacted(newest, tombstone_kept=not tombstones_expire)
    # Every record keeps its offset; the log end stays where it was.
    assert wait_for("the cleaner", lambda: read_all(node.bootstrap, topic) == sorted(expected))
    with Raw(node) as raw:
        [rewritten] = [b for b in iter_batches(raw.fetch(topic, 0).records)
                       if b.base_offset <= newest[KEYS[1]] < b.next_offset]
    assert rewritten.compression_type == ["none", "gzip", "snappy", "lz4", "zstd"].index(codec)


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
                 lambda: len(read_all(node.bootstrap, "__consumer_offsets")) < 20)
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


def test_a_follower_catches_up_across_compacted_gaps(quorum_cluster):
    """The preferred replica is down while the leader writes and compacts; back, it copies
    the compacted log (offsets with gaps), and leads again with the same records."""
    cluster = quorum_cluster(3, **{
        "log.cleaner.backoff.ms": 100, "broker.heartbeat.interval.ms": 200,
        "broker.session.timeout.ms": 1000, "replica.lag.time.max.ms": 2000,
        "leader.imbalance.check.interval.seconds": 1})
    bootstrap = ",".join(n.bootstrap for n in cluster.nodes.values())
    topic = unique("gaps")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, metadata_max_age_ms=500)
    try:
        wait_for("a topic on 3 brokers", lambda: admin.create_topics([NewTopic(
            topic, 1, 3, topic_configs={"cleanup.policy": "compact", "delete.retention.ms": "0",
                                        "min.cleanable.dirty.ratio": "0.01"})]))

        def leadership() -> tuple[int, list[int]]:
            """(leader, replicas); (-1, []) while this node's metadata lacks them."""
            partitions = admin.describe_topics([topic])[0]["partitions"]
            if not partitions:
                return -1, []
            return partitions[0]["leader_id"], partitions[0]["replica_nodes"]

        def preferred_replica() -> int | None:
            leader, replicas = leadership()
            return replicas[0] if leader >= 0 else None

        preferred = wait_for("a leader", preferred_replica)
        cluster.kill(preferred)
        survivors = ",".join(n.bootstrap for i, n in cluster.nodes.items() if i != preferred)
        expected = compacted(produce_rounds(survivors, topic), tombstone_kept=False)
        wait_for("the leader's cleaner", lambda: read_all(survivors, topic) == expected)

        cluster.restart(preferred)
        # Back in sync across the gaps, it leads again (auto.leader.rebalance.enable).
        wait_for("the preferred replica to lead", lambda: leadership()[0] == preferred)
        assert read_all(bootstrap, topic) == expected
    finally:
        admin.close()
