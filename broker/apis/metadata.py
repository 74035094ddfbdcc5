"""Metadata (3): brokers, controller, topics with partition leaders, replicas and ISR.

Asking for a missing topic creates it when the client allows it and
`auto.create.topics.enable` is on, so its first Metadata already names the leader.
Brokers are given by their endpoint on the listener the client came in on, as Kafka
does; a partition whose live leader lacks that listener is LISTENER_NOT_FOUND.
"""
from __future__ import annotations

import uuid

from kafka import errors
from kafka.protocol.metadata import MetadataRequest, MetadataResponse

from broker.errors import RequestError
from broker.metadata import check_topic_name
from broker.protocol import api

Broker = MetadataResponse.MetadataResponseBroker
TopicMetadata = MetadataResponse.MetadataResponseTopic
PartitionMetadata = TopicMetadata.MetadataResponsePartition
NO_TOPIC_ID = uuid.UUID(int=0)


def topic_metadata(node, name: str | None, version: int, listener: str) -> TopicMetadata:
    result = TopicMetadata(version=version, error_code=0, name=name, topic_id=NO_TOPIC_ID,
                           is_internal=False, partitions=[])
    try:
        check_topic_name(name)
        topic = node.topic(name)
    except RequestError as exc:
        result.error_code = exc.code
        return result
    live = set(node.image.live_brokers())
    reachable = node.image.live_endpoints(listener)
    result.topic_id = topic.id
    result.is_internal = topic.internal
    result.partitions = [
        PartitionMetadata(version=version,
                          error_code=0 if p.leader in reachable
                          else errors.ListenerNotFoundError.errno if p.leader in live
                          else errors.LeaderNotAvailableError.errno,
                          partition_index=p.index, leader_id=p.leader, leader_epoch=p.leader_epoch,
                          replica_nodes=p.replicas, isr_nodes=p.isr,
                          offline_replicas=[r for r in p.replicas if r not in live])
        for p in topic.partitions]
    return result


def requested_names(node, request, version: int) -> list[str | None]:
    if request.topics is None or (version == 0 and not request.topics):
        return sorted(node.image.topics)
    names = []
    for wanted in request.topics:
        name = wanted.name
        if name is None and version >= 10:  # asked by topic id
            topic = node.image.topics_by_id.get(wanted.topic_id)
            name = topic.name if topic else None
        names.append(name)
    return names


@api(MetadataRequest, 0, 12)
async def metadata(request, ctx):
    node = ctx.node
    version = ctx.api_version
    names = requested_names(node, request, version)
    if version < 4 or request.allow_auto_topic_creation:
        await node.auto_create(n for n in names if n and not n.startswith("__"))
    topics = [topic_metadata(node, name, version, ctx.listener) for name in names]
    for wanted, result in zip(request.topics or [], topics):
        if result.name is None and version >= 10:
            result.topic_id = wanted.topic_id
            result.error_code = errors.UnknownTopicIdError.errno
    return MetadataResponse(
        version=version, throttle_time_ms=0,
        brokers=[Broker(version=version, node_id=b, host=host, port=port, rack=None)
                 for b, (host, port) in node.image.live_endpoints(ctx.listener).items()],
        cluster_id=node.cluster_id, controller_id=controller_id(node), topics=topics)


def controller_id(node) -> int:
    """Clients send admin requests here: the active controller when it also serves as a
    broker, else any broker (it forwards them)."""
    live = node.image.live_brokers()
    leader = node.quorum.leader_id
    if leader in live or not live:
        return leader if leader is not None else -1
    return live[0]
