"""The supervisor's drills on a real 3-node cluster started with `kraftboard cluster start`.

Every check asks the cluster over the Kafka protocol (Metadata from a node that is not
the one drilled) and polls until the cluster gets there; nothing asserts on timing.
Each test leaves the cluster as it found it: every node running, every ISR full.
"""
from __future__ import annotations

import signal
import time
from dataclasses import replace

import pytest
from confluent_kafka import ElectionType, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.protocol.admin import ElectLeadersRequest
from kafka.protocol.metadata import ApiVersionsRequest, MetadataRequest

from broker.cluster import client, probe
from broker.workload import VerifiedWorkload
from conftest import Cluster, NodeProcess, QuorumCluster, process_state, wait_until

TOPIC = "drills"
PARTITIONS = 3
NODES = (1, 2, 3)
WAIT = 30.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = Cluster(tmp_path_factory.mktemp("drills") / "cluster", brokers=len(NODES))
    try:
        result = cluster.start()
        assert result.returncode == 0, result.stderr
        assert wait_until(lambda: len(brokers(cluster, 1)) == len(NODES), WAIT)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap(cluster))
        try:
            admin.create_topics([NewTopic(TOPIC, PARTITIONS, len(NODES))])
        finally:
            admin.close()
        wait_for_full_isr(cluster)
        yield cluster
    finally:
        cluster.cleanup()


def bootstrap(cluster: Cluster) -> str:
    return ",".join(f"127.0.0.1:{cluster.port + i - 1}" for i in NODES)


def port(cluster: Cluster, node_id: int) -> int:
    return cluster.port + node_id - 1


def cli_ok(cluster: Cluster, *args: str) -> str:
    result = cluster.cli(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def address(cluster: Cluster, node_id: int) -> str:
    return f"127.0.0.1:{port(cluster, node_id)}"


def brokers(cluster: Cluster, asked: int) -> list[int]:
    try:
        answer = probe.ask_any(address(cluster, asked), MetadataRequest(version=1, topics=None))
    except probe.NoAnswer:
        return []
    return sorted(b.node_id for b in answer.brokers)


def partitions(cluster: Cluster, asked: int) -> dict[int, tuple[int, list[int]]]:
    """{partition: (leader, isr)} of the drills topic, as node `asked` sees it ({} if it
    cannot answer)."""
    try:
        seen = probe.partitions(address(cluster, asked), TOPIC)
    except probe.NoAnswer:
        return {}
    return {index: (p.leader, sorted(p.isr)) for index, p in seen.items() if not p.error_code}


def leader_seen(cluster: Cluster, asked: int, index: int) -> int | None:
    return partitions(cluster, asked).get(index, (None,))[0]


def led_by(cluster: Cluster, asked: int, node_id: int) -> set[int]:
    return {index for index, (leader, _) in partitions(cluster, asked).items()
            if leader == node_id}


def wait_for_full_isr(cluster: Cluster, asked: int = 1) -> None:
    def full() -> bool:
        seen = partitions(cluster, asked)
        return len(seen) == PARTITIONS and all(isr == list(NODES) and leader in NODES
                                               for leader, isr in seen.values())
    assert wait_until(full, WAIT), partitions(cluster, asked)


def other_than(node_id: int) -> int:
    return next(n for n in NODES if n != node_id)


def test_pause_stops_the_process_and_resume_continues_it(cluster):
    pid = cluster.node(2)["pid"]
    assert "node 2" in cli_ok(cluster, "pause", "2") and "paused" in cli_ok(cluster, "status")
    try:
        assert cluster.node(2)["state"] == "paused"
        assert process_state(pid) == "T"
    finally:
        assert "is running" in cli_ok(cluster, "resume", "2")
    assert cluster.node(2)["state"] == "running" and cluster.node(2)["pid"] == pid
    assert wait_until(lambda: process_state(pid) in ("R", "S"))
    wait_for_full_isr(cluster)


def test_isolated_node_loses_its_leaderships_but_still_answers_clients(cluster):
    leader = leader_seen(cluster, 1, 0)
    led = led_by(cluster, leader, leader)
    witness = other_than(leader)
    cli_ok(cluster, "isolate", str(leader))
    try:
        assert cluster.node(leader)["state"] == "isolated"
        # The others fence it and elect new leaders for what it led ...
        assert wait_until(lambda: not led_by(cluster, witness, leader) & led and
                          len(partitions(cluster, witness)) == PARTITIONS, WAIT), \
            partitions(cluster, witness)
        # ... while a client still reaches it.
        answer = probe.call(("127.0.0.1", port(cluster, leader)), ApiVersionsRequest(version=0))
        assert answer.error_code == 0 and answer.api_keys
    finally:
        cli_ok(cluster, "heal", str(leader))
    assert cluster.node(leader)["state"] == "running"
    wait_for_full_isr(cluster, witness)  # it rejoins every ISR


def test_graceful_stop_hands_leaderships_over_before_the_node_goes(cluster):
    leader = leader_seen(cluster, 1, 0)
    witness = other_than(leader)
    led = led_by(cluster, witness, leader)
    log = cluster.dir / f"node-{leader}" / "node.log"
    log_start = log.stat().st_size
    workload = VerifiedWorkload(bootstrap(cluster), TOPIC, PARTITIONS, rate=200).start()
    try:
        assert workload.wait_acknowledged(100, WAIT)
        assert "is stopped" in cli_ok(cluster, "stop", str(leader))  # answered once it exited
        stopped = client.request(cluster.dir, "status")["nodes"][leader - 1]
        assert (stopped["state"], stopped["exit_code"]) == ("stopped", 0)  # no SIGKILL needed
        with open(log, "rb") as out:
            out.seek(log_start)
            said = out.read().decode(errors="replace")
        assert f"controlled shutdown: broker {leader} leads no partition now" in said, said
        assert wait_until(lambda: not led_by(cluster, witness, leader) & led, WAIT)
        assert workload.wait_acknowledged(100, WAIT)  # the producer carried on
    finally:
        workload.stop()
        cli_ok(cluster, "restart", str(leader))
    assert not workload.errors, workload.errors
    result = workload.verify()
    assert result.ok, result
    wait_for_full_isr(cluster)


def test_an_ack_without_an_offset_is_kept_if_its_record_is_in_the_log(cluster):
    """librdkafka acknowledges records implicitly, without offsets, when a request's answer
    was lost but a later request succeeded. The verification looks for those by sequence."""
    workload = VerifiedWorkload(bootstrap(cluster), TOPIC, PARTITIONS, rate=200).start()
    try:
        assert workload.wait_acknowledged(20, WAIT)
    finally:
        workload.stop()
    implicit = replace(workload.acks[0], offset=None)
    never_written = replace(workload.acks[0], offset=None, sequence=-1)
    workload.acks += [implicit, never_written]
    assert workload.verify().lost == [never_written]


def test_drills_on_a_node_that_is_not_running_are_refused(cluster):
    cli_ok(cluster, "kill", "3")
    try:
        for drill in ("kill", "stop", "pause", "resume", "isolate", "heal"):
            result = cluster.cli(drill, "3")
            assert result.returncode == 1, drill
            assert "node 3 is not running (it is killed)" in result.stderr
    finally:
        cli_ok(cluster, "restart", "3")
    wait_for_full_isr(cluster)


def test_restart_resets_a_paused_and_isolated_node(cluster):
    before = cluster.node(3)["pid"]
    cli_ok(cluster, "pause", "3")
    cli_ok(cluster, "isolate", "3")
    assert cluster.node(3)["state"] == "paused"
    assert "is running" in cli_ok(cluster, "restart", "3")
    node = cluster.node(3)
    assert node["state"] == "running" and node["pid"] != before
    assert process_state(before) is None
    wait_for_full_isr(cluster, 1)
    wait_for_full_isr(cluster, 3)  # not isolated any more: it follows the others


def test_status_names_the_active_controller_and_follows_a_change(cluster):
    assert wait_until(lambda: cluster.status()["controller"] is not None, WAIT)
    status = cluster.status()
    controller = status["controller"]
    assert [n["controller"] for n in status["nodes"]] == [n == controller for n in NODES]
    cli_ok(cluster, "kill", str(controller))
    try:
        assert wait_until(lambda: cluster.status()["controller"] not in (None, controller),
                          WAIT), cluster.status()
        status = cluster.status()
        assert [n["controller"] for n in status["nodes"]] == \
            [n == status["controller"] for n in NODES]
    finally:
        cli_ok(cluster, "restart", str(controller))
    wait_for_full_isr(cluster)


def test_auto_rebalance_gives_leadership_back_to_the_preferred_replica(cluster):
    """The local profile checks every 5 s (leader.imbalance.check.interval.seconds)."""
    leader = preferred(cluster, 0)
    assert wait_until(lambda: leader_seen(cluster, 1, 0) == leader, WAIT)
    witness = other_than(leader)
    cli_ok(cluster, "kill", str(leader))
    assert wait_until(lambda: leader_seen(cluster, witness, 0) not in (leader, None), WAIT)
    cli_ok(cluster, "restart", str(leader))
    assert wait_until(lambda: leader_seen(cluster, witness, 0) == leader, WAIT), \
        partitions(cluster, witness)


def preferred(cluster: Cluster, index: int) -> int:
    return probe.partitions(address(cluster, 1), TOPIC)[index].replicas[0]


# -- ElectLeaders, on a cluster that does not rebalance by itself ---------------------

ELECT_TOPIC = "elect"
MANUAL = {"broker.heartbeat.interval.ms": 200, "broker.session.timeout.ms": 2000,
          "replica.lag.time.max.ms": 2000, "auto.leader.rebalance.enable": False}
NONE, UNKNOWN_TOPIC_OR_PARTITION, INVALID_REQUEST = 0, 3, 42
PREFERRED_LEADER_NOT_AVAILABLE, ELECTION_NOT_NEEDED = 80, 84


@pytest.fixture(scope="module")
def manual(tmp_path_factory):
    cluster = QuorumCluster(tmp_path_factory.mktemp("elect"), 3, **MANUAL)
    try:
        cluster.start()
        everyone = ",".join(n.bootstrap for n in cluster.nodes.values())
        assert wait_until(lambda: len(probe.ask_any(everyone, MetadataRequest(
            version=1, topics=None)).brokers) == 3, WAIT)
        admin = KafkaAdminClient(bootstrap_servers=everyone)
        try:
            admin.create_topics([NewTopic(ELECT_TOPIC, PARTITIONS, 3)])
        finally:
            admin.close()
        assert wait_until(lambda: in_sync(cluster), WAIT)
        yield cluster
    finally:
        cluster.stop()


def in_sync(cluster: QuorumCluster) -> bool:
    """Every running node sees every replica of the topic in sync."""
    for node in cluster.nodes.values():
        if node.alive():
            seen = probe.partitions(node.bootstrap, ELECT_TOPIC)
            if len(seen) != PARTITIONS or any(len(p.isr) != 3 for p in seen.values()):
                return False
    return True


def leader_of(node: NodeProcess, index: int) -> int | None:
    """The leader of a partition of the topic as `node` sees it (None: it does not know it)."""
    state = probe.partitions(node.bootstrap, ELECT_TOPIC).get(index)
    return state.leader if state else None


def elect(cluster: QuorumCluster, election_type: int, topic_partitions) -> dict:
    """{(topic, partition): error code} from kafka-python's admin client."""
    admin = KafkaAdminClient(bootstrap_servers=",".join(
        n.bootstrap for n in cluster.nodes.values() if n.alive()))
    try:
        response = admin.elect_leaders(election_type, topic_partitions, raise_errors=False)
    finally:
        admin.close()
    assert response.error_code == NONE
    return {(r.topic, p.partition_id): p.error_code
            for r in response.replica_election_results for p in r.partition_result}


def preferred_leaders_everywhere(cluster: QuorumCluster) -> bool:
    """Elects the preferred replicas where they do not lead (on a busy machine a broker may
    miss its session and lose leaderships); True once there is nothing left to elect."""
    answer = raw_elect(cluster, 0, None)
    return answer.error_code == NONE and not [
        p for r in answer.replica_election_results for p in r.partition_result]


def test_elect_leaders_errors(manual):
    assert wait_until(lambda: preferred_leaders_everywhere(manual), WAIT)
    assert elect(manual, 0, {ELECT_TOPIC: [0, 7], "no-such-topic": [0]}) == {
        (ELECT_TOPIC, 0): ELECTION_NOT_NEEDED, (ELECT_TOPIC, 7): UNKNOWN_TOPIC_OR_PARTITION,
        ("no-such-topic", 0): UNKNOWN_TOPIC_OR_PARTITION}
    # An unclean election is needed only where no replica leads.
    assert elect(manual, 1, {ELECT_TOPIC: [1]}) == {(ELECT_TOPIC, 1): ELECTION_NOT_NEEDED}
    # Null asks for every partition; the answer leaves out those that need no election.
    answer = raw_elect(manual, 0, None)
    assert answer.error_code == NONE
    assert [p for r in answer.replica_election_results for p in r.partition_result] == []


def test_unknown_election_type_is_an_invalid_request(manual):
    answer = raw_elect(manual, 2, [ElectLeadersRequest.TopicPartitions(topic=ELECT_TOPIC,
                                                                       partitions=[0])])
    assert answer.error_code == INVALID_REQUEST
    assert [p.error_code for p in answer.replica_election_results[0].partition_result] == \
        [INVALID_REQUEST]


def raw_elect(cluster: QuorumCluster, election_type: int, topic_partitions):
    """ElectLeaders v2 sent to node 1, which forwards it to the active controller."""
    return probe.call(("127.0.0.1", cluster.nodes[1].port), ElectLeadersRequest(
        version=2, election_type=election_type, timeout_ms=10000,
        topic_partitions=topic_partitions))


def test_elect_leaders_moves_leadership_back_after_a_restart(manual):
    assert wait_until(lambda: preferred_leaders_everywhere(manual), WAIT)
    bootstrap = manual.nodes[1].bootstrap
    state = probe.partitions(bootstrap, ELECT_TOPIC)[2]
    preferred_id = state.replicas[0]
    assert state.leader == preferred_id
    witness = next(n for n in manual.nodes.values() if n is not manual.nodes[preferred_id])
    manual.kill(preferred_id)
    # Every survivor knows (an admin client may take metadata from either).
    assert wait_until(lambda: all(leader_of(n, 2) not in (preferred_id, -1, None)
                                  for n in manual.nodes.values() if n.alive()), WAIT)
    assert elect(manual, 0, {ELECT_TOPIC: [2]}) == {
        (ELECT_TOPIC, 2): PREFERRED_LEADER_NOT_AVAILABLE}

    manual.restart(preferred_id)
    assert wait_until(lambda: in_sync(manual), WAIT)
    assert leader_of(witness, 2) != preferred_id
    # Through librdkafka too: its admin client sends ElectLeaders to the controller.
    admin = AdminClient({"bootstrap.servers": witness.bootstrap})
    admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(ELECT_TOPIC, 2)]).result(WAIT)
    del admin  # librdkafka's admin client closes when released
    assert wait_until(lambda: leader_of(witness, 2) == preferred_id, WAIT)


def test_leadership_is_not_given_back_to_a_preferred_replica_gone_quiet(manual):
    """A broker cut off from the controller stays unfenced for a session. Leadership given
    back to it then would stall its partition until it is fenced: the election refuses."""
    assert wait_until(lambda: preferred_leaders_everywhere(manual), WAIT)
    controller = probe.quorum_leader(manual.nodes[1].bootstrap)
    index, state = next((i, s) for i, s in probe.partitions(
        manual.nodes[1].bootstrap, ELECT_TOPIC).items() if s.replicas[0] != controller)
    preferred_id = state.replicas[0]
    witness = manual.nodes[controller]
    manual.kill(preferred_id)  # it loses its leadership ...
    assert wait_until(lambda: all(leader_of(n, index) not in (preferred_id, -1, None)
                                  for n in manual.nodes.values() if n.alive()), WAIT)
    manual.restart(preferred_id)  # ... and is back in sync, not leading
    assert wait_until(lambda: in_sync(manual), WAIT)
    quiet = manual.nodes[preferred_id]
    quiet.process.send_signal(signal.SIGUSR1)  # the isolate drill: no more heartbeats
    try:
        # Over half a session (2 s) without a heartbeat: the controller passes it over.
        time.sleep(1.2)
        assert elect(manual, 0, {ELECT_TOPIC: [index]}) == {
            (ELECT_TOPIC, index): PREFERRED_LEADER_NOT_AVAILABLE}
        assert leader_of(witness, index) != preferred_id
    finally:
        quiet.process.send_signal(signal.SIGUSR2)  # heal
    assert wait_until(lambda: in_sync(manual), WAIT)
