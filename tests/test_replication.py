"""Partition replication between real node processes, seen through Kafka requests."""
from __future__ import annotations

import signal
import time

import pytest

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from kafka.admin import KafkaAdminClient
from kafka.protocol.admin import (CreatePartitionsRequest, CreateTopicsRequest,
                                  DescribeLogDirsRequest)
from kafka.protocol.consumer import OffsetForLeaderEpochRequest
from kafka.protocol.metadata import MetadataRequest, MetadataResponse
from kafka import errors
from kafka.protocol.producer import InitProducerIdRequest, InitProducerIdResponse, ProduceResponse

from broker.cluster import probe
from broker.messages import BrokerHeartbeatRequest, BrokerRegistrationRequest
from test_bad_input import PRODUCE_V, Raw, batch, produce_request
from test_failover import produce_once

WAIT = 30.0
METADATA_V = 9
FAST_FENCING = {"broker.heartbeat.interval.ms": 200, "broker.session.timeout.ms": 1000}


def bootstrap(cluster) -> str:
    return ",".join(node.bootstrap for node in cluster.nodes.values())


def wait_for(condition, what: str):
    return probe.wait_for(condition, what, WAIT)


def registered(cluster) -> None:
    """Until every node serves as a broker."""
    wait_for(lambda: len(probe.ask_any(bootstrap(cluster), MetadataRequest(
        version=1, topics=None)).brokers) == len(cluster.nodes), "every broker registered")


def create_topic(cluster, name: str, partitions: int, replication: int, **configs: str) -> int:
    """CreateTopics sent to the active controller; returns the topic's error code."""
    topic = CreateTopicsRequest.CreatableTopic
    request = CreateTopicsRequest(version=5, timeout_ms=10000, validate_only=False, topics=[
        topic(name=name, num_partitions=partitions, replication_factor=replication,
              assignments=[], configs=[topic.CreatableTopicConfig(name=k, value=v)
                                       for k, v in configs.items()])])
    controller = cluster.nodes[wait_for(lambda: probe.quorum_leader(bootstrap(cluster)),
                                        "an active controller")]
    return probe.call(("127.0.0.1", controller.port), request, timeout=WAIT).topics[0].error_code


def test_parked_replica_fetches_hold_up_no_other_traffic(quorum_cluster):
    """Followers' replica fetches wait up to replica.fetch.wait.max.ms for data. Quorum
    fetches, heartbeats and AlterPartition to the same node must not queue behind them."""
    cluster = quorum_cluster(3, **{"replica.fetch.wait.max.ms": 20000,
                                   "replica.lag.time.max.ms": 60000})
    registered(cluster)
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


def test_a_request_behind_a_waiting_produce_sees_what_it_waited_for(quorum_cluster):
    """Kafka handles a connection's requests one at a time. A Metadata request sent right
    behind an acks=all produce that waits for a dead follower to leave the ISR is answered
    with the ISR the produce waited for, not the one it arrived in."""
    cluster = quorum_cluster(3, **FAST_FENCING)
    registered(cluster)
    assert create_topic(cluster, "waits", 1, 3, **{"min.insync.replicas": "2"}) == 0
    wait_for(lambda: all(probe.partitions(n.bootstrap, "waits") for n in cluster.nodes.values()),
             "every node to know the topic")
    state = probe.partitions(bootstrap(cluster), "waits")[0]
    controller = probe.quorum_leader(bootstrap(cluster))
    follower = next(r for r in reversed(state.replicas) if r not in (state.leader, controller))
    cluster.kill(follower)
    with Raw(cluster.nodes[state.leader]) as raw:
        raw.send(produce_request("waits", {0: batch()}, acks=-1))
        raw.send(MetadataRequest(version=METADATA_V, topics=[
            MetadataRequest.MetadataRequestTopic(name="waits")]))
        produced = raw.receive(ProduceResponse, PRODUCE_V, raw.correlation_id - 1)
        metadata = raw.receive(MetadataResponse, METADATA_V)
    assert produced.responses[0].partition_responses[0].error_code == 0
    isr = metadata.topics[0].partitions[0].isr_nodes
    assert sorted(isr) == sorted(r for r in state.replicas if r != follower)


def test_an_acks_all_wait_ends_in_not_enough_replicas_after_append(quorum_cluster):
    """A produce appended while both replicas of a min.insync.replicas=2 topic were in
    sync waits for its follower, which dies. Once the ISR is the leader alone, the high
    watermark passes the batch, yet only one replica has it: Kafka answers
    NOT_ENOUGH_REPLICAS_AFTER_APPEND, never success. The next produce is refused before
    its append, with NOT_ENOUGH_REPLICAS."""
    cluster = quorum_cluster(3, **FAST_FENCING)
    registered(cluster)
    assert create_topic(cluster, "after-append", 1, 2, **{"min.insync.replicas": "2"}) == 0
    wait_for(lambda: all(probe.partitions(n.bootstrap, "after-append")
                         for n in cluster.nodes.values()), "every node to know the topic")
    state = probe.partitions(bootstrap(cluster), "after-append")[0]
    follower = next(r for r in state.replicas if r != state.leader)
    cluster.kill(follower)  # fenced, and out of the ISR, after broker.session.timeout.ms
    with Raw(cluster.nodes[state.leader]) as raw:
        waited = raw.call(produce_request("after-append", {0: batch()}, acks=-1), ProduceResponse)
        refused = raw.call(produce_request("after-append", {0: batch()}, acks=-1), ProduceResponse)
    assert waited.responses[0].partition_responses[0].error_code == \
        errors.NotEnoughReplicasAfterAppendError.errno
    assert refused.responses[0].partition_responses[0].error_code == \
        errors.NotEnoughReplicasError.errno


def test_produces_keep_their_order_behind_a_waiting_request(quorum_cluster):
    """An idempotent producer's next batch, sent while its previous one still waits for
    an earlier request, is appended after it, not before (which would be out of order)."""
    cluster = quorum_cluster(3)
    registered(cluster)
    assert create_topic(cluster, "ordered", 1, 3) == 0
    wait_for(lambda: all(probe.partitions(n.bootstrap, "ordered") for n in cluster.nodes.values()),
             "every node to know the topic")
    leader = probe.partitions(bootstrap(cluster), "ordered")[0].leader
    with Raw(cluster.nodes[leader]) as raw:
        producer = raw.producer_id()
        for node_id in cluster.nodes:  # acks=all cannot complete now: the produce times out
            if node_id != leader:
                cluster.kill(node_id)
        waiting = produce_request("ordered", {0: batch()}, acks=-1)
        waiting.timeout_ms = 2000
        metadata = MetadataRequest(version=METADATA_V, topics=None)
        first = produce_request("ordered", {0: batch(producer=producer, base_sequence=0)})
        # Metadata, then a produce that waits for it and for the waiting one.
        raw.sock.sendall(raw.frame(metadata) + raw.frame(waiting) + raw.frame(first))
        raw.receive(MetadataResponse, METADATA_V, raw.correlation_id - 2)
        raw.send(produce_request("ordered", {0: batch(producer=producer, base_sequence=1)}))
        answers = [raw.receive(ProduceResponse, PRODUCE_V, raw.correlation_id - n)
                   .responses[0].partition_responses[0] for n in (2, 1, 0)]
    assert [a.error_code for a in answers[1:]] == [0, 0]
    assert answers[2].base_offset == answers[1].base_offset + 1


def test_a_broker_is_unfenced_once_it_has_applied_its_own_registration(quorum_cluster):
    """Kafka's rule: a returning broker is caught up once its metadata offset reaches its
    own registration record. Records committed after that (the log never stops while
    other brokers and admins work) must not keep it fenced."""
    cluster = quorum_cluster(3)
    registered(cluster)
    controller = cluster.nodes[probe.quorum_leader(bootstrap(cluster))]
    address = ("127.0.0.1", controller.port)
    registration = probe.call(address, BrokerRegistrationRequest(
        version=0, broker_id=9, cluster_id="", incarnation_id="returning",
        listeners=[BrokerRegistrationRequest.Listener(name="PLAINTEXT", host="127.0.0.1",
                                                      port=9)]))
    assert registration.error_code == 0
    quorum = probe.call(address, probe.describe_quorum_request()).topics[0].partitions[0]
    applied = quorum.high_watermark - 1  # its registration, or a record after it
    assert create_topic(cluster, "later", 1, 3) == 0  # the log moves on
    heartbeat = probe.call(address, BrokerHeartbeatRequest(
        version=0, broker_id=9, incarnation_id="returning", current_metadata_offset=applied))
    assert (heartbeat.error_code, heartbeat.is_fenced) == (0, False)


def test_a_stopping_broker_hands_its_leaderships_over_first(quorum_cluster):
    """Kafka's controlled shutdown: on SIGTERM a leader asks the controller to move its
    leaderships before it exits. With a 60 s session the controller would otherwise
    leave them on the stopped node for a minute."""
    cluster = quorum_cluster(3, **{"broker.heartbeat.interval.ms": 200,
                                   "broker.session.timeout.ms": 60000})
    registered(cluster)
    assert create_topic(cluster, "handover", 3, 3) == 0
    wait_for(lambda: all(probe.partitions(n.bootstrap, "handover") for n in cluster.nodes.values()),
             "every node to know the topic")
    stopped = probe.partitions(bootstrap(cluster), "handover")[0].leader
    cluster.nodes[stopped].stop()  # SIGTERM
    others = ",".join(n.bootstrap for i, n in cluster.nodes.items() if i != stopped)
    wait_for(lambda: all(p.leader not in (stopped, -1) and stopped not in p.isr
                         for p in probe.partitions(others, "handover").values()),
             f"every leadership of node {stopped} moved")


def dedicated_cluster(quorum_cluster, broker_ids: tuple[int, ...]):
    """Three controller-only nodes, and brokers of their own; returns the cluster and
    the brokers' bootstrap once every broker has registered."""
    cluster = quorum_cluster(3, **{"process.roles": ["controller"]})
    for node_id in broker_ids:
        cluster.add_observer(node_id, **FAST_FENCING, **{"replica.lag.time.max.ms": 1000})
    brokers = ",".join(cluster.nodes[i].bootstrap for i in broker_ids)
    wait_for(lambda: sorted(b.node_id for b in probe.ask_any(brokers, MetadataRequest(
        version=1, topics=None)).brokers) == list(broker_ids), "every broker registered")
    return cluster, brokers


def produce_all(bootstrap: str, topic: str, values: list[bytes], acks: str = "all") -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks})
    for value in values:
        producer.produce(topic, value, partition=0)
    assert producer.flush(WAIT) == 0


def read_all(bootstrap: str, topic: str, partition: int = 0) -> list[bytes]:
    """One partition, from the beginning to its high watermark."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                         "enable.auto.commit": False})
    _, end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=WAIT)
    consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
    read, offset = [], -1
    deadline = time.monotonic() + WAIT
    while offset < end - 1 and time.monotonic() < deadline:
        for message in consumer.consume(500, timeout=1):
            assert message.error() is None, message.error()
            read.append(message.value())
            offset = message.offset()
    consumer.close()
    return read


def consume(consumer: Consumer, count: int) -> list:
    """The next `count` messages; none may be an error."""
    messages = []
    deadline = time.monotonic() + WAIT
    while len(messages) < count and time.monotonic() < deadline:
        for message in consumer.consume(count - len(messages), timeout=1):
            assert message.error() is None, message.error()
            messages.append(message)
    return messages


def test_dedicated_controllers_shrink_the_isr_when_two_of_three_brokers_die(quorum_cluster):
    """Three controllers and three brokers in their own processes. The quorum outlives
    the brokers, so it fences the two killed, the ISR shrinks to the survivor, and an
    acks=all write answers NOT_ENOUGH_REPLICAS (combined nodes have no quorum left for
    that and time out instead). Nothing acknowledged before is lost when they return."""
    broker_ids = (4, 5, 6)
    cluster, brokers = dedicated_cluster(quorum_cluster, broker_ids)
    assert create_topic(cluster, "guarded", 1, 3, **{"min.insync.replicas": "2"}) == 0

    def guarded(bootstrap: str) -> probe.PartitionState | None:
        return probe.partitions(bootstrap, "guarded").get(0)

    wait_for(lambda: (state := guarded(brokers)) and len(state.isr) == 3, "a full ISR")
    values = [f"before-{i}".encode() for i in range(200)]
    produce_all(brokers, "guarded", values)

    state = guarded(brokers)
    killed = [state.leader] + [r for r in state.replicas if r != state.leader][:1]
    survivor = next(r for r in broker_ids if r not in killed)
    for node_id in killed:
        cluster.kill(node_id)
    alone = cluster.nodes[survivor].bootstrap
    wait_for(lambda: guarded(alone).isr == [survivor], f"the ISR shrunk to node {survivor}")
    assert guarded(alone).leader == survivor
    error = produce_once("guarded", 0, alone)
    assert error is not None and error.code() == KafkaError.NOT_ENOUGH_REPLICAS, error

    for node_id in killed:
        cluster.restart(node_id)
    wait_for(lambda: sorted(guarded(brokers).isr) == list(broker_ids),
             "the returning brokers back in the ISR")
    assert read_all(brokers, "guarded") == values


@pytest.mark.parametrize("unclean", [True, False])
def test_an_out_of_sync_replica_leads_only_where_unclean_election_is_enabled(quorum_cluster,
                                                                           unclean):
    """Two brokers, a topic of one partition on both: the follower dies, the leader takes
    more writes alone and dies too, then the follower returns. With unclean election it
    leads at once, and what only the old leader had is gone; without, the partition stays
    offline until its in-sync replica returns, and nothing is lost."""
    broker_ids = (4, 5)
    cluster, brokers = dedicated_cluster(quorum_cluster, broker_ids)
    assert create_topic(cluster, "t", 1, 2, **{"min.insync.replicas": "1",
                                               "unclean.leader.election.enable": str(unclean)}) == 0

    def state(bootstrap: str) -> probe.PartitionState | None:
        return probe.partitions(bootstrap, "t").get(0)

    wait_for(lambda: (s := state(brokers)) and len(s.isr) == 2, "a full ISR")
    leader, old_epoch = state(brokers).leader, state(brokers).leader_epoch
    follower = next(b for b in broker_ids if b != leader)
    replicated = [f"replicated-{i}".encode() for i in range(100)]
    leader_only = [f"leader-only-{i}".encode() for i in range(100)]
    produce_all(brokers, "t", replicated)
    cluster.kill(follower)
    at_leader = cluster.nodes[leader].bootstrap
    wait_for(lambda: state(at_leader).isr == [leader], f"node {follower} out of the ISR")
    produce_all(at_leader, "t", leader_only, acks="1")
    # A consumer reads everything the leader has, the records it alone took included.
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "unused",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition("t", 0, 0)])
    assert len(consume(consumer, len(replicated + leader_only))) == 200
    cluster.kill(leader)
    cluster.restart(follower)
    at_follower = cluster.nodes[follower].bootstrap
    if unclean:
        wait_for(lambda: state(at_follower).leader == follower, f"node {follower} leading")
        assert state(at_follower).isr == [follower]
        # Where the old leader's epoch ends on the new one (KIP-320): at the end of what
        # was replicated. The consumer asks that on the leader change and goes back there
        # for what is written next, rather than meeting an offset out of range and
        # reading the partition again from the start (its auto.offset.reset).
        assert epoch_ends(cluster.nodes[follower], "t", [(-1, old_epoch)]) == [
            (0, old_epoch, len(replicated))]
        produce_all(at_follower, "t", [b"after the election"], acks="1")
        assert [(m.offset(), m.value()) for m in consume(consumer, 1)] == [
            (len(replicated), b"after the election")]
        assert read_all(at_follower, "t") == replicated + [b"after the election"]
    else:
        wait_for(lambda: state(at_follower).leader == -1 and follower in [
            b.node_id for b in probe.ask_any(at_follower, MetadataRequest(
                version=1, topics=None)).brokers], f"node {leader} fenced, node {follower} back")
        # Offline it stays: no in-sync replica is up. A session timeout more gives the
        # controller every chance to elect the returned replica wrongly.
        time.sleep(FAST_FENCING["broker.session.timeout.ms"] / 1000)
        assert state(at_follower).leader == -1

    consumer.close()
    cluster.restart(leader)
    wait_for(lambda: sorted(state(brokers).isr) == list(broker_ids), "a full ISR again")
    kept = replicated + [b"after the election"] if unclean else replicated + leader_only
    assert read_all(brokers, "t") == kept


def epoch_ends(node, topic: str, asks: list[tuple[int, int]],
               version: int = 2) -> list[tuple[int, int, int]]:
    """OffsetForLeaderEpoch of partition 0 (librdkafka's version by default), one entry per
    (current leader epoch, leader epoch) asked: (error code, epoch, end offset) each."""
    Topic = OffsetForLeaderEpochRequest.OffsetForLeaderTopic
    answer = probe.call(("127.0.0.1", node.port), OffsetForLeaderEpochRequest(
        version=version, replica_id=-1, topics=[Topic(topic=topic, partitions=[
            Topic.OffsetForLeaderPartition(partition=0, current_leader_epoch=current,
                                           leader_epoch=epoch)
            for current, epoch in asks])]), timeout=WAIT)
    return [(p.error_code, p.leader_epoch, p.end_offset) for p in answer.topics[0].partitions]


def test_offset_for_leader_epoch_says_where_each_epoch_ends(quorum_cluster):
    cluster = quorum_cluster(3, **FAST_FENCING)
    registered(cluster)
    assert create_topic(cluster, "epochs", 1, 3) == 0
    brokers = bootstrap(cluster)
    wait_for(lambda: (s := probe.partitions(brokers, "epochs").get(0)) and len(s.isr) == 3,
             "a full ISR")
    produce_all(brokers, "epochs", [b"first-%d" % i for i in range(5)])
    first = probe.partitions(brokers, "epochs")[0]
    cluster.kill(first.leader)
    survivors = ",".join(n.bootstrap for i, n in cluster.nodes.items() if i != first.leader)
    wait_for(lambda: probe.partitions(survivors, "epochs")[0].leader not in (-1, first.leader),
             "a new leader")
    produce_all(survivors, "epochs", [b"second-%d" % i for i in range(3)])
    second = probe.partitions(survivors, "epochs")[0]
    assert second.leader_epoch > first.leader_epoch
    leader = cluster.nodes[second.leader]
    newer = second.leader_epoch + 1

    # An old epoch ends where the next began; the current one at the log end; a newer
    # one is unknown. Without a current epoch (-1) nothing is fenced.
    assert epoch_ends(leader, "epochs", [(-1, first.leader_epoch),
                                         (second.leader_epoch, second.leader_epoch),
                                         (-1, newer)]) == [
        (0, first.leader_epoch, 5), (0, second.leader_epoch, 8), (0, -1, -1)]
    # A client with stale or future metadata is told so, as by Fetch.
    assert [e[0] for e in epoch_ends(leader, "epochs", [(first.leader_epoch, 0),
                                                        (newer, 0)])] == [
        errors.FencedLeaderEpochError.errno, errors.UnknownLeaderEpochError.errno]
    # v0 answers the end offset alone; a follower answers NOT_LEADER_OR_FOLLOWER.
    assert epoch_ends(leader, "epochs", [(-1, first.leader_epoch)], version=0)[0][2] == 5
    follower = cluster.nodes[next(i for i in second.isr if i != second.leader)]
    assert epoch_ends(follower, "epochs", [(-1, first.leader_epoch)])[0][0] == \
        errors.NotLeaderForPartitionError.errno


def test_a_former_leader_knows_its_producers_after_truncating_what_it_alone_took(quorum_cluster):
    """An isolated leader takes five idempotent batches it can never replicate. Back with
    its peers, it truncates them, and once it leads again the producer's next batch
    follows the last one the cluster kept. (Forgetting that batch, it answered
    OUT_OF_ORDER_SEQUENCE_NUMBER to every retry and the producer stalled.)"""
    cluster = quorum_cluster(3, **FAST_FENCING, **{"leader.imbalance.check.interval.seconds": 1})
    registered(cluster)
    assert create_topic(cluster, "sequences", 1, 3, **{"min.insync.replicas": "2"}) == 0
    wait_for(lambda: all((s := probe.partitions(n.bootstrap, "sequences").get(0))
                         and len(s.isr) == 3 for n in cluster.nodes.values()),
             "every node to see a full ISR")
    leader = probe.partitions(bootstrap(cluster), "sequences")[0].leader
    others = [n.bootstrap for i, n in cluster.nodes.items() if i != leader]

    def moved_away():
        """The partition as the other nodes see it, once each has another leader for it."""
        seen = [probe.partitions(other, "sequences")[0] for other in others]
        return all(s.leader not in (leader, -1) for s in seen) and seen[0]

    def produce(raw: Raw, sequence: int, acks: int):
        raw.send(produce_request("sequences", {0: batch(producer=producer, base_sequence=sequence)},
                                 acks=acks))
        return raw.receive(ProduceResponse, PRODUCE_V).responses[0].partition_responses[0]

    with Raw(cluster.nodes[leader]) as raw:
        producer = raw.producer_id()
        assert produce(raw, 0, acks=-1).error_code == 0
        cluster.nodes[leader].process.send_signal(signal.SIGUSR1)  # isolate
        moved = wait_for(moved_away, "every other node to follow another leader")
        for sequence in range(1, 6):  # more than the five batches a node keeps per producer
            assert produce(raw, sequence, acks=1).error_code == 0  # it still thinks it leads
    cluster.nodes[leader].process.send_signal(signal.SIGUSR2)  # heal
    wait_for(lambda: (s := probe.partitions(cluster.nodes[leader].bootstrap, "sequences")[0])
             .leader == leader and s.leader_epoch > moved.leader_epoch,
             f"node {leader} leading again, as the preferred replica")
    with Raw(cluster.nodes[leader]) as raw:
        answer = produce(raw, 1, acks=-1)
    assert (answer.error_code, answer.base_offset) == (0, 1)
    # The batches it truncated no longer count in its size on disk.
    wait_for(lambda: len({sizes[0] for sizes in stored_sizes(cluster, "sequences").values()}) == 1,
             "every replica to report the same size")


def stored_sizes(cluster, topic: str) -> dict[int, dict[int, int]]:
    """{node id: {partition: bytes stored}} of the replicas of `topic` each node holds."""
    sizes = {}
    for node_id, node in cluster.nodes.items():
        answer = probe.call(("127.0.0.1", node.port),
                            DescribeLogDirsRequest(version=4, topics=None), timeout=WAIT)
        sizes[node_id] = {p.partition_index: p.partition_size for result in answer.results
                          for t in result.topics if t.name == topic for p in t.partitions}
    return sizes


def test_each_broker_describes_the_replicas_it_stores(quorum_cluster):
    """kafka-python's admin client asks every broker, as kafka-log-dirs does: each has one
    log directory, its `log.dirs`, holding the replicas placed on it, each as large as the
    batches it stores."""
    cluster = quorum_cluster(3)
    registered(cluster)
    assert create_topic(cluster, "everywhere", 2, 3) == 0
    assert create_topic(cluster, "once", 1, 1) == 0
    records = batch([b"v" * 100] * 10)
    expected: dict[int, dict[tuple[str, int], int]] = {node_id: {} for node_id in cluster.nodes}
    for topic, count in (("everywhere", 2), ("once", 1)):
        def settled(node):
            states = probe.partitions(node.bootstrap, topic)
            return len(states) == count and all(len(p.isr) == len(p.replicas) for p in states.values())
        wait_for(lambda: all(settled(node) for node in cluster.nodes.values()),
                 f"every node to know {topic} with a full ISR")
        states = probe.partitions(bootstrap(cluster), topic)
        for index, state in states.items():
            with Raw(cluster.nodes[state.leader]) as raw:
                for _ in range(index + 1):  # partition i holds i + 1 batches
                    raw.send(produce_request(topic, {index: records}, acks=-1))
                    answer = raw.receive(ProduceResponse, PRODUCE_V)
                    assert answer.responses[0].partition_responses[0].error_code == 0
            for replica in state.replicas:
                expected[replica][(topic, index)] = len(records) * (index + 1)

    admin = KafkaAdminClient(bootstrap_servers=bootstrap(cluster))
    try:
        def described() -> dict[int, dict[tuple[str, int], int]]:
            seen = {}
            for answer in admin.describe_log_dirs():
                (log_dir,) = answer["log_dirs"]
                assert log_dir["error_code"] == 0
                assert log_dir["log_dir"] == str(cluster.nodes[answer["broker"]].directory / "data")
                assert 0 < log_dir["usable_bytes"] <= log_dir["total_bytes"]
                seen[answer["broker"]] = {
                    (t["name"], p["partition_index"]): p["partition_size"]
                    for t in log_dir["topics"] if not t["name"].startswith("__")
                    for p in t["partitions"]}
            return seen
        wait_for(lambda: described() == expected, f"every replica's size: {expected}")

        # Asked for one partition, each broker answers for that one alone.
        answers = admin.describe_log_dirs(topic_partitions={"everywhere": [1]})
        assert {answer["broker"]: [(t["name"], [p["partition_index"] for p in t["partitions"]])
                                   for t in answer["log_dirs"][0]["topics"]]
                for answer in answers} == {node_id: [("everywhere", [1])] for node_id in cluster.nodes}
        # Partitions a broker does not hold are left out, with no error, as Kafka answers.
        for answer in admin.describe_log_dirs(topic_partitions={"absent": [0], "once": [7]}):
            assert answer["log_dirs"][0]["error_code"] == 0
            assert answer["log_dirs"][0]["topics"] == []
    finally:
        admin.close()


def test_producer_ids_are_unique_across_the_cluster_and_its_restarts(quorum_cluster):
    """Every broker hands out producer ids from blocks the active controller commits to
    the metadata log, so two producers never share an id: not on two brokers, and not
    after a restart. (With ids counted on each node, a second producer got id 0 and its
    first batch was refused as out of order: a fatal error for librdkafka.)"""
    cluster = quorum_cluster(3)
    registered(cluster)

    def producer_ids() -> list[int]:
        ids = []
        for node in cluster.nodes.values():
            with Raw(node) as raw:
                ids += [raw.producer_id()[0] for _ in range(2)]
        return ids

    before = producer_ids()
    for node_id in cluster.nodes:
        cluster.kill(node_id)
    for node_id in cluster.nodes:
        cluster.restart(node_id)
    registered(cluster)
    after = producer_ids()
    assert len(set(before + after)) == len(before + after), (before, after)


def test_init_producer_id_without_a_controller_answers_a_retriable_error(quorum_cluster):
    """A broker that has no block of producer ids yet and cannot reach a controller answers
    InitProducerId with COORDINATOR_LOAD_IN_PROGRESS, which producers retry, and serves
    ids again once the quorum is back."""
    cluster = quorum_cluster(3)
    registered(cluster)
    survivor, *others = cluster.nodes
    for node_id in others:
        cluster.kill(node_id)
    with Raw(cluster.nodes[survivor]) as raw:
        answer = raw.call(InitProducerIdRequest(version=4, transactional_id=None,
                                                transaction_timeout_ms=60000),
                          InitProducerIdResponse)
    assert answer.error_code == errors.CoordinatorLoadInProgressError.errno, answer
    for node_id in others:
        cluster.restart(node_id)
    wait_for(lambda: probe.quorum_leader(bootstrap(cluster)), "a controller again")
    with Raw(cluster.nodes[survivor]) as raw:
        wait_for(lambda: raw.call(InitProducerIdRequest(
            version=4, transactional_id=None, transaction_timeout_ms=60000),
            InitProducerIdResponse).error_code == 0, "a producer id")


def test_replicas_placed_by_hand_are_where_the_admin_put_them(quorum_cluster):
    """CreateTopics and CreatePartitions with replica assignments, from librdkafka's admin
    client: each partition has those replicas in that order, its first leads, and records
    go through acks=all."""
    cluster = quorum_cluster(3)
    registered(cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    placed = [[2, 3], [3, 1], [1, 2]]
    # librdkafka wants the count too; on the wire both counts are -1 beside an assignment.
    admin.create_topics([NewTopic("placed", len(placed), replica_assignment=placed)]
                        )["placed"].result(WAIT)
    admin.create_partitions([NewPartitions("placed", 4, replica_assignment=[[3, 2]])]
                            )["placed"].result(WAIT)
    wait_for(lambda: all([(p.replicas, p.leader, sorted(p.isr)) for _, p in sorted(
        probe.partitions(node.bootstrap, "placed").items())] == [
            ([2, 3], 2, [2, 3]), ([3, 1], 3, [1, 3]), ([1, 2], 1, [1, 2]), ([3, 2], 3, [2, 3])]
        for node in cluster.nodes.values()), "every node to see the partitions placed as asked")
    failed = []
    producer = Producer({"bootstrap.servers": bootstrap(cluster), "acks": "all",
                         "on_delivery": lambda err, _: err and failed.append(err)})
    for partition in range(4):
        producer.produce("placed", b"%d" % partition, partition=partition)
    assert producer.flush(WAIT) == 0 and not failed, failed
    assert [read_all(bootstrap(cluster), "placed", p) for p in range(4)] == [
        [b"0"], [b"1"], [b"2"], [b"3"]]

    # A fenced broker may be placed by hand beside live ones, even past the live count; it
    # is not in the ISR.
    cluster.nodes[3].stop()  # a controlled shutdown: fenced at once
    survivors = ",".join(cluster.nodes[i].bootstrap for i in (1, 2))
    wait_for(lambda: {b.node_id for b in probe.ask_any(survivors, MetadataRequest(
        version=1, topics=None)).brokers} == {1, 2}, "node 3 fenced")
    admin = AdminClient({"bootstrap.servers": survivors})
    admin.create_topics([NewTopic("around", 1, replica_assignment=[[3, 1, 2]])]
                        )["around"].result(WAIT)
    wait_for(lambda: [(p.replicas, p.leader, p.isr) for p in probe.partitions(
        survivors, "around").values()] == [([3, 1, 2], 1, [1, 2])], "node 1 leading, 3 out")
    with pytest.raises(KafkaException) as refused:
        admin.create_topics([NewTopic("nowhere", 1, replica_assignment=[[3]])]
                            )["nowhere"].result(WAIT)
    assert refused.value.args[0].code() == KafkaError.INVALID_REPLICA_ASSIGNMENT


def test_a_bad_replica_assignment_is_refused_with_kafkas_reasons(quorum_cluster):
    cluster = quorum_cluster(3)
    registered(cluster)
    controller = ("127.0.0.1", cluster.nodes[probe.quorum_leader(bootstrap(cluster))].port)
    Topic = CreateTopicsRequest.CreatableTopic

    def create(name: str, *placed: tuple[int, list[int]], partitions: int = -1,
               validate_only: bool = False):
        request = CreateTopicsRequest(version=5, timeout_ms=10000, validate_only=validate_only,
                                      topics=[Topic(
            name=name, num_partitions=partitions, replication_factor=-1, configs=[],
            assignments=[Topic.CreatableReplicaAssignment(partition_index=i, broker_ids=b)
                         for i, b in placed])])
        result = probe.call(controller, request, timeout=WAIT).topics[0]
        if validate_only:
            return result.error_code, result.num_partitions, result.replication_factor
        return result.error_code, result.error_message

    invalid = errors.InvalidReplicationAssignmentError.errno
    assert create("t", (0, [1, 7])) == (
        invalid, "The manual partition assignment includes broker 7, but no such broker is "
                 "registered.")
    assert create("t", (0, [2, 2])) == (
        invalid, "The manual partition assignment includes the broker 2 more than once.")
    assert create("t", (0, [])) == (
        invalid, "The manual partition assignment includes an empty replica list.")
    assert create("t", (0, [1, 2]), (1, [3])) == (
        invalid, "The manual partition assignment includes a partition with 1 replica(s), but "
                 "this is not consistent with previous partitions, which have 2 replica(s).")
    assert create("t", (0, [1]), (0, [2])) == (
        invalid, "Found multiple manual partition assignments for partition 0")
    assert create("t", (0, [1]), (2, [2])) == (
        invalid, "partitions should be a consecutive 0-based integer sequence")
    assert create("t", (0, [1]), partitions=1) == (
        errors.InvalidRequestError.errno,
        "A manual partition assignment was specified, but numPartitions was not set to -1.")
    assert create("t", (0, [1, 2]), (1, [2, 3]), (2, [3, 1]), validate_only=True) == (0, 3, 2)
    assert probe.partitions(f"127.0.0.1:{controller[1]}", "t") == {}

    assert create("t", (0, [1]), (1, [2])) == (0, None)
    Added = CreatePartitionsRequest.CreatePartitionsTopic
    grow = probe.call(controller, CreatePartitionsRequest(
        version=1, timeout_ms=10000, validate_only=False, topics=[Added(
            name="t", count=4, assignments=[
                Added.CreatePartitionsAssignment(broker_ids=[3])])]), timeout=WAIT).results[0]
    assert (grow.error_code, grow.error_message) == (
        invalid, "Attempted to add 2 additional partition(s), but only 1 assignment(s) were "
                 "specified.")
    assert len(probe.partitions(f"127.0.0.1:{controller[1]}", "t")) == 2
