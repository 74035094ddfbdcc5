"""The metadata quorum across real node processes, seen through Kafka requests.

Every check polls DescribeQuorum (API 55) until the quorum reaches the state it expects;
nothing asserts on timing. A request sent with a peer's client id is answered from the
node's own view instead of being forwarded to the leader, which lets a test ask every
node what it believes.
"""
from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import struct
import time

import pytest
from kafka.protocol.admin import (CreateTopicsRequest, CreateTopicsResponse, DescribeQuorumRequest,
                                  DescribeQuorumResponse)
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse

from broker.config import ConfigError, NodeConfig
from broker.peer import Peers
from broker.raft import MetadataQuorum, NoQuorum
from broker.storage import Storage
from conftest import FAST_QUORUM

METADATA_TOPIC = "__cluster_metadata"
NOT_LEADER = 6
NOT_CONTROLLER = 41
OWN_VIEW = "kraftboard-node-999"  # a peer's client id: the node answers for itself
WAIT = 20.0


def call(node, request, response_class, client_id: str = "test-raft"):
    request.with_header(correlation_id=1, client_id=client_id)
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        sock.sendall(request.encode(header=True, framed=True))
        size = struct.unpack(">i", receive(sock, 4))[0]
        return response_class.decode(receive(sock, size), version=request.API_VERSION, header=True)


def receive(sock, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def describe(node, client_id: str = "test-raft"):
    """The quorum's partition data as `node` answers it, or None if it cannot be asked."""
    topic = DescribeQuorumRequest.TopicData
    request = DescribeQuorumRequest(version=2, topics=[topic(
        topic_name=METADATA_TOPIC, partitions=[topic.PartitionData(partition_index=0)])])
    try:
        return call(node, request, DescribeQuorumResponse, client_id).topics[0].partitions[0]
    except OSError:
        return None


def wait_for(condition, what: str, timeout: float = WAIT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def views(cluster, ids=None):
    """{node id: (leader id, epoch, answers as leader)} from each running node itself."""
    result = {}
    for node_id in ids or cluster.nodes:
        data = describe(cluster.nodes[node_id], OWN_VIEW)
        if data is not None:
            result[node_id] = (data.leader_id, data.leader_epoch, data.error_code == 0)
    return result


def agreed_leader(cluster, ids=None, above_epoch: int = 0):
    """(leader, epoch) once exactly one node leads and every asked node follows it."""
    ids = list(ids or cluster.nodes)
    seen = views(cluster, ids)
    if len(seen) != len(ids):
        return None
    leaders = [i for i, (_, _, leads) in seen.items() if leads]
    if len(leaders) != 1 or len(set((l, e) for l, e, _ in seen.values())) != 1:
        return None
    leader, epoch, _ = seen[leaders[0]]
    return (leader, epoch) if leader == leaders[0] and epoch > above_epoch else None


def caught_up(cluster, leader: int, replicas) -> bool:
    data = describe(cluster.nodes[leader])
    if data is None or data.error_code:
        return False
    ends = {r.replica_id: r.log_end_offset for r in data.current_voters + data.observers}
    return all(ends.get(r) == data.high_watermark for r in replicas)


def stored_log(node) -> list[tuple[int, int, bytes]]:
    """(base offset, last offset, batch) of a node's metadata log, read from its database."""
    db = sqlite3.connect(f"file:{node.directory / 'data' / 'kraftboard.db'}?mode=ro", uri=True)
    try:
        return db.execute("SELECT base_offset, last_offset, data FROM batches WHERE pid = -1"
                          " ORDER BY base_offset").fetchall()
    finally:
        db.close()


def test_three_nodes_elect_one_leader_seen_from_every_node(quorum_cluster):
    cluster = quorum_cluster(3)
    leader, epoch = wait_for(lambda: agreed_leader(cluster), "one agreed leader")
    observer = cluster.add_observer(4)
    wait_for(lambda: caught_up(cluster, leader, [1, 2, 3, 4]), "voters and observer caught up")
    for node in cluster.nodes.values():  # a client may ask any node: the leader answers
        data = describe(node)
        assert (data.error_code, data.leader_id, data.leader_epoch) == (0, leader, epoch)
        assert [v.replica_id for v in data.current_voters] == [1, 2, 3]
        assert [o.replica_id for o in data.observers] == [4]
        assert all(v.last_fetch_timestamp > 0 and v.last_caught_up_timestamp > 0
                   for v in data.current_voters)
    assert views(cluster, [4])[4][:2] == (leader, epoch)
    assert observer.alive()


def test_killed_leader_is_replaced_and_rejoins_as_follower(quorum_cluster):
    cluster = quorum_cluster(3)
    leader, epoch = wait_for(lambda: agreed_leader(cluster), "a leader")
    cluster.kill(leader)
    others = [i for i in cluster.nodes if i != leader]
    new_leader, new_epoch = wait_for(lambda: agreed_leader(cluster, others, epoch),
                                     "a new leader among the survivors")
    assert new_leader != leader
    cluster.restart(leader)
    assert wait_for(lambda: agreed_leader(cluster), "all three agree") == (new_leader, new_epoch)
    wait_for(lambda: caught_up(cluster, new_leader, [1, 2, 3]), "the old leader caught up")


def test_graceful_leader_shutdown_hands_over_at_once(quorum_cluster):
    cluster = quorum_cluster(3)
    leader, epoch = wait_for(lambda: agreed_leader(cluster), "a leader")
    cluster.nodes[leader].stop()  # SIGTERM: the leader sends EndQuorumEpoch
    others = [i for i in cluster.nodes if i != leader]
    wait_for(lambda: agreed_leader(cluster, others, epoch), "a successor")
    assert any(f"leader {leader} resigned epoch {epoch}" in cluster.nodes[i].log_text()
               for i in others)


def test_no_leader_without_a_majority_and_healing_after(quorum_cluster):
    cluster = quorum_cluster(3)
    leader, epoch = wait_for(lambda: agreed_leader(cluster), "a leader")
    survivor = leader % 3 + 1

    def brokers_seen_by_survivor() -> list[int]:
        metadata = call(cluster.nodes[survivor], MetadataRequest(version=1, topics=None),
                        MetadataResponse)
        return [b.node_id for b in metadata.brokers]

    wait_for(lambda: survivor in brokers_seen_by_survivor(), "the survivor to serve as a broker")
    for node_id in cluster.nodes:
        if node_id != survivor:
            cluster.kill(node_id)

    def leaderless():
        data = describe(cluster.nodes[survivor], OWN_VIEW)
        return data is not None and data.error_code == NOT_LEADER and data.leader_id == -1

    wait_for(leaderless, "the survivor to give up on a leader")
    # Clients are still served, and metadata changes are refused with a clear answer.
    assert survivor in brokers_seen_by_survivor()
    topic = CreateTopicsRequest.CreatableTopic
    created = call(cluster.nodes[survivor], CreateTopicsRequest(
        version=5, timeout_ms=5000, validate_only=False, topics=[topic(
            name="without-quorum", num_partitions=1, replication_factor=1, assignments=[],
            configs=[])]), CreateTopicsResponse).topics[0]
    assert created.error_code == NOT_CONTROLLER, created
    assert "no active controller" in created.error_message
    returning = survivor % 3 + 1
    cluster.restart(returning)
    healed = wait_for(lambda: agreed_leader(cluster, [survivor, returning], epoch),
                      "a leader once a majority is back")
    assert healed[0] in (survivor, returning)


def test_epoch_and_vote_survive_restarts(quorum_cluster):
    cluster = quorum_cluster(3)
    _, epoch = wait_for(lambda: agreed_leader(cluster), "a leader")
    for node_id in list(cluster.nodes):
        cluster.kill(node_id)
    for node_id in list(cluster.nodes):
        cluster.restart(node_id)
        # Before any new election, each node still knows the epoch it had.
        assert views(cluster, [node_id])[node_id][1] >= epoch
    _, new_epoch = wait_for(lambda: agreed_leader(cluster), "a leader after the restarts")
    assert new_epoch > epoch  # no leader is ever elected twice in one epoch


def test_isolated_leader_is_replaced_and_rejoins_when_healed(quorum_cluster):
    cluster = quorum_cluster(3)
    leader, epoch = wait_for(lambda: agreed_leader(cluster), "a leader")
    isolated = cluster.nodes[leader]
    isolated.process.send_signal(signal.SIGUSR1)
    others = [i for i in cluster.nodes if i != leader]
    new_leader, new_epoch = wait_for(lambda: agreed_leader(cluster, others, epoch),
                                     "a leader on the majority side")
    # The isolated node still serves its clients.
    versions = call(isolated, ApiVersionsRequest(version=0), ApiVersionsResponse)
    assert versions.error_code == 0 and 55 in {k.api_key for k in versions.api_keys}
    metadata = call(isolated, MetadataRequest(version=1, topics=None), MetadataResponse)
    assert leader in [b.node_id for b in metadata.brokers]
    # Peers' connections are refused, and it resigns: it hears from no majority. (A
    # client's DescribeQuorum is answered from its own view: it cannot forward.)
    assert describe(isolated, OWN_VIEW) is None
    wait_for(lambda: describe(isolated).error_code == NOT_LEADER, "the isolated leader to resign")
    isolated.process.send_signal(signal.SIGUSR2)
    assert wait_for(lambda: agreed_leader(cluster), "all three agree after healing") \
        == (new_leader, new_epoch)
    wait_for(lambda: caught_up(cluster, new_leader, [1, 2, 3]), "the healed node caught up")


def test_committed_log_is_the_same_on_every_voter(quorum_cluster):
    """Each election appends a LeaderChange record in the new epoch: after several, every
    voter holds the same batches, offsets and epochs up to the high watermark."""
    cluster = quorum_cluster(3)
    leader, epoch = wait_for(lambda: agreed_leader(cluster), "a leader")
    for _ in range(3):
        cluster.kill(leader)
        others = [i for i in cluster.nodes if i != leader]
        leader_before = leader
        leader, epoch = wait_for(lambda: agreed_leader(cluster, others, epoch), "a new leader")
        cluster.restart(leader_before)
        wait_for(lambda: caught_up(cluster, leader, [1, 2, 3]), "everyone caught up")
    hw = describe(cluster.nodes[leader]).high_watermark
    # Brokers keep registering and heartbeating: compare what was committed at `hw`.
    logs = {i: [b for b in stored_log(node) if b[1] < hw] for i, node in cluster.nodes.items()}
    assert logs[1] == logs[2] == logs[3]
    batches = logs[leader]
    assert [b[0] for b in batches] == [0] + [b[1] + 1 for b in batches[:-1]]  # no gaps
    assert batches[-1][1] + 1 == hw
    epochs = [struct.unpack_from(">i", b[2], 12)[0] for b in batches]
    assert epochs == sorted(epochs) and epochs[-1] == epoch


async def test_append_is_applied_in_order_once_committed_and_replayed(tmp_path):
    """The interface the controller uses, on a quorum of one inside this process."""
    config = NodeConfig.from_dict({"node.id": 1, "log.dirs": str(tmp_path), **FAST_QUORUM})

    async def open_quorum(applied: list, leaders: list):
        storage = Storage(tmp_path / "kraftboard.db")
        await storage.open()
        quorum = MetadataQuorum(config, storage, Peers(1, config.voters.get))
        quorum.subscribe(lambda offset, value: applied.append((offset, value)))
        quorum.on_leader_change(lambda leader, epoch: leaders.append((leader, epoch)))
        with pytest.raises(NoQuorum):
            await quorum.append([b"too early"])
        await quorum.start()
        return storage, quorum

    async def until(condition):
        for _ in range(200):
            if condition():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("timed out")

    applied, leaders = [], []
    storage, quorum = await open_quorum(applied, leaders)
    await until(lambda: quorum.is_leader)
    assert leaders[-1] == (1, 1) and quorum.leader_id == 1
    assert await quorum.append([b"a", b"b"]) == 2  # offset 0 is the epoch's LeaderChange
    assert applied == [(1, b"a"), (2, b"b")] and quorum.high_watermark == 3
    assert await quorum.append([b"c"]) == 3
    await quorum.close()
    await storage.close()

    replayed, leaders = [], []
    storage, quorum = await open_quorum(replayed, leaders)
    await until(lambda: len(replayed) == 3)
    assert replayed == applied
    await until(lambda: quorum.is_leader)
    assert leaders[-1] == (1, 2)
    assert await quorum.append([b"d"]) == 5
    assert replayed[-1] == (5, b"d")
    await quorum.close()
    await storage.close()


@pytest.mark.parametrize("voters, reason", [
    ("1@127.0.0.1", "must look like ID@HOST:PORT"),
    ("x@127.0.0.1:9092", "must look like ID@HOST:PORT"),
    ("1@127.0.0.1:9092,1@127.0.0.1:9093", "listed twice"),
    ("2@127.0.0.1:9093,3@127.0.0.1:9094", "not one of the voters"),
])
def test_bad_voters_are_refused_with_the_key_and_reason(tmp_path, voters, reason):
    with pytest.raises(ConfigError, match=f"controller.quorum.voters: .*{reason}"):
        NodeConfig.from_dict({"node.id": 1, "log.dirs": str(tmp_path),
                              "controller.quorum.voters": voters})


def test_broker_only_node_needs_voters(tmp_path):
    with pytest.raises(ConfigError, match="controller.quorum.voters: a broker-only node"):
        NodeConfig.from_dict({"node.id": 4, "log.dirs": str(tmp_path), "process.roles": ["broker"]})


def test_kafka_defaults_stay_the_defaults(tmp_path):
    config = NodeConfig.from_dict({"node.id": 1, "log.dirs": str(tmp_path)})
    assert [config[f"controller.quorum.{k}.ms"] for k in
            ("election.timeout", "fetch.timeout", "election.backoff.max", "request.timeout")] \
        == [1000, 2000, 1000, 2000]
    assert list(config.voters) == [1]  # alone, it is its own quorum
