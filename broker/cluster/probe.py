"""A running cluster seen from outside, through plain Kafka requests: who leads each
partition, which replicas are in sync, which node is the active controller.

Each question is one request on a fresh connection to one node, so the answer is that
node's view now, with no client-side metadata cache in between. `bootstrap` is the
"host:port,host:port" list of `kraftboard cluster status --json`; the first node that
answers is asked.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

from kafka.protocol.admin import DescribeQuorumRequest
from kafka.protocol.api_message import ApiMessage
from kafka.protocol.metadata import MetadataRequest

METADATA_VERSION = 9
CLIENT_ID = "kraftboard-probe"
T = TypeVar("T")


class NoAnswer(OSError):
    """No node of the cluster answered."""


@dataclass(frozen=True)
class PartitionState:
    leader: int  # -1: none
    leader_epoch: int
    replicas: list[int]
    isr: list[int]
    error_code: int


def call(address: tuple[str, int], request: ApiMessage, timeout: float = 5.0) -> ApiMessage:
    """Send one request to one node and return its decoded response."""
    request.with_header(correlation_id=1, client_id=CLIENT_ID)
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(request.encode(header=True, framed=True))
        size = struct.unpack(">i", _receive(sock, 4))[0]
        return request.header.get_response_class().decode(_receive(sock, size), header=True)


def _receive(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the node closed the connection")
        data += chunk
    return bytes(data)


def ask_any(bootstrap: str, request: ApiMessage, timeout: float = 2.0) -> ApiMessage:
    """The answer of the first node in `bootstrap` that gives one."""
    failures = []
    for entry in bootstrap.split(","):
        host, _, port = entry.strip().rpartition(":")
        try:
            return call((host, int(port)), request, timeout)
        except OSError as exc:  # down, refusing, or not serving clients yet (a timeout)
            failures.append(f"{entry}: {exc!r}")
    raise NoAnswer("; ".join(failures))


def wait_for(condition: Callable[[], T], what: str, timeout: float,
             interval: float = 0.05) -> T:
    """Poll `condition` until it returns something true, and return that; a node that
    does not answer counts as not yet. Raises TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if result := condition():
                return result
        except OSError:  # NoAnswer included
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def partitions(bootstrap: str, topic: str) -> dict[int, PartitionState]:
    """{partition: state} of `topic`; empty when the topic is unknown."""
    request = MetadataRequest(version=METADATA_VERSION, allow_auto_topic_creation=False,
                              include_topic_authorized_operations=False,
                              topics=[MetadataRequest.MetadataRequestTopic(name=topic)])
    found = ask_any(bootstrap, request).topics[0]
    return {p.partition_index: PartitionState(p.leader_id, p.leader_epoch, list(p.replica_nodes),
                                              list(p.isr_nodes), p.error_code)
            for p in found.partitions}


def describe_quorum_request() -> DescribeQuorumRequest:
    topic = DescribeQuorumRequest.TopicData
    return DescribeQuorumRequest(version=1, topics=[topic(
        topic_name="__cluster_metadata", partitions=[topic.PartitionData(partition_index=0)])])


def quorum_leader(bootstrap: str) -> int | None:
    """The metadata quorum's leader (the active controller), or None when there is none.

    A node forwards DescribeQuorum to the leader, so an answer without an error is the
    leader's own; a node that cannot reach one answers with an error, and the next node
    in `bootstrap` is asked.
    """
    request = describe_quorum_request()
    for entry in bootstrap.split(","):
        try:
            data = ask_any(entry, request).topics[0].partitions[0]
        except NoAnswer:
            continue
        if data.error_code == 0 and data.leader_id >= 0:
            return data.leader_id
    return None
