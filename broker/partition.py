"""One partition's log on this node: offsets, high watermark, producer state, waiters.

Offsets are assigned when a batch is appended (on the event loop, so requests keep their
order); the batch becomes visible to consumers when its transaction has committed and the
high watermark passes it.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from kafka import errors

from broker.errors import RequestError
from broker.records import Batch
from broker.storage import Storage

# Kafka keeps the last five batches of each producer to answer retries (max in-flight 5).
PRODUCER_BATCHES_KEPT = 5
INT32_MAX = 2**31 - 1


@dataclass
class ProducerState:
    epoch: int
    # (first sequence, last sequence, base offset) of recent batches, oldest first
    batches: deque = field(default_factory=lambda: deque(maxlen=PRODUCER_BATCHES_KEPT))

    @property
    def last_sequence(self) -> int:
        return self.batches[-1][1] if self.batches else -1


def next_sequence(sequence: int) -> int:
    return 0 if sequence == INT32_MAX else sequence + 1


class PartitionLog:
    def __init__(self, storage: Storage, pid: int, topic: str, index: int,
                 replicas: list[int], log_start_offset: int = 0, end_offset: int = 0,
                 size: int = 0, leader_epoch: int = 0):
        self.storage = storage
        self.replicas = replicas
        self.isr = list(replicas)
        self.leader = replicas[0]
        self.pid = pid
        self.topic = topic
        self.index = index
        self.log_start_offset = log_start_offset
        self.end_offset = end_offset            # next offset to assign
        self.high_watermark = end_offset        # everything stored is committed at start
        self.size = size
        self.leader_epoch = leader_epoch
        self.producers: dict[int, ProducerState] = {}
        self._waiters: set[asyncio.Future] = set()

    # -- producer idempotence ----------------------------------------------------------

    def restore_producers(self, rows: list[tuple]) -> None:
        for producer_id, epoch, base_sequence, base_offset, last_offset in rows:
            state = self.producers.get(producer_id)
            if state is None or state.epoch != epoch:
                state = self.producers[producer_id] = ProducerState(epoch)
            state.batches.append((base_sequence, base_sequence + last_offset - base_offset,
                                  base_offset))

    def _check_sequence(self, batch: Batch) -> int | None:
        """Returns the original base offset of a retried batch, None for a new one."""
        state = self.producers.get(batch.producer_id)
        if state is not None and batch.producer_epoch < state.epoch:
            raise RequestError(errors.InvalidProducerEpochError,
                              f"producer epoch {batch.producer_epoch} is older than {state.epoch}")
        if state is None or batch.producer_epoch > state.epoch:
            if batch.base_sequence != 0:
                raise RequestError(errors.OutOfOrderSequenceNumberError,
                                  f"a new producer epoch must start at sequence 0, "
                                  f"not {batch.base_sequence}")
            return None
        for first, last, base_offset in state.batches:
            if first == batch.base_sequence and last == batch.last_sequence:
                return base_offset
        expected = next_sequence(state.last_sequence)
        if batch.base_sequence != expected:
            raise RequestError(errors.OutOfOrderSequenceNumberError,
                              f"expected sequence {expected}, got {batch.base_sequence}")
        return None

    def _remember(self, batch: Batch, base_offset: int) -> None:
        state = self.producers.get(batch.producer_id)
        if state is None or state.epoch != batch.producer_epoch:
            state = self.producers[batch.producer_id] = ProducerState(batch.producer_epoch)
        state.batches.append((batch.base_sequence, batch.last_sequence, base_offset))

    # -- append -------------------------------------------------------------------------

    def append(self, batches: list[Batch], log_append_time: bool) -> tuple[int, asyncio.Future | None]:
        """Assign offsets and queue the batches for the next commit.

        Returns the base offset of the first batch and the commit future (None when every
        batch was a retry already in the log: the producer gets the original offset).
        """
        idempotent = [b for b in batches if b.producer_id >= 0]
        duplicates = {id(b): self._check_sequence(b) for b in idempotent}
        first_offset = None
        commit = None
        now_ms = int(time.time() * 1000)
        for batch in batches:
            original = duplicates.get(id(batch))
            if original is not None:
                first_offset = original if first_offset is None else first_offset
                continue
            base_offset = self.end_offset
            batch.stamp(base_offset, self.leader_epoch)
            if log_append_time:
                batch.set_log_append_time(now_ms)
            if batch.producer_id >= 0:
                self._remember(batch, base_offset)
            self.end_offset = base_offset + batch.last_offset_delta + 1
            self.size += batch.size
            end = self.end_offset
            commit = self.storage.append_batch(
                (self.pid, base_offset, end - 1, batch.max_timestamp, batch.producer_id,
                 batch.producer_epoch, batch.base_sequence, batch.size, batch.data),
                lambda end=end: self._committed(end))
            first_offset = base_offset if first_offset is None else first_offset
        return first_offset, commit

    def _committed(self, end: int) -> None:
        # One replica per partition on a single node: committed is replicated.
        if end > self.high_watermark:
            self.high_watermark = end
            self._wake()

    def rollback(self) -> None:
        """After a failed commit, forget offsets that were assigned but never stored."""
        self.end_offset = self.high_watermark

    # -- reads --------------------------------------------------------------------------

    async def read(self, offset: int, max_bytes: int) -> bytes:
        if offset >= self.high_watermark:
            return b""
        blobs = await self.storage.read_batches(self.pid, offset, self.high_watermark, max_bytes)
        return b"".join(blobs)

    def new_data_waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        waiter = loop.create_future()
        self._waiters.add(waiter)
        waiter.add_done_callback(self._waiters.discard)
        return waiter

    def close(self) -> None:
        """The partition is gone (topic deleted): release fetches waiting on it."""
        self.high_watermark = self.end_offset = self.log_start_offset
        self._wake()

    def _wake(self) -> None:
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)
