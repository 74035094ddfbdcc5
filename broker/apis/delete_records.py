"""DeleteRecords (21): move a partition's log start offset forward."""
from kafka.protocol.admin import DeleteRecordsRequest, DeleteRecordsResponse

from broker.errors import RequestError
from broker.protocol import api

TopicResult = DeleteRecordsResponse.DeleteRecordsTopicResult
PartitionResult = TopicResult.DeleteRecordsPartitionResult


@api(DeleteRecordsRequest, 0, 2)
async def delete_records(request, ctx):
    version = ctx.api_version
    topics = []
    for topic in request.topics:
        parts = []
        for wanted in topic.partitions:
            result = PartitionResult(version=version, partition_index=wanted.partition_index,
                                     low_watermark=-1, error_code=0)
            try:
                partition = ctx.node.partition(topic.name, wanted.partition_index)
                result.low_watermark = await ctx.node.delete_records(partition, wanted.offset)
            except RequestError as exc:
                result.error_code = exc.code
            parts.append(result)
        topics.append(TopicResult(version=version, name=topic.name, partitions=parts))
    return DeleteRecordsResponse(version=version, throttle_time_ms=0, topics=topics)
