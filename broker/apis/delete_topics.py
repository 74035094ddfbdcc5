"""DeleteTopics (20): by name, or by topic id from v6. Answered by the active controller."""
import uuid

from kafka import errors
from kafka.protocol.admin import DeleteTopicsRequest, DeleteTopicsResponse

from broker.errors import RequestError
from broker.protocol import api

Result = DeleteTopicsResponse.DeletableTopicResult
NO_TOPIC_ID = uuid.UUID(int=0)


@api(DeleteTopicsRequest, 1, 6)
async def delete_topics(request, ctx):
    node = ctx.node
    if (answer := await node.forward_to_controller(request, ctx)) is not None:
        return answer
    version = ctx.api_version
    if version >= 6:
        wanted = [(t.name, t.topic_id) for t in request.topics]
    else:
        wanted = [(name, NO_TOPIC_ID) for name in request.topic_names]
    results = []
    for name, topic_id in wanted:
        result = Result(version=version, name=name, topic_id=topic_id, error_code=0,
                        error_message=None)
        try:
            if not node.controller_active:
                raise RequestError(errors.NotControllerError, "no active controller is reachable")
            if name is None:
                topic = node.image.topics_by_id.get(topic_id)
                if topic is None:
                    raise RequestError(errors.UnknownTopicIdError, f"no topic has id {topic_id}")
                name = result.name = topic.name
            topic = node.topic(name)
            result.topic_id = topic.id
            if topic.internal:
                raise RequestError(errors.InvalidTopicError, f"{name} is internal and cannot be deleted")
            await node.controller.delete_topic(name)
        except RequestError as exc:
            result.error_code = exc.code
            result.error_message = exc.message
        results.append(result)
    return DeleteTopicsResponse(version=version, throttle_time_ms=0, responses=results)
