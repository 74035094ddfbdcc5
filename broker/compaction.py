"""Log compaction (`cleanup.policy=compact`): keep the newest record of every key.

Every replica cleans its own log, as Kafka's log cleaner does, by the same rule:

- Only batches below the high watermark and below the log's newest batch are cleaned
  (Kafka never cleans the active segment; keeping the newest batch also keeps the log end
  offset across a restart).
- A pass maps each key of the part written since the last pass (the dirty part) to its
  newest offset, then rewrites every batch of the cleanable range holding a record that a
  newer one of its key replaces, or a tombstone (null value) older than
  `delete.retention.ms`. A rewritten batch keeps its base offset, its records' offset
  deltas and its leader epoch; its CRC is computed anew. A batch left without records
  goes. (All of this is below the high watermark, where every in-sync replica agrees,
  so a divergence lookup never needs what went.)
- Offsets never change: a consumer or a follower reading across a gap gets the next
  batch. A pass starts when the dirty part is at least `min.cleanable.dirty.ratio` of
  the cleanable bytes, or when a kept tombstone expires.

Records are decoded and re-encoded with aiokafka's record batch reader and builder.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from broker.partition import PartitionLog
from broker.records import Batch, new_builder, replicated_batches

if TYPE_CHECKING:
    from broker.node import Node

log = logging.getLogger(__name__)

READ_BYTES = 4 * 1024 * 1024


@dataclass
class CleanerState:
    """What the cleaner knows of one log (kept in memory: a restart cleans it all once)."""
    clean_until: int = 0  # batches wholly below this are clean
    tombstones_expire_at: float = float("inf")  # the earliest kept tombstone's expiry (s)


@dataclass
class Pass:
    """The outcome of cleaning one log: batches dropped and rewritten."""
    dropped: list[int] = field(default_factory=list)  # base offsets
    rewritten: list[Batch] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0
    tombstones_expire_at: float = float("inf")


class LogCleaner:
    def __init__(self, node: "Node"):
        self.node = node
        self.state: dict[int, CleanerState] = {}  # by partition pid

    async def clean_all(self) -> None:
        for key, partition in list(self.node.logs.items()):
            topic = self.node.image.topics_by_id.get(key[0])
            if topic is None or "compact" not in self.node.topic_config(topic, "cleanup.policy"):
                continue
            await self.clean(key, partition,
                             self.node.topic_config(topic, "min.cleanable.dirty.ratio"),
                             self.node.topic_config(topic, "delete.retention.ms"))

    async def clean(self, key, partition: PartitionLog, dirty_ratio: float,
                    delete_retention_ms: int) -> None:
        storage = self.node.storage
        state = self.state.setdefault(partition.pid, CleanerState())
        limit = min(partition.high_watermark, await storage.last_batch_offset(partition.pid))
        start = max(state.clean_until, partition.log_start_offset)
        cleanable = await storage.size_below(partition.pid, limit)
        dirty = cleanable - await storage.size_below(partition.pid, start)
        due = time.time() >= state.tombstones_expire_at
        if cleanable == 0 or not (due or 0 < dirty >= dirty_ratio * cleanable):
            return
        newest = await self._newest_offsets(partition, start, limit)
        result = await self._rewrite(partition, limit, newest, delete_retention_ms)
        if self.node.logs.get(key) is not partition:
            return  # the topic went away meanwhile
        # What retention or DeleteRecords removed meanwhile stays removed.
        result.rewritten = [b for b in result.rewritten
                            if b.base_offset >= partition.log_start_offset]
        if result.dropped or result.rewritten:
            await storage.replace_batches(partition.pid, result.dropped, result.rewritten)
            partition.size -= result.bytes_before - result.bytes_after
            log.info("compacted %s-%d below offset %d: %d batches dropped, %d rewritten, "
                     "%d -> %d bytes", partition.topic, partition.index, limit,
                     len(result.dropped), len(result.rewritten), result.bytes_before,
                     result.bytes_after)
        state.clean_until = limit
        state.tombstones_expire_at = result.tombstones_expire_at

    async def _batches(self, partition: PartitionLog, start: int, limit: int):
        """Every stored batch wholly in [start, limit), in offset order."""
        offset = start
        while offset < limit:
            blobs = await partition.read(offset, READ_BYTES, limit)
            if not blobs:
                return
            for batch in replicated_batches(blobs):
                if batch.base_offset >= offset and batch.last_offset < limit:
                    yield batch
                offset = max(offset, batch.next_offset)

    async def _newest_offsets(self, partition: PartitionLog, start: int, limit: int
                              ) -> dict[bytes, int]:
        """The newest offset of each key written in [start, limit)."""
        newest: dict[bytes, int] = {}
        async for batch in self._batches(partition, start, limit):
            if not batch.is_control:
                for record in batch.records():
                    if record.key is not None:
                        newest[record.key] = record.offset
        return newest

    async def _rewrite(self, partition: PartitionLog, limit: int, newest: dict[bytes, int],
                       delete_retention_ms: int) -> Pass:
        result = Pass()
        now_ms = time.time() * 1000
        async for batch in self._batches(partition, partition.log_start_offset, limit):
            if batch.is_control:
                continue
            records = list(batch.records())
            kept = []
            for record in records:
                if record.key is not None and newest.get(record.key, -1) > record.offset:
                    continue  # a newer record of the key replaces it
                if record.key is not None and record.value is None:
                    expires_ms = record.timestamp + delete_retention_ms
                    if expires_ms <= now_ms:
                        continue  # an expired tombstone
                    result.tombstones_expire_at = min(result.tombstones_expire_at,
                                                      expires_ms / 1000)
                kept.append(record)
            if len(kept) == len(records):
                continue
            size = batch.size
            if not kept:
                result.dropped.append(batch.base_offset)
                result.bytes_before += size
            else:
                rebuilt = rebuild(batch, kept)
                result.rewritten.append(rebuilt)
                result.bytes_before += size
                result.bytes_after += rebuilt.size
        return result


def rebuild(batch: Batch, kept: list) -> Batch:
    """`batch` holding only the `kept` records, offsets and leader epoch unchanged."""
    builder = new_builder(batch.codec, batch.producer_id, batch.producer_epoch,
                          batch.base_sequence)
    for record in kept:
        builder.append(record.offset - batch.base_offset, record.timestamp, record.key,
                       record.value, record.headers)
    [rebuilt] = replicated_batches(bytes(builder.build()))
    rebuilt.stamp(batch.base_offset, batch.leader_epoch)
    if batch.log_append_time:
        rebuilt.set_log_append_time(batch.max_timestamp)
    return rebuilt
