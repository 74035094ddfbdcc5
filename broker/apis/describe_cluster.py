"""DescribeCluster (60): cluster id, controller and brokers."""
from kafka.protocol.admin import DescribeClusterRequest, DescribeClusterResponse

from broker.protocol import api

Broker = DescribeClusterResponse.DescribeClusterBroker


@api(DescribeClusterRequest, 0, 1)
async def describe_cluster(request, ctx):
    node = ctx.node
    host, port = node.config.advertised_address
    return DescribeClusterResponse(
        version=ctx.api_version, throttle_time_ms=0, error_code=0, error_message=None,
        endpoint_type=1, cluster_id=node.cluster_id, controller_id=node.node_id,
        brokers=[Broker(version=ctx.api_version, broker_id=node.node_id, host=host, port=port,
                        rack=None)])
