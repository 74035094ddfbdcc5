"""OffsetCommit (8): store a group's consumed positions, durably on every in-sync replica
before the answer. Generation -1 with an empty member id commits for a group without
active members: admin tools resetting offsets, consumers that assign partitions
themselves."""
import time

from kafka.protocol.consumer import OffsetCommitRequest, OffsetCommitResponse

from broker.errors import RequestError
from broker.groups.records import CommittedOffset
from broker.protocol import api

DEFAULT_RETENTION = -1  # the broker's offsets.retention.minutes


@api(OffsetCommitRequest, 2, 9)
async def offset_commit(request, ctx):
    version = ctx.api_version
    now_ms = int(time.time() * 1000)
    # v2-v4 may ask for a retention of their own: the offsets expire then (Kafka's rule).
    retention_ms = request.retention_time_ms if version <= 4 else DEFAULT_RETENTION
    expire_ms = -1 if retention_ms == DEFAULT_RETENTION else now_ms + retention_ms
    offsets = {(topic.name, p.partition_index): CommittedOffset(
                   p.committed_offset, p.committed_leader_epoch if version >= 6 else -1,
                   p.committed_metadata or "", now_ms, expire_ms)
               for topic in request.topics for p in topic.partitions}
    try:
        results = await ctx.node.groups.commit(
            request.group_id, request.generation_id_or_member_epoch, request.member_id,
            request.group_instance_id if version >= 7 else None, offsets)
    except RequestError as exc:
        results = {tp: exc.code for tp in offsets}
    # Topics as (name, [(partition_index, error_code)]): kafka-python encodes tuples in the
    # schema's field order as it does its own objects, and a commit saves building them.
    by_topic: dict[str, list[tuple[int, int]]] = {}
    for (name, index), error in results.items():
        by_topic.setdefault(name, []).append((index, error))
    return OffsetCommitResponse(version=version, throttle_time_ms=0,
                                topics=list(by_topic.items()))
