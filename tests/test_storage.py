"""Storage's group commit on real SQLite: what a failed commit leaves behind, and the
WAL's size under writes that never pause.

A write fails here the way a full disk makes it fail, inside SQLite: a trigger, added
through a connection of the test's own, aborts the INSERT of any batch over 1,000 bytes.
"""
from __future__ import annotations

import asyncio
import os
import sqlite3

import pytest

from broker.partition import PartitionLog
from broker.records import replicated_batches, split_batches
from broker.storage import INLINE_MAX_BATCHES, INSERT_BATCH, Storage
from test_bad_input import PRODUCE_V, batch
from test_partition_log import LEADER, open_log

SMALL, LARGE = [b"v" * 10], [b"v" * 2_000]


@pytest.fixture
async def log(tmp_path):
    log = await open_log(tmp_path / "node.db")
    log.become_leader(1, [LEADER], [LEADER], partition_epoch=0)
    log.storage.on_failure = log.rollback  # what the node does for every partition
    with sqlite3.connect(tmp_path / "node.db") as db:
        db.execute("CREATE TRIGGER disk_full BEFORE INSERT ON batches WHEN NEW.size > 1000"
                   " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    yield log
    await log.storage.close()


def append(log: PartitionLog, values: list[bytes]):
    return log.append(split_batches(batch(values), 1 << 20, PRODUCE_V), None)[2]


async def stored_offsets(log: PartitionLog) -> list[int]:
    blobs = await log.storage.read_batches(log.pid, 0, 1 << 30, 1 << 30)
    return [b.base_offset for blob in blobs for b in replicated_batches(blob)]


# One batch is written on the event loop; more than INLINE_MAX_BATCHES, in the writer's thread.
@pytest.mark.parametrize("group", [1, INLINE_MAX_BATCHES + 1])
async def test_a_failed_commit_fails_its_whole_group_and_the_log_carries_on(log, group):
    await append(log, SMALL)
    # One group: the writes are queued before the writer wakes up.
    commits = [append(log, SMALL) for _ in range(group - 1)] + [append(log, LARGE)]
    for commit in commits:
        with pytest.raises(sqlite3.DatabaseError, match="disk is full"):
            await commit
    assert log.end_offset == 1  # the failed group's offsets are given out again
    assert await stored_offsets(log) == [0]
    assert log.size == len(batch(SMALL))  # nor do its bytes count

    await append(log, SMALL)
    assert await stored_offsets(log) == [0, 1]
    assert log.high_watermark == 2
    assert log.size == 2 * len(batch(SMALL))


async def test_a_failed_transaction_is_rolled_back(log):
    """Compaction's delete-and-rewrite is one transaction: when the rewrite fails, the
    deleted batch is still there, and the next write is not caught in the transaction."""
    await append(log, SMALL)
    rewritten = replicated_batches(batch(LARGE))
    with pytest.raises(sqlite3.DatabaseError, match="disk is full"):
        await log.storage.replace_batches(log.pid, [0], rewritten)
    assert await stored_offsets(log) == [0]

    await append(log, SMALL)
    assert await stored_offsets(log) == [0, 1]


async def test_the_wal_is_restarted_under_writes_that_never_pause(tmp_path):
    """Writers that always have a write in flight never leave SQLite the moment it needs to
    restart the WAL: a checkpoint copied to the WAL's end, then a write beginning. Unless
    the storage makes that moment, the WAL file keeps every page written since the writes
    began (here all 80 MB) on top of the database."""
    limit, value, batches, writers = 1 << 20, os.urandom(80_000), 1000, 4
    storage = Storage(tmp_path / "node.db", wal_size_limit=limit, checkpoint_interval=0.02)
    await storage.open()
    wal = tmp_path / "node.db-wal"
    largest = 0

    async def write(first: int) -> None:
        nonlocal largest
        for offset in range(first, batches, writers):
            await storage.write(INSERT_BATCH, (1, offset, offset, 0, 0, -1, -1, -1,
                                               len(value), value))
            largest = max(largest, wal.stat().st_size)

    try:
        await asyncio.gather(*(write(first) for first in range(writers)))
        stored = await storage.read_batches(1, 0, batches, 1 << 30)
    finally:
        await storage.close()
    assert stored == [value] * batches
    # Restarted, the WAL holds what came in between two checkpoints: here about 10 MB.
    assert largest < batches * len(value) // 2
