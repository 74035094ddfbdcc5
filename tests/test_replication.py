"""Partition replication between real node processes, seen through Kafka requests."""
from __future__ import annotations

import time

from confluent_kafka import Producer
from kafka.protocol.admin import CreateTopicsRequest
from kafka.protocol.metadata import MetadataRequest

from broker.cluster import probe

WAIT = 30.0


def bootstrap(cluster) -> str:
    return ",".join(node.bootstrap for node in cluster.nodes.values())


def wait_for(condition, what: str):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def create_topic(cluster, name: str, partitions: int, replication: int) -> int:
    """CreateTopics sent to the active controller; returns the topic's error code."""
    topic = CreateTopicsRequest.CreatableTopic
    request = CreateTopicsRequest(version=5, timeout_ms=10000, validate_only=False, topics=[
        topic(name=name, num_partitions=partitions, replication_factor=replication,
              assignments=[], configs=[])])
    controller = cluster.nodes[wait_for(lambda: probe.quorum_leader(bootstrap(cluster)),
                                        "an active controller")]
    return probe.call(("127.0.0.1", controller.port), request, timeout=WAIT).topics[0].error_code


def test_parked_replica_fetches_hold_up_no_other_traffic(quorum_cluster):
    """Followers' replica fetches wait up to replica.fetch.wait.max.ms for data. Quorum
    fetches, heartbeats and AlterPartition to the same node must not queue behind them."""
    cluster = quorum_cluster(3, **{"replica.fetch.wait.max.ms": 20000,
                                   "replica.lag.time.max.ms": 60000})
    wait_for(lambda: len(probe.ask_any(bootstrap(cluster),
                                       MetadataRequest(version=1, topics=None)).brokers) == 3,
             "three registered brokers")
    assert create_topic(cluster, "parked", partitions=3, replication=3) == 0
    producer = Producer({"bootstrap.servers": bootstrap(cluster), "acks": "all"})
    for partition in range(3):
        producer.produce("parked", b"x", partition=partition)
    assert producer.flush(WAIT) == 0
    del producer  # before the nodes stop, so it does not log their going
    # Every follower fetched up to the high watermark and is now parked on each leader
    # for 20 s. Metadata records commit only if the quorum's fetches get through.
    for index in range(5):
        assert create_topic(cluster, f"after-{index}", partitions=1, replication=3) == 0
    brokers = probe.ask_any(bootstrap(cluster), MetadataRequest(version=1, topics=None)).brokers
    assert sorted(b.node_id for b in brokers) == [1, 2, 3]  # nobody fenced for silence
