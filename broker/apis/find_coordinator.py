"""FindCoordinator (10): no group or transaction coordinator runs yet.

Consumers that assign partitions themselves (kcat, `assign()`) still work: librdkafka asks
for a coordinator in the background and keeps fetching meanwhile.
"""
from kafka import errors
from kafka.protocol.metadata import FindCoordinatorRequest, FindCoordinatorResponse

from broker.protocol import api

NOT_AVAILABLE = errors.CoordinatorNotAvailableError
MESSAGE = "consumer groups are not available on this broker yet"


@api(FindCoordinatorRequest, 0, 4)
async def find_coordinator(request, ctx):
    version = ctx.api_version
    if version < 4:
        return FindCoordinatorResponse(version=version, throttle_time_ms=0,
                                       error_code=NOT_AVAILABLE.errno, error_message=MESSAGE,
                                       node_id=-1, host="", port=-1)
    return FindCoordinatorResponse(version=version, throttle_time_ms=0, coordinators=[
        FindCoordinatorResponse.Coordinator(version=version, key=key, node_id=-1, host="", port=-1,
                                            error_code=NOT_AVAILABLE.errno, error_message=MESSAGE)
        for key in request.coordinator_keys])
