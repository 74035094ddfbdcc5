"""ElectLeaders (43): preferred (0) or unclean (1) leader elections, asked by an admin.

Answered by the active controller; any other node forwards the request to it. Asked for
every partition (`topic_partitions` null), the answer leaves out the partitions that
needed no election, as Kafka's controller does.
"""
from kafka import errors
from kafka.protocol.admin import ElectLeadersRequest, ElectLeadersResponse

from broker.errors import RequestError
from broker.protocol import api

Result = ElectLeadersResponse.ReplicaElectionResult
PartitionResult = Result.PartitionResult
PREFERRED, UNCLEAN = 0, 1


@api(ElectLeadersRequest, 0, 2)
async def elect_leaders(request, ctx):
    node = ctx.node
    if (answer := await node.forward_to_controller(request, ctx)) is not None:
        return answer
    version = ctx.api_version
    wanted = (None if request.topic_partitions is None
              else [(t.topic, p) for t in request.topic_partitions for p in t.partitions])
    try:
        if request.election_type not in (PREFERRED, UNCLEAN):
            raise RequestError(errors.InvalidRequestError,
                               f"unknown election type {request.election_type}")
        if not node.controller_active:
            raise RequestError(errors.NotControllerError, "no active controller is reachable")
        outcomes = await node.controller.elect_leaders(request.election_type == UNCLEAN, wanted)
    except RequestError as exc:  # the whole request failed: so did each partition asked
        return response(version, exc.code, [(key, exc) for key in wanted or []])
    if wanted is None:
        outcomes = {key: error for key, error in outcomes.items()
                    if error is None or error.code != errors.ElectionNotNeededError.errno}
    return response(version, 0, list(outcomes.items()))


def response(version: int, error_code: int, outcomes: list) -> ElectLeadersResponse:
    by_topic: dict[str, list] = {}
    for (topic, index), error in outcomes:
        by_topic.setdefault(topic, []).append(PartitionResult(
            version=version, partition_id=index, error_code=error.code if error else 0,
            error_message=error.message if error else None))
    return ElectLeadersResponse(
        version=version, throttle_time_ms=0, error_code=error_code,
        replica_election_results=[Result(version=version, topic=topic, partition_result=results)
                                  for topic, results in by_topic.items()])
