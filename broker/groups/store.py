"""One `__consumer_offsets` partition led by this node: its groups and committed offsets.

The partition log is the store. Every change (a commit, a completed rebalance, a
deletion) is appended as records and answered only once every in-sync replica has it
(acks=all), so a new leader of the partition holds all of it: when this node becomes
leader it reads the log from the start to rebuild the groups, answering
COORDINATOR_LOAD_IN_PROGRESS meanwhile.

Writes that arrive in the same turn of the event loop share one append, the way the
storage writer shares one transaction: a pipelining client's commits cost one batch,
not one each. In that batch a key gets one record, its last value: the ones before it
would be replaced in the same append, and compaction would drop them anyway.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from kafka import errors

from broker.errors import RequestError
from broker.groups.group import Group, GroupSettings
from broker.groups.records import (
    CommittedOffset, GroupRecord, OffsetRecord, build_batches, decode, group_key, group_value,
)
from broker.partition import PartitionLog
from broker.records import replicated_batches

log = logging.getLogger(__name__)

LOAD_READ_BYTES = 4 * 1024 * 1024

# What a failed append means to a client of the coordinator (Kafka's mapping).
APPEND_ERRORS = {
    errors.UnknownTopicOrPartitionError: errors.CoordinatorNotAvailableError,
    errors.NotEnoughReplicasError: errors.CoordinatorNotAvailableError,
    errors.NotEnoughReplicasAfterAppendError: errors.CoordinatorNotAvailableError,
    errors.RequestTimedOutError: errors.CoordinatorNotAvailableError,
    errors.NotLeaderForPartitionError: errors.NotCoordinatorError,
    errors.KafkaStorageError: errors.NotCoordinatorError,
}

# A value is bytes, None (a tombstone), or a committed offset, encoded when the batch is built.
Records = list[tuple[bytes, bytes | CommittedOffset | None]]


class OffsetsPartition:
    def __init__(self, log_: PartitionLog, settings: GroupSettings, epoch: int,
                 min_insync: Callable[[], int], commit_timeout: float):
        self.log = log_
        self.epoch = epoch  # the leader epoch this node leads the partition in
        self.settings = settings
        self.min_insync = min_insync
        self.commit_timeout = commit_timeout
        self.loaded = False
        self.groups: dict[str, Group] = {}
        self._queued: list[tuple[Records, asyncio.Future]] = []
        self._tasks: set[asyncio.Task] = set()  # replication waits under way (kept referenced)

    @property
    def index(self) -> int:
        return self.log.index

    def group(self, group_id: str, create: bool = False) -> Group | None:
        group = self.groups.get(group_id)
        if group is None and create:
            group = self.groups[group_id] = Group(group_id, self.settings, self.store_group)
        return group

    # -- loading ------------------------------------------------------------------------

    async def load(self) -> None:
        """Replay the log, in order, into groups and offsets."""
        stored: dict[str, GroupRecord] = {}
        offset, end = self.log.log_start_offset, self.log.local_end
        while offset < end:
            blobs = await self.log.read(offset, LOAD_READ_BYTES, end)
            if not blobs:
                break
            for batch in replicated_batches(blobs):
                if batch.next_offset <= offset:
                    continue
                offset = batch.next_offset
                if batch.is_control:
                    continue
                for record in batch.records():
                    decoded = decode(record.key, record.value, record.offset) if record.key else None
                    if isinstance(decoded, GroupRecord):
                        stored[decoded.group] = decoded
                    elif isinstance(decoded, OffsetRecord):
                        self._replay_offset(decoded)
        # A group lives on while it has a stored generation or committed offsets.
        live = {name for name, record in stored.items() if record.value is not None}
        self.groups = {name: g for name, g in self.groups.items() if g.offsets or name in live}
        for name in live:
            self.group(name, create=True).restore(stored[name].value)
        self.loaded = True
        log.info("loaded %d groups from __consumer_offsets-%d (offsets %d..%d)",
                 len(self.groups), self.index, self.log.log_start_offset, end)

    def _replay_offset(self, record: OffsetRecord) -> None:
        tp = (record.topic, record.partition)
        if record.value is None:
            group = self.groups.get(record.group)
            if group is not None:
                group.offsets.pop(tp, None)
        else:
            self.group(record.group, create=True).offsets[tp] = record.value

    # -- writing ------------------------------------------------------------------------

    def start_write(self, records: Records) -> asyncio.Future:
        """Queue records for this turn's append. Once every in-sync replica has them, the
        future gives each record's offset in the log, or None for a record that a later
        write of this turn replaced (same key) and that was not written. It fails with the
        RequestError a coordinator answers. Cancelling it cancels only this write's wait:
        the flush and the replication wait skip futures that are done."""
        loop = asyncio.get_running_loop()
        if not self._queued:
            loop.call_soon(self._flush)
        future = loop.create_future()
        self._queued.append((records, future))
        return future

    async def write(self, records: Records) -> None:
        await self.start_write(records)

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        records = [r for batch, _ in queued for r in batch]
        futures = [f for _, f in queued]
        # Of records with the same key, only the last is written: it would replace the
        # others in the same append (and compaction would drop them). A consumer that
        # commits after each record commits the same partitions again and again.
        last = {key: i for i, (key, _) in enumerate(records)}
        kept = sorted(last.values()) if len(last) < len(records) else range(len(records))
        try:
            if len(self.log.isr) < self.min_insync():
                raise RequestError(errors.NotEnoughReplicasError,
                                   f"{len(self.log.isr)} in-sync replicas of "
                                   f"__consumer_offsets-{self.index}")
            # Batches this broker built: framed and checked like a leader's, not a producer's.
            batches = replicated_batches(b"".join(build_batches([records[i] for i in kept])))
            base, end, commit = self.log.append(batches, log_append_time_ms=None)
        except RequestError as exc:
            self._fail(futures, exc)
            return
        written: list[int | None] = [None] * len(records)  # each record's offset in the log
        for position, i in enumerate(kept):
            written[i] = base + position
        offsets, start = [], 0
        for batch, _ in queued:
            offsets.append(written[start:start + len(batch)])
            start += len(batch)
        task = asyncio.ensure_future(self._replicate(commit, end, futures, offsets))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _replicate(self, commit: asyncio.Future, end: int, futures: list[asyncio.Future],
                         offsets: list[list[int | None]]) -> None:
        try:
            await commit
            await self.log.wait_replicated(end, self.commit_timeout, self.min_insync())
        except RequestError as exc:
            self._fail(futures, exc)
            return
        except Exception as exc:  # the storage writer failed
            log.warning("__consumer_offsets-%d: append failed: %r", self.index, exc)
            self._fail(futures, RequestError(errors.KafkaStorageError, str(exc)))
            return
        for future, written in zip(futures, offsets):
            if not future.done():
                future.set_result(written)

    @staticmethod
    def _fail(futures: list[asyncio.Future], exc: RequestError) -> None:
        mapped = APPEND_ERRORS.get(exc.error)
        error = RequestError(mapped, exc.message) if mapped else exc
        for future in futures:
            if not future.done():
                future.set_exception(error)

    async def store_group(self, group: Group, assignments: dict[str, bytes]) -> None:
        await self.write([(group_key(group.group_id),
                           group_value(group.stored_value(assignments)))])

    def unload(self) -> None:
        """Leadership moved: every group here is answered NOT_COORDINATOR from now on."""
        error = RequestError(errors.NotCoordinatorError,
                             f"__consumer_offsets-{self.index} moved to another node")
        for group in self.groups.values():
            group.unload(error)
        self.groups.clear()
        # Writes under way end by themselves: waiting for replication on a partition this
        # node no longer leads fails with NOT_LEADER_OR_FOLLOWER, answered NOT_COORDINATOR.
