"""Fetch (1): whole stored batches below the high watermark, with long polling.

A fetch waits up to max_wait_ms for min_bytes to arrive, woken by commits on any of the
partitions it asked for. The first batch is returned even when it is larger than the
limits (KIP-74), so a consumer never stalls on a big batch.

A fetch with `replica_id` set comes from a follower: it reads past the high watermark up to
what the leader has on disk, its offset tells the leader how far the follower is, and a
follower whose last epoch disagrees with the leader's history gets the point where the
logs diverge instead of records (KIP-595's DivergingEpoch).
"""
from __future__ import annotations

import asyncio

from kafka import errors
from kafka.protocol.consumer import FetchRequest, FetchResponse

from broker.errors import RequestError
from broker.protocol import api
from broker.raft import is_metadata_fetch

TopicResponse = FetchResponse.FetchableTopicResponse
PartitionData = TopicResponse.PartitionData
EpochEndOffset = PartitionData.EpochEndOffset


def divergence(partition, wanted) -> tuple[int, int] | None:
    """(epoch, end offset) where a follower's log leaves the leader's, or None."""
    if wanted.last_fetched_epoch < 0:
        return None
    epoch, end = partition.end_offset_for_epoch(wanted.last_fetched_epoch)
    if epoch != wanted.last_fetched_epoch or wanted.fetch_offset > end:
        return epoch, end
    return None


def check_leader_epoch(partition, requested: int) -> None:
    if requested == -1 or requested == partition.leader_epoch:
        return
    if requested > partition.leader_epoch:
        raise RequestError(errors.UnknownLeaderEpochError,
                           f"leader epoch {requested} is newer than ours ({partition.leader_epoch})")
    raise RequestError(errors.FencedLeaderEpochError,
                       f"leader epoch {requested} is older than ours ({partition.leader_epoch})")


async def read_partitions(node, request, version: int) -> tuple[list, int, list]:
    """One pass over the requested partitions.

    Returns the topic responses, the bytes they carry, and (partition, high watermark
    seen) for every partition that could be read.
    """
    remaining = request.max_bytes
    follower = request.replica_id if version <= 14 else request.replica_state.replica_id
    total = 0
    topics, partitions = [], []
    for topic in request.topics:
        parts = []
        for wanted in topic.partitions:
            data = PartitionData(version=version, partition_index=wanted.partition, error_code=0,
                                 high_watermark=-1, last_stable_offset=-1, log_start_offset=-1,
                                 aborted_transactions=None, preferred_read_replica=-1, records=b"")
            try:
                partition = node.partition(topic.topic, wanted.partition)
                check_leader_epoch(partition, wanted.current_leader_epoch)
                hw = partition.high_watermark
                data.high_watermark = data.last_stable_offset = hw
                data.log_start_offset = partition.log_start_offset
                diverged = divergence(partition, wanted) if follower >= 0 else None
                if diverged is not None:
                    data.diverging_epoch = EpochEndOffset(version=version, epoch=diverged[0],
                                                          end_offset=diverged[1])
                    parts.append(data)
                    total += 1  # answer at once: the follower has work to do
                    continue
                if not partition.log_start_offset <= wanted.fetch_offset <= partition.end_offset:
                    raise RequestError(errors.OffsetOutOfRangeError,
                                       f"offset {wanted.fetch_offset} is outside "
                                       f"[{partition.log_start_offset}, {partition.end_offset}]")
                end = None  # consumers read up to the high watermark
                if follower >= 0:
                    partition.follower_fetched(follower, wanted.fetch_offset)
                    end = partition.local_end
                partitions.append((partition, hw))
                if remaining > 0:
                    records = await partition.read(
                        wanted.fetch_offset, min(wanted.partition_max_bytes, remaining), end)
                    # Only the first data in the response may exceed the limits.
                    if records and (total == 0 or len(records) <= remaining):
                        data.records = records
                        total += len(records)
                        remaining -= len(records)
            except RequestError as exc:
                data.error_code = exc.code
            parts.append(data)
        topics.append(TopicResponse(version=version, topic=topic.topic, partitions=parts))
    return topics, total, partitions


@api(FetchRequest, 4, 12)
async def fetch(request, ctx):
    if is_metadata_fetch(request):
        return await ctx.node.quorum.fetch(request, ctx)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0, request.max_wait_ms) / 1000
    while True:
        topics, total, partitions = await read_partitions(ctx.node, request, ctx.api_version)
        left = deadline - loop.time()
        if total >= request.min_bytes or left <= 0 or not partitions:
            break
        waiters = [p.new_data_waiter(loop) for p, _ in partitions]
        # A commit that landed while we were reading must not cost a full max_wait.
        if all(p.high_watermark == seen for p, seen in partitions):
            await asyncio.wait(waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
    return FetchResponse(version=ctx.api_version, throttle_time_ms=0, error_code=0,
                         session_id=0, responses=topics)
