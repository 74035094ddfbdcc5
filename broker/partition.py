"""One partition's log on this node: offsets, high watermark, leader epochs, producer
state, and the replicas' progress when this node leads it.

Offsets are assigned when a batch is appended (on the event loop, so requests keep their
order). A batch counts for replication once its transaction has committed here
(`local_end`); consumers see it once the high watermark — the smallest log end offset
over the ISR — passes it. Followers copy the leader's batches byte for byte, offsets and
leader epochs included, and truncate where their log diverges from the leader's.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from kafka import errors

from broker.errors import RequestError
from broker.records import Batch
from broker.storage import Storage

log = logging.getLogger(__name__)

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


@dataclass
class FollowerProgress:
    """What the leader knows of one follower, from its fetches."""
    end_offset: int = -1          # the follower's log end offset (its last fetch offset)
    last_caught_up: float = 0.0   # monotonic time it last had everything the leader had
    last_fetch: float = 0.0       # monotonic time of its last fetch
    leader_end_at_last_fetch: int = 0


def next_sequence(sequence: int) -> int:
    return 0 if sequence == INT32_MAX else sequence + 1


class PartitionLog:
    def __init__(self, storage: Storage, pid: int, topic: str, index: int, node_id: int,
                 log_start_offset: int = 0, end_offset: int = 0, size: int = 0):
        self.storage = storage
        self.pid = pid
        self.topic = topic
        self.index = index
        self.node_id = node_id
        self.log_start_offset = log_start_offset
        self.end_offset = end_offset            # next offset to assign
        self.local_end = end_offset             # end of what is committed to disk here
        self.high_watermark = 0  # known again once this node leads or hears from the leader
        self.size = size
        self.leader_epoch = -1
        self.leader = -1
        self.replicas: list[int] = []
        self.isr: list[int] = []
        self.partition_epoch = -1
        # An ISR this leader proposed to the controller (AlterPartition) and has not yet
        # seen the outcome of, and the partition epoch it was proposed against.
        self.proposed_isr: list[int] | None = None
        self.proposed_against = -1
        self.epoch_starts: list[tuple[int, int]] = []  # (leader epoch, first offset)
        self.followers: dict[int, FollowerProgress] = {}
        self.producers: dict[int, ProducerState] = {}
        self._waiters: set[asyncio.Future] = set()

    @property
    def is_leader(self) -> bool:
        return self.leader == self.node_id

    def check_leader(self) -> None:
        if not self.is_leader:
            raise RequestError(errors.NotLeaderForPartitionError,
                               f"node {self.node_id} is not the leader of {self.topic}-{self.index}"
                               f" (leader: {self.leader})")

    # -- roles --------------------------------------------------------------------------

    def become_leader(self, epoch: int, replicas: list[int], isr: list[int],
                      partition_epoch: int = -1) -> None:
        new_epoch = epoch != self.leader_epoch or not self.is_leader
        if not new_epoch and partition_epoch < self.partition_epoch:
            return  # older than the state the controller's answer gave (isr_changed)
        self.leader, self.leader_epoch, self.replicas, self.isr = self.node_id, epoch, replicas, isr
        self.partition_epoch = partition_epoch
        if new_epoch or partition_epoch > self.proposed_against:
            self.proposed_isr = None  # its outcome is in this state, whatever it was
        if new_epoch:
            self._start_epoch(epoch, self.end_offset)
            now = time.monotonic()
            # ISR members get a full lag allowance from now, as in Kafka.
            self.followers = {r: FollowerProgress(last_caught_up=now if r in isr else 0.0)
                              for r in replicas if r != self.node_id}
        self._update_high_watermark()
        self._wake()

    def become_follower(self, leader: int, epoch: int, replicas: list[int], isr: list[int],
                        partition_epoch: int = -1) -> None:
        self.leader, self.leader_epoch, self.replicas, self.isr = leader, epoch, replicas, isr
        self.partition_epoch = partition_epoch
        self.proposed_isr = None
        self.followers = {}
        self._wake()  # acks=all waits on this partition learn they lost leadership

    def _start_epoch(self, epoch: int, offset: int) -> None:
        if not self.epoch_starts or self.epoch_starts[-1][0] < epoch:
            self.epoch_starts.append((epoch, offset))

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """Kafka's OffsetsForLeaderEpoch: the largest epoch <= `epoch` in this log and the
        offset where it ends (where the next epoch starts, or the log end). An epoch older
        than every epoch here ends where the first one starts: a former leader of an empty
        log asks with an epoch that never reached its successor's log. An undefined epoch,
        or one newer than every epoch here, gets (-1, -1), as from Kafka's epoch cache."""
        found = (-1, -1)
        if epoch < 0 or epoch > self.last_epoch:
            return found
        for position, (start_epoch, start_offset) in enumerate(self.epoch_starts):
            if start_epoch > epoch:
                if position == 0:
                    found = (epoch, start_offset)
                break
            following = self.epoch_starts[position + 1:position + 2]
            found = (start_epoch, following[0][1] if following else self.local_end)
        return found

    @property
    def last_epoch(self) -> int:
        return self.epoch_starts[-1][0] if self.epoch_starts else -1

    # -- producer idempotence ----------------------------------------------------------

    def restore_producers(self, rows: list[tuple]) -> None:
        for producer_id, epoch, base_sequence, base_offset, last_offset in rows:
            self._remember(producer_id, epoch, base_sequence,
                           base_sequence + last_offset - base_offset, base_offset)

    def _check_sequence(self, batch: Batch) -> int | None:
        """Returns the original base offset of a retried batch, None for a new one."""
        state = self.producers.get(batch.producer_id)
        if state is not None and batch.producer_epoch < state.epoch:
            raise RequestError(errors.InvalidProducerEpochError,
                               f"producer epoch {batch.producer_epoch} is older than {state.epoch}")
        if state is None:
            # No state (new, or its batches are gone): any sequence starts it, as in Kafka.
            return None
        if batch.producer_epoch > state.epoch:
            if batch.base_sequence != 0:
                self._refuse_sequence(batch, state, "a new producer epoch must start at sequence 0")
            return None
        for first, last, base_offset in state.batches:
            if first == batch.base_sequence and last == batch.last_sequence:
                return base_offset
        expected = next_sequence(state.last_sequence)
        if batch.base_sequence != expected:
            self._refuse_sequence(batch, state, f"expected sequence {expected}")
        return None

    def _refuse_sequence(self, batch: Batch, state: ProducerState, reason: str) -> None:
        # Rare and decisive: librdkafka bumps its epoch or fails on this answer, so the
        # node log says exactly what it was refused against.
        message = (f"{self.topic}-{self.index}: producer {batch.producer_id} epoch "
                   f"{batch.producer_epoch} sequences {batch.base_sequence}..{batch.last_sequence}"
                   f" refused: {reason}")
        log.warning("%s (leader epoch %d, log end %d, known epoch %d, recent batches "
                    "(first, last, offset) %s)", message, self.leader_epoch, self.end_offset,
                    state.epoch, list(state.batches))
        raise RequestError(errors.OutOfOrderSequenceNumberError, message)

    def _remember(self, producer_id: int, epoch: int, first: int, last: int, base_offset: int) -> None:
        state = self.producers.get(producer_id)
        if state is None or state.epoch != epoch:
            state = self.producers[producer_id] = ProducerState(epoch)
        state.batches.append((first, last, base_offset))

    # -- append -------------------------------------------------------------------------

    def append(self, batches: list[Batch], log_append_time_ms: int | None
               ) -> tuple[int, int, asyncio.Future | None]:
        """Leader append: assign offsets and queue the batches for the next commit.

        Returns the base offset of the first batch, the end offset the producer must see
        replicated, and the commit future (None when every batch was a retry already in
        the log: the producer gets the original offset).
        """
        self.check_leader()
        idempotent = [b for b in batches if b.producer_id >= 0]
        duplicates = {id(b): self._check_sequence(b) for b in idempotent}
        first_offset = None
        commit = None
        for batch in batches:
            original = duplicates.get(id(batch))
            if original is not None:
                first_offset = original if first_offset is None else first_offset
                continue
            base_offset = self.end_offset
            batch.stamp(base_offset, self.leader_epoch)
            if log_append_time_ms is not None:  # a LogAppendTime topic
                batch.set_log_append_time(log_append_time_ms)
            commit = self._store(batch, base_offset, self.leader_epoch)
            first_offset = base_offset if first_offset is None else first_offset
        return first_offset, self.end_offset, commit

    def append_replicated(self, batches: list[Batch]) -> asyncio.Future | None:
        """Follower append: the leader's batches as they are, offsets and epochs included."""
        commit = None
        for batch in batches:
            if batch.last_offset < self.end_offset:
                continue  # already have it (a refetch after a timeout)
            # A gap is where compaction removed whole batches; an overlap is corrupt.
            if batch.base_offset < self.end_offset:
                raise RequestError(errors.CorruptRecordError,
                                   f"{self.topic}-{self.index}: leader sent offset "
                                   f"{batch.base_offset}, expected {self.end_offset}")
            commit = self._store(batch, batch.base_offset, batch.leader_epoch)
        return commit

    def _store(self, batch: Batch, base_offset: int, epoch: int) -> asyncio.Future:
        self._start_epoch(epoch, base_offset)
        if batch.producer_id >= 0:
            self._remember(batch.producer_id, batch.producer_epoch, batch.base_sequence,
                           batch.last_sequence, base_offset)
        self.end_offset = base_offset + batch.last_offset_delta + 1
        end, size = self.end_offset, batch.size
        return self.storage.append_batch(self.pid, batch, lambda: self._committed(end, size))

    def _committed(self, end: int, size: int) -> None:
        self.size += size  # bytes stored: a batch whose commit fails never counts
        if end > self.local_end:
            self.local_end = end
            self._update_high_watermark()
            self._wake()  # followers long-polling for new data, and acks=all waits

    def rollback(self) -> None:
        """After a failed commit, forget offsets that were assigned but never stored."""
        self.end_offset = self.local_end

    def truncate(self, offset: int) -> asyncio.Future:
        """Drop everything from `offset` on: the suffix the new leader never had."""
        offset = max(offset, self.high_watermark if self.is_leader else 0)
        self.end_offset = self.local_end = offset
        self.high_watermark = min(self.high_watermark, offset)
        self.epoch_starts = [(e, start) for e, start in self.epoch_starts if start < offset]
        forgotten = []
        for producer_id, state in self.producers.items():
            while state.batches and state.batches[-1][2] >= offset:
                state.batches.pop()
            if not state.batches:
                forgotten.append(producer_id)
        return asyncio.ensure_future(self._truncated(self.storage.truncate(self.pid, offset),
                                                     offset, forgotten))

    async def _truncated(self, truncation: asyncio.Future, offset: int,
                         forgotten_producers: list[int]) -> None:
        await truncation
        # The fetcher waits for this before it fetches again: what is left is all there is.
        self.size = await self.storage.size_below(self.pid, offset)
        await self._recall_producers(forgotten_producers)

    async def _recall_producers(self, producer_ids: list[int]) -> None:
        """Producers whose every remembered batch was truncated get their newest batches
        left in the log back, as Kafka rebuilds producer state from the log: without them
        the next sequence looked out of order, and an idempotent producer stalled on this
        node once it led again."""
        for producer_id in producer_ids:
            rows = await self.storage.producer_batches(self.pid, producer_id,
                                                       PRODUCER_BATCHES_KEPT)
            state = self.producers.get(producer_id)
            if state is None or state.batches:
                continue  # its batches arrived since (replicated, or appended as leader)
            del self.producers[producer_id]  # unknown if none is left: any sequence starts it
            self.restore_producers(rows)

    def start_over(self, offset: int) -> asyncio.Future:
        """Follower whose whole log precedes the leader's log start: empty it and begin
        at `offset`."""
        self.log_start_offset = self.end_offset = self.local_end = self.high_watermark = offset
        self.size = 0
        self.epoch_starts = []
        self.producers = {}
        self.storage.write("UPDATE partitions SET log_start_offset = ? WHERE id = ?",
                           (offset, self.pid))
        return self.storage.truncate(self.pid, 0)

    # -- replication progress (leader) -------------------------------------------------

    def follower_fetched(self, follower: int, offset: int) -> None:
        progress = self.followers.get(follower)
        if progress is None:
            return
        now = time.monotonic()
        if offset >= self.local_end:
            progress.last_caught_up = now
        elif offset >= progress.leader_end_at_last_fetch:
            # It has what we had at its previous fetch: caught up as of that fetch.
            progress.last_caught_up = max(progress.last_caught_up, progress.last_fetch)
        progress.end_offset = offset
        progress.last_fetch = now
        progress.leader_end_at_last_fetch = self.local_end
        self._update_high_watermark()

    def _update_high_watermark(self) -> None:
        if not self.is_leader:
            return
        ends = [self.local_end] + [self.followers[r].end_offset for r in self.maximal_isr
                                   if r in self.followers]
        hw = min(ends)
        if hw > self.high_watermark:
            self.high_watermark = hw
            self._wake()

    def follower_high_watermark(self, leader_hw: int) -> None:
        hw = min(leader_hw, self.local_end)
        if hw > self.high_watermark:
            self.high_watermark = hw
            self._wake()

    @property
    def maximal_isr(self) -> list[int] | set[int]:
        """The replicas the high watermark waits for: the ISR and, while an expansion is
        proposed, the replicas it adds (Kafka's maximal ISR). The controller may already
        have committed them: one of them can be elected leader, so whatever is
        acknowledged must be on it too."""
        if not self.proposed_isr:
            return self.isr  # the usual case, on every commit and follower fetch
        return set(self.isr).union(self.proposed_isr)

    def propose_isr(self, isr: list[int]) -> None:
        self.proposed_isr, self.proposed_against = isr, self.partition_epoch

    def isr_changed(self, isr: list[int], leader_epoch: int, partition_epoch: int) -> None:
        """The controller committed the proposed ISR (its answer may come before the
        metadata record does)."""
        if not self.is_leader or leader_epoch != self.leader_epoch:
            return  # leadership moved on meanwhile
        if partition_epoch > self.partition_epoch:
            self.isr, self.partition_epoch = isr, partition_epoch
        self.proposed_isr = None
        self._update_high_watermark()

    def isr_changes(self, lag_time_max: float) -> list[int] | None:
        """The ISR this leader should propose, or None: lagging followers out, caught-up
        replicas back in (once they hold everything up to the high watermark and the
        start of this leader's epoch)."""
        now = time.monotonic()
        epoch_start = self.epoch_starts[-1][1] if self.epoch_starts else 0
        isr = [r for r in self.isr
               if r == self.node_id or now - self.followers[r].last_caught_up <= lag_time_max]
        for replica, progress in self.followers.items():
            if (replica not in isr and progress.end_offset >= self.high_watermark
                    and progress.end_offset >= epoch_start
                    and now - progress.last_caught_up <= lag_time_max):
                isr.append(replica)
        return isr if sorted(isr) != sorted(self.isr) else None

    # -- reads --------------------------------------------------------------------------

    async def read(self, offset: int, max_bytes: int, end: int | None = None) -> bytes:
        """Whole batches from `offset`, below `end` (the high watermark by default)."""
        end = self.high_watermark if end is None else end
        if offset >= end:
            return b""
        blobs = await self.storage.read_batches(self.pid, offset, end, max_bytes)
        return b"".join(blobs)

    def new_data_waiter(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        waiter = loop.create_future()
        self._waiters.add(waiter)
        waiter.add_done_callback(self._waiters.discard)
        return waiter

    async def wait_replicated(self, end: int, timeout: float, min_insync: int) -> None:
        """acks=all: until the high watermark reaches `end`, while this node leads.

        If the ISR shrank below `min_insync` meanwhile, the records reached fewer replicas
        than the topic asks for: the answer is NOT_ENOUGH_REPLICAS_AFTER_APPEND (a client
        retries it as possibly written), as in Kafka.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Leadership is checked first, as in Kafka: once this node follows, its high
        # watermark comes from the new leader's log, where `end` may hold other records.
        while True:
            self.check_leader()
            if self.high_watermark >= end:
                break
            left = deadline - loop.time()
            if left <= 0:
                raise RequestError(errors.RequestTimedOutError,
                                   f"replication did not reach offset {end} in time "
                                   f"(ISR {self.isr})")
            waiter = self.new_data_waiter(loop)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await waiter
        if len(self.maximal_isr) < min_insync:
            raise RequestError(errors.NotEnoughReplicasAfterAppendError,
                               f"written, but the ISR shrank to {sorted(self.maximal_isr)}, "
                               f"below min.insync.replicas={min_insync}")

    def close(self) -> None:
        """The partition is gone (topic deleted): release everything waiting on it."""
        self.leader = -1
        self.high_watermark = self.end_offset = self.local_end = self.log_start_offset
        self._wake()

    def _wake(self) -> None:
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.set_result(None)
