"""OffsetForLeaderEpoch (23): where a leader epoch ends in the leader's log.

A consumer that fetched up to offset O in epoch E asks this after the partition's leader
changed (KIP-320; librdkafka and kafka-python do). If E ends before O in the new leader's
log, the log was truncated under it (an unclean election): librdkafka goes back to where
E ends and reads what is written next from there. Without this API it would meet
OFFSET_OUT_OF_RANGE and fall back on `auto.offset.reset`, re-reading the partition from
the start or skipping to its end.
"""
from kafka.protocol.consumer import OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse

from broker.apis.fetch import check_leader_epoch
from broker.errors import RequestError
from broker.protocol import api

TopicResult = OffsetForLeaderEpochResponse.OffsetForLeaderTopicResult
EpochEndOffset = TopicResult.EpochEndOffset

UNDEFINED = -1  # an epoch or an end offset the log does not know


@api(OffsetForLeaderEpochRequest, 0, 4)
async def offset_for_leader_epoch(request, ctx):
    version = ctx.api_version
    topics = []
    for topic in request.topics:
        partitions = []
        for wanted in topic.partitions:
            result = EpochEndOffset(version=version, error_code=0, partition=wanted.partition,
                                    leader_epoch=UNDEFINED, end_offset=UNDEFINED)
            try:
                partition = ctx.node.partition(topic.topic, wanted.partition)
                check_leader_epoch(partition, wanted.current_leader_epoch)
                result.leader_epoch, result.end_offset = partition.end_offset_for_epoch(
                    wanted.leader_epoch)
            except RequestError as exc:
                result.error_code = exc.code
            partitions.append(result)
        topics.append(TopicResult(version=version, topic=topic.topic, partitions=partitions))
    return OffsetForLeaderEpochResponse(version=version, throttle_time_ms=0, topics=topics)
