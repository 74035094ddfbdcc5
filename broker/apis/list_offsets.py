"""ListOffsets (2): earliest, latest, max timestamp, or the first offset at a timestamp."""
from __future__ import annotations

from kafka.protocol.consumer import ListOffsetsRequest, ListOffsetsResponse

from broker.apis.fetch import check_leader_epoch
from broker.errors import RequestError
from broker.records import replicated_batches
from broker.protocol import api

TopicResponse = ListOffsetsResponse.ListOffsetsTopicResponse
PartitionResponse = TopicResponse.ListOffsetsPartitionResponse

LATEST, EARLIEST, MAX_TIMESTAMP = -1, -2, -3


def first_record_at(batch_bytes: bytes, timestamp: int | None, log_start: int) -> tuple[int, int]:
    """(offset, timestamp) of the batch's first record at or after `timestamp`, or of its
    record with the largest timestamp when `timestamp` is None; records before the log
    start (a batch cut by DeleteRecords) do not count."""
    [batch] = replicated_batches(batch_bytes)
    best = (-1, -1)
    for record in batch.records():
        if record.offset < log_start:
            continue
        if timestamp is not None and record.timestamp >= timestamp:
            return record.offset, record.timestamp
        if timestamp is None and record.timestamp > best[1]:
            best = (record.offset, record.timestamp)
    return best


async def lookup(partition, timestamp: int) -> tuple[int, int]:
    """(offset, timestamp) for one ListOffsets query."""
    if timestamp == LATEST:
        return partition.high_watermark, -1
    if timestamp == EARLIEST:
        return partition.log_start_offset, -1
    if timestamp == MAX_TIMESTAMP:
        batch = await partition.storage.batch_with_max_timestamp(partition.pid, partition.high_watermark)
        return first_record_at(batch, None, partition.log_start_offset) if batch else (-1, -1)
    batch = await partition.storage.first_batch_at(partition.pid, timestamp,
                                                   partition.log_start_offset, partition.high_watermark)
    return first_record_at(batch, timestamp, partition.log_start_offset) if batch else (-1, -1)


@api(ListOffsetsRequest, 1, 7)
async def list_offsets(request, ctx):
    topics = []
    for topic in request.topics:
        parts = []
        for wanted in topic.partitions:
            response = PartitionResponse(version=ctx.api_version, partition_index=wanted.partition_index,
                                         error_code=0, timestamp=-1, offset=-1, leader_epoch=-1)
            try:
                partition = ctx.node.partition(topic.name, wanted.partition_index)
                check_leader_epoch(partition, wanted.current_leader_epoch)
                response.offset, response.timestamp = await lookup(partition, wanted.timestamp)
                response.leader_epoch = partition.leader_epoch
            except RequestError as exc:
                response.error_code = exc.code
            parts.append(response)
        topics.append(TopicResponse(version=ctx.api_version, name=topic.name, partitions=parts))
    return ListOffsetsResponse(version=ctx.api_version, throttle_time_ms=0, topics=topics)
