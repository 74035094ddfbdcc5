"""OffsetDelete (47): drop a group's committed offsets for some partitions; refused per
partition (GROUP_SUBSCRIBED_TO_TOPIC) for topics its members still consume."""
from kafka.protocol.consumer import OffsetDeleteRequest, OffsetDeleteResponse

from broker.errors import RequestError
from broker.protocol import api

Topic = OffsetDeleteResponse.OffsetDeleteResponseTopic
Partition = Topic.OffsetDeleteResponsePartition


@api(OffsetDeleteRequest, 0, 0)
async def offset_delete(request, ctx):
    wanted = [(t.name, p.partition_index) for t in request.topics for p in t.partitions]
    try:
        results = await ctx.node.groups.delete_offsets(request.group_id, wanted)
        error = 0
    except RequestError as exc:
        results, error = {}, exc.code
    topics: dict[str, list] = {}
    for (name, index), code in results.items():
        topics.setdefault(name, []).append(Partition(version=0, partition_index=index,
                                                     error_code=code))
    return OffsetDeleteResponse(version=0, error_code=error, throttle_time_ms=0, topics=[
        Topic(version=0, name=name, partitions=parts) for name, parts in topics.items()])
