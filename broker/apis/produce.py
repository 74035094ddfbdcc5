"""Produce (0): validate batches, append them, answer per acks.

Every append happens before the handler's first await, so a connection's pipelined
requests get their offsets in the order they were sent.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from kafka import errors
from kafka.protocol.producer import ProduceRequest, ProduceResponse

from broker.errors import RequestError
from broker.partition import PartitionLog
from broker.protocol import CloseConnection, api
from broker.records import split_batches

TopicResponse = ProduceResponse.TopicProduceResponse
PartitionResponse = TopicResponse.PartitionProduceResponse


@dataclass
class Outcome:
    topic: str
    index: int
    partition: PartitionLog | None = None
    base_offset: int = -1
    end_offset: int = -1
    append_time_ms: int = -1
    commit: asyncio.Future | None = None
    min_insync: int = 1
    error: RequestError | None = None


def append(node, request, topic_name: str, index: int, records: bytes | None) -> Outcome:
    outcome = Outcome(topic_name, index)
    try:
        if request.acks not in (-1, 0, 1):
            raise RequestError(errors.InvalidRequiredAcksError,
                               f"acks must be -1, 0 or 1, not {request.acks}")
        partition = node.partition(topic_name, index)
        topic = node.image.topics[topic_name]
        if topic.internal:
            raise RequestError(errors.InvalidTopicError, f"clients cannot write to {topic_name}")
        batches = split_batches(records or b"", node.topic_config(topic, "max.message.bytes"),
                                request.API_VERSION)
        if request.transactional_id is not None or any(b.transactional for b in batches):
            raise RequestError(errors.InvalidTxnStateError,
                               "transactions are not supported by this broker")
        if request.acks == -1:
            outcome.min_insync = node.topic_config(topic, "min.insync.replicas")
            if len(partition.isr) < outcome.min_insync:
                raise RequestError(errors.NotEnoughReplicasError,
                                   f"{len(partition.isr)} in-sync replicas, "
                                   f"min.insync.replicas={outcome.min_insync}")
        if node.topic_config(topic, "message.timestamp.type") == "LogAppendTime":
            outcome.append_time_ms = int(time.time() * 1000)
        outcome.partition = partition
        outcome.base_offset, outcome.end_offset, outcome.commit = partition.append(
            batches, outcome.append_time_ms if outcome.append_time_ms >= 0 else None)
    except RequestError as exc:
        outcome.error = exc
    return outcome


async def wait_replicated(outcome: Outcome, timeout: float) -> None:
    """acks=all: answered once every in-sync replica has the batches."""
    try:
        await outcome.partition.wait_replicated(outcome.end_offset, timeout, outcome.min_insync)
    except RequestError as exc:
        outcome.error = exc


@api(ProduceRequest, 3, 11)
async def produce(request, ctx):
    outcomes = [append(ctx.node, request, topic.name, data.index, data.records)
                for topic in request.topic_data for data in topic.partition_data]

    if request.acks == 0:
        failed = [o.error for o in outcomes if o.error is not None]
        if failed:  # the only way to tell an acks=0 producer that something went wrong
            raise CloseConnection(f"acks=0 produce failed: {failed[0]}")
        return None

    commits = {id(o.commit): o.commit for o in outcomes if o.commit is not None}
    results = await asyncio.gather(*commits.values(), return_exceptions=True)
    failed_commits = {key for key, result in zip(commits, results) if isinstance(result, Exception)}
    for o in outcomes:
        if o.commit is not None and id(o.commit) in failed_commits:
            o.error = RequestError(errors.KafkaStorageError, "the node could not write to its disk")
    if request.acks == -1:
        await asyncio.gather(*(wait_replicated(o, request.timeout_ms / 1000) for o in outcomes
                               if o.error is None and o.partition is not None))

    by_topic: dict[str, list] = {}
    for o in outcomes:
        by_topic.setdefault(o.topic, []).append(PartitionResponse(
            version=ctx.api_version,
            index=o.index,
            error_code=o.error.code if o.error else 0,
            base_offset=-1 if o.error else o.base_offset,
            log_append_time_ms=o.append_time_ms,
            log_start_offset=o.partition.log_start_offset if o.partition else -1,
            record_errors=[],
            error_message=o.error.message if o.error else None,
        ))
    return ProduceResponse(
        version=ctx.api_version, throttle_time_ms=0,
        responses=[TopicResponse(version=ctx.api_version, name=name, partition_responses=parts)
                   for name, parts in by_topic.items()])
