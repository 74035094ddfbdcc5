"""The API registry: each module in broker/apis registers its handler and version range.

Requests and responses are kafka-python's message classes, generated from Kafka's JSON
schemas; this module only maps API keys to handlers.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable, NamedTuple

from kafka.protocol.api_message import ApiMessage

from broker.codec import EncodedResponse

if TYPE_CHECKING:
    from broker.node import Node
    from broker.security import Session


class CloseConnection(Exception):
    """Drop the client's connection, as Kafka does for requests it cannot answer."""


class RequestContext(NamedTuple):  # a tuple: one is made for every request
    node: "Node"
    api_version: int
    correlation_id: int
    client_id: str | None
    peer: str
    session: "Session | None" = None  # None for the requests a node makes of itself

    @property
    def listener(self) -> str:
        """The listener the request came in on (a node's own: the inter-broker one)."""
        return self.session.listener if self.session else self.node.config.inter_broker_listener


Handler = Callable[[ApiMessage, RequestContext],
                   Awaitable[ApiMessage | EncodedResponse | None]]


@dataclass(frozen=True)
class Api:
    request: type[ApiMessage]
    min_version: int
    max_version: int
    handler: Handler
    inter_node: bool  # spoken between nodes only: not advertised to clients
    # A handler that is not a coroutine function does its first part when called, and
    # returns the coroutine that finishes the request (OffsetCommit queues its records).
    starts_at_once: bool

    @property
    def key(self) -> int:
        return self.request.API_KEY

    def supports(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version


REGISTRY: dict[int, Api] = {}


def api(request: type[ApiMessage], min_version: int, max_version: int, inter_node: bool = False):
    """Register `handler` for `request`'s API key over [min_version, max_version]."""
    def register(handler: Handler) -> Handler:
        assert request.API_KEY not in REGISTRY, f"{request.name} registered twice"
        REGISTRY[request.API_KEY] = Api(request, min_version, max_version, handler, inter_node,
                                        not inspect.iscoroutinefunction(handler))
        return handler
    return register


def supported_versions() -> list[tuple[int, int, int]]:
    """(api key, min version, max version) of every registered API, for ApiVersions."""
    return [(a.key, a.min_version, a.max_version)
            for a in sorted(REGISTRY.values(), key=lambda a: a.key) if not a.inter_node]
