"""Send kafka-python protocol messages through aiokafka's client.

aiokafka lacks some APIs the console needs (DescribeQuorum, ListOffsets v1+ with
many partitions in one request). kafka-python's classes, generated from Kafka's JSON
schemas, encode every version; `KafkaPythonRequest` lets aiokafka's connection
negotiate the version and frame them like its own requests.
"""
from __future__ import annotations

import io
from typing import Any

from aiokafka.errors import IncompatibleBrokerVersion


class _Header:
    def __init__(self, data: bytes):
        self._data = data

    def encode(self) -> bytes:
        return self._data


class _Versioned:
    """One request at the negotiated version, in the shape aiokafka's connection expects."""

    def __init__(self, message: Any):
        self.message = message
        self.API_KEY = message.API_KEY
        self.API_VERSION = message.API_VERSION
        self._flexible = message.flexible_version_q(message.API_VERSION)
        message.with_header()
        # The response class of the same version: aiokafka's connection calls its decode().
        self.RESPONSE_TYPE = message.header.get_response_class()
        self._body: bytes | None = None

    def build_request_header(self, correlation_id: int, client_id: str) -> _Header:
        self.message.with_header(correlation_id=correlation_id, client_id=client_id)
        return _Header(self.message.encode_header(flexible=self._flexible))

    def encode(self) -> bytes:
        if self._body is None:  # a request sent again unchanged is encoded once
            self._body = bytes(self.message.encode())
        return self._body

    def parse_response_header(self, buffer: io.BytesIO) -> Any:
        return self.RESPONSE_TYPE.parse_header(buffer)


class KafkaPythonRequest:
    """`KafkaPythonRequest(DescribeQuorumRequest, topics=[...])` for `AIOKafkaClient.send`.

    The highest version both kafka-python and the broker support is used, capped by
    `max_version` when the fields given only exist up to some version, and at least
    `min_version` when they only exist from some version on. The same request can be
    sent again (the console repeats some every refresh); its body is encoded once.
    """

    def __init__(self, message_class: Any, max_version: int | None = None,
                 min_version: int | None = None, **fields: Any):
        self.message_class = message_class
        self.API_KEY = message_class.API_KEY
        self.max_version = message_class.max_version if max_version is None else max_version
        self.min_version = message_class.min_version if min_version is None else min_version
        self.fields = fields
        self._prepared: dict[int, _Versioned] = {}

    def prepare(self, versions: dict[int, tuple[int, int]]) -> _Versioned:
        name = self.message_class.name
        if self.API_KEY not in versions:
            raise IncompatibleBrokerVersion(f"the broker does not support {name}")
        low, high = versions[self.API_KEY]
        version = min(high, self.max_version)
        if version < max(low, self.min_version):
            raise IncompatibleBrokerVersion(
                f"no common version of {name}: broker {low}-{high}, "
                f"console {self.min_version}-{self.max_version}")
        if version not in self._prepared:
            self._prepared[version] = _Versioned(self.message_class(version=version,
                                                                    **self.fields))
        return self._prepared[version]
