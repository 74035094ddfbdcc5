"""Ask a running cluster, over the Kafka protocol, which node is the active controller.

The active controller is the metadata quorum's leader. DescribeQuorum (API 55) sent to
any node is answered by the leader itself (the node forwards it), so an answer without
an error names the leader as the leader sees itself; a node that cannot reach a leader
answers with an error and is not believed.
"""
from __future__ import annotations

import asyncio
import struct

from kafka.protocol.admin import DescribeQuorumRequest, DescribeQuorumResponse

from broker.raft import METADATA_TOPIC

PROBE_TIMEOUT = 2.0  # seconds per node
CLIENT_ID = "kraftboard-supervisor"


async def active_controller(addresses: list[tuple[str, int]]) -> int | None:
    """The leader named by the first node that answers for it, or None if none does."""
    asks = [asyncio.create_task(_quorum_leader(host, port)) for host, port in addresses]
    try:
        for answer in asyncio.as_completed(asks):
            leader = await answer
            if leader is not None:
                return leader
        return None
    finally:
        for ask in asks:
            ask.cancel()


async def _quorum_leader(host: str, port: int) -> int | None:
    topic = DescribeQuorumRequest.TopicData
    request = DescribeQuorumRequest(version=0, topics=[topic(
        topic_name=METADATA_TOPIC, partitions=[topic.PartitionData(partition_index=0)])])
    request.with_header(correlation_id=1, client_id=CLIENT_ID)
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request.encode(header=True, framed=True))
                size = struct.unpack(">i", await reader.readexactly(4))[0]
                frame = await reader.readexactly(size)
            finally:
                writer.close()
        response = DescribeQuorumResponse.decode(frame, version=0, header=True)
        partition = response.topics[0].partitions[0]
    except (OSError, TimeoutError, asyncio.IncompleteReadError, struct.error, IndexError,
            ValueError):
        return None
    if response.error_code or partition.error_code or partition.leader_id < 0:
        return None
    return partition.leader_id
