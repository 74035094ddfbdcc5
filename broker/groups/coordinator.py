"""The group coordinator of a node: which groups it serves, and their offsets.

A group belongs to `__consumer_offsets` partition abs(hash(group id)) % partitions, with
Java's String.hashCode as in Kafka, so every node (and every Kafka tool) agrees on it.
The partition's leader is the group's coordinator. The topic is made on the first
FindCoordinator: compacted, `offsets.topic.num.partitions` partitions and
`offsets.topic.replication.factor` replicas, at most as many as there are controller
quorum voters (a lone node gets one; Kafka would refuse until three brokers are up).

The metadata image tells this node when it gains or loses the leadership of a partition
of the topic: it then loads that partition's groups (OffsetsPartition.load) or drops
them, and clients are answered COORDINATOR_LOAD_IN_PROGRESS or NOT_COORDINATOR.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, Coroutine

from kafka import errors

from broker.errors import RequestError
from broker.groups.group import Group, GroupSettings, State
from broker.groups.records import CommittedOffset, group_key, offset_key
from broker.groups.store import OffsetsPartition, Records
from broker.metadata import NO_LEADER, BrokerInfo, PartitionInfo, TopicInfo
from broker.peer import PeerUnavailable

if TYPE_CHECKING:
    from broker.node import Node

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
INT32_MIN = -2**31


def java_string_hash(text: str) -> int:
    """Java's String.hashCode: over UTF-16 code units, with 32-bit overflow."""
    h = 0
    data = text.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & 0xFFFFFFFF
    return h - 2**32 if h >= 2**31 else h


@functools.lru_cache(maxsize=65536)  # every request of a group asks again
def partition_for(group_id: str, partitions: int) -> int:
    h = java_string_hash(group_id)
    return (0 if h == INT32_MIN else abs(h)) % partitions  # Kafka's Utils.abs


def check_group_id(group_id: str | None) -> None:
    if not group_id:
        raise RequestError(errors.InvalidGroupIdError, "the group id is empty")


class GroupCoordinator:
    def __init__(self, node: "Node"):
        self.node = node
        config = node.config
        self.settings = GroupSettings(config["group.initial.rebalance.delay.ms"])
        self.partitions: dict[int, OffsetsPartition] = {}
        self._loads: dict[int, asyncio.Task] = {}
        node.image.partition_listeners.append(self._partition_changed)
        node.image.topic_removed_listeners.append(self._topic_removed)

    # -- where groups live ----------------------------------------------------------------

    @property
    def replication_factor(self) -> int:
        return max(1, min(self.node.config["offsets.topic.replication.factor"],
                          len(self.node.config.voters)))

    async def coordinator_of(self, group_id: str) -> BrokerInfo:
        """The broker coordinating `group_id`; makes the offsets topic on first use."""
        topic = self.node.image.topics.get(OFFSETS_TOPIC) or await self._create_topic()
        info = topic.partitions[partition_for(group_id, len(topic.partitions))]
        broker = self.node.image.brokers.get(info.leader)
        if info.leader == NO_LEADER or broker is None or broker.fenced:
            raise RequestError(errors.CoordinatorNotAvailableError,
                               f"{OFFSETS_TOPIC}-{info.index} has no leader")
        return broker

    async def _create_topic(self) -> TopicInfo:
        try:
            await self.node.create_topic(OFFSETS_TOPIC, self.node.config["offsets.topic.num.partitions"],
                                         self.replication_factor, {"cleanup.policy": "compact"})
        except (RequestError, PeerUnavailable) as exc:
            log.info("cannot create %s yet: %s", OFFSETS_TOPIC, exc)
        topic = self.node.image.topics.get(OFFSETS_TOPIC)
        if topic is None:
            raise RequestError(errors.CoordinatorNotAvailableError,
                               f"{OFFSETS_TOPIC} cannot be created yet")
        return topic

    def partition_of(self, group_id: str) -> OffsetsPartition:
        """This node's partition for the group, loaded; else the error Kafka answers."""
        check_group_id(group_id)
        topic = self.node.image.topics.get(OFFSETS_TOPIC)
        if topic is None:
            raise RequestError(errors.NotCoordinatorError, f"{OFFSETS_TOPIC} does not exist yet")
        index = partition_for(group_id, len(topic.partitions))
        partition = self.partitions.get(index)
        if partition is None:
            raise RequestError(errors.NotCoordinatorError,
                               f"node {self.node.node_id} does not lead {OFFSETS_TOPIC}-{index}")
        if not partition.loaded:
            raise RequestError(errors.CoordinatorLoadInProgressError,
                               f"{OFFSETS_TOPIC}-{index} is loading")
        return partition

    def group(self, group_id: str) -> Group:
        group = self.partition_of(group_id).group(group_id)
        if group is None:
            raise RequestError(errors.UnknownMemberIdError, f"group {group_id!r} does not exist")
        return group

    def loaded_partitions(self) -> list[OffsetsPartition]:
        return [p for p in self.partitions.values() if p.loaded]

    @property
    def loading(self) -> bool:
        return any(not p.loaded for p in self.partitions.values())

    # -- leadership changes -----------------------------------------------------------------

    def _partition_changed(self, info: PartitionInfo) -> None:
        if info.topic != OFFSETS_TOPIC:
            return
        topic = self.node.image.topics[OFFSETS_TOPIC]
        log_ = self.node.logs.get((topic.id, info.index))
        current = self.partitions.get(info.index)
        if info.leader == self.node.node_id and log_ is not None:
            if current is not None and current.log is log_ and current.epoch == info.leader_epoch:
                return  # an ISR change: nothing moves
            self._unload(info.index)
            partition = OffsetsPartition(
                log_, self.settings, info.leader_epoch,
                lambda: self.node.topic_config(topic, "min.insync.replicas"),
                self.node.config["offsets.commit.timeout.ms"] / 1000)
            self.partitions[info.index] = partition
            self._loads[info.index] = asyncio.ensure_future(self._load(partition))
        elif current is not None:
            self._unload(info.index)

    async def _load(self, partition: OffsetsPartition) -> None:
        started = time.monotonic()
        try:
            await partition.load()
        except Exception:
            log.exception("loading %s-%d failed; its groups stay unavailable here",
                          OFFSETS_TOPIC, partition.index)
            return
        finally:
            self._loads.pop(partition.index, None)
        log.info("%s-%d loaded in %.0f ms", OFFSETS_TOPIC, partition.index,
                 (time.monotonic() - started) * 1000)

    def _unload(self, index: int) -> None:
        load = self._loads.pop(index, None)
        if load is not None:
            load.cancel()
        partition = self.partitions.pop(index, None)
        if partition is not None:
            partition.unload()

    def _topic_removed(self, topic: TopicInfo) -> None:
        if topic.name == OFFSETS_TOPIC:
            for index in list(self.partitions):
                self._unload(index)

    # -- offsets ------------------------------------------------------------------------------

    def start_commit(self, group_id: str, generation: int, member_id: str,
                     instance_id: str | None, offsets: dict[tuple[str, int], CommittedOffset]
                     ) -> Coroutine[None, None, dict[tuple[str, int], int]]:
        """Check a commit and queue its records now, so that commits read together share
        one append. Returns the coroutine that waits for them to be stored and gives an
        error code per partition; it must be awaited."""
        try:
            partition = self.partition_of(group_id)
            group = partition.group(group_id)
            if group is None:
                if generation >= 0:
                    raise RequestError(errors.IllegalGenerationError,
                                       f"group {group_id!r} has no generation {generation}")
                group = partition.group(group_id, create=True)
            else:
                group.check_commit(member_id, instance_id, generation)
        except RequestError as exc:
            return self._commit_stored(None, {}, {tp: exc.code for tp in offsets}, None)
        results: dict[tuple[str, int], int] = {}
        valid: dict[tuple[str, int], CommittedOffset] = {}
        max_metadata = self.node.config["offset.metadata.max.bytes"]
        for tp, committed in offsets.items():
            topic = self.node.image.topics.get(tp[0])
            if topic is None or not 0 <= tp[1] < len(topic.partitions):
                results[tp] = errors.UnknownTopicOrPartitionError.errno
            elif len(committed.metadata.encode()) > max_metadata:
                results[tp] = errors.OffsetMetadataTooLargeError.errno
            else:
                valid[tp] = committed
        if not valid:
            return self._commit_stored(None, {}, results, None)
        stored = partition.start_write(
            [(offset_key(group_id, t, p), c) for (t, p), c in valid.items()])
        group.commits_started(valid)
        return self._commit_stored(group, valid, results, stored)

    @staticmethod
    async def _commit_stored(group: Group | None, valid: dict[tuple[str, int], CommittedOffset],
                             results: dict[tuple[str, int], int],
                             stored: asyncio.Future | None) -> dict[tuple[str, int], int]:
        if stored is None:
            return results
        try:
            log_offsets = await stored
        except RequestError as exc:
            error = errors.InvalidCommitOffsetSizeError if exc.error in (
                errors.MessageSizeTooLargeError, errors.RecordListTooLargeError) else exc.error
            return {**results, **{tp: error.errno for tp in valid}}
        finally:
            group.commits_ended(valid)
        for (tp, committed), log_offset in zip(valid.items(), log_offsets):
            results[tp] = 0
            if log_offset is None:
                continue  # a later commit of the same append replaced it
            known = group.offsets.get(tp)
            # Commits can finish out of order; the one later in the log is the truth.
            # (Built anew: a named tuple's _replace costs a commit twice as much.)
            if known is None or known.log_offset < log_offset:
                group.offsets[tp] = CommittedOffset(*committed[:-1], log_offset)
        return results

    def fetch_offsets(self, group_id: str, wanted: list[tuple[str, int]] | None
                      ) -> dict[tuple[str, int], CommittedOffset | None]:
        """Committed offsets of the wanted partitions (None: every committed one)."""
        group = self.partition_of(group_id).group(group_id)
        offsets = group.offsets if group is not None else {}
        if wanted is None:
            return dict(sorted(offsets.items()))
        return {tp: offsets.get(tp) for tp in wanted}

    async def delete_offsets(self, group_id: str, wanted: list[tuple[str, int]]
                             ) -> dict[tuple[str, int], int]:
        """OffsetDelete: drop committed offsets of topics the group no longer consumes."""
        partition = self.partition_of(group_id)
        group = partition.group(group_id)
        if group is None:
            raise RequestError(errors.GroupIdNotFoundError, f"group {group_id!r} does not exist")
        subscribed: set[str] = set()
        if not group.is_empty:
            topics = group.subscribed_topics()
            if topics is None:
                raise RequestError(errors.NonEmptyGroupError,
                                   f"group {group_id!r} has members")
            subscribed = topics
        results = {tp: errors.GroupSubscribedToTopicError.errno for tp in wanted
                   if tp[0] in subscribed}
        deletable = [tp for tp in wanted if tp not in results and tp in group.offsets]
        if deletable:
            await partition.write([(offset_key(group_id, t, p), None) for t, p in deletable])
            for tp in deletable:
                group.offsets.pop(tp, None)
        return {tp: results.get(tp, 0) for tp in wanted}

    async def delete_group(self, group_id: str) -> None:
        partition = self.partition_of(group_id)
        group = partition.group(group_id)
        if group is None:
            raise RequestError(errors.GroupIdNotFoundError, f"group {group_id!r} does not exist")
        if group.state is not State.EMPTY:
            raise RequestError(errors.NonEmptyGroupError, f"group {group_id!r} has members")
        await partition.write(self._drop(partition, group, "deleted"))

    @staticmethod
    def _drop(partition: OffsetsPartition, group: Group, reason: str) -> Records:
        """Take an empty group out of its partition; returns the tombstones that delete it.
        It is Dead before they are written, so no member joins it meanwhile."""
        del partition.groups[group.group_id]
        group.unload(RequestError(errors.CoordinatorNotAvailableError,
                                  f"group {group.group_id!r} was {reason}"))
        return [*((offset_key(group.group_id, t, p), None) for t, p in group.offsets),
                (group_key(group.group_id), None)]

    async def expire_offsets(self) -> None:
        """Remove the committed offsets past their retention (Group.expired_offsets), then
        the empty groups left without offsets, as Kafka's periodic offsets cleanup does."""
        now_ms = int(time.time() * 1000)
        retention_ms = self.node.config["offsets.retention.minutes"] * 60_000
        for partition in self.loaded_partitions():
            tombstones: Records = []
            expired = dropped = 0
            for group in list(partition.groups.values()):
                for topic, index in group.expired_offsets(now_ms, retention_ms):
                    del group.offsets[topic, index]
                    tombstones.append((offset_key(group.group_id, topic, index), None))
                    expired += 1
                if group.state is State.EMPTY and not group.offsets and not group.pending_commits:
                    tombstones += self._drop(partition, group, "removed: empty, without offsets")
                    dropped += 1
            if not tombstones:
                continue
            try:
                await partition.write(tombstones)
            except RequestError as exc:
                log.info("__consumer_offsets-%d: expired offsets not written: %s",
                         partition.index, exc.message)
                continue
            log.info("__consumer_offsets-%d: removed %d expired offsets and %d empty groups",
                     partition.index, expired, dropped)
