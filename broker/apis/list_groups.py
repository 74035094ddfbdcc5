"""ListGroups (16): the groups this node coordinates (admin clients ask every broker).
v4 filters by state, v5 by type (every group here is "classic"). While a partition of
`__consumer_offsets` is loading the list is partial and says so."""
from kafka import errors
from kafka.protocol.admin import ListGroupsRequest, ListGroupsResponse

from broker.protocol import api

Listed = ListGroupsResponse.ListedGroup
CLASSIC = "classic"


@api(ListGroupsRequest, 0, 5)
async def list_groups(request, ctx):
    version = ctx.api_version
    states = {s.lower() for s in request.states_filter} if version >= 4 else set()
    types = {t.lower() for t in request.types_filter} if version >= 5 else set()
    listed = []
    for partition in ctx.node.groups.loaded_partitions():
        for group in partition.groups.values():
            if (states and group.state.value.lower() not in states) or \
                    (types and CLASSIC not in types):
                continue
            listed.append(Listed(version=version, group_id=group.group_id,
                                 protocol_type=group.protocol_type or "",
                                 group_state=group.state.value, group_type=CLASSIC))
    error = errors.CoordinatorLoadInProgressError.errno if ctx.node.groups.loading else 0
    return ListGroupsResponse(version=version, throttle_time_ms=0, error_code=error,
                              groups=listed)
