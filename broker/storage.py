"""SQLite storage for one node: topics, partitions and record batches in one WAL database.

Each batch is one row holding the producer's bytes. Writes go through a single writer
task with group commit: every write that arrives while a transaction is being written
joins the next one, so a busy node commits many batches per transaction and a quiet one
commits each at once. Reads use their own connection and see committed data only.

Reads and checkpoints go through aiosqlite, a thread per connection. The writer is a
plain sqlite3 connection with a thread of its own, because a small group is cheaper to
write on the event loop than to hand over: the two thread switches cost more than the
write, at the p50 and far more at the p99. aiosqlite has no way to run a call on the
caller's thread, so the writer's thread is an executor of one.
"""
from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import aiosqlite

from broker.records import Batch

log = logging.getLogger(__name__)

SCHEMA = """
-- The partition logs this node holds. topic_id tells a re-created topic from the old one.
CREATE TABLE IF NOT EXISTS partitions (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    topic_id BLOB,
    partition INTEGER NOT NULL,
    log_start_offset INTEGER NOT NULL DEFAULT 0
);
-- Columns before `data` are read without touching the blob's overflow pages.
CREATE TABLE IF NOT EXISTS batches (
    pid INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    max_timestamp INTEGER NOT NULL,
    leader_epoch INTEGER NOT NULL,
    producer_id INTEGER NOT NULL,
    producer_epoch INTEGER NOT NULL,
    base_sequence INTEGER NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
);
-- Covering index: a fetch plans its byte budget from the index alone.
CREATE INDEX IF NOT EXISTS batches_by_offset ON batches (pid, base_offset, size);
-- Idempotent producers' newest batches, to rebuild their state on restart.
CREATE INDEX IF NOT EXISTS batches_by_producer ON batches (pid, producer_id, base_offset)
    WHERE producer_id >= 0;
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

CHECKPOINT_INTERVAL = 1.0  # seconds
# A group of appends this small is written on the event loop (about 100-300 µs here);
# bigger ones, or any with an fsync, go to the writer's thread so the loop keeps serving.
INLINE_MAX_BATCHES = 4
INLINE_MAX_BYTES = 64 * 1024
# The WAL is restarted (written again from its start) once it outgrows this, and its
# file is cut back to this size.
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes
# Checkpoint passes made while writes go on before the last one, made with writes held:
# each copies what was written during the one before, so they get shorter and shorter.
CATCH_UP_PASSES = 4

INSERT_BATCH = (
    "INSERT INTO batches (pid, base_offset, last_offset, max_timestamp, leader_epoch, producer_id,"
    " producer_epoch, base_sequence, size, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
BATCH_COLUMNS = 10
BATCH_SIZE_COLUMN = 8  # in INSERT_BATCH's parameters
# SQLite binds at most 32,766 parameters per statement.
MAX_BATCHES_PER_INSERT = 32_766 // BATCH_COLUMNS


@functools.lru_cache(maxsize=64)
def insert_batches(count: int) -> str:
    """One INSERT of `count` batch rows: a single statement is atomic on its own."""
    return INSERT_BATCH + ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" * (count - 1)

# Whole batches from the one holding `offset`, below the high watermark, within the
# byte budget; the first batch is returned even when it alone is over the budget (KIP-74).
READ_BATCHES = """
WITH candidates AS (
    SELECT rowid AS rid, base_offset, size FROM batches
    WHERE pid = :pid
      -- From the batch holding :offset; in a gap compaction left, from the next batch.
      AND base_offset >= COALESCE(
          (SELECT CASE WHEN last_offset >= :offset THEN base_offset ELSE :offset END
           FROM batches WHERE pid = :pid AND base_offset <= :offset
           ORDER BY base_offset DESC LIMIT 1),
          :offset)
      AND base_offset < :end
    ORDER BY base_offset LIMIT :max_rows),
budgeted AS (
    SELECT rid, base_offset,
           SUM(size) OVER (ORDER BY base_offset ROWS UNBOUNDED PRECEDING) AS upto,
           ROW_NUMBER() OVER (ORDER BY base_offset) AS n
    FROM candidates)
SELECT batches.data FROM budgeted JOIN batches ON batches.rowid = budgeted.rid
WHERE budgeted.upto <= :max_bytes OR budgeted.n = 1
ORDER BY budgeted.base_offset
"""


def _failure_seen(waiter: asyncio.Future) -> None:
    """The writer logs a failed commit; a writer that never awaits its future (acks=0)
    is not another error to report."""
    if not waiter.cancelled():
        waiter.exception()


def _appends_only(statements: list[tuple[str, Any]]) -> bool:
    return all(sql == INSERT_BATCH for sql, _ in statements)


def _small(statements: list[tuple[str, Any]]) -> bool:
    """Few appends of few bytes: quicker to write than to hand to the writer's thread."""
    return (len(statements) <= INLINE_MAX_BATCHES and _appends_only(statements)
            and sum(params[BATCH_SIZE_COLUMN] for _, params in statements) <= INLINE_MAX_BYTES)


def batch_row(pid: int, batch: Batch) -> tuple:
    return (pid, batch.base_offset, batch.last_offset, batch.max_timestamp, batch.leader_epoch,
            batch.producer_id, batch.producer_epoch, batch.base_sequence, batch.size, batch.data)


@dataclass
class StoredPartition:
    id: int
    topic: str
    topic_id: bytes | None
    partition: int
    log_start_offset: int
    end_offset: int  # one past the last stored offset
    size: int


class Storage:
    def __init__(self, path: Path, fsync_every_commit: bool = False,
                 wal_size_limit: int = WAL_SIZE_LIMIT,
                 checkpoint_interval: float = CHECKPOINT_INTERVAL):
        self.path = path
        self._fsync = fsync_every_commit
        self._wal_size_limit = wal_size_limit
        self._checkpoint_interval = checkpoint_interval
        self._page_size = 0  # read when the database is open
        # Held by the write loop while it writes a group, and by the checkpoint that lets
        # the WAL restart.
        self._writing = asyncio.Lock()
        self._writer: sqlite3.Connection | None = None
        self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="storage-writer")
        self._reader: aiosqlite.Connection | None = None
        self._checkpointer: aiosqlite.Connection | None = None
        self._pending: list[tuple[str, Any, Callable[[], None] | None]] = []
        self._commit: asyncio.Future | None = None
        self._wakeup = asyncio.Event()
        self._writer_task: asyncio.Task | None = None
        self.commits = 0
        # Called after a failed commit, so the owner can forget what was not stored.
        self.on_failure: Callable[[], None] = lambda: None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: a group of appends is one multi-row INSERT, its own transaction, and
        # so one call into SQLite; other groups open their transaction with BEGIN.
        # No statement cache: a cached statement keeps a copy of the blobs last bound to
        # it, and an INSERT per group size would keep tens of MB of batches alive.
        self._writer = await self._in_writer_thread(self._open_writer)
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        await self._reader.execute("PRAGMA query_only=ON")
        self._checkpointer = await aiosqlite.connect(self.path, isolation_level=None)
        async with self._checkpointer.execute("PRAGMA page_size") as cursor:
            (self._page_size,) = await cursor.fetchone()
        self._writer_task = asyncio.create_task(self._write_loop(), name="storage-writer")
        self._checkpoint_task = asyncio.create_task(self._checkpoint_loop(), name="checkpoints")

    def _open_writer(self) -> sqlite3.Connection:
        # Used by one caller at a time: the write loop, on the event loop or in its thread.
        writer = sqlite3.connect(self.path, isolation_level=None, cached_statements=0,
                                 check_same_thread=False)
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'NORMAL'}")
        # Checkpoints (and their fsync) run on their own connection, never inside a commit.
        writer.execute("PRAGMA wal_autocheckpoint=0")
        # Once a checkpoint has emptied it, the WAL file shrinks back to this size instead
        # of keeping the largest size a burst of writes ever gave it.
        writer.execute(f"PRAGMA journal_size_limit={self._wal_size_limit}")
        writer.executescript(SCHEMA)
        return writer

    async def _in_writer_thread(self, function: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._writer_thread, function,
                                                                *args)

    async def close(self) -> None:
        try:
            if self._writer_task is not None:
                await self.flush()
                for task in (self._writer_task, self._checkpoint_task):
                    task.cancel()
                    try:
                        await task
                    except asyncio.CancelledError:
                        pass
        finally:
            # Whatever went wrong above: each connection's thread keeps the process from
            # exiting until the connection is closed.
            for conn in (self._checkpointer, self._reader):
                if conn is not None:
                    await conn.close()
            if self._writer is not None:
                await self._in_writer_thread(self._writer.close)
            self._writer_thread.shutdown()

    # -- writes -------------------------------------------------------------------------

    def write(self, sql: str, params: Any,
              on_commit: Callable[[], None] | None = None) -> asyncio.Future:
        """Queue a statement for the next group commit; returns a future of the commit.

        `on_commit` runs on the event loop after the transaction is durable, in queue
        order, before anyone awaiting the future wakes up.
        """
        self._pending.append((sql, params, on_commit))
        if self._commit is None:
            self._commit = asyncio.get_running_loop().create_future()
            self._wakeup.set()
        # Each writer gets its own future: a waiter that is cancelled (its client went
        # away) must not cancel the commit every other writer in the group waits for.
        waiter = asyncio.shield(self._commit)
        waiter.add_done_callback(_failure_seen)
        return waiter

    def append_batch(self, pid: int, batch: Batch,
                     on_commit: Callable[[], None] | None) -> asyncio.Future:
        return self.write(INSERT_BATCH, batch_row(pid, batch), on_commit)

    def replace_batches(self, pid: int, dropped: list[int], rewritten: list[Batch]) -> asyncio.Future:
        """Compaction's result, in one transaction: batches gone, and batches rewritten
        under their base offsets."""
        committed = None
        for base_offset in dropped + [b.base_offset for b in rewritten]:
            committed = self.write("DELETE FROM batches WHERE pid = ? AND base_offset = ?",
                                   (pid, base_offset))
        for batch in rewritten:
            committed = self.write(INSERT_BATCH, batch_row(pid, batch))
        return committed

    async def flush(self) -> None:
        if self._commit is not None:
            await asyncio.shield(self._commit)

    async def _write_loop(self) -> None:
        assert self._writer is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            pending, self._pending = self._pending, []
            commit, self._commit = self._commit, None
            if not pending:
                continue
            statements = [(sql, params) for sql, params, _ in pending]
            try:
                async with self._writing:
                    if not self._fsync and _small(statements):
                        self._write_group(statements)
                    else:
                        await self._in_writer_thread(self._write_group, statements)
            except Exception as exc:  # disk full, I/O error: every write in it fails
                log.exception("storage commit failed")
                self.on_failure()
                if commit is not None and not commit.done():
                    commit.set_exception(exc)
                    commit.exception()  # seen through the writers' own futures
                continue
            self.commits += 1
            for _, _, on_commit in pending:
                if on_commit is not None:
                    on_commit()
            if commit is not None and not commit.done():
                commit.set_result(None)

    def _write_group(self, statements: list[tuple[str, Any]]) -> None:
        """Write the statements in one transaction; all or nothing."""
        if _appends_only(statements) and len(statements) <= MAX_BATCHES_PER_INSERT:
            # The produce path: one multi-row INSERT is its own transaction.
            self._writer.execute(
                insert_batches(len(statements)),
                list(itertools.chain.from_iterable(params for _, params in statements)))
            return
        try:
            self._writer.execute("BEGIN")
            # Consecutive statements with the same SQL become one executemany call.
            for sql, group in itertools.groupby(statements, key=lambda statement: statement[0]):
                self._writer.executemany(sql, [params for _, params in group])
            self._writer.execute("COMMIT")
        except BaseException:
            if self._writer.in_transaction:
                self._writer.execute("ROLLBACK")
            raise

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self._checkpoint_interval)
            try:
                await self._checkpoint()
            except Exception:
                log.exception("WAL checkpoint failed; trying again")

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database in the background. A PASSIVE checkpoint never
        blocks a write, but under steady writes it never catches up either: writes land
        behind it while it copies. SQLite restarts the WAL (writes it again from its
        start, then cuts the file to journal_size_limit) only when a write begins on a WAL
        copied to its end, so without a pause the file would keep every page written
        since the load began. Once the WAL outgrows the limit, passes copy what came in
        during the one before, and the last, a short one, holds writes."""
        frames, copied = await self._checkpoint_pass()
        if frames * self._page_size <= self._wal_size_limit:
            return
        for _ in range(CATCH_UP_PASSES):
            if frames == copied:
                break
            frames, copied = await self._checkpoint_pass()
        async with self._writing:
            frames, copied = await self._checkpoint_pass()
        log.debug("WAL of %d frames copied up to %d with writes held", frames, copied)

    async def _checkpoint_pass(self) -> tuple[int, int]:
        """PASSIVE checkpoint: the WAL's frames, and how many of them are in the database."""
        async with self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)") as cursor:
            _, frames, copied = await cursor.fetchone()
        return frames, copied

    # -- reads --------------------------------------------------------------------------

    async def read_batches(self, pid: int, offset: int, end: int, max_bytes: int) -> list[bytes]:
        assert self._reader is not None
        # The smallest v2 batch is 61 bytes plus one record, so this bounds the rows a
        # budget could ever take without letting one fetch scan the whole log.
        max_rows = max(1, max_bytes // 64 + 1)
        rows = await self._reader.execute_fetchall(READ_BATCHES, {
            "pid": pid, "offset": offset, "end": end, "max_bytes": max_bytes,
            "max_rows": max_rows,
        })
        return [row[0] for row in rows]

    async def query(self, sql: str, params: Any = ()) -> list[tuple]:
        assert self._reader is not None
        return list(await self._reader.execute_fetchall(sql, params))

    async def load_partitions(self) -> list[StoredPartition]:
        rows = await self.query("""
            SELECT p.id, p.topic, p.topic_id, p.partition, p.log_start_offset,
                   (SELECT MAX(last_offset) FROM batches b WHERE b.pid = p.id),
                   (SELECT COALESCE(SUM(size), 0) FROM batches b WHERE b.pid = p.id)
            FROM partitions p ORDER BY p.topic, p.partition""")
        return [
            StoredPartition(pid, topic, topic_id, index, start,
                            start if last is None else max(start, last + 1), size)
            for pid, topic, topic_id, index, start, last, size in rows
        ]

    async def recent_producer_batches(self, pid: int, per_producer: int) -> list[tuple]:
        """Each producer's newest batches as (producer_id, epoch, base_sequence,
        base_offset, last_offset), oldest first."""
        return await self.query("""
            SELECT producer_id, producer_epoch, base_sequence, base_offset, last_offset FROM (
                SELECT producer_id, producer_epoch, base_sequence, base_offset, last_offset,
                       ROW_NUMBER() OVER (PARTITION BY producer_id ORDER BY base_offset DESC) AS n
                FROM batches WHERE pid = ? AND producer_id >= 0)
            WHERE n <= ? ORDER BY base_offset""", (pid, per_producer))

    async def producer_batches(self, pid: int, producer_id: int, count: int) -> list[tuple]:
        """One producer's newest `count` batches, as recent_producer_batches gives them."""
        rows = await self.query("""
            SELECT producer_id, producer_epoch, base_sequence, base_offset, last_offset
            FROM batches WHERE pid = ? AND producer_id = ? AND producer_id >= 0
            ORDER BY base_offset DESC LIMIT ?""", (pid, producer_id, count))
        return rows[::-1]

    async def epoch_starts(self, pid: int) -> list[tuple[int, int]]:
        """(leader epoch, first offset written in it), in log order."""
        return await self.query(
            "SELECT leader_epoch, MIN(base_offset) FROM batches WHERE pid = ?"
            " GROUP BY leader_epoch ORDER BY 2", (pid,))

    def truncate(self, pid: int, offset: int) -> asyncio.Future:
        """Remove every batch from `offset` on (a batch boundary)."""
        return self.write("DELETE FROM batches WHERE pid = ? AND base_offset >= ?", (pid, offset))

    async def last_batch_offset(self, pid: int) -> int:
        """Base offset of the newest committed batch (0 for an empty log)."""
        rows = await self.query("SELECT COALESCE(MAX(base_offset), 0) FROM batches WHERE pid = ?",
                                (pid,))
        return rows[0][0]

    async def size_below(self, pid: int, offset: int) -> int:
        """Bytes of the batches wholly below `offset`."""
        rows = await self.query("SELECT COALESCE(SUM(size), 0) FROM batches"
                                " WHERE pid = ? AND last_offset < ?", (pid, offset))
        return rows[0][0]

    async def first_offset_newer_than(self, pid: int, timestamp_ms: int, end: int) -> int:
        """Where the log would start if every batch older than `timestamp_ms` went."""
        rows = await self.query(
            "SELECT base_offset FROM batches WHERE pid = ? AND max_timestamp >= ?"
            " ORDER BY base_offset LIMIT 1", (pid, timestamp_ms))
        return rows[0][0] if rows else end

    async def first_offset_keeping(self, pid: int, excess_bytes: int, end: int) -> int:
        """Where the log would start after dropping whole batches worth `excess_bytes`."""
        rows = await self.query("""
            SELECT base_offset FROM (
                SELECT base_offset,
                       SUM(size) OVER (ORDER BY base_offset ROWS UNBOUNDED PRECEDING) AS upto
                FROM batches WHERE pid = ?)
            WHERE upto > ? ORDER BY base_offset LIMIT 1""", (pid, excess_bytes))
        return rows[0][0] if rows else end

    async def first_batch_at(self, pid: int, timestamp_ms: int, start: int, end: int) -> bytes | None:
        """The first batch holding a record at or after `timestamp_ms` in [start, end)."""
        rows = await self.query(
            "SELECT data FROM batches WHERE pid = ? AND max_timestamp >= ? AND last_offset >= ?"
            " AND base_offset < ? ORDER BY base_offset LIMIT 1", (pid, timestamp_ms, start, end))
        return rows[0][0] if rows else None

    async def batch_with_max_timestamp(self, pid: int, end: int) -> bytes | None:
        rows = await self.query(
            "SELECT data FROM batches WHERE pid = ? AND base_offset < ?"
            " ORDER BY max_timestamp DESC, base_offset LIMIT 1", (pid, end))
        return rows[0][0] if rows else None

    async def max_partition_id(self) -> int:
        rows = await self.query("SELECT COALESCE(MAX(id), 0) FROM partitions")
        return rows[0][0]

    async def get_setting(self, key: str) -> str | None:
        rows = await self.query("SELECT value FROM settings WHERE key = ?", (key,))
        return rows[0][0] if rows else None
