"""Committed offsets expire as in Kafka: an offset committed with a retention of its own
(OffsetCommit v2-v4) at that time, others `offsets.retention.minutes` after the group's
last member left (or, for a group that only stores offsets, after the commit). Expired
offsets and the empty groups left without any are deleted with tombstones, so they stay
deleted when the coordinator reads `__consumer_offsets` again.
"""
from __future__ import annotations

import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.protocol.consumer import OffsetCommitRequest, OffsetCommitResponse
from kafka.protocol.consumer.metadata import ConsumerProtocolSubscription

from broker.groups.group import Group, GroupSettings, Member, State
from broker.groups.records import CommittedOffset, GroupMetadataValue
from test_bad_input import Raw
from test_groups import unique, wait_for

KEPT = -1  # OffsetCommit's retention_time_ms for "the broker's retention"


def commit_v2(raw: Raw, group: str, topic: str, offsets: dict[int, tuple[int, int]]) -> None:
    """Commit {partition: (offset, retention_time_ms)} as an empty group does (aiokafka's
    version); each partition's retention goes in a request of its own."""
    for partition, (offset, retention_ms) in offsets.items():
        Topic = OffsetCommitRequest.OffsetCommitRequestTopic
        answer = raw.call(OffsetCommitRequest(
            version=2, group_id=group, generation_id_or_member_epoch=-1, member_id="",
            retention_time_ms=retention_ms, topics=[Topic(name=topic, partitions=[
                Topic.OffsetCommitRequestPartition(partition_index=partition,
                                                   committed_offset=offset,
                                                   committed_metadata="")])]),
            OffsetCommitResponse)
        assert answer.topics[0].partitions[0].error_code == 0


def committed(admin: KafkaAdminClient, group: str) -> dict[int, int]:
    """{partition: offset} the coordinator answers (raises while it loads: `wait_for`
    then tries again)."""
    return {tp.partition: o.offset for tp, o in admin.list_group_offsets({group: None})[group].items()}


def listed(admin: KafkaAdminClient) -> set[str]:
    return {g["group_id"] for g in admin.list_groups()}


def test_expired_offsets_and_emptied_groups_are_deleted_for_good(node_factory):
    node = node_factory("expiry", **{"offsets.retention.check.interval.ms": 200,
                                     "offsets.topic.num.partitions": 1})
    topic, kept, gone = unique("topic"), unique("kept"), unique("gone")
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 2, 1)])
        # Its FindCoordinator makes __consumer_offsets, which the raw commits need.
        wait_for("a coordinator", lambda: committed(admin, kept) == {})
        with Raw(node) as raw:
            commit_v2(raw, kept, topic, {0: (10, 1000), 1: (20, KEPT)})
            commit_v2(raw, gone, topic, {0: (30, 1000)})
        wait_for("the expiry", lambda: committed(admin, kept) == {1: 20}
                 and committed(admin, gone) == {})
        # A group with offsets left stays; one left with none is gone, as in Kafka.
        assert kept in listed(admin) and gone not in listed(admin)
        wait_for("the tombstones", lambda: "removed 2 expired offsets and 1 empty groups"
                 in (node.directory / "node.log").read_text())
    finally:
        admin.close()

    # Read back from __consumer_offsets, with no expiry check to run again: the
    # tombstones alone keep them deleted.
    node.kill()
    node.settings["offsets.retention.check.interval.ms"] = 600000
    node.start()
    admin = KafkaAdminClient(bootstrap_servers=node.bootstrap)
    try:
        assert wait_for("the coordinator's load", lambda: committed(admin, kept)) == {1: 20}
        assert committed(admin, gone) == {}
        assert kept in listed(admin) and gone not in listed(admin)
    finally:
        admin.close()


# -- the rule, on a Group of each kind -----------------------------------------------------

NOW_MS = 1_800_000_000_000
RETENTION_MS = 7 * 24 * 3600 * 1000  # Kafka's default offsets.retention.minutes


async def unused_store(group, assignments) -> None:
    raise AssertionError("the rule writes nothing")


def group_with_offsets(**commit_ages_ms: int) -> Group:
    """A group with an offset for partition 0 of each topic, committed that long ago."""
    group = Group("g", GroupSettings(0), unused_store)
    group.offsets = {(topic, 0): CommittedOffset(5, -1, "", NOW_MS - age)
                     for topic, age in commit_ages_ms.items()}
    return group


def consumer_group(state: State, subscribed: list[str], **commit_ages_ms: int) -> Group:
    group = group_with_offsets(**commit_ages_ms)
    group.protocol_type, group.protocol_name, group.state = "consumer", "range", state
    subscription = bytes(ConsumerProtocolSubscription(version=0, topics=subscribed,
                                                      user_data=None).encode())
    group.members["m-1"] = Member("m-1", None, "client", "/127.0.0.1", 10000, 10000,
                                  [("range", subscription)])
    return group


def test_a_group_that_only_stores_offsets_loses_each_one_a_retention_after_its_commit():
    group = group_with_offsets(old=RETENTION_MS, recent=RETENTION_MS - 1)
    assert group.expired_offsets(NOW_MS, RETENTION_MS) == [("old", 0)]


def test_an_empty_group_keeps_its_offsets_for_a_retention_after_its_last_member_left():
    group = group_with_offsets(old=10 * RETENTION_MS)
    group.protocol_type = "consumer"
    group.state_timestamp = NOW_MS - RETENTION_MS + 1
    assert group.expired_offsets(NOW_MS, RETENTION_MS) == []
    group.state_timestamp = NOW_MS - RETENTION_MS
    assert group.expired_offsets(NOW_MS, RETENTION_MS) == [("old", 0)]


def test_an_empty_group_read_back_counts_from_when_it_became_empty_not_from_its_load():
    now_ms = int(time.time() * 1000)  # the clock a load reads
    group = Group("g", GroupSettings(0), unused_store)
    group.restore(GroupMetadataValue(version=3, protocol_type="consumer", generation=4,
                                     protocol=None, leader=None,
                                     current_state_timestamp=now_ms - RETENTION_MS,
                                     members=[]))
    group.offsets = {("t", 0): CommittedOffset(5, -1, "", now_ms)}
    assert group.state is State.EMPTY
    assert group.expired_offsets(now_ms, RETENTION_MS) == [("t", 0)]


def test_a_stable_group_loses_only_old_offsets_of_topics_it_no_longer_subscribes_to():
    group = consumer_group(State.STABLE, ["read"], read=10 * RETENTION_MS,
                           dropped=RETENTION_MS, dropped_lately=1)
    assert group.expired_offsets(NOW_MS, RETENTION_MS) == [("dropped", 0)]
    for state in (State.PREPARING_REBALANCE, State.COMPLETING_REBALANCE):
        group.state = state
        assert group.expired_offsets(NOW_MS, RETENTION_MS) == []


def test_an_offsets_own_expiry_wins_and_a_commit_being_written_keeps_it():
    group = group_with_offsets(a=0, b=10 * RETENTION_MS)
    group.offsets["a", 0] = group.offsets["a", 0]._replace(expire_timestamp=NOW_MS)
    group.offsets["b", 0] = group.offsets["b", 0]._replace(expire_timestamp=NOW_MS + 1)
    assert group.expired_offsets(NOW_MS, RETENTION_MS) == [("a", 0)]
    group.commits_started([("a", 0)])
    group.commits_started([("a", 0)])
    group.commits_ended([("a", 0)])
    assert group.expired_offsets(NOW_MS, RETENTION_MS) == []
    group.commits_ended([("a", 0)])
    assert group.expired_offsets(NOW_MS, RETENTION_MS) == [("a", 0)]
    assert not group.pending_commits  # nothing left to keep an empty group alive
