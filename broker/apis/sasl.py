"""SaslHandshake (17) and SaslAuthenticate (36): a client proves who it is on a SASL listener.

The handshake picks the mechanism; SaslAuthenticate carries the mechanism's tokens (one
for PLAIN, two for SCRAM). Handshake v0 is advertised, because librdkafka takes SASL to be
unsupported by a broker whose range lacks it, but refused with UNSUPPORTED_VERSION: after
a v0 handshake come raw, unframed tokens, which no client we serve still sends (they all
use v1 and SaslAuthenticate). A refused handshake or a failed authentication is
answered, then the connection closes (broker/server.py), as in Kafka.
On a listener without SASL, or once authenticated, both answer ILLEGAL_SASL_STATE.
"""
import logging

from kafka import errors
from kafka.protocol.sasl import (
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
)

from broker.protocol import api
from broker.security import AuthenticationFailed

log = logging.getLogger(__name__)


@api(SaslHandshakeRequest, 0, 1)
async def sasl_handshake(request, ctx):
    session = ctx.session
    if session is None or session.authenticated:
        return SaslHandshakeResponse(version=ctx.api_version,
                                     error_code=errors.IllegalSaslStateError.errno, mechanisms=[])
    enabled = session.users.mechanisms
    if ctx.api_version == 0:
        session.refused = "SaslHandshake v0 (unframed SASL tokens) is not supported; use v1"
        error = errors.UnsupportedVersionError
    elif session.mechanism is not None:
        session.refused = "a second SaslHandshake"
        error = errors.IllegalSaslStateError
    elif request.mechanism not in enabled:
        session.refused = f"SASL mechanism {request.mechanism} is not enabled"
        error = errors.UnsupportedSaslMechanismError
    else:
        session.mechanism = request.mechanism
        session.exchange = session.users.exchange(request.mechanism)
        error = errors.NoError
    return SaslHandshakeResponse(version=ctx.api_version, error_code=error.errno,
                                 mechanisms=enabled)


@api(SaslAuthenticateRequest, 0, 2)
async def sasl_authenticate(request, ctx):
    session = ctx.session
    if session is None or session.authenticated:
        return response(ctx, errors.IllegalSaslStateError,
                        "no SASL authentication is under way on this connection")
    if session.exchange is None:
        session.refused = "SaslAuthenticate before SaslHandshake"
        return response(ctx, errors.IllegalSaslStateError, session.refused)
    try:
        token = session.exchange.step(bytes(request.auth_bytes))
    except AuthenticationFailed as exc:
        session.refused = str(exc)
        return response(ctx, errors.SaslAuthenticationFailedError, str(exc))
    if session.exchange.principal is not None:
        session.principal = session.exchange.principal
        log.info("%s authenticated as %s with %s on the %s listener", ctx.peer, session.principal,
                 session.mechanism, session.listener)
    return response(ctx, errors.NoError, None, token)


def response(ctx, error, message: str | None, token: bytes = b"") -> SaslAuthenticateResponse:
    return SaslAuthenticateResponse(version=ctx.api_version, error_code=error.errno,
                                    error_message=message, auth_bytes=token, session_lifetime_ms=0)
