"""What Vote, BeginQuorumEpoch and EndQuorumEpoch share: they name partitions, and the
only partition a quorum has is the metadata log's."""
from typing import Any, Awaitable, Callable

from kafka import errors

from broker.raft import METADATA_TOPIC


async def answer_per_partition(request, response_class, ctx,
                               answer: Callable[[Any], Awaitable[dict]]):
    """Build `response_class`, asking `answer(partition)` for the metadata log's partition
    fields (its error code, ...); every answer carries the leader and epoch we know."""
    quorum = ctx.node.quorum
    topic_class = response_class.TopicData
    topics = []
    for topic in request.topics:
        partitions = []
        for wanted in topic.partitions:
            if (topic.topic_name, wanted.partition_index) == (METADATA_TOPIC, 0):
                fields = await answer(wanted)
            else:
                fields = {"error_code": errors.UnknownTopicOrPartitionError.errno}
            partitions.append(topic_class.PartitionData(
                partition_index=wanted.partition_index,
                leader_id=-1 if quorum.leader_id is None else quorum.leader_id,
                leader_epoch=quorum.epoch, **fields))
        topics.append(topic_class(topic_name=topic.topic_name, partitions=partitions))
    return response_class(version=ctx.api_version, error_code=0, topics=topics)
