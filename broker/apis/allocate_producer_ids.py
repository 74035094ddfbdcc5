"""AllocateProducerIds (67): a broker asks the active controller for a block of producer
ids, which it then hands out on InitProducerId (Kafka's KIP-730)."""
from broker.apis.broker_lifecycle import active_controller
from broker.controller import PRODUCER_ID_BLOCK
from broker.errors import RequestError
from broker.messages import AllocateProducerIdsRequest, AllocateProducerIdsResponse
from broker.protocol import api


@api(AllocateProducerIdsRequest, 0, 0, inter_node=True)
async def allocate_producer_ids(request, ctx):
    try:
        start = await active_controller(ctx.node).allocate_producer_ids(
            request.broker_id, request.incarnation_id)
    except RequestError as exc:
        return AllocateProducerIdsResponse(version=0, throttle_time_ms=0, error_code=exc.code,
                                           producer_id_start=-1, producer_id_len=0)
    return AllocateProducerIdsResponse(version=0, throttle_time_ms=0, error_code=0,
                                       producer_id_start=start, producer_id_len=PRODUCER_ID_BLOCK)
