"""DescribeCluster (60): cluster id, controller and brokers (on the client's listener)."""
from kafka.protocol.admin import DescribeClusterRequest, DescribeClusterResponse

from broker.apis.metadata import controller_id
from broker.protocol import api

Broker = DescribeClusterResponse.DescribeClusterBroker


@api(DescribeClusterRequest, 0, 1)
async def describe_cluster(request, ctx):
    node = ctx.node
    return DescribeClusterResponse(
        version=ctx.api_version, throttle_time_ms=0, error_code=0, error_message=None,
        endpoint_type=1, cluster_id=node.cluster_id, controller_id=controller_id(node),
        brokers=[Broker(version=ctx.api_version, broker_id=b, host=host, port=port, rack=None)
                 for b, (host, port) in node.image.live_endpoints(ctx.listener).items()])
