"""Acknowledged writes survive a SIGKILL of the node.

Each test produces, kills the node process (no shutdown code runs), restarts it on the
same data directory and port, and reads everything back with a real client.
"""
from __future__ import annotations

import asyncio
import random
import time
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.protocol.metadata import MetadataRequest, MetadataResponse

from broker.storage import Storage
from conftest import NodeProcess
from test_bad_input import Raw, batch

WAIT_S = 20  # upper bound for reads; never asserted on


@pytest.fixture(scope="module")
def shared_data_node(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("durability")).start()
    yield node
    node.stop()


@pytest.fixture
def node(shared_data_node):
    """One node for the module: each test kills and restarts it, on topics of its own."""
    if not shared_data_node.alive():  # a failed test left it dead
        shared_data_node.start()
    return shared_data_node


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sample(i: int) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """Record i: a key (None for every 7th), random binary value, headers."""
    rng = random.Random(i)
    key = None if i % 7 == 0 else b"key-%d" % i
    value = rng.randbytes(rng.randint(0, 2000))
    return key, value, [("index", b"%d" % i), ("ключ", rng.randbytes(4))]


def read_all(node, topic: str, partitions: int, count: int) -> list:
    consumer = KafkaConsumer(bootstrap_servers=node.bootstrap, enable_auto_commit=False,
                             auto_offset_reset="earliest")
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        records, end = [], time.monotonic() + WAIT_S
        while len(records) < count and time.monotonic() < end:
            for fetched in consumer.poll(timeout_ms=500).values():
                records.extend(fetched)
        # Then read on to the end of the log: anything past `count` is a duplicate.
        while more := [r for fetched in consumer.poll(timeout_ms=200).values() for r in fetched]:
            records.extend(more)
        return records
    finally:
        consumer.close()


def rows(records) -> list[tuple]:
    """(partition, offset, key, value, headers) in log order."""
    return sorted((r.partition, r.offset, r.key, r.value, [(k, bytes(v)) for k, v in r.headers])
                  for r in records)


def topic_configs(node, topic: str) -> dict[str, str]:
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        return {k: v["value"] for k, v in described["topic"][topic].items()}
    finally:
        admin.close()


def create_topics(node, topics: dict[str, tuple[int, dict]]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        admin.create_topics({name: {"num_partitions": partitions, "replication_factor": 1,
                                    "configs": configs}
                             for name, (partitions, configs) in topics.items()})
    finally:
        admin.close()


async def produce_acknowledged(node, topic: str, partitions: int, acks, indexes) -> list[tuple]:
    """Sends records `indexes` with aiokafka; every send must be acknowledged.
    Returns the rows the log must hold."""
    producer = AIOKafkaProducer(bootstrap_servers=node.bootstrap, acks=acks, linger_ms=2)
    await producer.start()
    try:
        futures = []
        for i in indexes:
            key, value, headers = sample(i)
            futures.append(await producer.send(topic, value, key=key, partition=i % partitions,
                                               headers=headers))
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.partition, m.offset, *sample(i)) for i, m in zip(indexes, metas)]


async def test_acknowledged_records_survive_sigkill(node):
    topics = {
        unique("acks-one"): (3, {"retention.ms": "86400000", "max.message.bytes": "200000"}),
        unique("acks-all"): (1, {"cleanup.policy": "delete", "retention.bytes": "100000000"}),
    }
    (one, _), (every, _) = topics.items()
    create_topics(node, topics)
    written = {
        one: await produce_acknowledged(node, one, 3, 1, range(300)),
        every: await produce_acknowledged(node, every, 1, "all", range(300)),
    }
    configs_before = {name: topic_configs(node, name) for name in topics}

    node.kill()
    node.start()

    for name, (partitions, configs) in topics.items():
        # Every acknowledged record, once, in order, with its bytes.
        assert rows(read_all(node, name, partitions, len(written[name]))) == sorted(written[name])
        assert topic_configs(node, name) == configs_before[name]
        for key, value in configs.items():
            assert configs_before[name][key] == value
    # Appends continue where the log ended.
    more = await produce_acknowledged(node, one, 3, "all", range(300, 303))
    assert [(p, o) for p, o, *_ in more] == [(0, 100), (1, 100), (2, 100)]
    more = await produce_acknowledged(node, every, 1, 1, range(300, 302))
    assert [(p, o) for p, o, *_ in more] == [(0, 300), (0, 301)]


async def test_acknowledged_records_survive_a_kill_under_load(node):
    """The node dies while a burst is being written: whatever it acknowledged, before
    or after the restart, is at its offset with its bytes."""
    topic = unique("under-load")
    create_topics(node, {topic: (2, {})})
    producer = AIOKafkaProducer(bootstrap_servers=node.bootstrap, acks=1, linger_ms=1,
                                enable_idempotence=False, request_timeout_ms=5000,
                                retry_backoff_ms=100)
    await producer.start()
    try:
        futures = []
        for i in range(2000):
            key, value, headers = sample(i)
            futures.append(await producer.send(topic, value, key=key, partition=i % 2,
                                               headers=headers))
        await asyncio.wait(futures[:200])
        node.kill()
        node.start()
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        await producer.stop()
    acknowledged = {(m.partition, m.offset): sample(i) for i, m in enumerate(outcomes)
                    if not isinstance(m, Exception)}
    assert len(acknowledged) >= 200
    log = {(p, o): (k, v, h) for p, o, k, v, h in rows(read_all(node, topic, 2, len(acknowledged)))}
    assert {at: log.get(at) for at in acknowledged} == acknowledged
    # Everything else in the log is a record that was sent (maybe retried), without holes.
    for key, value, headers in log.values():
        assert (key, value, headers) == sample(int(dict(headers)["index"]))
    for p in (0, 1):
        offsets = sorted(o for q, o in log if q == p)
        assert offsets == list(range(len(offsets)))


def test_idempotent_producer_after_restart(node):
    topic = unique("idempotent-after")
    create_topics(node, {topic: (1, {})})
    producer = KafkaProducer(bootstrap_servers=node.bootstrap)
    try:
        assert [producer.send(topic, value=b"before-%d" % i).get(WAIT_S).offset
                for i in range(5)] == list(range(5))
    finally:
        producer.close()

    node.kill()
    node.start()

    producer = KafkaProducer(bootstrap_servers=node.bootstrap, linger_ms=5)
    try:
        futures = [producer.send(topic, value=b"after-%d" % i) for i in range(200)]
        producer.flush()
        assert [f.get(WAIT_S).offset for f in futures] == list(range(5, 205))
    finally:
        producer.close()
    values = [r.value for r in sorted(read_all(node, topic, 1, 205), key=lambda r: r.offset)]
    assert values == [b"before-%d" % i for i in range(5)] + [b"after-%d" % i for i in range(200)]


def test_idempotent_producer_across_a_crash_lands_exactly_once(node):
    """Sends in flight when the node dies are retried after the restart; the node's
    rebuilt producer state turns retries of already-written batches into duplicates."""
    topic = unique("idempotent-across")
    create_topics(node, {topic: (2, {})})
    producer = KafkaProducer(bootstrap_servers=node.bootstrap, acks="all", linger_ms=1,
                             reconnect_backoff_max_ms=200, delivery_timeout_ms=60000,
                             request_timeout_ms=5000)
    try:
        futures = [producer.send(topic, value=b"%d" % i, partition=i % 2) for i in range(300)]
        producer.flush()
        futures += [producer.send(topic, value=b"%d" % i, partition=i % 2) for i in range(300, 600)]
        node.kill()  # with sends buffered or in flight
        node.start()
        producer.flush()
        metas = [f.get(WAIT_S) for f in futures]
    finally:
        producer.close()
    assert sorted((m.partition, m.offset) for m in metas) \
        == [(p, o) for p in (0, 1) for o in range(300)]
    records = read_all(node, topic, 2, 600)
    for p in (0, 1):
        values = [r.value for r in sorted(records, key=lambda r: r.offset) if r.partition == p]
        assert values == [b"%d" % i for i in range(p, 600, 2)]


def test_acks_zero_records_show_up(node):
    topic = unique("acks-zero")
    create_topics(node, {topic: (1, {})})
    producer = KafkaProducer(bootstrap_servers=node.bootstrap, acks=0, enable_idempotence=False)
    try:
        for i in range(100):
            producer.send(topic, key=b"k%d" % i, value=b"v%d" % i)
        producer.flush()
    finally:
        producer.close()
    records = read_all(node, topic, 1, 100)
    assert [(r.offset, r.key, r.value) for r in sorted(records, key=lambda r: r.offset)] \
        == [(i, b"k%d" % i, b"v%d" % i) for i in range(100)]


def test_topic_changes_survive_sigkill(node):
    grown, deleted, trimmed = unique("grown"), unique("deleted"), unique("trimmed")
    create_topics(node, {grown: (1, {}), deleted: (2, {}), trimmed: (1, {"retention.ms": "9000000"})})
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    producer = KafkaProducer(bootstrap_servers=node.bootstrap)
    try:
        admin.create_partitions({grown: 4})
        for i in range(10):
            producer.send(trimmed, value=b"%d" % i).get(WAIT_S)
            producer.send(deleted, value=b"%d" % i, partition=i % 2).get(WAIT_S)
        admin.delete_records({TopicPartition(trimmed, 0): 6})
        admin.delete_topics([deleted])
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, trimmed,
                                            configs={"retention.ms": ("SET", "8000000")})])
    finally:
        producer.close()
        admin.close()

    node.kill()
    node.start()

    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        topics = set(admin.list_topics())
        assert {grown, trimmed} <= topics and deleted not in topics
        assert len(admin.describe_topics([grown])[0]["partitions"]) == 4
    finally:
        admin.close()
    assert topic_configs(node, trimmed)["retention.ms"] == "8000000"
    records = read_all(node, trimmed, 1, 4)
    assert [(r.offset, r.value) for r in records] == [(i, b"%d" % i) for i in range(6, 10)]
    # The deleted topic's name starts a new, empty log.
    create_topics(node, {deleted: (1, {})})
    producer = KafkaProducer(bootstrap_servers=node.bootstrap)
    try:
        assert producer.send(deleted, value=b"new").get(WAIT_S).offset == 0
        assert producer.send(grown, value=b"x", partition=3).get(WAIT_S).offset == 0
    finally:
        producer.close()


def test_identities_survive_sigkill(node):
    """Cluster id and topic ids stay; producer ids are never handed out twice."""
    topic = unique("identities")
    create_topics(node, {topic: (1, {})})

    def identities():
        with Raw(node) as raw:
            response = raw.call(MetadataRequest(version=12, topics=[
                MetadataRequest.MetadataRequestTopic(name=topic)]), MetadataResponse)
            return response.cluster_id, response.topics[0].topic_id, \
                {raw.producer_id()[0] for _ in range(3)}

    cluster_id, topic_id, producers_before = identities()
    node.kill()
    node.start()
    assert identities()[:2] == (cluster_id, topic_id)
    _, _, producers_after = identities()
    assert len(producers_before | producers_after) == 6


def test_emptied_log_keeps_its_offsets_after_sigkill(node):
    topic = unique("emptied")
    create_topics(node, {topic: (1, {})})
    producer = KafkaProducer(bootstrap_servers=node.bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        for i in range(10):
            producer.send(topic, value=b"%d" % i).get(WAIT_S)
        admin.delete_records({TopicPartition(topic, 0): 10})
    finally:
        producer.close()
        admin.close()
    node.kill()
    node.start()
    producer = KafkaProducer(bootstrap_servers=node.bootstrap)
    try:
        assert producer.send(topic, value=b"next").get(WAIT_S).offset == 10
    finally:
        producer.close()
    assert [(r.offset, r.value) for r in read_all(node, topic, 1, 1)] == [(10, b"next")]


def test_retry_after_restart_is_a_duplicate_behind_many_newer_batches(node):
    """A producer's retry of a written batch is recognised after a restart, however many
    batches other producers wrote since (Kafka keeps producer state by producer id)."""
    topic = unique("dedup-after-restart")
    create_topics(node, {topic: (1, {})})
    with Raw(node) as raw:
        quiet = raw.producer_id()
        written = batch([b"once"], quiet, base_sequence=0)
        assert raw.produce(topic, written) == (0, 0)
        busy = raw.producer_id()
        results = raw.produce_pipelined(topic, [batch([b"busy"], busy, base_sequence=i)
                                                for i in range(1200)])
        assert results == [(0, i) for i in range(1, 1201)]
    node.kill()
    node.start()
    with Raw(node) as raw:
        assert raw.produce(topic, written) == (0, 0)  # the original offset, nothing appended
        assert raw.latest_offset(topic) == 1201


def test_idempotent_producer_continues_after_its_batches_were_deleted(node):
    """Kafka accepts the next sequence of a producer whose state went with its batches."""
    topic = unique("idempotent-deleted")
    create_topics(node, {topic: (1, {})})
    producer = KafkaProducer(bootstrap_servers=node.bootstrap, reconnect_backoff_max_ms=200,
                             delivery_timeout_ms=30000)
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        for i in range(5):
            producer.send(topic, value=b"%d" % i).get(WAIT_S)
        admin.delete_records({TopicPartition(topic, 0): 5})
        node.kill()
        node.start()
        assert producer.send(topic, value=b"5").get(WAIT_S).offset == 5
    finally:
        admin.close()
        producer.close()
    assert [(r.offset, r.value) for r in read_all(node, topic, 1, 1)] == [(5, b"5")]


async def test_a_cancelled_writer_leaves_its_group_commit_to_the_others(tmp_path):
    """Writes queued together share one commit. A writer whose wait is cancelled (its
    client went away) must not cancel that commit for the rest of the group."""
    storage = Storage(tmp_path / "group.db")
    await storage.open()
    try:
        statement = "INSERT INTO settings (key, value) VALUES (?, ?)"
        abandoned = asyncio.ensure_future(storage.write(statement, ("abandoned", "1")))
        kept = storage.write(statement, ("kept", "2"))
        await asyncio.sleep(0)  # the abandoned writer is waiting on the commit
        abandoned.cancel()
        await kept  # raises CancelledError if the shared commit went with it
        assert await storage.get_setting("abandoned") == "1"
        assert await storage.get_setting("kept") == "2"
    finally:
        await storage.close()
