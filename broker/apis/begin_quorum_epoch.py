"""BeginQuorumEpoch (53): a newly elected leader announces itself to the voters."""
from kafka import errors

from broker.protocol import api
from broker.raft import METADATA_TOPIC
from broker.messages import BeginQuorumEpochRequest, BeginQuorumEpochResponse

Topic = BeginQuorumEpochResponse.TopicData


@api(BeginQuorumEpochRequest, 0, 0, inter_node=True)
async def begin_quorum_epoch(request, ctx):
    quorum = ctx.node.quorum
    topics = []
    for topic in request.topics:
        partitions = []
        for wanted in topic.partitions:
            if (topic.topic_name, wanted.partition_index) != (METADATA_TOPIC, 0):
                error = errors.UnknownTopicOrPartitionError.errno
            else:
                error = await quorum.begin_epoch(wanted.leader_id, wanted.leader_epoch)
            partitions.append(Topic.PartitionData(
                partition_index=wanted.partition_index, error_code=error,
                leader_id=-1 if quorum.leader_id is None else quorum.leader_id,
                leader_epoch=quorum.epoch))
        topics.append(Topic(topic_name=topic.topic_name, partitions=partitions))
    return BeginQuorumEpochResponse(version=ctx.api_version, error_code=0, topics=topics)
