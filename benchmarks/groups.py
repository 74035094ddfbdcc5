"""Consumer-group figures on a local kraftboard cluster: rebalance and failover times,
how many OffsetCommit (and Heartbeat) requests one coordinator answers per second, and
how soon its successor answers commits once it is killed after that run.

Starts `kraftboard cluster start --brokers 3 --detach` (the local profile: broker
heartbeats 200 ms, broker session 1000 ms, 10 offsets partitions) in a temporary
directory, runs librdkafka consumers in threads of this process, prints the setup and
the figures, and asserts nothing. Everything it starts is stopped when it ends, also on
Ctrl-C or SIGTERM. Run from the repository root:

    python benchmarks/groups.py           # 5 runs of 50,000 commits, 5 leaves, 3 coordinator kills
    python benchmarks/groups.py --quick   # 3 runs of 10,000 commits, 3 leaves, 1 kill
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import NamedTuple

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kafka.protocol.consumer import (HeartbeatRequest, HeartbeatResponse, OffsetCommitRequest,
                                     OffsetCommitResponse)
from kafka.protocol.metadata import FindCoordinatorRequest, FindCoordinatorResponse
from kafka.protocol.admin import DescribeGroupsRequest, DescribeGroupsResponse

REPO = Path(__file__).resolve().parent.parent
PARTITIONS = 6
MEMBERS = 3
HEARTBEAT_INTERVAL_MS = 500
SESSION_TIMEOUT_MS = 6000
POLL_S = 0.01
WAIT_S = 60
QUIET = 2  # librdkafka logs critical errors only: connection failures are the point here
SEND_CHUNK = 100  # commit frames per send
COMMIT_VERSION = 3  # aiokafka's; librdkafka and kafka-python send 7-9, same work here
HEARTBEAT_VERSION = 1  # aiokafka's
UNKNOWN_MEMBER_ID = 25
# Errors a client answers by finding the coordinator again: LOAD_IN_PROGRESS, NOT_AVAILABLE,
# NOT_COORDINATOR.
COORDINATOR_MOVING = frozenset({14, 15, 16})


def kraftboard(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker", *args], cwd=REPO, check=True,
                          capture_output=True, text=True)


def free_ports(count: int) -> int:
    """A base port with `count` free ports after it (checked, not reserved)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = sock.getsockname()[1]
        if base + count < 65536 and all(port_free(base + i) for i in range(count)):
            return base


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class Cluster:
    def __init__(self, directory: Path, brokers: int):
        self.directory = directory
        self.port = free_ports(brokers)
        kraftboard("cluster", "start", "--brokers", str(brokers), "--data-dir", str(directory),
                   "--port", str(self.port), "--detach")
        self.nodes = {n["id"]: (n["host"], n["port"]) for n in self.status()["nodes"]}

    def status(self) -> dict:
        return json.loads(kraftboard("cluster", "status", "--json", "--data-dir",
                                     str(self.directory)).stdout)

    def pid(self, node_id: int) -> int:
        return next(n["pid"] for n in self.status()["nodes"] if n["id"] == node_id)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.nodes.values())

    def kill(self, node_id: int) -> None:
        kraftboard("cluster", "kill", str(node_id), "--data-dir", str(self.directory))

    def restart(self, node_id: int) -> None:
        kraftboard("cluster", "restart", str(node_id), "--data-dir", str(self.directory))

    def stop(self) -> None:
        subprocess.run([sys.executable, "-m", "broker", "cluster", "stop", "--data-dir",
                        str(self.directory)], cwd=REPO, capture_output=True)


# -- raw requests --------------------------------------------------------------------------


class Connection:
    """One socket speaking the Kafka protocol with kafka-python's classes."""

    def __init__(self, address: tuple[str, int]):
        self.sock = socket.create_connection(address, timeout=WAIT_S)
        self.correlation_id = 0

    def frame(self, request) -> bytes:
        self.correlation_id += 1
        request.with_header(correlation_id=self.correlation_id, client_id="groups-bench")
        return bytes(request.encode(header=True, framed=True))

    def read_frame(self) -> bytes:
        size = struct.unpack(">i", self.read_exactly(4))[0]
        return self.read_exactly(size)

    def read_exactly(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return bytes(data)

    def call(self, request, response_class):
        self.sock.sendall(self.frame(request))
        return response_class.decode(self.read_frame(), version=request.API_VERSION, header=True)

    def close(self) -> None:
        self.sock.close()


def coordinator(cluster: Cluster, group: str, skip: int | None = None) -> int | None:
    for node_id, address in cluster.nodes.items():
        if node_id == skip:
            continue
        try:
            conn = Connection(address)
        except OSError:
            continue
        try:
            answer = conn.call(FindCoordinatorRequest(version=0, key=group), FindCoordinatorResponse)
        except OSError:
            continue
        finally:
            conn.close()
        if answer.error_code == 0 and answer.node_id != skip:
            return answer.node_id
    return None


def stable_coordinator(cluster: Cluster, group: str, members: int) -> int | None:
    """The group's coordinator, once it answers that the group is Stable with `members`
    members. Asked afresh each time: right after leaderships move back to a restarted
    node, FindCoordinator on a node that has not learned of it yet names the old one."""
    node = coordinator(cluster, group)
    return node if node is not None and stable_members(cluster, node, group) == members else None


def stable_members(cluster: Cluster, node_id: int, group: str) -> int | None:
    """The member count if `node_id` coordinates `group` and it is Stable, else None."""
    try:
        conn = Connection(cluster.nodes[node_id])
        try:
            [described] = conn.call(DescribeGroupsRequest(version=0, groups=[group]),
                                    DescribeGroupsResponse).groups
        finally:
            conn.close()
    except OSError:
        return None
    if described.error_code or described.group_state != "Stable":
        return None
    return len(described.members)


def wait(what: str, probe, timeout: float = WAIT_S, interval: float = POLL_S):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


# -- members -------------------------------------------------------------------------------


class Member(threading.Thread):
    """A librdkafka consumer in the group, committing every record it reads."""

    def __init__(self, bootstrap: str, group: str, topic: str):
        super().__init__(daemon=True)
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS, "log_level": QUIET})
        self.consumer.subscribe([topic])
        self.stopping = threading.Event()
        self.commits: list[float] = []  # monotonic times of acknowledged commits
        self.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            message = self.consumer.poll(0.05)
            if message is None or message.error():
                continue
            try:
                self.consumer.commit(message=message, asynchronous=False)
                self.commits.append(time.monotonic())
            except KafkaException:
                pass
        self.consumer.close()  # LeaveGroup

    def leave(self) -> None:
        self.stopping.set()
        self.join(WAIT_S)


class Feeder(threading.Thread):
    """Produces a record every 10 ms so that members have something to commit."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0,
                                  "log_level": QUIET})
        self.topic = topic
        self.stopping = threading.Event()
        self.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.producer.produce(self.topic, b"tick")
            self.producer.poll(0)
            time.sleep(0.01)
        self.producer.flush(10)

    def stop(self) -> None:
        self.stopping.set()
        self.join(WAIT_S)


# -- the figures ---------------------------------------------------------------------------


def rebalance_after_leave(cluster: Cluster, topic: str, rounds: int) -> list[float]:
    """Seconds from a member's close (LeaveGroup) to the group Stable with the others."""
    group = f"leave-{uuid.uuid4().hex[:6]}"
    members = [Member(cluster.bootstrap, group, topic) for _ in range(MEMBERS)]
    times = []
    try:
        for _ in range(rounds):
            node = wait("a stable group", lambda: stable_coordinator(cluster, group, MEMBERS))
            leaving = members.pop(0)
            started = time.monotonic()
            leaving.stopping.set()  # its poll loop closes the consumer: LeaveGroup
            wait("the rebalance", lambda: stable_members(cluster, node, group) == MEMBERS - 1)
            times.append(time.monotonic() - started)
            leaving.join(WAIT_S)
            members.append(Member(cluster.bootstrap, group, topic))
    finally:
        for member in members:
            member.leave()
    return times


def failover(cluster: Cluster, topic: str) -> tuple[float, float]:
    """Seconds from SIGKILL of the coordinator's node to (the group Stable at the new
    coordinator, the first commit a member gets acknowledged)."""
    group = f"failover-{uuid.uuid4().hex[:6]}"
    members = [Member(cluster.bootstrap, group, topic) for _ in range(MEMBERS)]
    try:
        node = wait("a stable group", lambda: stable_coordinator(cluster, group, MEMBERS))
        wait("commits", lambda: all(m.commits for m in members))
        cluster.kill(node)  # the supervisor has sent SIGKILL when this returns
        killed_at = time.monotonic()
        new = wait("a new coordinator", lambda: coordinator(cluster, group, skip=node))
        wait("a stable group", lambda: stable_members(cluster, new, group) == MEMBERS)
        stable = time.monotonic() - killed_at
        wait("a commit", lambda: any(t > killed_at for m in members for t in m.commits))
        committed = min(t for m in members for t in m.commits if t > killed_at) - killed_at
    finally:
        for member in members:
            member.leave()
    cluster.restart(node)
    return stable, committed


class Rate(NamedTuple):
    per_second: float
    cpu_us: float | None  # the coordinator process's CPU time per request; None off Linux


def commit_rates(cluster: Cluster, topic: str, group: str, count: int, window: int,
                 runs: int) -> tuple[list[Rate], int]:
    """OffsetCommit requests answered per second by one coordinator, pipelined `window`
    deep on one connection (generation -1: an empty group, as admin tools commit), in
    `runs` runs of `count` one after the other; and that coordinator's node id."""
    conn, node = wait("a coordinator that accepts a first commit",
                      lambda: first_commit(cluster, group, topic))
    frames = [conn.frame(commit_request(group, topic, i % PARTITIONS, i)) for i in range(count)]
    try:
        return [pipelined_rate(conn, cluster.pid(node), frames, window, OffsetCommitResponse,
                               COMMIT_VERSION, lambda answer: [
                                   p.error_code for t in answer.topics for p in t.partitions])
                for _ in range(runs)], node
    finally:
        conn.close()


def reload_after_commits(cluster: Cluster, admin: AdminClient, topic: str, group: str,
                         node: int) -> float:
    """Seconds from SIGKILL of `node`, the coordinator that took the commit run, to the
    first commit its successor acknowledges: the successor reads the group's offsets back
    from `__consumer_offsets` first. The node is started again afterwards, and leads what
    it led before when this returns."""
    cluster.kill(node)
    killed_at = time.monotonic()
    new = wait("a new coordinator", lambda: coordinator(cluster, group, skip=node))
    conn = Connection(cluster.nodes[new])
    try:
        wait("a commit at the new coordinator", lambda: acknowledged(conn, group, topic))
        took = time.monotonic() - killed_at
    finally:
        conn.close()
    cluster.restart(node)
    wait("preferred leaders again", lambda: settled(admin))
    return took


def settled(admin: AdminClient) -> bool:
    """Every partition is led by its first replica, with every replica in sync: no
    leadership move is due."""
    topics = admin.list_topics(timeout=10).topics.values()
    return all(p.leader == p.replicas[0] and len(p.isrs) == len(p.replicas)
               for t in topics for p in t.partitions.values())


def heartbeat_rate(cluster: Cluster, topic: str, count: int, window: int) -> Rate:
    """Heartbeat requests answered per second by one coordinator, pipelined as commits are.
    Unlike commits, each waits for the one before it (Kafka's order within a connection);
    the member is unknown, so this is the request path alone."""
    group = f"heartbeats-{uuid.uuid4().hex[:6]}"
    conn, node = wait("a coordinator that accepts a first commit",
                      lambda: first_commit(cluster, group, topic))
    frames = [conn.frame(HeartbeatRequest(version=HEARTBEAT_VERSION, group_id=group,
                                          generation_id=1, member_id="gone"))
              for _ in range(count)]
    try:
        return pipelined_rate(conn, cluster.pid(node), frames, window, HeartbeatResponse,
                              HEARTBEAT_VERSION, lambda answer: [answer.error_code],
                              expected={UNKNOWN_MEMBER_ID})
    finally:
        conn.close()


def pipelined_rate(conn: Connection, pid: int, frames: list[bytes], window: int,
                   response_class, version: int, error_codes,
                   expected: set[int] = frozenset()) -> Rate:
    """Send `frames` keeping `window` unanswered: answers per second, and the CPU time
    process `pid` spent per answer. Every 100th answer is decoded and its unexpected error
    codes are printed."""
    cpu_before = cpu_seconds(pid)
    errors: dict[int, int] = {}
    started = time.monotonic()
    sent = received = 0
    buffer = bytearray()
    count = len(frames)
    # Frames go out in chunks and answers are parsed from whole reads, so the client's
    # system calls are not what is timed.
    while received < count:
        while sent < count and sent - received < window:
            chunk = min(count - sent, window - (sent - received), SEND_CHUNK)
            conn.sock.sendall(b"".join(frames[sent:sent + chunk]))
            sent += chunk
        buffer += conn.sock.recv(1 << 20)
        while len(buffer) >= 4:
            size = struct.unpack_from(">i", buffer)[0]
            if len(buffer) < 4 + size:
                break
            if received % 100 == 0:  # decoding every answer would time the client
                answer = response_class.decode(bytes(buffer[4:4 + size]), version=version,
                                               header=True)
                for code in error_codes(answer):
                    if code and code not in expected:
                        errors[code] = errors.get(code, 0) + 1
            del buffer[:4 + size]
            received += 1
    elapsed = time.monotonic() - started
    cpu_after = cpu_seconds(pid)
    if errors:
        print(f"  sampled answers failed, by error code: {errors}")
    cpu_us = None if None in (cpu_before, cpu_after) else (cpu_after - cpu_before) / count * 1e6
    return Rate(count / elapsed, cpu_us)


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a process so far, from Linux's /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_commit(cluster: Cluster, group: str, topic: str) -> tuple[Connection, int] | None:
    """A connection to the group's coordinator, and its node id, once it has acknowledged
    a commit; None while the coordinator moves or loads (a new `__consumer_offsets`
    partition is being led)."""
    node = coordinator(cluster, group)
    if node is None:
        return None
    conn = Connection(cluster.nodes[node])
    if acknowledged(conn, group, topic):
        return conn, node
    conn.close()
    return None


def acknowledged(conn: Connection, group: str, topic: str) -> bool:
    """Whether a commit is acknowledged; False while the coordinator moves or loads."""
    answer = conn.call(commit_request(group, topic, 0, 0), OffsetCommitResponse)
    error = answer.topics[0].partitions[0].error_code
    if error and error not in COORDINATOR_MOVING:
        raise RuntimeError(f"a commit failed: error {error}")
    return error == 0


def commit_request(group: str, topic: str, partition: int, offset: int) -> OffsetCommitRequest:
    Topic = OffsetCommitRequest.OffsetCommitRequestTopic
    return OffsetCommitRequest(
        version=COMMIT_VERSION, group_id=group, generation_id_or_member_epoch=-1, member_id="",
        topics=[Topic(name=topic, partitions=[Topic.OffsetCommitRequestPartition(
            partition_index=partition, committed_offset=offset, committed_metadata="")])])


def interrupted(*_) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does: the cluster is stopped


def main() -> None:
    signal.signal(signal.SIGTERM, interrupted)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--leaves", type=int, default=5)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--commits", type=int, default=50_000, help="commits per run")
    parser.add_argument("--commit-runs", type=int, default=5)
    parser.add_argument("--window", type=int, default=1000)
    args = parser.parse_args()
    if args.quick:
        args.leaves, args.kills, args.commits, args.commit_runs = 3, 1, 10_000, 3

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="kraftboard-groups-") as directory:
        cluster = Cluster(Path(directory) / "cluster", 3)
        try:
            print(f"cluster: 3 nodes (kraftboard cluster start --brokers 3, local profile), "
                  f"bootstrap {cluster.bootstrap}")
            admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
            topic = "groups-bench"
            wait("a topic on 3 brokers", lambda: create(admin, topic))
            # First, while every node is up and leads what it was given.
            committing = f"commits-{uuid.uuid4().hex[:6]}"
            rates, node = commit_rates(cluster, topic, committing, args.commits, args.window,
                                       args.commit_runs)
            per_second = [r.per_second for r in rates]
            print(f"OffsetCommit v{COMMIT_VERSION} on one coordinator (RF 3, acks=all), "
                  f"{args.window} in flight on one connection, {len(rates)} runs of "
                  f"{args.commits:,}: median {statistics.median(per_second):,.0f} requests/s "
                  f"(min {min(per_second):,.0f}, max {max(per_second):,.0f})"
                  f"{cpu_note(rates)} (target >= 20,000/s)")
            rate = heartbeat_rate(cluster, topic, args.commits, args.window)
            print(f"Heartbeat v{HEARTBEAT_VERSION} of an unknown member, the same way: "
                  f"{rate.per_second:,.0f} requests/s over {args.commits:,}{cpu_note([rate])} "
                  "(each waits for the one before; no target)")
            took = reload_after_commits(cluster, admin, topic, committing, node)
            print(f"SIGKILL of that coordinator's node: a commit is acknowledged at the new "
                  f"coordinator after {ms(took)}; it reads the {args.commits * args.commit_runs:,}"
                  " commits back first, less what the log cleaner has removed (no target)")
            feeder = Feeder(cluster.bootstrap, topic)
            print(f"members: {MEMBERS} librdkafka consumers, session.timeout.ms "
                  f"{SESSION_TIMEOUT_MS}, heartbeat.interval.ms {HEARTBEAT_INTERVAL_MS}, "
                  f"committing every record of a topic of {PARTITIONS} partitions (RF 3) fed "
                  "100 records/s")
            try:
                leaves = rebalance_after_leave(cluster, topic, args.leaves)
                print(f"stable again after a clean LeaveGroup: median {ms(statistics.median(leaves))},"
                      f" max {ms(max(leaves))} over {len(leaves)} leaves "
                      f"(target <= heartbeat interval + 200 ms = {HEARTBEAT_INTERVAL_MS + 200} ms)")
                kills = [failover(cluster, topic) for _ in range(args.kills)]
                print("after SIGKILL of the coordinator's node: stable at the new coordinator "
                      f"after median {ms(statistics.median(k[0] for k in kills))} (max "
                      f"{ms(max(k[0] for k in kills))}), first acknowledged commit after median "
                      f"{ms(statistics.median(k[1] for k in kills))} (max "
                      f"{ms(max(k[1] for k in kills))}) over {len(kills)} kills (target <= 3 s)")
            finally:
                feeder.stop()
        finally:
            cluster.stop()


def create(admin: AdminClient, topic: str) -> bool:
    """Whether the topic exists now. An attempt that timed out may have made it."""
    try:
        admin.create_topics([NewTopic(topic, PARTITIONS, 3)])[topic].result(10)
        return True
    except KafkaException as exc:
        return exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS
    except TimeoutError:  # a cluster still starting
        return False


def cpu_note(rates: list[Rate]) -> str:
    """The coordinator's CPU time per request, the median over the runs."""
    if any(r.cpu_us is None for r in rates):
        return ""
    return f", coordinator CPU {statistics.median(r.cpu_us for r in rates):,.0f} µs per request"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


if __name__ == "__main__":
    main()
