"""FindCoordinator (10): the broker coordinating a consumer group.

Any node answers from its metadata image: the leader of the group's
`__consumer_offsets` partition, which the first request creates. v4+ asks for many keys
at once. Transactions are not offered: a transaction coordinator (key type 1) is always
COORDINATOR_NOT_AVAILABLE.
"""
from kafka import errors
from kafka.protocol.metadata import FindCoordinatorRequest, FindCoordinatorResponse

from broker.errors import RequestError
from broker.groups.coordinator import check_group_id
from broker.protocol import api

GROUP, TRANSACTION = 0, 1


async def find(node, key: str, key_type: int,
               listener: str) -> tuple[int, str, int, RequestError | None]:
    """(node id, host, port, error) for one key; the address on the client's listener."""
    try:
        if key_type == TRANSACTION:
            raise RequestError(errors.CoordinatorNotAvailableError,
                               "transactions are not supported by this broker")
        if key_type != GROUP:
            raise RequestError(errors.InvalidRequestError, f"unknown key type {key_type}")
        check_group_id(key)
        broker = await node.groups.coordinator_of(key)
        if listener not in broker.endpoints:
            raise RequestError(errors.CoordinatorNotAvailableError,
                               f"coordinator {broker.id} has no {listener} listener")
        return broker.id, *broker.endpoints[listener], None
    except RequestError as exc:
        return -1, "", -1, exc


@api(FindCoordinatorRequest, 0, 4)
async def find_coordinator(request, ctx):
    version = ctx.api_version
    key_type = request.key_type if version >= 1 else GROUP
    if version < 4:
        node_id, host, port, error = await find(ctx.node, request.key, key_type, ctx.listener)
        return FindCoordinatorResponse(
            version=version, throttle_time_ms=0, error_code=error.code if error else 0,
            error_message=error.message if error else None, node_id=node_id, host=host, port=port)
    coordinators = []
    for key in request.coordinator_keys:
        node_id, host, port, error = await find(ctx.node, key, key_type, ctx.listener)
        coordinators.append(FindCoordinatorResponse.Coordinator(
            version=version, key=key, node_id=node_id, host=host, port=port,
            error_code=error.code if error else 0, error_message=error.message if error else None))
    return FindCoordinatorResponse(version=version, throttle_time_ms=0, coordinators=coordinators)
