"""Kafka frames in and out through kafka-python's compiled codecs, header included.

kafka-python compiles a decoder and an encoder for each message version from Kafka's JSON
schemas, but its `decode(header=True)` and `encode(header=True)` still read and write the
request or response header through its generic, interpreted path. For a small request (an
OffsetCommit, a Produce of one record) that header costs more than the body. These
functions run the header through the same compiled code as the body. The bytes are the
same as kafka-python's own methods give; only the path is shorter.
"""
from __future__ import annotations

import functools
import struct
import threading
from typing import NamedTuple

from kafka.protocol.api_data import ApiData
from kafka.protocol.api_header import ApiHeader
from kafka.protocol.api_message import ApiMessage
from kafka.protocol.metadata import ApiVersionsResponse
from kafka.protocol.schemas.fields.codecs import EncodeBuffer

FRAME_SIZE = struct.Struct(">i")
DATA_VERSION = struct.Struct(">h")
# Each thread encodes into one buffer of its own, as kafka-python's EncodeBufferPool does,
# without the pool's context manager: it cost an offset commit's record a quarter of its
# encoding.
_buffers = threading.local()


def _buffer(start: int) -> EncodeBuffer:
    """This thread's buffer, to be written from `start` (what comes before is filled in
    last). The caller copies out what it wrote before encoding anything else."""
    try:
        out = _buffers.out
    except AttributeError:
        out = _buffers.out = EncodeBuffer()
    out.pos = start
    return out


def _header_version(header_class: type[ApiHeader], flexible: bool) -> int:
    """Requests use header v1 (v2 when flexible), responses v0 (v1 when flexible)."""
    return header_class._flexible_versions[0] if flexible else header_class._valid_versions[0]


def _flexible(message_class: type[ApiMessage], version: int) -> tuple[bool, bool]:
    """Whether the body, and the header, of this message version are flexible. An
    ApiVersions response header never is, so that any client can read it."""
    flexible = message_class.flexible_version_q(version)
    return flexible, flexible and not issubclass(message_class, ApiVersionsResponse)


@functools.cache
def _decoders(message_class: type[ApiMessage], version: int):
    flexible, header_flexible = _flexible(message_class, version)
    header_class = message_class.header_class
    header = header_class._struct.compiled_decode_from(
        _header_version(header_class, header_flexible), compact=False, tagged=header_flexible,
        data_class=header_class)
    body = message_class._struct.compiled_decode_from(
        version, compact=flexible, tagged=flexible, data_class=message_class[None])
    return header, body


@functools.cache
def _encoders(message_class: type[ApiMessage], version: int):
    flexible, header_flexible = _flexible(message_class, version)
    header_class = message_class.header_class
    header = header_class._struct.compiled_encode_into(
        _header_version(header_class, header_flexible), compact=False, tagged=header_flexible)
    body = message_class._struct.compiled_encode_into(version, compact=flexible, tagged=flexible)
    return header, body


def decode(message_class: type[ApiMessage], frame: bytes, version: int) -> ApiMessage:
    """A request or response (header and body) from a frame without its size prefix."""
    decode_header, decode_body = _decoders(message_class[None], version)
    data = memoryview(frame)
    header, position = decode_header(data, 0)
    message, _ = decode_body(data, position)
    message._header = header
    return message


class ResponseHeaderFields(NamedTuple):
    """A response header's one field, encoded without building a ResponseHeader."""
    correlation_id: int


RESPONSE_START = struct.Struct(">ii")  # a response frame's size, then its correlation id


class EncodedResponse(NamedTuple):
    """A response encoded beforehand, but for its correlation id: answers that repeat (a
    commit's, whose only content is its partitions' error codes) are encoded once and kept.
    Every response header starts with the correlation id; what follows it (the flexible
    header's tagged fields) and the body are the same in every answer."""
    after_correlation_id: bytes

    @classmethod
    def of(cls, message: ApiMessage) -> "EncodedResponse":
        frame = encode(message, ResponseHeaderFields(0))
        return cls(bytes(frame[RESPONSE_START.size:]))

    def frame(self, correlation_id: int) -> bytes:
        rest = self.after_correlation_id
        return RESPONSE_START.pack(len(rest) + 4, correlation_id) + rest


def encode(message: ApiMessage, header: ResponseHeaderFields | None = None) -> bytes:
    """A message as a frame with its size prefix. Its header is `header`, or else the one
    set by `with_header`."""
    encode_header, encode_body = _encoders(type(message), message.version)
    out = _buffer(FRAME_SIZE.size)
    encode_header(message.header if header is None else header, out)
    encode_body(message, out)
    FRAME_SIZE.pack_into(out.buf, 0, out.pos - FRAME_SIZE.size)
    return out.result()


@functools.cache
def _data_encoder(data_class: type[ApiData], version: int):
    flexible = data_class.flexible_version_q(version)
    return data_class._struct.compiled_encode_into(version, compact=flexible, tagged=flexible)


def encode_data(data_class: type[ApiData], version: int, fields) -> bytes:
    """A versioned record such as an offset commit in `__consumer_offsets`: its int16
    version, then its fields, as `data_class(...).encode()` writes them. `fields` has the
    schema's field names as attributes: an instance, or a named tuple that saves
    building one (the compiled encoder only reads attributes)."""
    encode_fields = _data_encoder(data_class, version)
    out = _buffer(DATA_VERSION.size)
    encode_fields(fields, out)
    DATA_VERSION.pack_into(out.buf, 0, version)
    return bytes(out.result())


@functools.cache
def _data_decoder(data_class: type[ApiData], version: int):
    flexible = data_class.flexible_version_q(version)
    return data_class._struct.compiled_decode_from(version, compact=flexible, tagged=flexible,
                                                   data_class=data_class)


def decode_data(data_class: type[ApiData], data: bytes) -> ApiData:
    """A versioned record as `data_class.decode(data)` reads it: a version newer than the
    schema knows is read as the newest it knows."""
    version = min(DATA_VERSION.unpack_from(data)[0], data_class.max_version)
    decoded, _ = _data_decoder(data_class, version)(memoryview(data), DATA_VERSION.size)
    return decoded
