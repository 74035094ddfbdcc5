"""InitProducerId (22): producer ids for idempotent producers.

Each call gets an id no other producer of the cluster has, at epoch 0, from the block
of ids this broker got from the active controller (AllocateProducerIds); the partitions
then check its sequence numbers.
Transactions are not offered (their APIs are not advertised).
"""
from kafka import errors
from kafka.protocol.producer import InitProducerIdRequest, InitProducerIdResponse

from broker.errors import RequestError
from broker.protocol import api


@api(InitProducerIdRequest, 0, 4)
async def init_producer_id(request, ctx):
    if request.transactional_id is not None:
        return InitProducerIdResponse(
            version=ctx.api_version, throttle_time_ms=0,
            error_code=errors.TransactionalIdAuthorizationFailedError.errno,
            producer_id=-1, producer_epoch=-1)
    try:
        producer_id = await ctx.node.allocate_producer_id()
    except RequestError as exc:
        return InitProducerIdResponse(version=ctx.api_version, throttle_time_ms=0,
                                      error_code=exc.code, producer_id=-1, producer_epoch=-1)
    return InitProducerIdResponse(version=ctx.api_version, throttle_time_ms=0, error_code=0,
                                  producer_id=producer_id, producer_epoch=0)
