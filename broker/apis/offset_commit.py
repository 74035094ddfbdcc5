"""OffsetCommit (8): store a group's consumed positions, durably on every in-sync replica
before the answer. Generation -1 with an empty member id commits for a group without
active members: admin tools resetting offsets, consumers that assign partitions
themselves."""
import functools
import time
from typing import Iterable

from kafka.protocol.consumer import OffsetCommitRequest, OffsetCommitResponse

from broker import codec
from broker.groups.records import CommittedOffset
from broker.protocol import api

DEFAULT_RETENTION = -1  # the broker's offsets.retention.minutes
# Only a commit's usual answer is kept encoded: every partition stored, at most this many.
# An answer with errors may name topics that do not exist, of any length a client sends,
# and a big one would be kept hundreds of times over.
CACHED_ANSWER_PARTITIONS = 64


@api(OffsetCommitRequest, 2, 9)
def offset_commit(request, ctx):
    """Not a coroutine function: the commit is checked and its records queued when the
    request is read, before the next one (see broker/server.py); the coroutine returned
    answers it once they are stored."""
    version = ctx.api_version
    now_ms = int(time.time() * 1000)
    # v2-v4 may ask for a retention of their own: the offsets expire then (Kafka's rule).
    retention_ms = request.retention_time_ms if version <= 4 else DEFAULT_RETENTION
    expire_ms = -1 if retention_ms == DEFAULT_RETENTION else now_ms + retention_ms
    offsets = {(topic.name, p.partition_index): CommittedOffset(
                   p.committed_offset, p.committed_leader_epoch if version >= 6 else -1,
                   p.committed_metadata or "", now_ms, expire_ms)
               for topic in request.topics for p in topic.partitions}
    return respond(version, ctx.node.groups.start_commit(
        request.group_id, request.generation_id_or_member_epoch, request.member_id,
        request.group_instance_id if version >= 7 else None, offsets))


async def respond(version: int, stored) -> codec.EncodedResponse | OffsetCommitResponse:
    results = await stored
    if len(results) <= CACHED_ANSWER_PARTITIONS and not any(results.values()):
        return answer(version, tuple(results))
    return response(version, results.items())


def response(version: int, results: Iterable[tuple[tuple[str, int], int]]
             ) -> OffsetCommitResponse:
    """The answer to a commit of these partitions, ((topic, partition), error code)."""
    by_topic: dict[str, list[tuple[int, int]]] = {}
    for (name, index), error in results:
        by_topic.setdefault(name, []).append((index, error))
    # Topics as (name, [(partition_index, error_code)]): kafka-python encodes tuples in the
    # schema's field order as it does its own objects, and a commit saves building them.
    return OffsetCommitResponse(version=version, throttle_time_ms=0,
                                topics=list(by_topic.items()))


@functools.lru_cache(maxsize=256)
def answer(version: int, partitions: tuple[tuple[str, int], ...]) -> codec.EncodedResponse:
    """The answer when every one of these partitions was stored, encoded once: a consumer
    commits the same partitions, with the same outcome, again and again."""
    return codec.EncodedResponse.of(response(version, ((tp, 0) for tp in partitions)))
