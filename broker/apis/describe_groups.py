"""DescribeGroups (15): state, protocol and members (client ids, hosts) of groups this
node coordinates; subscriptions and assignments only for a Stable group, as in Kafka.
An unknown group is answered as Dead, without an error."""
from kafka.protocol.admin import DescribeGroupsRequest, DescribeGroupsResponse

from broker.errors import RequestError
from broker.groups.group import State
from broker.protocol import api

Described = DescribeGroupsResponse.DescribedGroup
DescribedMember = Described.DescribedGroupMember


def describe(node, group_id: str, version: int) -> Described:
    answer = Described(version=version, error_code=0, error_message=None, group_id=group_id,
                       group_state=State.DEAD.value, protocol_type="", protocol_data="",
                       members=[], authorized_operations=None)  # None: not asked for
    try:
        group = node.groups.partition_of(group_id).group(group_id)
    except RequestError as exc:
        answer.error_code, answer.error_message = exc.code, exc.message
        return answer
    if group is None:
        return answer
    stable = group.state is State.STABLE
    answer.group_state = group.state.value
    answer.protocol_type = group.protocol_type or ""
    answer.protocol_data = (group.protocol_name or "") if stable else ""
    answer.members = [DescribedMember(
        version=version, member_id=m.member_id, group_instance_id=m.group_instance_id,
        client_id=m.client_id, client_host=m.client_host,
        member_metadata=m.metadata(group.protocol_name) if stable else b"",
        member_assignment=m.assignment if stable else b"") for m in group.members.values()]
    return answer


@api(DescribeGroupsRequest, 0, 5)
async def describe_groups(request, ctx):
    return DescribeGroupsResponse(
        version=ctx.api_version, throttle_time_ms=0,
        groups=[describe(ctx.node, group_id, ctx.api_version) for group_id in request.groups])
