"""JoinGroup (11): a member joins, or rejoins for a rebalance; the answer comes when the
rebalance's join phase completes. The leader's answer lists every member's metadata.
From v4 a new member first gets MEMBER_ID_REQUIRED with its id and joins again with it.
"""
from kafka import errors
from kafka.protocol.consumer import JoinGroupRequest, JoinGroupResponse

from broker.errors import RequestError
from broker.groups.group import JoinRequest, JoinResult
from broker.protocol import api

Member = JoinGroupResponse.JoinGroupResponseMember


def check_session_timeout(node, timeout_ms: int) -> None:
    low, high = (node.config["group.min.session.timeout.ms"],
                 node.config["group.max.session.timeout.ms"])
    if not low <= timeout_ms <= high:
        raise RequestError(errors.InvalidSessionTimeoutError,
                           f"session timeout {timeout_ms} ms is outside [{low}, {high}]")


@api(JoinGroupRequest, 0, 9)
async def join_group(request, ctx):
    version = ctx.api_version
    try:
        check_session_timeout(ctx.node, request.session_timeout_ms)
        group = ctx.node.groups.partition_of(request.group_id).group(
            request.group_id, create=not request.member_id)
        if group is None:
            raise RequestError(errors.UnknownMemberIdError,
                               f"group {request.group_id!r} does not exist")
        result = await group.join(JoinRequest(
            member_id=request.member_id,
            group_instance_id=request.group_instance_id if version >= 5 else None,
            client_id=ctx.client_id or "", client_host="/" + ctx.peer.rpartition(":")[0],
            session_timeout_ms=request.session_timeout_ms,
            # v0 has no rebalance timeout: Kafka uses the session timeout.
            rebalance_timeout_ms=request.rebalance_timeout_ms if version >= 1
            else request.session_timeout_ms,
            protocol_type=request.protocol_type,
            protocols=[(p.name, p.metadata) for p in request.protocols],
            require_known_member_id=version >= 4))
    except RequestError as exc:
        result = JoinResult(request.member_id, exc.error)
    return JoinGroupResponse(
        version=version, throttle_time_ms=0,
        error_code=result.error.errno if result.error else 0,
        generation_id=result.generation, protocol_type=result.protocol_type,
        protocol_name=result.protocol_name if version >= 7 else result.protocol_name or "",
        leader=result.leader, skip_assignment=False, member_id=result.member_id,
        members=[Member(version=version, member_id=m, group_instance_id=i, metadata=meta)
                 for m, i, meta in result.members])
