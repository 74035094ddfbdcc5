"""The data source: everything the console reads from or writes to a cluster.

It talks only the Kafka protocol, through aiokafka (admin client, producer, consumer)
and kafka-python's message classes where aiokafka lacks an API. `snapshot()` is the
refresh worker's one call; it never touches widgets.

A slow or dead broker must not stall a refresh: every request has its own timeout,
and a part that fails (offsets on a hung leader, the quorum, the groups) leaves a hole
and a reason in the snapshot instead of failing the whole of it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import (IncompatibleBrokerVersion, KafkaConnectionError, KafkaError,
                             for_code)
from kafka.protocol.admin import (DescribeGroupsRequest, DescribeLogDirsRequest,
                                  DescribeQuorumRequest)
from kafka.protocol.consumer import ListOffsetsRequest, OffsetFetchRequest
from kafka.protocol.metadata import FindCoordinatorRequest, MetadataRequest

from tui.kafka_api import KafkaPythonRequest
from tui.local import LocalCluster
from tui.snapshot import (Broker, Group, GroupMember, Partition, Quorum, Snapshot, Topic,
                          Voter)

log = logging.getLogger(__name__)

METADATA_TOPIC = "__cluster_metadata"
EARLIEST, LATEST = -2, -1
REQUEST_TIMEOUT = 3.0  # seconds for one request to one broker
# DescribeLogDirs lists every replica a broker holds, which costs a broker with thousands
# of partitions real time; sizes change slowly, so they are asked at most this often.
SIZES_EVERY_S = 5.0


class Unreachable(Exception):
    """No broker of the cluster answered."""


def describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."


class ClusterSource:
    """Reads and changes one cluster.

    What a refresh sends is decoded with kafka-python's generated classes, much faster
    than aiokafka's for wide answers (Metadata of 2,000 partitions), and its requests
    are built once and sent again while the cluster's layout stays the same.
    """

    METADATA = KafkaPythonRequest(MetadataRequest, topics=None)
    LOG_DIRS = KafkaPythonRequest(DescribeLogDirsRequest, topics=None)

    def __init__(self, bootstrap: str, client_config: dict[str, Any] | None = None,
                 local: LocalCluster | None = None):
        self.bootstrap = bootstrap
        self.client_config = client_config or {}
        self.local = local
        self._client: AIOKafkaClient | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._producers: dict[str, AIOKafkaProducer] = {}
        self._min_isr: dict[str, int | None] = {}
        self._good_node: int | None = None
        self._offset_requests: dict[tuple, KafkaPythonRequest] = {}
        self._sizes_seen: tuple[float, dict[tuple[str, int, int], int]] | None = None

    # -- connections -----------------------------------------------------------------

    async def _connected(self) -> AIOKafkaClient:
        if self._client is None:
            client = AIOKafkaClient(bootstrap_servers=self.bootstrap, **self._client_options(
                request_timeout_ms=int(REQUEST_TIMEOUT * 1000)))
            try:
                self._client = await _started(client, client.bootstrap)
            except KafkaConnectionError:
                raise Unreachable(await self._why_no_bootstrap()) from None
        return self._client

    async def _why_no_bootstrap(self) -> str:
        """aiokafka's bootstrap error does not say why no broker answered; one direct
        connection to each address does (refused, TLS, a failed SASL authentication)."""
        reasons = []
        for host, port, _ in collect_hosts(self.bootstrap):
            try:
                connection = await create_conn(host, port, **self._client_options(
                    request_timeout_ms=int(REQUEST_TIMEOUT * 1000)))
            except (OSError, KafkaError, TimeoutError) as exc:
                reasons.append(f"{host}:{port}: {describe_error(exc)}")
            else:
                connection.close()
                reasons.append(f"{host}:{port}: connected, but it answered no metadata")
        return "cannot bootstrap from " + "; ".join(reasons)

    def _client_options(self, **defaults: Any) -> dict[str, Any]:
        """Keyword arguments for aiokafka: `defaults`, overridden by the client config."""
        return {"client_id": "kraftboard-console", **defaults, **self.client_config}

    async def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap,
                                        **self._client_options(request_timeout_ms=10000))
            self._admin = await _started(admin, admin.start)
        return self._admin

    async def close(self) -> None:
        for producer in self._producers.values():
            await producer.stop()
        for closable in (self._admin, self._client):
            if closable is not None:
                await closable.close()
        self._client = self._admin = None
        self._producers.clear()

    async def _send(self, node_id: int, request: Any) -> Any:
        client = await self._connected()
        return await asyncio.wait_for(client.send(node_id, request), REQUEST_TIMEOUT)

    async def _send_any(self, request: Any) -> Any:
        """Send to the broker that answered last, else to each known broker in turn."""
        client = await self._connected()
        nodes = sorted(b.nodeId for b in client.cluster.brokers())
        if not nodes:
            # A cluster still starting can answer the bootstrap with no broker registered;
            # this client would never ask again: the next refresh bootstraps anew.
            self._client = None
            await client.close()
            raise Unreachable("no broker registered yet")
        if self._good_node in nodes:
            nodes.remove(self._good_node)
            nodes.insert(0, self._good_node)
        failures = []
        for node in nodes:
            try:
                response = await self._send(node, request)
            except (KafkaError, OSError, TimeoutError) as exc:
                failures.append(f"broker {node}: {describe_error(exc)}")
                continue
            self._good_node = node
            return response
        raise Unreachable("; ".join(failures) or "no broker known")

    # -- the snapshot ------------------------------------------------------------------

    async def snapshot(self) -> Snapshot:
        started = time.monotonic()
        client = await self._connected()
        metadata = await self._send_any(self.METADATA)
        brokers = {b.node_id: Broker(b.node_id, b.host, b.port, b.rack)
                   for b in metadata.brokers}
        if set(brokers) != {b.nodeId for b in client.cluster.brokers()}:
            await client.force_metadata_update()  # so new brokers can be reached
        partitions = _partitions(metadata)
        offsets, quorum, groups, local, min_isr, sizes = await asyncio.gather(
            self._offsets(partitions), self._quorum(), self._groups(list(brokers)),
            self._local_nodes(), self._min_isr_of(list(partitions)), self._sizes(list(brokers)),
            return_exceptions=True)
        quorum_error = groups_error = None
        if isinstance(quorum, BaseException):
            quorum, quorum_error = None, describe_error(quorum)
        if isinstance(groups, BaseException):
            groups, groups_error = (), describe_error(groups)
        if isinstance(local, BaseException):
            log.warning("supervisor status failed: %s", local)
            local = None
        if isinstance(min_isr, BaseException):
            min_isr = {}
        if isinstance(sizes, BaseException):
            log.info("log dirs: %s", describe_error(sizes))
            sizes = {}
        if isinstance(offsets, BaseException):
            raise offsets
        topics = {}
        for name, (internal, parts) in sorted(partitions.items()):
            topics[name] = Topic(name, tuple(
                Partition(**fields, **offsets.get((name, fields["index"]), {}),
                          size=sizes.get((name, fields["index"], fields["leader"])))
                for fields in parts), internal, min_isr.get(name))
        return Snapshot(taken_at=time.time(), duration=time.monotonic() - started,
                        cluster_id=metadata.cluster_id, controller_id=metadata.controller_id,
                        brokers=brokers, topics=topics, quorum=quorum,
                        quorum_error=quorum_error, groups=groups, groups_error=groups_error,
                        local=local)

    async def _offsets(self, partitions: dict[str, tuple[bool, list[dict]]]
                       ) -> dict[tuple[str, int], dict[str, int]]:
        """Log start and high watermark of every partition, one request pair per leader."""
        by_leader: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        for topic, (_, parts) in partitions.items():
            for fields in parts:
                if fields["leader"] >= 0:
                    by_leader[fields["leader"]][topic].append(fields["index"])
        found: dict[tuple[str, int], dict[str, int]] = defaultdict(dict)
        requests, self._offset_requests = self._offset_requests, {}

        async def ask(leader: int, topics: dict[str, list[int]], timestamp: int, key: str):
            layout = (leader, timestamp, tuple((t, tuple(i)) for t, i in topics.items()))
            request = requests.get(layout) or KafkaPythonRequest(
                ListOffsetsRequest, replica_id=-1, isolation_level=0,
                topics=[_list_offsets_topic(t, indexes, timestamp)
                        for t, indexes in topics.items()])
            self._offset_requests[layout] = request
            try:
                response = await self._send(leader, request)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.info("offsets from broker %d: %s", leader, describe_error(exc))
                return
            for topic in response.topics:
                for part in topic.partitions:
                    if part.error_code == 0:
                        found[(topic.name, part.partition_index)][key] = part.offset

        await asyncio.gather(*(ask(leader, topics, ts, key)
                               for leader, topics in by_leader.items()
                               for ts, key in ((EARLIEST, "log_start"),
                                               (LATEST, "high_watermark"))))
        return found

    async def _sizes(self, broker_ids: list[int]) -> dict[tuple[str, int, int], int]:
        """Bytes of each replica, as (topic, partition, broker): one DescribeLogDirs per
        broker, every SIZES_EVERY_S. A broker that cannot answer (down, too old, not
        authorized) leaves out its replicas."""
        if self._sizes_seen and time.monotonic() - self._sizes_seen[0] < SIZES_EVERY_S:
            return self._sizes_seen[1]

        async def ask(broker: int):
            try:
                return broker, await self._send(broker, self.LOG_DIRS)
            except (KafkaError, OSError, TimeoutError) as exc:
                log.info("log dirs of broker %d: %s", broker, describe_error(exc))
                return broker, None

        sizes = {}
        for broker, response in await asyncio.gather(*map(ask, broker_ids)):
            for result in response.results if response else ():
                for topic in result.topics if result.error_code == 0 else ():
                    for p in topic.partitions:
                        if not p.is_future_key:
                            sizes[(topic.name, p.partition_index, broker)] = p.partition_size
        self._sizes_seen = (time.monotonic(), sizes)
        return sizes

    async def _quorum(self) -> Quorum:
        Topic_ = DescribeQuorumRequest.TopicData
        request = KafkaPythonRequest(DescribeQuorumRequest, topics=[Topic_(
            topic_name=METADATA_TOPIC, partitions=[Topic_.PartitionData(partition_index=0)])])
        response = await self._send_any(request)
        if response.error_code:
            raise for_code(response.error_code)(response.error_message or "")
        part = response.topics[0].partitions[0]
        if part.error_code:
            raise for_code(part.error_code)(part.error_message or "")

        def voters(states) -> tuple[Voter, ...]:
            return tuple(Voter(s.replica_id, s.log_end_offset,
                               getattr(s, "last_fetch_timestamp", -1)) for s in states)

        return Quorum(part.leader_id, part.leader_epoch, part.high_watermark,
                      voters(part.current_voters), voters(part.observers))

    async def _groups(self, broker_ids: list[int]) -> tuple[Group, ...]:
        """Every consumer group: a few requests per coordinator, not a few per group."""
        admin = await self.admin()
        listed = await asyncio.wait_for(admin.list_consumer_groups(broker_ids), REQUEST_TIMEOUT)
        ids = sorted({group_id for group_id, _ in listed})
        if not ids:
            return ()
        by_coordinator: dict[int, list[str]] = defaultdict(list)
        for group_id, node in (await self._coordinators(ids)).items():
            by_coordinator[node].append(group_id)
        answers = await asyncio.gather(*(self._describe_groups(node, group_ids)
                                         for node, group_ids in by_coordinator.items()))
        return tuple(sorted((group for groups in answers for group in groups),
                            key=lambda g: g.id))

    async def _coordinators(self, group_ids: list[str]) -> dict[str, int]:
        """Each group's coordinator (node id); groups whose lookup failed are left out."""
        try:  # FindCoordinator v4+: every group in one request
            response = await self._send_any(KafkaPythonRequest(
                FindCoordinatorRequest, min_version=4, key_type=0, coordinator_keys=group_ids))
            return {c.key: c.node_id for c in response.coordinators if c.error_code == 0}
        except IncompatibleBrokerVersion:
            pass
        responses = await asyncio.gather(*(self._send_any(KafkaPythonRequest(
            FindCoordinatorRequest, max_version=3, key=group_id, key_type=0))
            for group_id in group_ids))
        return {group_id: r.node_id for group_id, r in zip(group_ids, responses)
                if r.error_code == 0}

    async def _describe_groups(self, node: int, group_ids: list[str]) -> list[Group]:
        """The groups one coordinator holds, with their committed offsets."""
        described, committed = await asyncio.gather(
            self._send(node, KafkaPythonRequest(DescribeGroupsRequest, groups=group_ids)),
            self._committed(node, group_ids), return_exceptions=True)
        if isinstance(described, BaseException):
            log.info("groups from coordinator %d: %s", node, describe_error(described))
            return []
        if isinstance(committed, BaseException):
            log.info("offsets from coordinator %d: %s", node, describe_error(committed))
            committed = {}
        return [Group(id=g.group_id, state=g.group_state, protocol_type=g.protocol_type,
                      members=tuple(_member(m) for m in g.members),
                      committed=committed.get(g.group_id, {}))
                for g in described.groups if g.error_code == 0]

    async def _committed(self, node: int, group_ids: list[str]
                         ) -> dict[str, dict[tuple[str, int], int]]:
        """Committed offsets of groups on one coordinator (OffsetFetch v8+: one request)."""
        try:
            response = await self._send(node, KafkaPythonRequest(
                OffsetFetchRequest, min_version=8, groups=[
                    OffsetFetchRequest.OffsetFetchRequestGroup(group_id=g, topics=None)
                    for g in group_ids]))
            answers = [(g.group_id, g.topics) for g in response.groups if g.error_code == 0]
        except IncompatibleBrokerVersion:
            responses = await asyncio.gather(*(self._send(node, KafkaPythonRequest(
                OffsetFetchRequest, max_version=7, group_id=g, topics=None))
                for g in group_ids))
            answers = [(g, r.topics) for g, r in zip(group_ids, responses) if r.error_code == 0]
        return {group_id: {(t.name, p.partition_index): p.committed_offset
                           for t in topics for p in t.partitions
                           if p.error_code == 0 and p.committed_offset >= 0}
                for group_id, topics in answers}

    async def _local_nodes(self):
        return await self.local.nodes() if self.local else None

    async def _min_isr_of(self, topics: list[str]) -> dict[str, int | None]:
        """min.insync.replicas of each topic, asked once per topic."""
        missing = [t for t in topics if t not in self._min_isr]
        if missing:
            admin = await self.admin()
            responses = await asyncio.wait_for(admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t, {"min.insync.replicas": None})
                 for t in missing]), REQUEST_TIMEOUT)
            for response in responses:
                for resource in response.to_object()["resources"]:
                    values = {c["config_names"]: c["config_value"]
                              for c in resource["config_entries"]}
                    value = values.get("min.insync.replicas")
                    self._min_isr[resource["resource_name"]] = int(value) if value else None
        return {t: self._min_isr.get(t) for t in topics}

    # -- changes -------------------------------------------------------------------------

    async def create_topic(self, name: str, partitions: int, replication_factor: int,
                           configs: dict[str, str]) -> None:
        admin = await self.admin()
        response = await admin.create_topics([NewTopic(name, partitions, replication_factor,
                                                       topic_configs=configs)])
        _raise_errors(response.to_object()["topic_errors"])

    async def delete_topic(self, name: str) -> None:
        admin = await self.admin()
        response = await admin.delete_topics([name])
        _raise_errors(response.to_object()["topic_error_codes"])
        self._min_isr.pop(name, None)

    async def add_partitions(self, name: str, total: int) -> None:
        admin = await self.admin()
        await admin.create_partitions({name: NewPartitions(total)})

    async def producer(self, acks: str) -> AIOKafkaProducer:
        """A started producer for acks "0", "1" or "all", shared until close()."""
        if acks not in self._producers:
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap,
                                        acks="all" if acks == "all" else int(acks),
                                        **self._client_options())
            self._producers[acks] = await _started(producer, producer.start)
        return self._producers[acks]

    async def produce(self, topic: str, value: bytes | None, key: bytes | None = None,
                      headers: list[tuple[str, bytes]] | None = None,
                      partition: int | None = None, acks: str = "all") -> tuple[int, int]:
        """Produce one record; returns its (partition, offset) (offset -1 with acks=0)."""
        producer = await self.producer(acks)
        meta = await producer.send_and_wait(topic, value, key=key, partition=partition,
                                            headers=headers or None)
        return meta.partition, meta.offset

    def consumer(self, **options: Any) -> AIOKafkaConsumer:
        """A group-less consumer for tailing; the caller starts, assigns and stops it."""
        return AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                **self._client_options(), **options)


async def _started(client: Any, start: Callable[[], Awaitable]) -> Any:
    """The client once `start` succeeded; closed again if it did not."""
    try:
        await start()
    except BaseException:
        await client.close()
        raise
    return client


def _partitions(metadata: Any) -> dict[str, tuple[bool, list[dict]]]:
    """A Metadata response's topics as {name: (internal, [Partition fields])}."""
    topics = {}
    for topic in metadata.topics:
        if topic.error_code:
            continue
        parts = [{"topic": topic.name, "index": p.partition_index, "leader": p.leader_id,
                  "leader_epoch": p.leader_epoch, "replicas": tuple(p.replica_nodes),
                  "isr": tuple(p.isr_nodes), "offline": tuple(p.offline_replicas or ())}
                 for p in sorted(topic.partitions, key=lambda p: p.partition_index)]
        topics[topic.name] = (bool(topic.is_internal), parts)
    return topics


def _list_offsets_topic(topic: str, indexes: list[int], timestamp: int) -> Any:
    Topic_ = ListOffsetsRequest.ListOffsetsTopic
    return Topic_(name=topic, partitions=[
        Topic_.ListOffsetsPartition(partition_index=i, timestamp=timestamp) for i in indexes])


def _member(member: Any) -> GroupMember:
    assignment: tuple[tuple[str, int], ...] = ()
    if member.member_assignment:
        try:
            decoded = ConsumerProtocolMemberAssignment.decode(member.member_assignment)
            assignment = tuple((topic, p) for topic, parts in decoded.assignment
                               for p in parts)
        except Exception:  # a non-consumer protocol: its assignment is opaque bytes
            assignment = ()
    return GroupMember(member.member_id, member.client_id, member.client_host, assignment)


def _raise_errors(results: list) -> None:
    for result in results:
        values = list(result.values()) if isinstance(result, dict) else list(result)
        code = values[1]
        if code:
            message = values[2] if len(values) > 2 else None
            raise for_code(code)(message or f"{values[0]}: error {code}")
