"""CreateTopics (19): partitions and replication factor, or replicas placed by hand;
configs; validate_only.

Answered by the active controller; any other node forwards the request to it.
"""
from kafka import errors
from kafka.protocol.admin import CreateTopicsRequest, CreateTopicsResponse

from broker.apis.describe_configs import describe_topic_configs
from broker.errors import RequestError
from broker.protocol import api

Result = CreateTopicsResponse.CreatableTopicResult
ResultConfig = Result.CreatableTopicConfigs


@api(CreateTopicsRequest, 2, 7)
async def create_topics(request, ctx):
    node = ctx.node
    if (answer := await node.forward_to_controller(request, ctx)) is not None:
        return answer
    version = ctx.api_version
    names = [t.name for t in request.topics]
    results = []
    for wanted in request.topics:
        result = Result(version=version, name=wanted.name, error_code=0, error_message=None,
                        num_partitions=-1, replication_factor=-1, configs=None)
        try:
            if not node.controller_active:
                raise RequestError(errors.NotControllerError, "no active controller is reachable")
            if names.count(wanted.name) > 1:
                raise RequestError(errors.InvalidRequestError,
                                   f"topic {wanted.name!r} appears more than once in the request")
            configs = {c.name: c.value for c in wanted.configs}
            placed = [(a.partition_index, list(a.broker_ids)) for a in wanted.assignments]
            if request.validate_only:
                result.num_partitions, result.replication_factor, _, _ = (
                    node.controller.check_new_topic(wanted.name, wanted.num_partitions,
                                                    wanted.replication_factor, configs, placed))
            else:
                topic = await node.controller.create_topic(
                    wanted.name, wanted.num_partitions, wanted.replication_factor, configs, placed)
                result.topic_id = topic.id
                result.num_partitions = len(topic.partitions)
                result.replication_factor = len(topic.partitions[0].replicas)
                if version >= 5:  # the created topic's configs are in v5+ answers only
                    result.configs = [
                        ResultConfig(version=version, name=c.name, value=c.value,
                                     read_only=c.read_only, config_source=c.config_source,
                                     is_sensitive=c.is_sensitive)
                        for c in describe_topic_configs(node, topic, None, version)]
        except RequestError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
        results.append(result)
    return CreateTopicsResponse(version=version, throttle_time_ms=0, topics=results)
