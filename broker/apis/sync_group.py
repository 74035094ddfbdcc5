"""SyncGroup (14): the leader sends the assignment it computed; every member of the
generation gets its own part once the group is stored."""
from kafka.protocol.consumer import SyncGroupRequest, SyncGroupResponse

from broker.errors import RequestError
from broker.protocol import api


@api(SyncGroupRequest, 0, 5)
async def sync_group(request, ctx):
    version = ctx.api_version
    group = None
    try:
        group = ctx.node.groups.group(request.group_id)
        assignment = await group.sync(
            request.member_id, request.group_instance_id if version >= 3 else None,
            request.generation_id,
            request.protocol_type if version >= 5 else None,
            request.protocol_name if version >= 5 else None,
            {a.member_id: a.assignment for a in request.assignments})
        error = 0
    except RequestError as exc:
        assignment, error = b"", exc.code
    return SyncGroupResponse(
        version=version, throttle_time_ms=0, error_code=error,
        protocol_type=group.protocol_type if group and not error else None,
        protocol_name=group.protocol_name if group and not error else None,
        assignment=assignment)
