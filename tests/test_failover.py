"""Failover, proven: a 3-node cluster started with `kraftboard cluster start`, drills
through its supervisor, and librdkafka clients.

A verified workload (`broker.workload`) writes numbered records with an idempotent
acks=all producer to an RF=3, min.insync.replicas=2 topic while nodes are killed, cut
off and restarted; afterwards every acknowledged record must be read back exactly once,
in order within its partition. Every wait polls the cluster over the Kafka protocol,
asking nodes that are not the one drilled; nothing asserts on timing.
"""
from __future__ import annotations

import sqlite3
import time

import pytest
from confluent_kafka import KafkaError, Producer
from kafka.protocol.admin import CreateTopicsRequest
from kafka.protocol.metadata import MetadataRequest

from broker.cluster import client, probe
from broker.workload import VerifiedWorkload
from conftest import Cluster

NODES = (1, 2, 3)
PARTITIONS = 3
WAIT = 30.0
SESSION_TIMEOUT = 1.0  # broker.session.timeout.ms in the local profile, in seconds


@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path / "cluster", brokers=len(NODES))
    try:
        result = cluster.start()
        assert result.returncode == 0, result.stderr
        wait_for(lambda: len(brokers(cluster)) == len(NODES), "every node to serve as a broker")
        yield cluster
    finally:
        cluster.cleanup()


def wait_for(condition, what: str):
    return probe.wait_for(condition, what, WAIT)


def bootstrap(cluster: Cluster, without: int | None = None) -> str:
    return ",".join(f"127.0.0.1:{cluster.port + i - 1}" for i in NODES if i != without)


def brokers(cluster: Cluster) -> list[int]:
    metadata = probe.ask_any(bootstrap(cluster), MetadataRequest(version=1, topics=None))
    return sorted(b.node_id for b in metadata.brokers)


def drill(cluster: Cluster, op: str, node_id: int) -> float:
    """Run a supervisor op on one node; returns when it was done (time.monotonic())."""
    response = client.request(cluster.dir, op, id=node_id)
    assert response["ok"], response
    return time.monotonic()


def create_topic(cluster: Cluster, name: str, **configs: str) -> None:
    topic = CreateTopicsRequest.CreatableTopic
    request = CreateTopicsRequest(version=5, timeout_ms=10000, validate_only=False, topics=[
        topic(name=name, num_partitions=PARTITIONS, replication_factor=len(NODES),
              assignments=[], configs=[topic.CreatableTopicConfig(name=k, value=v)
                                       for k, v in configs.items()])])
    assert probe.ask_any(bootstrap(cluster), request).topics[0].error_code == 0
    wait_for(lambda: in_sync(cluster, name), f"{name} online with full ISRs")


def in_sync(cluster: Cluster, topic: str, without: int | None = None) -> bool:
    """Every partition has a leader and all its replicas in sync, as a node sees it."""
    state = probe.partitions(bootstrap(cluster, without), topic)
    return bool(state) and all(p.leader >= 0 and sorted(p.isr) == sorted(p.replicas)
                               for p in state.values())


def leaders(cluster: Cluster, topic: str, without: int | None = None) -> dict[int, int]:
    return {p: s.leader for p, s in probe.partitions(bootstrap(cluster, without), topic).items()}


def resumed(workload: VerifiedWorkload, since: float, partitions=range(PARTITIONS)) -> bool:
    return all(workload.resumed_after(since, p) is not None for p in partitions)


@pytest.fixture
def workload(cluster):
    create_topic(cluster, "verified", **{"min.insync.replicas": "2"})
    workload = VerifiedWorkload(bootstrap(cluster), "verified", PARTITIONS, rate=300).start()
    try:
        assert workload.wait_acknowledged(300, WAIT), workload.errors
        yield workload
    finally:
        workload.stop()
        # Shown with a failing test's report: a stall is easier to read with these.
        print(f"workload: {workload.produced} produced, {len(workload.acks)} acknowledged, "
              f"delivery errors {dict(workload.errors)}")


def assert_nothing_lost(workload: VerifiedWorkload) -> None:
    workload.stop()
    result = workload.verify()
    assert result.ok, result
    assert workload.errors == {}
    assert result.acknowledged == workload.produced  # every record was acknowledged in the end


def test_kills_isolation_and_a_rolling_restart_lose_nothing(cluster, workload):
    # 1. The leader of a partition (not the controller) is killed.
    controller = probe.quorum_leader(bootstrap(cluster))
    partition, victim = next((p, leader) for p, leader in leaders(cluster, "verified").items()
                             if leader != controller)
    killed = drill(cluster, "kill", victim)
    wait_for(lambda: leaders(cluster, "verified", victim)[partition] not in (victim, -1),
             f"a new leader of partition {partition}")
    wait_for(lambda: resumed(workload, killed, [partition]), "writes to resume on it")
    drill(cluster, "restart", victim)
    wait_for(lambda: in_sync(cluster, "verified"), f"node {victim} back in every ISR")

    # 2. The active controller is killed.
    controller = probe.quorum_leader(bootstrap(cluster))
    killed = drill(cluster, "kill", controller)
    wait_for(lambda: probe.quorum_leader(bootstrap(cluster, controller)) not in (None, controller),
             "a new active controller")
    wait_for(lambda: resumed(workload, killed), "writes to resume on every partition")
    drill(cluster, "restart", controller)
    wait_for(lambda: in_sync(cluster, "verified"), f"node {controller} back in every ISR")

    # 3. A leader is cut off from its peers (clients still reach it), then healed.
    victim = leaders(cluster, "verified")[0]
    isolated = drill(cluster, "isolate", victim)
    wait_for(lambda: all(leader not in (victim, -1)
                         for leader in leaders(cluster, "verified", victim).values()),
             f"every leadership moved away from node {victim}")
    drill(cluster, "heal", victim)
    wait_for(lambda: in_sync(cluster, "verified"), f"node {victim} back in every ISR")
    wait_for(lambda: resumed(workload, isolated), "writes to resume on every partition")

    # 4. A rolling restart: each node in turn, once the one before is back in every ISR.
    for node_id in NODES:
        restarted = drill(cluster, "restart", node_id)
        wait_for(lambda: in_sync(cluster, "verified"), f"node {node_id} back in every ISR")
        wait_for(lambda: resumed(workload, restarted), "writes to resume on every partition")

    assert_nothing_lost(workload)


def produce_once(topic: str, partition: int, ask: str) -> KafkaError | None:
    """One record with acks=all and no retries, so the broker's first answer is the result."""
    outcome = []
    producer = Producer({"bootstrap.servers": ask, "acks": "all", "enable.idempotence": False,
                         "retries": 0, "request.timeout.ms": 2000, "message.timeout.ms": 20000})
    producer.produce(topic, b"probe", partition=partition,
                     on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(30)
    assert len(outcome) == 1
    return outcome[0]


def test_two_of_three_down_stops_acks_all_and_loses_nothing(cluster, workload):
    create_topic(cluster, "three-in-sync", **{"min.insync.replicas": "3"})
    create_topic(cluster, "probe", **{"min.insync.replicas": "2"})
    topics = ("verified", "three-in-sync", "probe")
    first, second, survivor = NODES

    # One node down: its replicas leave the ISRs, and writes needing two replicas go on.
    killed = drill(cluster, "kill", first)
    wait_for(lambda: all(first not in p.isr for t in topics
                         for p in probe.partitions(bootstrap(cluster, first), t).values()),
             f"node {first} out of every ISR")
    wait_for(lambda: resumed(workload, killed), "writes to resume on every partition")
    error = produce_once("three-in-sync", 0, bootstrap(cluster, first))
    assert error is not None and error.code() == KafkaError.NOT_ENOUGH_REPLICAS, error

    # Two down: no quorum is left to shrink the ISRs, so the survivor takes acks=all
    # writes it can never replicate, and answers REQUEST_TIMED_OUT when they expire (as
    # Kafka does). An idempotent producer retries them until message.timeout.ms.
    killed = drill(cluster, "kill", second)
    alone = f"127.0.0.1:{cluster.port + survivor - 1}"
    led = [p for p, state in probe.partitions(alone, "probe").items() if state.leader == survivor]
    error = produce_once("probe", led[0], alone)
    assert error is not None and error.code() == KafkaError.REQUEST_TIMED_OUT, error
    assert workload.resumed_after(killed) is None  # nothing written since is acknowledged

    for node_id in (second, first):
        drill(cluster, "restart", node_id)
    wait_for(lambda: all(in_sync(cluster, t) for t in topics), "every node back in every ISR")
    wait_for(lambda: resumed(workload, killed), "writes to resume on every partition")
    assert_nothing_lost(workload)


def stored_ends(cluster: Cluster, node_id: int, topic: str) -> dict[int, int]:
    """{partition: end offset} of `topic` in a node's own database, read from its file."""
    path = cluster.dir / f"node-{node_id}" / "kraftboard.db"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(db.execute(
            "SELECT p.partition, MAX(b.last_offset) + 1 FROM batches b JOIN partitions p"
            " ON b.pid = p.id WHERE p.topic = ? GROUP BY p.partition", (topic,)).fetchall())
    finally:
        db.close()


def test_a_restarted_node_catches_up_rejoins_every_isr_and_leads_again(cluster, workload):
    victim = next(n for n in NODES if n != probe.quorum_leader(bootstrap(cluster)))
    drill(cluster, "kill", victim)
    wait_for(lambda: all(victim not in p.isr for p in
                         probe.partitions(bootstrap(cluster, victim), "verified").values()),
             f"node {victim} out of every ISR")
    assert workload.wait_acknowledged(300, WAIT)  # records it misses
    acknowledged_before = workload.acknowledged
    drill(cluster, "restart", victim)
    wait_for(lambda: in_sync(cluster, "verified"), f"node {victim} back in every ISR")
    # auto.leader.rebalance.enable: its partition goes back to it, as preferred replica.
    wait_for(lambda: all(s.leader == s.replicas[0] for s in
                         probe.partitions(bootstrap(cluster), "verified").values()),
             "every partition led by its preferred replica")
    assert_nothing_lost(workload)
    # It rejoined holding every record acknowledged before it came back.
    acks = workload.acks[:acknowledged_before]
    needed = {p: max(a.offset for a in acks if a.partition == p) + 1 for p in range(PARTITIONS)}
    stored = stored_ends(cluster, victim, "verified")
    assert all(stored.get(p, 0) >= end for p, end in needed.items()), (stored, needed)


def fenced_in_log(cluster: Cluster, node_id: int, since: int) -> tuple[set[int], int]:
    """The brokers a node's controller fenced for missed heartbeats, by its log from
    character `since` on, and the log's length now."""
    text = (cluster.dir / f"node-{node_id}" / "node.log").read_text()
    fenced = {int(line.split("broker ")[1].split()[0]) for line in text[since:].splitlines()
              if "missed heartbeats" in line}
    return fenced, len(text)


def test_a_controller_elected_again_judges_brokers_by_this_terms_heartbeats(cluster):
    """Brokers heartbeat to the active controller only. A node that leads the quorum again
    must not hold the heartbeats of its earlier term against them: it fenced every broker
    at once, itself included, and with them every ISR."""
    first = probe.quorum_leader(bootstrap(cluster))
    drill(cluster, "isolate", first)
    wait_for(lambda: probe.quorum_leader(bootstrap(cluster, first)) not in (None, first),
             "another controller")
    time.sleep(SESSION_TIMEOUT)  # what `first` last heard from the brokers is now stale
    _, since = fenced_in_log(cluster, first, 0)
    drill(cluster, "heal", first)
    wait_for(lambda: len(brokers(cluster)) == len(NODES), "every broker unfenced")
    # Until `first` leads again: the node leading instead is killed, and comes back.
    killed = set()
    for _ in range(12):
        leader = probe.quorum_leader(bootstrap(cluster))
        if leader == first:
            break
        _, since = fenced_in_log(cluster, first, 0)
        killed = {leader}
        drill(cluster, "kill", leader)
        wait_for(lambda: probe.quorum_leader(bootstrap(cluster, leader)) not in (None, leader),
                 "a new controller")
        wait_for(lambda: leader not in brokers(cluster), f"node {leader} fenced")
        drill(cluster, "restart", leader)
        wait_for(lambda: len(brokers(cluster)) == len(NODES), "every broker unfenced")
    else:
        pytest.fail(f"node {first} did not lead the quorum again in 12 elections")
    time.sleep(2 * SESSION_TIMEOUT)  # time enough to fence anything it wrongly would
    # In its new term it fenced the node that was killed, if one was, and no other.
    fenced, _ = fenced_in_log(cluster, first, since)
    assert fenced == killed, fenced
