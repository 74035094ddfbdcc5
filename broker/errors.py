"""The one exception a request handler raises to answer with a Kafka error code."""
from __future__ import annotations

from kafka import errors


class RequestError(Exception):
    """`error` is kafka-python's class for the Kafka error code to send back."""

    def __init__(self, error: type[errors.BrokerResponseError], message: str = ""):
        super().__init__(message or error.description)
        self.error = error
        self.message = message

    @property
    def code(self) -> int:
        return self.error.errno
