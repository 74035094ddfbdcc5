"""BrokerRegistration (62) and BrokerHeartbeat (63): brokers reporting to the active
controller, which fences the silent ones and, on WantShutDown, the ones about to stop
(controlled shutdown; see broker/controller.py)."""
from kafka import errors

from broker.errors import RequestError
from broker.messages import (
    BrokerHeartbeatRequest, BrokerHeartbeatResponse,
    BrokerRegistrationRequest, BrokerRegistrationResponse,
)
from broker.metadata import BrokerInfo
from broker.protocol import api


def active_controller(node):
    if not node.controller_active:
        raise RequestError(errors.NotControllerError,
                           f"node {node.node_id} is not the active controller")
    return node.controller


@api(BrokerRegistrationRequest, 0, 0, inter_node=True)
async def broker_registration(request, ctx):
    try:
        await active_controller(ctx.node).register_broker(BrokerInfo(
            request.broker_id, {e.name: (e.host, e.port) for e in request.listeners},
            request.incarnation_id))
    except RequestError as exc:
        return BrokerRegistrationResponse(version=0, throttle_time_ms=0, error_code=exc.code,
                                          error_message=exc.message)
    return BrokerRegistrationResponse(version=0, throttle_time_ms=0, error_code=0,
                                      error_message=None)


@api(BrokerHeartbeatRequest, 0, 0, inter_node=True)
async def broker_heartbeat(request, ctx):
    try:
        fenced = await active_controller(ctx.node).heartbeat(
            request.broker_id, request.incarnation_id, request.current_metadata_offset,
            request.want_shut_down)
    except RequestError as exc:
        return BrokerHeartbeatResponse(version=0, throttle_time_ms=0, error_code=exc.code,
                                       is_fenced=True)
    return BrokerHeartbeatResponse(version=0, throttle_time_ms=0, error_code=0, is_fenced=fenced,
                                   should_shut_down=request.want_shut_down and fenced)
