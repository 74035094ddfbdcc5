"""EndQuorumEpoch (54): a leader shutting down asks the voters to elect a successor now."""
from kafka import errors

from broker.protocol import api
from broker.raft import METADATA_TOPIC
from broker.messages import EndQuorumEpochRequest, EndQuorumEpochResponse

Topic = EndQuorumEpochResponse.TopicData


@api(EndQuorumEpochRequest, 0, 0, inter_node=True)
async def end_quorum_epoch(request, ctx):
    quorum = ctx.node.quorum
    topics = []
    for topic in request.topics:
        partitions = []
        for wanted in topic.partitions:
            if (topic.topic_name, wanted.partition_index) != (METADATA_TOPIC, 0):
                error = errors.UnknownTopicOrPartitionError.errno
            else:
                error = await quorum.end_epoch(wanted.leader_id, wanted.leader_epoch,
                                               list(wanted.preferred_successors))
            partitions.append(Topic.PartitionData(
                partition_index=wanted.partition_index, error_code=error,
                leader_id=-1 if quorum.leader_id is None else quorum.leader_id,
                leader_epoch=quorum.epoch))
        topics.append(Topic(topic_name=topic.topic_name, partitions=partitions))
    return EndQuorumEpochResponse(version=ctx.api_version, error_code=0, topics=topics)
