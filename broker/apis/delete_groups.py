"""DeleteGroups (42): remove empty groups with their committed offsets (tombstones in
`__consumer_offsets`). A group with members is NON_EMPTY_GROUP."""
from kafka.protocol.admin import DeleteGroupsRequest, DeleteGroupsResponse

from broker.errors import RequestError
from broker.protocol import api

Result = DeleteGroupsResponse.DeletableGroupResult


async def delete(node, group_id: str) -> int:
    try:
        await node.groups.delete_group(group_id)
        return 0
    except RequestError as exc:
        return exc.code


@api(DeleteGroupsRequest, 0, 2)
async def delete_groups(request, ctx):
    version = ctx.api_version
    return DeleteGroupsResponse(version=version, throttle_time_ms=0, results=[
        Result(version=version, group_id=group_id, error_code=await delete(ctx.node, group_id))
        for group_id in request.groups_names])
