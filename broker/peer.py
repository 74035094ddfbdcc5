"""Requests from this node to the other nodes: Kafka framing over one connection per peer.

Inter-node traffic is ordinary Kafka requests (kafka-python's message classes, plus
broker/messages.py for the APIs it lacks) sent on the peers' client listeners. The
client id `kraftboard-node-<id>` marks a request as coming from a peer, so a node cut off
from its peers (`isolated`) can refuse them while it keeps serving clients.

Each kind of traffic has its own connection to a peer (its Channel), as Kafka keeps its
replica fetchers, quorum and controller channels apart: a node answers a connection's
requests in order, so a request queued behind a long-polling fetch would wait out the
fetch's max wait (a heartbeat, a vote, the fetch that commits a metadata record).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import struct
from enum import StrEnum
from typing import Callable

from kafka.protocol.api_message import ApiMessage

from broker import codec

log = logging.getLogger(__name__)

PEER_CLIENT_PREFIX = "kraftboard-node-"
CONNECT_TIMEOUT = 1.0


class Channel(StrEnum):
    CONTROL = "control"  # to the active controller: AlterPartition, forwarded admin requests
    LIFECYCLE = "lifecycle"  # broker registration and heartbeats
    QUORUM = "quorum"  # Vote, BeginQuorumEpoch, EndQuorumEpoch, forwarded DescribeQuorum
    METADATA_FETCH = "metadata-fetch"  # fetches of the metadata log (long polls)
    REPLICATION = "replication"  # partition fetchers (long polls)


class PeerUnavailable(Exception):
    """The peer could not be reached or did not answer in time."""


def is_peer_client(client_id: str | None) -> bool:
    return bool(client_id) and client_id.startswith(PEER_CLIENT_PREFIX)


class PeerConnection:
    def __init__(self, peers: "Peers", peer_id: int):
        self.peers = peers
        self.peer_id = peer_id
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task | None = None
        # Each request awaiting its answer: the future, the response class and version.
        self._pending: dict[int, tuple[asyncio.Future, type[ApiMessage], int]] = {}
        self._correlation = itertools.count(1)
        self._connecting = asyncio.Lock()

    async def _connect(self) -> None:
        async with self._connecting:
            if self._writer is not None:
                return
            address = self.peers.resolve(self.peer_id)
            if address is None:
                raise PeerUnavailable(f"no address known for node {self.peer_id}")
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    reader, writer = await asyncio.open_connection(*address)
            except (OSError, TimeoutError) as exc:
                raise PeerUnavailable(f"cannot connect to node {self.peer_id} at "
                                      f"{address[0]}:{address[1]}: {exc!r}") from None
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                size = struct.unpack(">i", await reader.readexactly(4))[0]
                frame = await reader.readexactly(size)
                correlation_id = struct.unpack_from(">i", frame)[0]
                future, response_class, version = self._pending.pop(correlation_id,
                                                                    (None, None, None))
                if future is not None and not future.done():
                    try:
                        future.set_result(codec.decode(response_class, frame, version))
                    except Exception as exc:
                        future.set_exception(PeerUnavailable(f"bad answer from node "
                                                             f"{self.peer_id}: {exc!r}"))
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.close()

    async def request(self, request: ApiMessage, timeout: float) -> ApiMessage:
        await self._connect()
        correlation_id = next(self._correlation)
        request.with_header(correlation_id=correlation_id, client_id=self.peers.client_id)
        future = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = (future, request.header.get_response_class(),
                                         request.version)
        try:
            self._writer.write(codec.encode(request))
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise PeerUnavailable(f"node {self.peer_id} did not answer "
                                  f"{request.name} within {timeout:.1f} s") from None
        except (ConnectionError, OSError) as exc:
            self.close()
            raise PeerUnavailable(f"lost the connection to node {self.peer_id}: {exc!r}") from None
        finally:
            self._pending.pop(correlation_id, None)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for future, _, _ in self._pending.values():
            if not future.done():
                future.set_exception(PeerUnavailable(f"connection to node {self.peer_id} closed"))
        self._pending.clear()


class Peers:
    def __init__(self, node_id: int, resolve: Callable[[int], tuple[str, int] | None]):
        self.node_id = node_id
        self.client_id = f"{PEER_CLIENT_PREFIX}{node_id}"
        self.resolve = resolve
        self.isolated = False
        self._connections: dict[tuple[int, Channel], PeerConnection] = {}

    async def request(self, peer_id: int, request: ApiMessage, timeout: float,
                      channel: Channel = Channel.CONTROL) -> ApiMessage:
        if self.isolated:
            raise PeerUnavailable(f"node {self.node_id} is isolated from its peers")
        connection = self._connections.get((peer_id, channel))
        if connection is None:
            connection = self._connections[peer_id, channel] = PeerConnection(self, peer_id)
        return await connection.request(request, timeout)

    def isolate(self, isolated: bool) -> None:
        self.isolated = isolated
        if isolated:
            self.close()
        log.warning("node %d %s", self.node_id,
                    "isolated from its peers" if isolated else "reconnected to its peers")


    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
