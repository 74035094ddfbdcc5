"""Heartbeat (12): a member is alive; REBALANCE_IN_PROGRESS tells it to rejoin."""
from kafka.protocol.consumer import HeartbeatRequest, HeartbeatResponse

from broker.errors import RequestError
from broker.protocol import api


@api(HeartbeatRequest, 0, 4)
async def heartbeat(request, ctx):
    version = ctx.api_version
    try:
        ctx.node.groups.group(request.group_id).heartbeat(
            request.member_id, request.group_instance_id if version >= 3 else None,
            request.generation_id)
        error = 0
    except RequestError as exc:
        error = exc.code
    return HeartbeatResponse(version=version, throttle_time_ms=0, error_code=error)
