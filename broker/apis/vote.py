"""Vote (52): a voter standing for election, or asking first with a pre-vote."""
from kafka import errors

from broker.protocol import api
from broker.raft import METADATA_TOPIC
from broker.messages import VoteRequest, VoteResponse

Topic = VoteResponse.TopicData


@api(VoteRequest, 0, 2, inter_node=True)
async def vote(request, ctx):
    quorum = ctx.node.quorum
    topics = []
    for topic in request.topics:
        partitions = []
        for wanted in topic.partitions:
            if (topic.topic_name, wanted.partition_index) != (METADATA_TOPIC, 0):
                error, granted = errors.UnknownTopicOrPartitionError.errno, False
            else:
                error, granted = await quorum.vote(
                    wanted.replica_id, wanted.replica_epoch, wanted.last_offset_epoch,
                    wanted.last_offset, ctx.api_version >= 2 and wanted.pre_vote)
            partitions.append(Topic.PartitionData(
                partition_index=wanted.partition_index, error_code=error,
                leader_id=-1 if quorum.leader_id is None else quorum.leader_id,
                leader_epoch=quorum.epoch, vote_granted=granted))
        topics.append(Topic(topic_name=topic.topic_name, partitions=partitions))
    return VoteResponse(version=ctx.api_version, error_code=0, topics=topics)
