"""CreatePartitions (37): grow a topic's partition count, the new partitions' replicas
placed by the controller or by hand. Answered by the active controller."""
from kafka import errors
from kafka.protocol.admin import CreatePartitionsRequest, CreatePartitionsResponse

from broker.errors import RequestError
from broker.protocol import api

Result = CreatePartitionsResponse.CreatePartitionsTopicResult


@api(CreatePartitionsRequest, 0, 3)
async def create_partitions(request, ctx):
    node = ctx.node
    if (answer := await node.forward_to_controller(request, ctx)) is not None:
        return answer
    results = []
    for wanted in request.topics:
        result = Result(version=ctx.api_version, name=wanted.name, error_code=0, error_message=None)
        try:
            if not node.controller_active:
                raise RequestError(errors.NotControllerError, "no active controller is reachable")
            placed = (None if wanted.assignments is None
                      else [list(a.broker_ids) for a in wanted.assignments])
            if request.validate_only:
                node.controller.check_partition_count(wanted.name, wanted.count, placed)
            else:
                await node.controller.create_partitions(wanted.name, wanted.count, placed)
        except RequestError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
        results.append(result)
    return CreatePartitionsResponse(version=ctx.api_version, throttle_time_ms=0, results=results)
