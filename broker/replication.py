"""Partition replication, Kafka's design: followers pull from leaders with Fetch.

The metadata image says who leads each partition. For every partition this node follows,
a fetcher — one per leader, like Kafka's replica fetcher threads — sends Fetch requests
with `replica_id` set to this node and the epoch of its last batch. The leader answers
with the batches past that offset, its high watermark, or the point where this log
diverges from its own, which the follower truncates to before fetching again.

As leader, this node proposes ISR changes to the controller (AlterPartition): a follower
that has not caught up for `replica.lag.time.max.ms` leaves, one that holds everything up
to the high watermark comes back.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from kafka import errors
from kafka.protocol.consumer import FetchRequest

from broker.errors import RequestError
from broker.messages import AlterPartitionRequest
from broker.partition import PartitionLog
from broker.peer import Channel, PeerUnavailable
from broker.records import replicated_batches

if TYPE_CHECKING:
    from broker.node import Node

log = logging.getLogger(__name__)

FETCH_VERSION = 12  # the first with LastFetchedEpoch/DivergingEpoch and still topic names
RETRY_BACKOFF = 0.1
FETCH_MAX_BYTES = 16 * 1024 * 1024
PARTITION_MAX_BYTES = 4 * 1024 * 1024


class Fetcher:
    """Pulls every partition this node follows from one leader."""

    def __init__(self, node: "Node", leader: int):
        self.node = node
        self.leader = leader
        self.partitions: dict[tuple[str, int], PartitionLog] = {}
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"fetcher-{leader}")

    def add(self, partition: PartitionLog) -> None:
        self.partitions[(partition.topic, partition.index)] = partition
        self._changed.set()

    def remove(self, partition: PartitionLog) -> None:
        self.partitions.pop((partition.topic, partition.index), None)

    def stop(self) -> None:
        self._task.cancel()

    def _request(self) -> FetchRequest:
        config = self.node.config
        topics: dict[str, list] = {}
        for (topic, index), p in self.partitions.items():
            topics.setdefault(topic, []).append(FetchRequest.FetchTopic.FetchPartition(
                version=FETCH_VERSION, partition=index, current_leader_epoch=p.leader_epoch,
                fetch_offset=p.end_offset, last_fetched_epoch=p.last_epoch,
                log_start_offset=p.log_start_offset, partition_max_bytes=PARTITION_MAX_BYTES))
        return FetchRequest(
            version=FETCH_VERSION, replica_id=self.node.node_id,
            max_wait_ms=config["replica.fetch.wait.max.ms"], min_bytes=1,
            max_bytes=FETCH_MAX_BYTES, isolation_level=0, session_id=0, session_epoch=-1,
            topics=[FetchRequest.FetchTopic(version=FETCH_VERSION, topic=name, partitions=parts)
                    for name, parts in topics.items()],
            forgotten_topics_data=[], rack_id="")

    async def _run(self) -> None:
        timeout = self.node.config["replica.fetch.wait.max.ms"] / 1000 + 5
        while True:
            if not self.partitions:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                response = await self.node.peers.request(self.leader, self._request(), timeout,
                                                         Channel.REPLICATION)
            except PeerUnavailable as exc:
                log.debug("fetch from node %d failed: %s", self.leader, exc)
                await asyncio.sleep(RETRY_BACKOFF)
                continue
            commits = []
            for topic in response.responses:
                for data in topic.partitions:
                    partition = self.partitions.get((topic.topic, data.partition_index))
                    if partition is not None:
                        commit = self._apply(partition, data)
                        if commit is not None:
                            commits.append(commit)
            # The next fetch offset is what is on disk: it tells the leader what we have.
            if commits:
                await asyncio.gather(*commits, return_exceptions=True)
            elif any(t.partitions and t.partitions[0].error_code for t in response.responses):
                await asyncio.sleep(RETRY_BACKOFF)

    def _apply(self, partition: PartitionLog, data) -> asyncio.Future | None:
        if data.error_code == errors.OffsetOutOfRangeError.errno:
            return self._out_of_range(partition, data)
        if data.error_code:
            log.debug("fetching %s-%d from %d: error %d", partition.topic, partition.index,
                      self.leader, data.error_code)
            return None
        diverging = data.diverging_epoch
        if diverging is not None:
            epoch, local_end = partition.end_offset_for_epoch(diverging.epoch)
            if diverging.epoch >= 0 and epoch >= 0:
                offset = min(diverging.end_offset, local_end)
            else:  # no epoch in common: keep only what was surely committed
                offset = partition.high_watermark
            log.info("%s-%d diverges from leader %d at offset %d: truncating", partition.topic,
                     partition.index, self.leader, offset)
            return partition.truncate(offset)
        if data.log_start_offset > partition.log_start_offset:
            self.node.schedule_log_start(partition, data.log_start_offset)
        commit = None
        if data.records:
            try:
                commit = partition.append_replicated(replicated_batches(data.records))
            except RequestError as exc:
                log.warning("%s-%d: refetching after a bad answer from %d: %s",
                            partition.topic, partition.index, self.leader, exc.message)
                partition.rollback()
        partition.follower_high_watermark(data.high_watermark)
        return commit


    def _out_of_range(self, partition: PartitionLog, data) -> asyncio.Future | None:
        """Our end is outside the leader's log: behind its log start (retention or
        DeleteRecords removed what we lack), or past its end (a suffix it never had)."""
        if partition.end_offset < data.log_start_offset:
            log.info("%s-%d starts over at the leader's log start %d", partition.topic,
                     partition.index, data.log_start_offset)
            return partition.start_over(data.log_start_offset)
        if data.high_watermark >= 0 and partition.end_offset > data.high_watermark:
            return partition.truncate(max(partition.high_watermark, 0))
        return None


class Replication:
    """Leader and follower roles of this node's partition logs."""

    def __init__(self, node: "Node"):
        self.node = node
        self.fetchers: dict[int, Fetcher] = {}

    def become_follower(self, partition: PartitionLog, leader: int) -> None:
        self.stop_following(partition)
        if leader >= 0:
            fetcher = self.fetchers.get(leader)
            if fetcher is None:
                fetcher = self.fetchers[leader] = Fetcher(self.node, leader)
            fetcher.add(partition)

    def stop_following(self, partition: PartitionLog) -> None:
        for fetcher in self.fetchers.values():
            fetcher.remove(partition)

    def stop(self) -> None:
        for fetcher in self.fetchers.values():
            fetcher.stop()

    async def manage_isr(self) -> None:
        """Leader side: propose ISR shrinks and expansions to the controller."""
        lag_max = self.node.config["replica.lag.time.max.ms"] / 1000
        while True:
            await asyncio.sleep(min(lag_max / 2, 0.5))
            for partition in list(self.node.logs.values()):
                if not partition.is_leader:
                    continue
                # A proposal whose answer was lost is sent again: it may have been
                # committed, and only the controller can say.
                isr = partition.proposed_isr or partition.isr_changes(lag_max)
                if isr is not None:
                    await self._alter_isr(partition, isr)

    async def _alter_isr(self, partition: PartitionLog, isr: list[int]) -> None:
        info = self.node.image.topics.get(partition.topic)
        if info is None:
            return
        state = info.partitions[partition.index]
        request = AlterPartitionRequest(version=0, broker_id=self.node.node_id, topics=[
            AlterPartitionRequest.TopicData(version=0, topic_name=partition.topic, partitions=[
                AlterPartitionRequest.TopicData.PartitionData(
                    version=0, partition_index=partition.index, leader_epoch=state.leader_epoch,
                    new_isr=sorted(isr), partition_epoch=state.partition_epoch)])])
        partition.propose_isr(isr)
        try:
            response = await self.node.call_controller(request)
        except (PeerUnavailable, RequestError) as exc:
            log.info("ISR change of %s-%d to %s not sent: %s", partition.topic, partition.index,
                     isr, exc)
            return
        result = response.topics[0].partitions[0] if response.topics else None
        code = response.error_code or (result.error_code if result else 0)
        if not code:
            partition.isr_changed(result.isr, result.leader_epoch, result.partition_epoch)
            log.info("ISR of %s-%d is now %s", partition.topic, partition.index, result.isr)
            return
        log.info("ISR change of %s-%d to %s refused: %s", partition.topic, partition.index,
                 isr, errors.for_code(code).__name__)
        if code != errors.InvalidUpdateVersionError.errno:
            # Not committed. (A stale partition epoch means a newer state is committed,
            # maybe this very change: the image will say.)
            partition.proposed_isr = None
