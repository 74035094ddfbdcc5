"""AlterPartition (56): a partition leader asks the active controller to change its ISR."""
from broker.apis.broker_lifecycle import active_controller
from broker.errors import RequestError
from broker.messages import AlterPartitionRequest, AlterPartitionResponse
from broker.protocol import api

TopicResult = AlterPartitionResponse.TopicData
PartitionResult = TopicResult.PartitionData


@api(AlterPartitionRequest, 0, 0, inter_node=True)
async def alter_partition(request, ctx):
    topics = []
    for topic in request.topics:
        parts = []
        for wanted in topic.partitions:
            result = PartitionResult(version=0, partition_index=wanted.partition_index,
                                     error_code=0, leader_id=-1, leader_epoch=-1, isr=[],
                                     partition_epoch=-1)
            try:
                state = await active_controller(ctx.node).alter_partition(
                    topic.topic_name, wanted.partition_index, request.broker_id,
                    wanted.leader_epoch, wanted.partition_epoch, wanted.new_isr)
                result.leader_id, result.leader_epoch = state.leader, state.leader_epoch
                result.isr, result.partition_epoch = state.isr, state.partition_epoch
            except RequestError as exc:
                result.error_code = exc.code
            parts.append(result)
        topics.append(TopicResult(version=0, topic_name=topic.topic_name, partitions=parts))
    return AlterPartitionResponse(version=0, throttle_time_ms=0, error_code=0, topics=topics)
