"""LeaveGroup (13): members leave at once instead of waiting out their session timeout.
v3+ names several members, by member id or group instance id (admin tools remove static
members that way); v0-2 name one member and answer with its error only."""
from kafka import errors
from kafka.protocol.consumer import LeaveGroupRequest, LeaveGroupResponse

from broker.errors import RequestError
from broker.protocol import api

MemberResponse = LeaveGroupResponse.MemberResponse


def leave(group, member_id: str, instance_id: str | None) -> int:
    if group is None:
        return errors.UnknownMemberIdError.errno
    try:
        group.leave(member_id, instance_id)
        return 0
    except RequestError as exc:
        return exc.code


@api(LeaveGroupRequest, 0, 5)
async def leave_group(request, ctx):
    version = ctx.api_version
    leaving = ([(m.member_id, m.group_instance_id) for m in request.members] if version >= 3
               else [(request.member_id, None)])
    try:
        group = ctx.node.groups.partition_of(request.group_id).group(request.group_id)
        results = [leave(group, member_id, instance_id) for member_id, instance_id in leaving]
        error = 0 if version >= 3 else results[0]
    except RequestError as exc:
        error, results = exc.code, []
    return LeaveGroupResponse(
        version=version, throttle_time_ms=0, error_code=error,
        members=[MemberResponse(version=version, member_id=m, group_instance_id=i, error_code=e)
                 for (m, i), e in zip(leaving, results)] if version >= 3 else [])
