"""Consumer groups with real clients: librdkafka and aiokafka members (as processes, so
they can be SIGKILLed), kafka-python's admin client, raw requests for the error codes,
a node restart and a coordinator failover on a three-node cluster.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer
from kafka import KafkaAdminClient, TopicPartition
from kafka import errors as kafka_errors
from kafka.admin import NewTopic, OffsetSpec
from kafka.protocol.consumer import (
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse,
)
from kafka.protocol.metadata import FindCoordinatorRequest, FindCoordinatorResponse
from kafka.structs import OffsetAndMetadata

from conftest import NodeProcess
from test_bad_input import Raw, wait_for_coordinator

MEMBER = Path(__file__).with_name("group_member.py")
WAIT_S = 30  # upper bound for anything a test waits for; never asserted on
PARTITIONS = 6
# Short timeouts so that a SIGKILLed member is noticed quickly (its session is 2 s).
GROUP_SETTINGS = {
    "group.min.session.timeout.ms": 1000,
    "group.initial.rebalance.delay.ms": 100,
    "offsets.topic.num.partitions": 5,
}

# Kafka error codes
UNKNOWN_TOPIC_OR_PARTITION = 3
COORDINATOR_NOT_AVAILABLE = 15
ILLEGAL_GENERATION = 22
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
OFFSET_METADATA_TOO_LARGE = 12
MEMBER_ID_REQUIRED = 79


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    node = NodeProcess(tmp_path_factory.mktemp("groups"), **GROUP_SETTINGS).start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def admin(node):
    client = KafkaAdminClient(bootstrap_servers=node.bootstrap, client_id="groups-test")
    yield client
    client.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(what: str, probe, timeout: float = WAIT_S):
    """Poll `probe` until it returns something truthy; that value. A client error (a
    coordinator moving, stale metadata) counts as 'not yet'."""
    end = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < end:
        try:
            value = probe()
        except kafka_errors.KafkaError as exc:
            value, last_error = None, exc
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last client error: {last_error!r})")


def produce(bootstrap: str, topic: str, per_partition: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(per_partition):
        for partition in range(PARTITIONS):
            producer.produce(topic, f"{partition}-{i}".encode(), partition=partition)
    assert producer.flush(WAIT_S) == 0


# -- members as processes --------------------------------------------------------------


class Member:
    """One group_member.py process; its JSON events land in a shared list."""

    def __init__(self, client: str, bootstrap: str, group: str, topic: str, events: list,
                 *options: str):
        self.process = subprocess.Popen(
            [sys.executable, str(MEMBER), client, bootstrap, group, topic, *options],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.events = events
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.events.append({**json.loads(line), "member": self.process.pid})

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def leave(self) -> None:
        """SIGTERM: the member closes and leaves the group."""
        self.process.terminate()
        self.process.wait(WAIT_S)
        self.reader.join(WAIT_S)


class Members:
    """The member processes a test started, and everything they printed."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.started: list[Member] = []
        self.events: list[dict] = []

    def start(self, client: str, group: str, topic: str, *options: str) -> Member:
        member = Member(client, self.bootstrap, group, topic, self.events, *options)
        self.started.append(member)
        return member

    def leave_all(self) -> None:
        for member in self.started:
            if member.process.poll() is None:
                member.leave()

    def kill_all(self) -> None:
        for member in self.started:
            if member.process.poll() is None:
                member.kill()


@pytest.fixture
def members(node):
    started = Members(node.bootstrap)
    yield started
    started.kill_all()


# -- what the admin client sees --------------------------------------------------------


def stable_assignment(admin, group: str, size: int) -> dict[str, list[int]] | None:
    """{member id: partitions} once the group is Stable with `size` members."""
    description = admin.describe_groups([group])[group]
    if description["group_state"] != "Stable" or len(description["members"]) != size:
        return None
    return {m["member_id"]: sorted(p for t in m["member_assignment"]["assigned_partitions"]
                                   for p in t["partitions"])
            for m in description["members"]}


def assert_splits_partitions(assignment: dict[str, list[int]]) -> None:
    owned = [p for partitions in assignment.values() for p in partitions]
    assert sorted(owned) == list(range(PARTITIONS)), assignment  # disjoint, and covers all


def committed(admin, group: str, topic: str) -> dict[int, int]:
    offsets = admin.list_group_offsets({group: None})[group]
    return {tp.partition: o.offset for tp, o in offsets.items() if tp.topic == topic}


def end_offsets(admin, topic: str) -> dict[int, int]:
    answer = admin.list_partition_offsets({TopicPartition(topic, p): OffsetSpec.LATEST
                                           for p in range(PARTITIONS)})
    return {tp.partition: info.offset for tp, info in answer.items()}


def wait_until_consumed(admin, group: str, topic: str) -> dict[int, int]:
    """Until the group's committed offsets reach the end of every partition (lag 0)."""
    def caught_up():
        end = end_offsets(admin, topic)
        return committed(admin, group, topic) == end and end
    return wait_for(f"{group} to commit up to the end of {topic}", caught_up)


def assert_nothing_consumed_twice_past_a_commit(events: list[dict]) -> None:
    """No record is delivered again after an offset past it was committed."""
    commits: dict[int, list[tuple[float, int]]] = {}
    for e in events:
        if e["event"] == "committed":
            commits.setdefault(e["p"], []).append((e["t"], e["o"]))
    for e in events:
        if e["event"] == "consumed":
            earlier = [o for t, o in commits.get(e["p"], []) if t < e["t"]]
            assert not earlier or e["o"] >= max(earlier), e


def consumed_offsets(events: list[dict]) -> dict[int, set[int]]:
    seen: dict[int, set[int]] = {}
    for e in events:
        if e["event"] == "consumed":
            seen.setdefault(e["p"], set()).add(e["o"])
    return seen


# -- a group through deaths, joins and leaves ------------------------------------------


@pytest.mark.parametrize("client", ["librdkafka", "aiokafka"])
def test_group_rebalances_through_kill_join_and_leave(node, admin, members, client):
    topic, group = unique("trio"), unique(f"{client}-group")
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    trio = [members.start(client, group, topic) for _ in range(3)]

    def next_generation(size: int) -> None:
        """The group settles with `size` members, splits the partitions among them and
        consumes what is produced next."""
        assert_splits_partitions(wait_for(f"{size} stable members",
                                          lambda: stable_assignment(admin, group, size)))
        produce(node.bootstrap, topic, 10)
        wait_until_consumed(admin, group, topic)

    next_generation(3)
    trio[0].kill()  # SIGKILL: its session expires, the other two take its partitions
    next_generation(2)
    members.start(client, group, topic)  # a member joins
    next_generation(3)
    trio[1].leave()  # a clean close sends LeaveGroup
    next_generation(2)

    members.leave_all()
    wait_for("an empty group", lambda: admin.describe_groups([group])[group]["group_state"] == "Empty")
    before = committed(admin, group, topic)
    produce(node.bootstrap, topic, 5)
    started_at = len(members.events)
    members.start(client, group, topic)  # resumes from the committed offsets
    wait_until_consumed(admin, group, topic)
    resumed = consumed_offsets(members.events[started_at:])
    assert {p: min(offsets) for p, offsets in resumed.items()} == before

    assert_nothing_consumed_twice_past_a_commit(members.events)
    end = end_offsets(admin, topic)
    assert consumed_offsets(members.events) == {p: set(range(end[p])) for p in range(PARTITIONS)}


# -- what an admin sees: groups, members, offsets, lag ---------------------------------


async def test_admin_lists_describes_and_deletes_groups(node, admin):
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as AioTopicPartition

    topic, other_topic = unique("admin"), unique("admin-other")
    admin.create_topics([NewTopic(topic, PARTITIONS, 1), NewTopic(other_topic, 1, 1)])
    produce(node.bootstrap, topic, 3)
    idle, busy = unique("idle"), unique("busy")
    # An empty group's offsets are set from outside (generation -1), as a reset does.
    reset = {TopicPartition(topic, p): OffsetAndMetadata(p, f"meta-{p}", -1)
             for p in range(PARTITIONS)}
    reset[TopicPartition(other_topic, 0)] = OffsetAndMetadata(0, "", -1)
    assert set(admin.alter_group_offsets(idle, reset).values()) == {kafka_errors.NoError}
    fetched = admin.list_group_offsets({idle: None})[idle]
    assert {tp: (o.offset, o.metadata) for tp, o in fetched.items()} == \
        {tp: (o.offset, o.metadata) for tp, o in reset.items()}

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=node.bootstrap, group_id=busy,
                                client_id="busy-client", auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        while len(consumer.assignment()) < PARTITIONS:
            await consumer.getmany(timeout_ms=100)
        await consumer.commit({AioTopicPartition(topic, p): 1 for p in range(PARTITIONS)})
        listed = {g["group_id"]: g["group_state"] for g in admin.list_groups()}
        assert listed[idle] == "Empty" and listed[busy] == "Stable"
        assert [g["group_id"] for g in admin.list_groups(states_filter=["Stable"])
                if g["group_id"] in (idle, busy)] == [busy]

        description = admin.describe_groups([busy])[busy]
        [member] = description["members"]
        assert member["client_id"] == "busy-client"
        assert member["client_host"] == "/127.0.0.1"
        assert description["protocol_type"] == "consumer"
        assert_splits_partitions(stable_assignment(admin, busy, 1))

        # Lag, as kafka-consumer-groups computes it: end offsets minus committed offsets.
        end = end_offsets(admin, topic)
        lag = {p: end[p] - o for p, o in committed(admin, busy, topic).items()}
        assert lag == {p: 2 for p in range(PARTITIONS)}

        # A group with members is not deleted, nor are offsets of topics it consumes.
        assert "NonEmptyGroup" in str(admin.delete_groups([busy])[busy])
        refused = admin.delete_group_offsets(busy, [TopicPartition(topic, 0)])
        assert "GroupSubscribedToTopic" in str(refused[TopicPartition(topic, 0)])
    finally:
        await consumer.stop()

    assert admin.delete_group_offsets(idle, [TopicPartition(other_topic, 0)]) == \
        {TopicPartition(other_topic, 0): kafka_errors.NoError}
    assert TopicPartition(other_topic, 0) not in admin.list_group_offsets({idle: None})[idle]
    assert admin.delete_groups([idle, busy]) == {idle: "OK", busy: "OK"}
    assert admin.list_group_offsets({idle: None})[idle] == {}
    listed = {g["group_id"] for g in admin.list_groups()}
    assert idle not in listed and busy not in listed


# -- error codes, with raw requests ------------------------------------------------------


def call(node, request, response_class):
    with Raw(node) as raw:
        return raw.call(request, response_class)


def test_group_errors_match_kafka(node, admin):
    topic, group = unique("errors"), unique("errors")
    admin.create_topics([NewTopic(topic, 1, 1)])
    wait_for_coordinator(node, group)
    find = call(node, FindCoordinatorRequest(version=4, key_type=0, coordinator_keys=[group, ""]),
                FindCoordinatorResponse)
    assert [(c.key, c.node_id, c.error_code) for c in find.coordinators] == \
        [(group, 1, 0), ("", -1, INVALID_GROUP_ID)]
    transactions = call(node, FindCoordinatorRequest(version=1, key="txn", key_type=1),
                        FindCoordinatorResponse)
    assert transactions.error_code == COORDINATOR_NOT_AVAILABLE

    def join(version: int, member_id: str = "", session_timeout_ms: int = 5000):
        return call(node, JoinGroupRequest(
            version=version, group_id=group, session_timeout_ms=session_timeout_ms,
            rebalance_timeout_ms=5000, member_id=member_id, protocol_type="consumer",
            protocols=[JoinGroupRequest.JoinGroupRequestProtocol(name="range", metadata=b"")]),
            JoinGroupResponse)

    assert join(5, session_timeout_ms=10).error_code == INVALID_SESSION_TIMEOUT
    first = join(5)
    assert first.error_code == MEMBER_ID_REQUIRED and first.member_id.startswith("bad-input-")
    assert join(5, member_id="stranger").error_code == UNKNOWN_MEMBER_ID
    heartbeat = call(node, HeartbeatRequest(version=1, group_id=group, generation_id=1,
                                            member_id="stranger"), HeartbeatResponse)
    assert heartbeat.error_code == UNKNOWN_MEMBER_ID

    def commit(generation: int, partition: int, metadata: str) -> int:
        Topic = OffsetCommitRequest.OffsetCommitRequestTopic
        response = call(node, OffsetCommitRequest(
            version=3, group_id=unique("commit"), generation_id_or_member_epoch=generation,
            member_id="", topics=[Topic(name=topic, partitions=[
                Topic.OffsetCommitRequestPartition(partition_index=partition, committed_offset=7,
                                                   committed_metadata=metadata)])]),
            OffsetCommitResponse)
        return response.topics[0].partitions[0].error_code

    assert commit(5, 0, "") == ILLEGAL_GENERATION  # no such group, so no generation 5
    assert commit(-1, 1, "") == UNKNOWN_TOPIC_OR_PARTITION
    assert commit(-1, 0, "x" * 5000) == OFFSET_METADATA_TOO_LARGE
    fetched = call(node, OffsetFetchRequest(version=1, group_id=unique("nobody"), topics=[
        OffsetFetchRequest.OffsetFetchRequestTopic(name=topic, partition_indexes=[0])]),
        OffsetFetchResponse)
    [[partition]] = [t.partitions for t in fetched.topics]
    assert (partition.committed_offset, partition.error_code) == (-1, 0)


def test_offsets_and_groups_survive_a_node_crash(node_factory):
    node = node_factory("crash", **GROUP_SETTINGS)
    topic, group = unique("crash"), unique("crash")
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        offsets = {TopicPartition(topic, p): OffsetAndMetadata(10 * p, f"m{p}", -1)
                   for p in range(PARTITIONS)}
        admin.alter_group_offsets(group, offsets)
        admin.alter_group_offsets(group, {TopicPartition(topic, 0): OffsetAndMetadata(3, "", -1)})
    finally:
        admin.close()
    offsets[TopicPartition(topic, 0)] = OffsetAndMetadata(3, "", -1)
    crash_and_wait_for_offsets(node, group, {tp: (o.offset, o.metadata) for tp, o in offsets.items()})
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        assert [g["group_state"] for g in admin.list_groups() if g["group_id"] == group] == ["Empty"]
    finally:
        admin.close()


def crash_and_wait_for_offsets(node: NodeProcess, group: str, expected: dict) -> None:
    """SIGKILL the node, start it again on its data, and wait until the group's committed
    offsets read back as `expected`, {TopicPartition: (offset, metadata)}."""
    node.kill()
    node.start()  # the new process loads __consumer_offsets from its log
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        wait_for("offsets after the restart", lambda: {
            tp: (o.offset, o.metadata)
            for tp, o in admin.list_group_offsets({group: None})[group].items()} == expected)
    finally:
        admin.close()


# -- the coordinator's node dies -----------------------------------------------------------


def coordinator_of(cluster, group: str) -> int:
    for node in cluster.nodes.values():
        if node.alive():
            with Raw(node) as raw:
                answer = raw.call(FindCoordinatorRequest(version=0, key=group),
                                  FindCoordinatorResponse)
            if answer.error_code == 0:
                return answer.node_id
    return 0


class FreshAdmin:
    """A new admin client for every call: kafka-python's keeps a group's coordinator
    cached even after that node died (as a fresh kafka-consumer-groups run would not)."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
            try:
                return getattr(admin, name)(*args, **kwargs)
            finally:
                admin.close()
        return call


def test_coordinator_failover_keeps_offsets_and_consumption(quorum_cluster, members):
    cluster = quorum_cluster(3, **GROUP_SETTINGS, **{
        "broker.heartbeat.interval.ms": 200, "broker.session.timeout.ms": 1000})
    bootstrap = ",".join(n.bootstrap for n in cluster.nodes.values())
    members.bootstrap = bootstrap
    topic, group = unique("failover"), unique("failover")
    # Fresh metadata: brokers register (and one dies) while the test runs.
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, metadata_max_age_ms=500)
    try:
        # Until all three brokers have registered.
        wait_for("a topic on 3 brokers",
                 lambda: admin.create_topics([NewTopic(topic, PARTITIONS, 3)]))
        for _ in range(2):
            members.start("librdkafka", group, topic)
        wait_for("2 stable members", lambda: stable_assignment(admin, group, 2))
        produce(bootstrap, topic, 10)
        before = wait_until_consumed(admin, group, topic)
        coordinator = wait_for("the coordinator", lambda: coordinator_of(cluster, group))
    finally:
        admin.close()

    cluster.kill(coordinator)
    survivors = ",".join(n.bootstrap for i, n in cluster.nodes.items() if i != coordinator)
    wait_for("a new coordinator", lambda: coordinator_of(cluster, group) not in (0, coordinator))
    admin = FreshAdmin(survivors)
    # The new coordinator loaded the offsets from its replica of __consumer_offsets.
    assert wait_for("the offsets", lambda: committed(admin, group, topic)) == before
    produce(survivors, topic, 10)
    wait_until_consumed(admin, group, topic)
    assert_splits_partitions(wait_for("2 stable members",
                                      lambda: stable_assignment(admin, group, 2)))
    assert_nothing_consumed_twice_past_a_commit(members.events)
    assert consumed_offsets(members.events) == {p: set(range(20)) for p in range(PARTITIONS)}


def test_pipelined_commits_land_in_order(node, admin):
    """Commits pipelined on one connection start at once but take effect, and are
    answered, in the order sent; a fetch behind them sees the last, and commits behind
    that fetch wait for it. A refused commit among them is answered with its error."""
    topic, group = unique("pipelined"), unique("pipelined")
    admin.create_topics([NewTopic(topic, 1, 1)])
    wait_for_coordinator(node, group)
    Topic = OffsetCommitRequest.OffsetCommitRequestTopic

    def commit(name: str, offset: int) -> OffsetCommitRequest:
        return OffsetCommitRequest(
            version=3, group_id=group, generation_id_or_member_epoch=-1, member_id="",
            topics=[Topic(name=name, partitions=[Topic.OffsetCommitRequestPartition(
                partition_index=0, committed_offset=offset, committed_metadata="")])])

    requests = [*(commit(topic, offset) for offset in range(50)),
                OffsetFetchRequest(version=3, group_id=group, topics=None),
                *(commit(topic, offset) for offset in range(100, 150)),
                commit(unique("missing"), 7),
                OffsetFetchRequest(version=3, group_id=group, topics=None)]
    with Raw(node) as raw:
        raw.sock.sendall(b"".join(raw.frame(r) for r in requests))
        answers = [raw.receive(OffsetCommitResponse, 3, correlation_id).topics[0].partitions[0]
                   if isinstance(request, OffsetCommitRequest) else
                   raw.receive(OffsetFetchResponse, 3, correlation_id).topics[0].partitions[0]
                   for correlation_id, request in enumerate(requests, start=1)]
    assert [a.error_code for a in answers[:50] + answers[51:101]] == [0] * 100
    assert answers[50].committed_offset == 49
    assert answers[101].error_code == kafka_errors.UnknownTopicOrPartitionError.errno
    assert answers[102].committed_offset == 149


def test_pipelined_commits_of_a_partition_share_its_record(node_factory):
    """Commits of the same partitions queued together are written once each, with the last
    offset: all are acknowledged, `__consumer_offsets` grows by fewer records than there
    were commits, and the coordinator reads the last offsets back after a crash."""
    node = node_factory("shared-records", **{"offsets.topic.num.partitions": 1})
    topic, group = unique("shared"), unique("shared")
    offsets_log = {TopicPartition("__consumer_offsets", 0): OffsetSpec.LATEST}
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])
        wait_for_coordinator(node, group)
        [before] = admin.list_partition_offsets(offsets_log).values()
        Topic = OffsetCommitRequest.OffsetCommitRequestTopic
        requests = [OffsetCommitRequest(
            version=3, group_id=group, generation_id_or_member_epoch=-1, member_id="",
            topics=[Topic(name=topic, partitions=[Topic.OffsetCommitRequestPartition(
                partition_index=p, committed_offset=offset, committed_metadata=f"m{offset}")])])
            for offset in range(500) for p in range(2)]
        with Raw(node) as raw:
            raw.sock.sendall(b"".join(raw.frame(r) for r in requests))
            errors = [raw.receive(OffsetCommitResponse, 3, correlation_id).topics[0].partitions[0]
                      .error_code for correlation_id in range(1, len(requests) + 1)]
        assert errors == [0] * len(requests)
        [after] = admin.list_partition_offsets(offsets_log).values()
        assert 2 <= after.offset - before.offset < len(requests)
    finally:
        admin.close()
    crash_and_wait_for_offsets(node, group, {TopicPartition(topic, p): (499, "m499")
                                             for p in range(2)})


def test_commits_of_many_partitions_and_of_missing_topics_are_answered_each(node, admin):
    """A reset of more partitions than the node keeps answers encoded for, and one that
    names a topic that does not exist: every partition gets its own error code, twice in
    a row, and only the stored offsets are fetched back."""
    topic, group = unique("many"), unique("many")
    admin.create_topics([NewTopic(topic, 100, 1)])
    missing = TopicPartition(unique("missing-" + "x" * 200), 0)
    offsets = {TopicPartition(topic, p): OffsetAndMetadata(p, "", -1) for p in range(100)}
    for _ in range(2):
        assert set(admin.alter_group_offsets(group, offsets).values()) == {kafka_errors.NoError}
        answered = admin.alter_group_offsets(group, {**offsets, missing: OffsetAndMetadata(1, "", -1)})
        assert answered.pop(missing) is kafka_errors.UnknownTopicOrPartitionError
        assert set(answered.values()) == {kafka_errors.NoError}
    fetched = admin.list_group_offsets({group: None})[group]
    assert {tp: o.offset for tp, o in fetched.items()} == {tp: o.offset for tp, o in offsets.items()}


def by_instance(admin, group: str) -> dict[str, list[int]] | None:
    """{group instance id: partitions} of a Stable group."""
    description = admin.describe_groups([group])[group]
    if description["group_state"] != "Stable":
        return None
    return {m["group_instance_id"]: sorted(p for t in m["member_assignment"]["assigned_partitions"]
                                           for p in t["partitions"])
            for m in description["members"]}


def test_static_member_restart_keeps_its_partitions_without_a_rebalance(node, admin, members):
    topic, group = unique("static"), unique("static")
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    static = ("--session-ms", "10000")
    first = members.start("librdkafka", group, topic, "--instance", "static-a", *static)
    other = members.start("librdkafka", group, topic, "--instance", "static-b", *static)
    before = wait_for("2 static members", lambda: (by_instance(admin, group) or {}).keys()
                      == {"static-a", "static-b"} and by_instance(admin, group))
    assert_splits_partitions(before)

    def assignments(member: Member) -> list:
        return [e for e in members.events if e["event"] == "assigned"
                and e["member"] == member.process.pid]

    wait_for("both members' assignments", lambda: assignments(first) and assignments(other)
             and assignments(other)[-1]["partitions"] == before["static-b"])
    rebalances = len(assignments(other))
    first.kill()  # a static member's restart within its session timeout is no rebalance
    restarted = members.start("librdkafka", group, topic, "--instance", "static-a", *static)
    wait_for("the restarted member's assignment", lambda: assignments(restarted))
    assert by_instance(admin, group) == before
    assert [e["partitions"] for e in assignments(restarted)] == [before["static-a"]]
    assert len(assignments(other)) == rebalances  # the other member was not asked to rejoin
    produce(node.bootstrap, topic, 5)
    wait_until_consumed(admin, group, topic)
