"""One partition log's high watermark rules, on real SQLite storage and without a cluster:
the races they guard against are too narrow to provoke through processes reliably."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from kafka import errors

from broker.errors import RequestError
from broker.partition import PartitionLog
from broker.records import split_batches
from broker.storage import Storage
from test_bad_input import PRODUCE_V, batch

LEADER, CAUGHT_UP, RETURNING = 1, 2, 3


async def open_log(path: Path) -> PartitionLog:
    """Partition t-0 of node 1 on fresh storage at `path`; close with `log.storage.close()`."""
    storage = Storage(path)
    await storage.open()
    storage.write("INSERT INTO partitions (id, topic, topic_id, partition) VALUES (1, 't', ?, 0)",
                  (b"\0" * 16,))
    return PartitionLog(storage, 1, "t", 0, LEADER)


@pytest.fixture
async def leader(tmp_path):
    """Node 1 leads a partition replicated on nodes 1-3, with node 3 out of the ISR."""
    log = await open_log(tmp_path / "node.db")
    log.become_leader(1, [LEADER, CAUGHT_UP, RETURNING], [LEADER, CAUGHT_UP], partition_epoch=5)
    yield log
    await log.storage.close()


async def append(log: PartitionLog, records: int) -> int:
    """Appends `records` single-record batches; returns the log end once committed."""
    for _ in range(records):
        _, end, commit = log.append(split_batches(batch(), 1 << 20, PRODUCE_V), None)
        await commit
    return end


async def test_an_isr_expansion_in_flight_holds_the_high_watermark_for_the_new_replica(leader):
    """Once the leader proposes node 3 for the ISR, the controller may commit it, and node
    3 may be elected, before the leader hears of it. Until then the high watermark waits
    for node 3 too: nothing acknowledged may be missing from a replica that can lead."""
    end = await append(leader, 4)
    leader.follower_fetched(RETURNING, 2)
    leader.propose_isr([LEADER, CAUGHT_UP, RETURNING])
    leader.follower_fetched(CAUGHT_UP, end)
    assert leader.high_watermark == 2  # not `end`: node 3 has only what is below 2
    leader.follower_fetched(RETURNING, end)
    assert leader.high_watermark == end


async def test_the_controllers_answer_takes_effect_before_the_metadata_record(leader):
    end = await append(leader, 2)
    leader.propose_isr([LEADER, CAUGHT_UP, RETURNING])
    leader.isr_changed([LEADER, CAUGHT_UP, RETURNING], leader_epoch=1, partition_epoch=6)
    assert leader.proposed_isr is None and sorted(leader.isr) == [1, 2, 3]
    # The record of the state before it, applied late, does not take node 3 out again.
    leader.become_leader(1, [LEADER, CAUGHT_UP, RETURNING], [LEADER, CAUGHT_UP], partition_epoch=5)
    assert sorted(leader.isr) == [1, 2, 3]
    leader.follower_fetched(CAUGHT_UP, end)
    assert leader.high_watermark == 0  # node 3 has fetched nothing yet


async def test_an_acks_all_wait_ends_in_an_error_when_the_isr_shrinks_below_min_insync(leader):
    """The records were appended while two replicas were in sync; the follower then fell
    out of the ISR. The high watermark passes them, yet only the leader has them: Kafka
    answers NOT_ENOUGH_REPLICAS_AFTER_APPEND, never success."""
    end = await append(leader, 2)
    waiting = asyncio.ensure_future(leader.wait_replicated(end, timeout=5, min_insync=2))
    await asyncio.sleep(0)
    assert not waiting.done()
    leader.isr_changed([LEADER], leader_epoch=1, partition_epoch=6)
    with pytest.raises(RequestError) as refused:
        await waiting
    assert refused.value.error is errors.NotEnoughReplicasAfterAppendError
    # With enough replicas in sync the same wait succeeds.
    leader.become_leader(1, [LEADER, CAUGHT_UP, RETURNING], [LEADER, CAUGHT_UP], partition_epoch=7)
    leader.follower_fetched(CAUGHT_UP, end)
    await leader.wait_replicated(end, timeout=5, min_insync=2)


async def test_a_former_leader_never_acknowledges_by_the_new_leaders_high_watermark(leader):
    """A produce waits on node 1, which then learns that node 2 leads. Node 1's high
    watermark now follows node 2's log, where the same offsets may hold other records: the
    producer is told NOT_LEADER_OR_FOLLOWER, as Kafka's DelayedProduce does, never success."""
    end = await append(leader, 2)
    waiting = asyncio.ensure_future(leader.wait_replicated(end, timeout=5, min_insync=1))
    await asyncio.sleep(0)
    leader.become_follower(CAUGHT_UP, 2, [LEADER, CAUGHT_UP, RETURNING], [LEADER, CAUGHT_UP],
                           partition_epoch=6)
    leader.follower_high_watermark(end)  # from node 2's first fetch answer
    with pytest.raises(RequestError) as refused:
        await waiting
    assert refused.value.error is errors.NotLeaderForPartitionError


async def test_where_an_epoch_ends_is_answered_as_kafkas_epoch_cache_does(leader):
    await append(leader, 3)  # epoch 1: offsets 0-2
    leader.become_leader(4, [LEADER, CAUGHT_UP, RETURNING], [LEADER, CAUGHT_UP])
    await append(leader, 2)  # epoch 4: offsets 3-4
    assert leader.end_offset_for_epoch(1) == (1, 3)
    assert leader.end_offset_for_epoch(2) == (1, 3)  # epochs 2-3 led nothing here
    assert leader.end_offset_for_epoch(4) == (4, 5)  # the current epoch: the log end
    assert leader.end_offset_for_epoch(0) == (0, 0)  # older than all: where the first starts
    assert leader.end_offset_for_epoch(5) == (-1, -1)  # newer than all
    assert leader.end_offset_for_epoch(-1) == (-1, -1)
