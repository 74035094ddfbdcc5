"""The metadata log: a PartitionLog whose high watermark is a Raft majority.

Its batches live in the node's `batches` table under a reserved partition id with no row
in `partitions`, so topic code never sees them. Every batch's partitionLeaderEpoch is the
Raft epoch of the leader that appended it, and PartitionLog's epoch starts answer the
divergence question ("where does epoch E end in this log?").
"""
from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Callable

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from crc32c import crc32c

from broker.partition import FollowerProgress, PartitionLog
from broker.records import ATTRIBUTES_AT, CONTROL, CRC_AT, CRC_START, replicated_batches
from broker.storage import Storage

log = logging.getLogger(__name__)

METADATA_TOPIC = "__cluster_metadata"
METADATA_PID = -1  # the metadata log's partition id in the batches table
LEADER_CHANGE_KEY = struct.pack(">hh", 0, 2)  # control record key: version 0, LEADER_CHANGE


def build_batch(values: list[bytes], control_key: bytes | None = None) -> bytearray:
    """One uncompressed v2 batch of `values`; with `control_key`, a control batch."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=False,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=2**31 - 1)
    now_ms = int(time.time() * 1000)
    for delta, value in enumerate(values):
        builder.append(delta, timestamp=now_ms, key=control_key, value=value, headers=[])
    data = builder.build()
    if control_key is not None:
        attributes = struct.unpack_from(">h", data, ATTRIBUTES_AT)[0] | CONTROL
        struct.pack_into(">h", data, ATTRIBUTES_AT, attributes)
        struct.pack_into(">I", data, CRC_AT, crc32c(memoryview(data)[CRC_START:]))
    return data


class MetadataLog(PartitionLog):
    def __init__(self, storage: Storage, node_id: int, voters: list[int]):
        super().__init__(storage, METADATA_PID, METADATA_TOPIC, 0, node_id)
        self.voters = voters
        self.on_change: Callable[[], None] = lambda: None  # new data or a new high watermark
        self._last_commit: asyncio.Future | None = None

    async def load(self, high_watermark: int) -> None:
        """Rebuild the end offset and epochs from the database; `high_watermark` is a
        lower bound of the committed offset that this node stored earlier."""
        rows = await self.storage.query(
            "SELECT MAX(last_offset) FROM batches WHERE pid = ?", (METADATA_PID,))
        self.end_offset = self.local_end = 0 if rows[0][0] is None else rows[0][0] + 1
        self.epoch_starts = [tuple(row) for row in await self.storage.epoch_starts(METADATA_PID)]
        self.high_watermark = min(high_watermark, self.local_end)

    @property
    def epoch_start(self) -> int:
        return self.epoch_starts[-1][1] if self.epoch_starts else 0

    def append_values(self, values: list[bytes], control_key: bytes | None = None
                      ) -> tuple[int, asyncio.Future]:
        """Leader append of one batch; returns its last offset and its commit."""
        _, end, commit = self.append(replicated_batches(build_batch(values, control_key)),
                                     log_append_time_ms=None)
        return end - 1, commit

    def _store(self, batch, base_offset: int, epoch: int) -> asyncio.Future:
        self._last_commit = super()._store(batch, base_offset, epoch)
        return self._last_commit

    async def truncate_to(self, offset: int) -> None:
        """Follower truncation to where the leader's log and ours agree."""
        if offset < self.high_watermark:
            raise AssertionError(f"refusing to truncate the metadata log to {offset}, below "
                                 f"its high watermark {self.high_watermark}")
        if offset >= self.end_offset:
            return
        if self._last_commit is not None:
            # Appends still being written must land first, or their commit would move
            # the end offset back past the truncation.
            await asyncio.gather(self._last_commit, return_exceptions=True)
        log.info("metadata log: truncating from %d to %d", self.end_offset, offset)
        await self.truncate(offset)

    def voter_progress(self, voter: int) -> FollowerProgress:
        return self.followers.setdefault(voter, FollowerProgress())

    def replica_fetched(self, replica: int, offset: int) -> None:
        """A voter's or an observer's fetch: observers are tracked but never counted."""
        self.followers.setdefault(replica, FollowerProgress())
        self.follower_fetched(replica, offset)

    def _update_high_watermark(self) -> None:
        """The largest offset a majority of voters holds, once it covers an entry of this
        leader's epoch (Raft never commits an older epoch's entries by counting)."""
        if not self.is_leader:
            return
        ends = sorted((self.local_end if v == self.node_id else self.voter_progress(v).end_offset
                       for v in self.voters), reverse=True)
        hw = ends[len(self.voters) // 2]
        if hw > self.high_watermark and hw > self.epoch_start:
            self.high_watermark = hw
            self._wake()

    def _wake(self) -> None:
        super()._wake()
        self.on_change()

    async def records(self, offset: int, end: int, max_bytes: int) -> tuple[list[tuple[int, bytes]], int]:
        """(offset, value) of the data records in [offset, end), and where reading stopped.

        Control records (LeaderChange) take offsets but are not data.
        """
        found, next_offset = [], offset
        for blob in await self.storage.read_batches(METADATA_PID, offset, end, max_bytes):
            [batch] = replicated_batches(blob)
            if batch.next_offset > end:
                break
            if not batch.is_control:
                found.extend((r.offset, r.value) for r in batch.records() if r.offset >= offset)
            next_offset = batch.next_offset
        return found, next_offset
