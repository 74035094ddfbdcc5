"""The Kafka listener: framing, decoding, dispatch, and answers in request order.

A connection's requests are handled one after the other, as Kafka does, so each answer
reflects every request before it (a Metadata request queued behind an acks=all produce
describes the cluster the produce waited for, not the one it arrived in). The exception
is a run of Produce requests, or of OffsetCommit requests: each starts as it arrives (so
it takes its place in the log in order) without waiting for the one before, so a
pipelining client's batches, or commits, share one append and one group commit. A
commit's first part even runs as it is read (Api.starts_at_once), and one task per
connection finishes such requests in order: a task for each cost more than the commit.
Responses go back in request order, as Kafka guarantees. Nothing a client sends can stop
the node: a frame it cannot parse closes that client's connection only.

A node has one server per listener (`listeners`): TLS on SSL and SASL_SSL ones, and on
SASL ones nothing but ApiVersions, SaslHandshake and SaslAuthenticate until the client
has authenticated (anything else closes the connection, as in Kafka). Inter-node APIs are
served on the inter-broker listener only.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import struct
from collections import deque
from typing import Coroutine

from kafka.protocol.metadata import ApiVersionsResponse

import broker.apis  # noqa: F401  (registers every API module)
from broker import codec
from broker.config import Endpoint
from broker.node import Node
from broker.peer import is_peer_client
from broker.protocol import REGISTRY, CloseConnection, RequestContext, supported_versions
from broker.security import Session, Users

log = logging.getLogger(__name__)

REQUEST_PREFIX = struct.Struct(">hhi")  # api key, api version, correlation id
PRODUCE_KEY = 0
OFFSET_COMMIT_KEY = 8
RUN_KEYS = frozenset({PRODUCE_KEY, OFFSET_COMMIT_KEY})  # APIs whose runs start at once
API_VERSIONS_KEY = 18
SASL_KEYS = frozenset({17, 36})  # SaslHandshake, SaslAuthenticate
UNSUPPORTED_VERSION = 35
# Reading a connection's requests ahead pauses at this many unanswered requests, or once
# their frames reach this many bytes (so a frame bigger than that is still read). Pipelined
# commits and produces read together share one append, so more read ahead costs less each.
MAX_IN_FLIGHT = 1024
READ_AHEAD_BYTES = 16 * 1024 * 1024
READ_SIZE = 256 * 1024  # what one read of a connection takes at most
# What a node answers before its broker side is ready: version negotiation, SASL and the quorum.
ANSWERED_BEFORE_READY = frozenset({API_VERSIONS_KEY, *SASL_KEYS, 55})
# What a SASL listener answers before the client has authenticated.
ANSWERED_BEFORE_AUTHENTICATION = frozenset({API_VERSIONS_KEY, *SASL_KEYS})


def encode_answer(response, context: RequestContext) -> bytes | None:
    if response is None:
        return None
    if isinstance(response, codec.EncodedResponse):
        return response.frame(context.correlation_id)
    return codec.encode(response, codec.ResponseHeaderFields(context.correlation_id))


class FrameReader:
    """A connection's request frames, without their size prefix. Each read gives every
    whole frame received so far: a pipelining client's requests cost one read between
    them, not two each."""

    def __init__(self, reader: asyncio.StreamReader, max_frame: int):
        self._reader = reader
        self._max_frame = max_frame
        self._buffer = bytearray()

    async def read(self) -> list[bytes]:
        while not (frames := self._whole_frames()):
            chunk = await self._reader.read(READ_SIZE)
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(self._buffer), None)
            self._buffer += chunk
        return frames

    def _whole_frames(self) -> list[bytes]:
        buffer, frames, position = self._buffer, [], 0
        with memoryview(buffer) as view:
            while len(buffer) - position >= codec.FRAME_SIZE.size:
                size = codec.FRAME_SIZE.unpack_from(buffer, position)[0]
                if not REQUEST_PREFIX.size <= size <= self._max_frame:
                    if frames:
                        break  # the requests before it are answered first
                    raise CloseConnection(f"frame of {size} bytes is outside "
                                          f"8..socket.request.max.bytes ({self._max_frame})")
                start = position + codec.FRAME_SIZE.size
                if len(buffer) - start < size:
                    break  # the rest of it is still on its way
                frames.append(bytes(view[start:start + size]))
                position = start + size
        del buffer[:position]
        return frames


class KafkaServer:
    def __init__(self, node: Node):
        self.node = node
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: set[asyncio.Task] = set()
        uses_sasl = any(e.uses_sasl for e in node.config.listeners)
        self._users = Users(node.config) if uses_sasl else None

    async def bind(self) -> None:
        """Take every listener's port (a busy one fails here, before the node opens
        anything); connections are accepted once `serve` is called."""
        tls = self.node.config.tls_context
        for endpoint in self.node.config.listeners:
            try:
                self._servers.append(await asyncio.start_server(
                    functools.partial(self._accept, endpoint), endpoint.host, endpoint.port,
                    reuse_address=True, start_serving=False,
                    ssl=tls if endpoint.uses_tls else None))
            except OSError as exc:
                await self.stop()
                raise OSError(exc.errno, f"cannot listen on {endpoint.host}:{endpoint.port} "
                                         f"({exc.strerror}); is another broker using it? Change "
                                         f"`listeners` in {self.node.config.path or 'the config'}"
                              ) from None

    async def serve(self) -> None:
        for server in self._servers:
            await server.start_serving()

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _accept(self, endpoint: Endpoint, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        session = Session(endpoint.name, self._users if endpoint.uses_sasl else None)
        try:
            await Connection(self.node, reader, writer, session).serve()
        except asyncio.CancelledError:
            # `stop` closing the connection. The task ends normally: asyncio (3.11) logs a
            # cancelled connection handler as an error with a traceback.
            pass
        finally:
            self._connections.discard(task)


class Connection:
    def __init__(self, node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 session: Session):
        self.node = node
        self.session = session
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.max_frame = node.config["socket.request.max.bytes"]
        self._loop = asyncio.get_running_loop()
        self.responses: asyncio.Queue = asyncio.Queue(MAX_IN_FLIGHT)
        self._frame_sizes: deque[int] = deque()  # of the requests in `responses`, in order
        self._unanswered_bytes = 0
        self._answered = asyncio.Event()  # set when an answer leaves `responses`
        self.from_peer = False  # another node's connection, cut by the isolate drill
        # Requests of the current run that started at once and have not finished, with
        # their API key (one key at a time), and the last request that instead waited for
        # every request before it. A request starts at once only behind its own run; any
        # other waits for that run and that last request, which waited for the rest.
        self._run: dict[asyncio.Task, int] = {}
        self._last_waiting: asyncio.Task | None = None
        # Requests that started at once (Api.starts_at_once), with their context and the
        # future of their answer, and the task finishing them in order.
        self._started: deque[tuple[Coroutine, RequestContext, asyncio.Future]] = deque()
        self._finishing: asyncio.Task | None = None

    async def serve(self) -> None:
        reading = asyncio.create_task(self._read_requests())
        sending = asyncio.create_task(self._send_responses())
        try:
            await asyncio.wait({reading, sending}, return_when=asyncio.FIRST_COMPLETED)
            if reading.done():
                self._log_close(reading.exception())
                await self.responses.put(None)  # answers already under way still go out
                await sending
        finally:
            reading.cancel()
            sending.cancel()
            while not self.responses.empty():
                pending = self.responses.get_nowait()
                if pending is not None:
                    pending.cancel()
            self.writer.close()

    def _log_close(self, reason: BaseException | None) -> None:
        if isinstance(reason, CloseConnection):
            log.info("closing connection from %s: %s", self.peer, reason)
        elif reason is not None and not isinstance(reason, (asyncio.IncompleteReadError,
                                                            ConnectionError)):
            log.error("connection from %s failed", self.peer, exc_info=reason)

    async def _read_requests(self) -> None:
        frames = FrameReader(self.reader, self.max_frame)
        while True:
            while self._unanswered_bytes >= READ_AHEAD_BYTES:
                self._answered.clear()
                await self._answered.wait()
            for frame in await frames.read():
                await self._read_request(frame)

    async def _read_request(self, frame: bytes) -> None:
        """Start a request, or queue it behind the ones it must wait for, and queue its answer."""
        size = len(frame)
        api_key, version, correlation_id = REQUEST_PREFIX.unpack_from(frame)
        api = REGISTRY.get(api_key)
        if api is None:
            raise CloseConnection(f"unknown or unsupported API key {api_key}")
        if not self.session.authenticated and api_key not in ANSWERED_BEFORE_AUTHENTICATION:
            raise CloseConnection(f"{api.request.name} before SASL authentication on the "
                                  f"{self.session.listener} listener")
        if api.inter_node and self.session.listener != self.node.config.inter_broker_listener:
            raise CloseConnection(f"{api.request.name} is for peers, on the inter-broker "
                                  "listener")
        if not api.supports(version):
            if api_key != API_VERSIONS_KEY:
                raise CloseConnection(f"{api.request.name} v{version} is not supported")
            await self._queue(self._unsupported_api_versions(correlation_id), size)
            return
        try:
            request = codec.decode(api.request, frame, version)
        except Exception as exc:
            raise CloseConnection(f"cannot decode {api.request.name} v{version}: {exc!r}")
        client_id = request.header.client_id
        if is_peer_client(client_id):
            self.from_peer = True
            if self.node.peers.isolated:  # the isolate drill: peers cannot reach us
                raise CloseConnection(f"node {self.node.node_id} is isolated from its peers")
        elif not self.node.ready.is_set() and api_key not in ANSWERED_BEFORE_READY:
            # Clients wait until this broker has registered and caught up, as in Kafka.
            await self.node.ready.wait()
        context = RequestContext(self.node, version, correlation_id, client_id, self.peer,
                                 self.session)
        waiting = self._last_waiting is not None and not self._last_waiting.done()
        in_run = (api_key in RUN_KEYS and not waiting
                  and next(iter(self._run.values()), api_key) == api_key)
        if in_run and api.starts_at_once:
            answer = self._start(api, request, context)
        else:
            earlier = [] if in_run else [*self._run, *([self._last_waiting] if waiting else [])]
            # The task starts before the next request is read, so appends keep their order.
            answer = asyncio.create_task(self._handle(api, request, context, earlier))
            if in_run:
                self._run[answer] = api_key
                answer.add_done_callback(self._run.pop)
            else:
                self._last_waiting = answer
        await self._queue(answer, size)
        if not self.session.authenticated:
            # The SASL exchange decides what the next request may be: no reading ahead.
            await asyncio.wait([answer])
            if self.session.refused:
                raise CloseConnection(self.session.refused)

    async def _handle(self, api, request, context: RequestContext,
                      earlier: list[asyncio.Future]) -> bytes | None:
        if earlier:
            await asyncio.wait(earlier)
        return encode_answer(await api.handler(request, context), context)

    def _start(self, api, request, context: RequestContext) -> asyncio.Future:
        """Start a request whose handler starts at once, in a run: its first part runs now,
        and one task per connection finishes such requests in order (a task each would
        cost more than a commit's own work). Returns the future of its answer."""
        finishing = api.handler(request, context)
        answer = self._loop.create_future()
        self._started.append((finishing, context, answer))
        if self._finishing is None or self._finishing.done():
            self._finishing = asyncio.create_task(self._finish_started())
            # The task stands for the run's started requests: it ends once all are answered.
            self._run[self._finishing] = api.key
            self._finishing.add_done_callback(self._run.pop)
        return answer

    async def _finish_started(self) -> None:
        # Not cancelled with the connection: what was started is finished (a commit's
        # records are already queued); only the answers are dropped.
        try:
            while self._started:
                finishing, context, answer = self._started.popleft()
                try:
                    data = encode_answer(await finishing, context)
                except Exception as exc:  # the sender logs it and closes the connection
                    if not answer.done():
                        answer.set_exception(exc)
                else:
                    if not answer.done():
                        answer.set_result(data)
        finally:  # left only when empty, or when the node stops and cancels every task
            while self._started:
                self._started.popleft()[0].close()

    def _unsupported_api_versions(self, correlation_id: int) -> asyncio.Future:
        """A client asking for a newer ApiVersions gets our ranges in the v0 format."""
        response = ApiVersionsResponse(version=0, error_code=UNSUPPORTED_VERSION,
                                       api_keys=supported_versions())
        future = asyncio.get_running_loop().create_future()
        future.set_result(codec.encode(response, codec.ResponseHeaderFields(correlation_id)))
        return future

    async def _queue(self, answer: asyncio.Future, frame_size: int) -> None:
        self._frame_sizes.append(frame_size)
        self._unanswered_bytes += frame_size
        await self.responses.put(answer)

    def _dequeued(self) -> None:
        """An answer was taken from `responses`: its request no longer counts as read ahead."""
        self._unanswered_bytes -= self._frame_sizes.popleft()
        self._answered.set()

    async def _send_responses(self) -> None:
        pending = await self.responses.get()
        while pending is not None:
            # Answers that are already finished go out in one write: a client pipelining a
            # run of requests costs one system call per run rather than one per answer.
            answers: list[bytes] = []
            while True:
                try:
                    data = await pending
                    self._dequeued()
                except CloseConnection as exc:
                    self._log_close(exc)
                    await self._write(answers)
                    return
                except Exception:
                    log.exception("request from %s failed; closing its connection", self.peer)
                    await self._write(answers)
                    return
                if self.from_peer and self.node.peers.isolated:
                    return  # isolated while the request waited (a long-polling fetch)
                if data is not None:
                    answers.append(data)
                if self.responses.empty():
                    pending = ...  # nothing read yet: wait for the next request below
                    break
                pending = self.responses.get_nowait()
                if pending is None or not pending.done():
                    break
            if not await self._write(answers):
                return
            if pending is ...:
                pending = await self.responses.get()

    async def _write(self, answers: list[bytes]) -> bool:
        """False when the client has gone away: an ordinary disconnect."""
        if answers:
            try:
                self.writer.writelines(answers)
                await self.writer.drain()
            except (ConnectionError, OSError):
                return False
        return True
