"""OffsetFetch (9): a group's committed offsets, with the metadata they were committed
with; -1 for a partition without one. v2+ reads every committed partition when the topic
list is null; v8+ asks for many groups at once."""
from kafka.protocol.consumer import OffsetFetchRequest, OffsetFetchResponse

from broker.errors import RequestError
from broker.protocol import api

Group = OffsetFetchResponse.OffsetFetchResponseGroup
OldTopic = OffsetFetchResponse.OffsetFetchResponseTopic


def fetch_group(node, group_id: str, topics) -> tuple[dict, int]:
    """({(topic, partition): CommittedOffset | None}, error code) for one group."""
    wanted = None if topics is None else [(t.name, p) for t in topics for p in t.partition_indexes]
    try:
        return node.groups.fetch_offsets(group_id, wanted), 0
    except RequestError as exc:
        return {tp: None for tp in wanted or []}, exc.code


def by_topic(offsets: dict, error: int) -> dict[str, list[dict]]:
    """Partition answers (as field dicts) per topic."""
    topics: dict[str, list[dict]] = {}
    for (name, index), committed in offsets.items():
        topics.setdefault(name, []).append(dict(
            partition_index=index,
            committed_offset=committed.offset if committed else -1,
            committed_leader_epoch=committed.leader_epoch if committed else -1,
            metadata=committed.metadata if committed else "",
            error_code=error))
    return topics


@api(OffsetFetchRequest, 1, 9)
async def offset_fetch(request, ctx):
    version = ctx.api_version
    if version < 8:
        offsets, error = fetch_group(ctx.node, request.group_id, request.topics)
        partition = OldTopic.OffsetFetchResponsePartition
        # v0-1 have no group-level error: each partition carries it.
        topics = [OldTopic(version=version, name=name, partitions=[
                      partition(version=version, **p) for p in parts])
                  for name, parts in by_topic(offsets, error if version < 2 else 0).items()]
        return OffsetFetchResponse(version=version, throttle_time_ms=0, topics=topics,
                                   error_code=error)
    groups = []
    for wanted in request.groups:
        offsets, error = fetch_group(ctx.node, wanted.group_id, wanted.topics)
        topic = Group.OffsetFetchResponseTopics
        partition = topic.OffsetFetchResponsePartitions
        groups.append(Group(version=version, group_id=wanted.group_id, error_code=error, topics=[
            topic(version=version, name=name, partitions=[partition(version=version, **p)
                                                          for p in parts])
            for name, parts in by_topic(offsets, 0).items()]))
    return OffsetFetchResponse(version=version, throttle_time_ms=0, groups=groups)
