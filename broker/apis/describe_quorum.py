"""DescribeQuorum (55): the metadata quorum's leader, epoch, high watermark and replicas.

The leader answers from what its followers' fetches told it. Any other node forwards a
client's request to the leader, as Kafka's brokers forward it to the active controller;
when no leader is reachable it answers NOT_LEADER_OR_FOLLOWER with the leader it knows.
"""
from kafka import errors
from kafka.protocol.admin import DescribeQuorumRequest, DescribeQuorumResponse

from broker.peer import Channel, PeerUnavailable, is_peer_client
from broker.protocol import api
from broker.raft import METADATA_TOPIC

Topic = DescribeQuorumResponse.TopicData
Node = DescribeQuorumResponse.Node


def wanted_partitions(request) -> list[tuple[str, int]]:
    return [(t.topic_name, p.partition_index) for t in request.topics for p in t.partitions]


@api(DescribeQuorumRequest, 0, 2)
async def describe_quorum(request, ctx):
    node, quorum, version = ctx.node, ctx.node.quorum, ctx.api_version
    leads = quorum.leader_id == node.node_id
    if not leads and quorum.leader_id is not None and not is_peer_client(ctx.client_id):
        try:
            return await node.peers.request(quorum.leader_id, request, quorum.request_timeout,
                                            Channel.QUORUM)
        except PeerUnavailable:
            pass
    topics = {}
    for name, index in wanted_partitions(request):
        if (name, index) != (METADATA_TOPIC, 0):
            data = Topic.PartitionData(version=version, partition_index=index,
                                       error_code=errors.UnknownTopicOrPartitionError.errno,
                                       error_message=f"{name}-{index} is not a quorum",
                                       leader_id=-1, leader_epoch=-1, high_watermark=-1,
                                       current_voters=[], observers=[])
        elif leads:
            data = quorum.describe(version)
        else:
            data = Topic.PartitionData(
                version=version, partition_index=index,
                error_code=errors.NotLeaderForPartitionError.errno,
                error_message=f"node {node.node_id} does not lead the quorum and cannot "
                              "reach its leader",
                leader_id=-1 if quorum.leader_id is None else quorum.leader_id,
                leader_epoch=quorum.epoch, high_watermark=-1, current_voters=[], observers=[])
        topics.setdefault(name, []).append(data)
    nodes = []
    if version >= 2:  # the voters' endpoints came in v2
        nodes = [Node(version=version, node_id=voter, listeners=[
                     Node.Listener(version=version, name="PLAINTEXT", host=host, port=port)])
                 for voter, (host, port) in sorted(node.config.voters.items())]
    return DescribeQuorumResponse(
        version=version, error_code=0, error_message=None,
        topics=[Topic(version=version, topic_name=name, partitions=parts)
                for name, parts in topics.items()],
        nodes=nodes)
