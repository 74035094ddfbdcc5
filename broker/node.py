"""A node: the metadata image it follows, the partition logs it holds, its roles.

Every node applies the committed metadata log to its image. The image decides which
partition logs this node holds and whether it leads or follows each; the controller (on
controller nodes, active on the quorum leader) is the only writer of metadata. A broker
registers with the active controller and heartbeats to it; a controller fences a broker
that falls silent.
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
import time
import uuid
from typing import Any, Awaitable, Callable, Iterable

from kafka import errors
from kafka.protocol.api_message import ApiMessage

from broker.compaction import LogCleaner
from broker.config import NodeConfig
from broker.controller import Controller
from broker.errors import RequestError
from broker.groups.coordinator import GroupCoordinator
from broker.messages import (
    AllocateProducerIdsRequest, BrokerHeartbeatRequest, BrokerRegistrationRequest,
)
from broker.metadata import MetadataImage, PartitionInfo, TopicInfo
from broker.partition import PRODUCER_BATCHES_KEPT, PartitionLog
from broker.peer import Channel, Peers, PeerUnavailable
from broker.protocol import REGISTRY, RequestContext
from broker.raft import MetadataQuorum, NotLeader
from broker.replication import Replication
from broker.storage import Storage

log = logging.getLogger(__name__)

CONTROLLER_TIMEOUT = 5.0
CONTROLLED_SHUTDOWN_TIMEOUT = 5.0  # seconds a stopping broker waits to lead nothing
REGISTER_RETRY = 0.1
SWITCH_INTERVAL = 0.0005  # seconds; see serve_forever
# Tracked objects allocated (net) between two collections of the young generation; see
# serve_forever.
YOUNG_GC_THRESHOLD = 10_000


class Node:
    def __init__(self, config: NodeConfig):
        self.config = config
        self.node_id = config.node_id
        self.roles = set(config["process.roles"])
        self.incarnation = uuid.uuid4().hex
        self.storage = Storage(config.data_dir / "kraftboard.db",
                               fsync_every_commit=config["log.flush.interval.messages"] == 1)
        self.storage.on_failure = self._forget_uncommitted
        self.image = MetadataImage()
        self.image.partition_listeners.append(self._partition_changed)
        self.image.topic_removed_listeners.append(self._topic_removed)
        self.peers = Peers(self.node_id, self.address_of)
        self.quorum = MetadataQuorum(config, self.storage, self.peers)
        self.quorum.subscribe(self.image.apply)
        self.controller = Controller(config, self.image, self.quorum) if "controller" in self.roles else None
        self.replication = Replication(self)
        self.logs: dict[tuple[uuid.UUID, int], PartitionLog] = {}
        # After the image listeners above: a partition's log exists before its groups load.
        self.groups = GroupCoordinator(self)
        self.cleaner = LogCleaner(self)
        # Logs found on disk, by (topic id, partition), until the image names them.
        self._stored: dict[tuple[bytes, int], PartitionLog] = {}
        self._next_partition_id = 0
        self._next_producer_id = 0  # this broker's block of producer ids: the next to give
        self._producer_id_block_end = 0  # and the end of the block
        self._producer_id_lock = asyncio.Lock()
        self._background: list[asyncio.Task] = []
        # Set once this broker is registered and unfenced: client requests wait for it.
        self.ready = asyncio.Event()
        self._heartbeat_now = asyncio.Event()
        self._shutting_down = False  # heartbeats ask the controller for a controlled shutdown
        self._shutdown_approved = asyncio.Event()
        if "broker" not in self.roles:
            self.ready.set()

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        await self.storage.open()
        self._next_partition_id = await self.storage.max_partition_id()
        await self._load_stored_logs()
        await self.quorum.start()  # replays the committed metadata log into the image
        config = self.config
        tasks = [
            self._every(config["log.retention.check.interval.ms"] / 1000, self.enforce_retention,
                        "retention check"),
            self._every(config["log.cleaner.backoff.ms"] / 1000, self.cleaner.clean_all,
                        "log cleaning"),
            self._every(config["offsets.retention.check.interval.ms"] / 1000,
                        self.groups.expire_offsets, "offset expiration"),
            self.replication.manage_isr(),
        ]
        if self.controller is not None:
            tasks.append(self.controller.run())
        if "broker" in self.roles:
            tasks.append(self._broker_lifecycle())
        self._background = [asyncio.create_task(t) for t in tasks]
        log.info("node %d opened %s: %d topics", self.node_id, self.storage.path,
                 len(self.image.topics))

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        self.replication.stop()
        await self.quorum.close()
        self.peers.close()
        await self.storage.close()

    @property
    def cluster_id(self) -> str:
        """Named by the first active controller, in the metadata log."""
        return self.image.cluster_id or ""

    def address_of(self, node_id: int) -> tuple[str, int] | None:
        """Where a peer takes inter-node requests: its inter-broker listener."""
        broker = self.image.brokers.get(node_id)
        if broker is not None and self.config.inter_broker_listener in broker.endpoints:
            return broker.endpoints[self.config.inter_broker_listener]
        return self.config.voters.get(node_id)

    def _forget_uncommitted(self) -> None:
        for partition in self.logs.values():
            partition.rollback()

    # -- the controller, wherever it is -------------------------------------------------

    @property
    def controller_active(self) -> bool:
        return self.controller is not None and self.controller.active

    async def call_controller(self, request: ApiMessage,
                              channel: Channel = Channel.CONTROL) -> ApiMessage:
        """Send an inter-node request to the active controller (this node, or a peer)."""
        if self.controller_active:
            api = REGISTRY[request.API_KEY]
            return await api.handler(request, RequestContext(
                self, request.API_VERSION, 0, self.peers.client_id, "local"))
        leader = self.quorum.leader_id
        if leader is None:
            raise RequestError(errors.NotControllerError, "the metadata quorum has no leader")
        return await self.peers.request(leader, request, CONTROLLER_TIMEOUT, channel)

    async def forward_to_controller(self, request: ApiMessage, ctx: RequestContext) -> ApiMessage | None:
        """A client's admin request reached a node that is not the active controller: the
        controller's own answer, or None when it must be answered here (this node is the
        controller, or none can be reached — then the handler answers NOT_CONTROLLER)."""
        if self.controller_active or self.quorum.leader_id in (None, self.node_id):
            return None
        try:
            return await self.peers.request(self.quorum.leader_id, request, CONTROLLER_TIMEOUT)
        except PeerUnavailable as exc:
            log.info("cannot forward %s to the controller: %s", request.name, exc)
            return None

    async def _broker_lifecycle(self) -> None:
        """Register with the active controller, then heartbeat; re-register when it
        forgets us (a new controller replays our registration from the log anyway)."""
        listeners = [BrokerRegistrationRequest.Listener(version=0, name=name, host=host, port=port)
                     for name, (host, port) in self.config.advertised_listeners.items()]
        interval = self.config["broker.heartbeat.interval.ms"] / 1000
        registered = False
        while True:
            try:
                if not registered:
                    await self.call_controller(BrokerRegistrationRequest(
                        version=0, broker_id=self.node_id, cluster_id=self.cluster_id,
                        incarnation_id=self.incarnation, listeners=listeners), Channel.LIFECYCLE)
                    registered = True
                response = await self.call_controller(BrokerHeartbeatRequest(
                    version=0, broker_id=self.node_id, incarnation_id=self.incarnation,
                    current_metadata_offset=self.image.offset,
                    want_shut_down=self._shutting_down), Channel.LIFECYCLE)
                registered = response.error_code == 0
                if response.should_shut_down:
                    self._shutdown_approved.set()
                elif registered and not response.is_fenced and not self.ready.is_set():
                    log.info("broker %d is registered and unfenced: serving clients", self.node_id)
                    self.ready.set()
            except (RequestError, PeerUnavailable, NotLeader) as exc:
                log.debug("heartbeat to the controller failed: %s", exc)
            # Until it is registered and serving, or while it shuts down, it asks again soon.
            soon = self._shutting_down or not self.ready.is_set()
            self._heartbeat_now.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(interval, REGISTER_RETRY) if soon else interval):
                    await self._heartbeat_now.wait()

    async def controlled_shutdown(self) -> None:
        """Kafka's controlled shutdown, before a graceful stop: the controller fences this
        broker and moves its leaderships to other in-sync replicas while it still serves,
        so clients follow them before it goes. Waits, at most CONTROLLED_SHUTDOWN_TIMEOUT
        (no controller may be reachable), until this node's image shows it leads nothing."""
        if "broker" not in self.roles or not self.ready.is_set():
            return
        if not [b for b in self.image.live_brokers() if b != self.node_id]:
            # The last broker of a stopping cluster: nobody to hand leaderships to, and
            # in combined mode no quorum left to record it.
            log.info("controlled shutdown: no other broker is up to take over")
            return
        self._shutting_down = True
        self._heartbeat_now.set()  # ask now, not at the next heartbeat
        try:
            async with asyncio.timeout(CONTROLLED_SHUTDOWN_TIMEOUT):
                await self._shutdown_approved.wait()
                while self._led_partitions():
                    await asyncio.sleep(0.01)
        except TimeoutError:
            log.warning("controlled shutdown: broker %d still leads %s after %g s; stopping "
                        "anyway", self.node_id, self._led_partitions(), CONTROLLED_SHUTDOWN_TIMEOUT)
        else:
            log.info("controlled shutdown: broker %d leads no partition now", self.node_id)

    def _led_partitions(self) -> list[str]:
        return [f"{p.topic}-{p.index}" for t in self.image.topics.values() for p in t.partitions
                if p.leader == self.node_id]

    # -- topics and partitions ----------------------------------------------------------

    def topic(self, name: str) -> TopicInfo:
        topic = self.image.topics.get(name)
        if topic is None:
            raise RequestError(errors.UnknownTopicOrPartitionError,
                               f"this cluster has no topic {name!r}")
        return topic

    def partition(self, topic: str, index: int) -> PartitionLog:
        """This node's log of a partition it leads."""
        info = self.topic(topic)
        if not 0 <= index < len(info.partitions):
            raise RequestError(errors.UnknownTopicOrPartitionError,
                               f"topic {topic!r} has no partition {index}")
        partition = self.logs.get((info.id, index))
        if partition is None:
            raise RequestError(errors.NotLeaderForPartitionError,
                               f"node {self.node_id} holds no replica of {topic}-{index}")
        partition.check_leader()
        return partition

    def topic_config(self, topic: TopicInfo, key: str) -> Any:
        if key in topic.configs:
            return topic.configs[key]
        return self.config.topic_default(key)

    async def auto_create(self, names: Iterable[str]) -> None:
        """Metadata for missing topics creates them when the node allows it."""
        if not self.config["auto.create.topics.enable"]:
            return
        for name in [n for n in names if n not in self.image.topics]:
            try:
                await self.create_topic(name)
            except (RequestError, PeerUnavailable):
                pass  # the caller answers for the name as it stands

    async def create_topic(self, name: str, partitions: int = -1, replication_factor: int = -1,
                           configs: dict[str, Any] | None = None) -> None:
        """Create a topic through the active controller, wherever it is (-1: defaults);
        returns once this node's image has it. Raises RequestError or PeerUnavailable."""
        if self.controller_active:
            await self.controller.create_topic(name, partitions, replication_factor, configs)
            return
        from kafka.protocol.admin import CreateTopicsRequest

        topic = CreateTopicsRequest.CreatableTopic
        request = CreateTopicsRequest(version=5, timeout_ms=5000, validate_only=False, topics=[
            topic(version=5, name=name, num_partitions=partitions,
                  replication_factor=replication_factor, assignments=[],
                  configs=[topic.CreatableTopicConfig(version=5, name=k, value=str(v))
                           for k, v in (configs or {}).items()])])
        response = await self.call_controller(request)
        error = response.topics[0].error_code if response.topics else 0
        if error and error != errors.TopicAlreadyExistsError.errno:
            raise RequestError(errors.for_code(error), response.topics[0].error_message or "")
        await self.wait_for_topic(name, CONTROLLER_TIMEOUT)

    async def wait_for_topic(self, name: str, timeout: float) -> None:
        """Until this node's image has `name` (the controller committed it already)."""
        deadline = time.monotonic() + timeout
        while name not in self.image.topics and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def _partition_changed(self, info: PartitionInfo) -> None:
        topic = self.image.topics[info.topic]
        key = (topic.id, info.index)
        partition = self.logs.get(key)
        if self.node_id not in info.replicas:
            if partition is not None:
                self.replication.stop_following(partition)
                partition.become_follower(info.leader, info.leader_epoch, info.replicas, info.isr,
                                          info.partition_epoch)
            return
        if partition is None:
            partition = self.logs[key] = self._open_log(topic, info.index)
        if info.leader == self.node_id:
            self.replication.stop_following(partition)
            partition.become_leader(info.leader_epoch, info.replicas, info.isr,
                                    info.partition_epoch)
        else:
            partition.become_follower(info.leader, info.leader_epoch, info.replicas, info.isr,
                                      info.partition_epoch)
            self.replication.become_follower(partition, info.leader)

    async def _load_stored_logs(self) -> None:
        """Every log on disk with its leader epochs and producer state, before the image
        (replayed next) gives them roles: a follower must know its epochs to find where
        it diverges, a leader its producers to spot retries."""
        for stored in await self.storage.load_partitions():
            if stored.topic_id is None:
                continue
            partition = PartitionLog(self.storage, stored.id, stored.topic, stored.partition,
                                     self.node_id, stored.log_start_offset, stored.end_offset,
                                     stored.size)
            partition.epoch_starts = await self.storage.epoch_starts(stored.id)
            partition.restore_producers(
                await self.storage.recent_producer_batches(stored.id, PRODUCER_BATCHES_KEPT))
            self._stored[(stored.topic_id, stored.partition)] = partition

    def _open_log(self, topic: TopicInfo, index: int) -> PartitionLog:
        stored = self._stored.pop((topic.id.bytes, index), None)
        if stored is not None:
            return stored
        self._next_partition_id += 1
        pid = self._next_partition_id
        self.storage.write("INSERT INTO partitions (id, topic, topic_id, partition) VALUES (?, ?, ?, ?)",
                           (pid, topic.name, topic.id.bytes, index))
        return PartitionLog(self.storage, pid, topic.name, index, self.node_id)

    def _topic_removed(self, topic: TopicInfo) -> None:
        for index in range(len(topic.partitions)):
            partition = self.logs.pop((topic.id, index), None)
            if partition is not None:
                self.replication.stop_following(partition)
                self.storage.write("DELETE FROM batches WHERE pid = ?", (partition.pid,))
                self.storage.write("DELETE FROM partitions WHERE id = ?", (partition.pid,))
                partition.close()
        log.info("deleted topic %s", topic.name)

    # -- records ------------------------------------------------------------------------

    async def delete_records(self, partition: PartitionLog, offset: int) -> int:
        if offset == -1:
            offset = partition.high_watermark
        if not 0 <= offset <= partition.high_watermark:
            raise RequestError(errors.OffsetOutOfRangeError,
                               f"offset {offset} is beyond the high watermark "
                               f"{partition.high_watermark}")
        if offset > partition.log_start_offset:
            await self._move_log_start(partition, offset)
        return partition.log_start_offset

    def schedule_log_start(self, partition: PartitionLog, offset: int) -> None:
        """A follower learns the leader's log start moved (retention, DeleteRecords)."""
        asyncio.create_task(self._move_log_start(partition, min(offset, partition.end_offset)))

    async def _move_log_start(self, partition: PartitionLog, offset: int) -> None:
        if offset <= partition.log_start_offset:
            return
        partition.log_start_offset = offset
        # Count what goes from the committed rows; appends still in flight keep their size.
        partition.size -= await self.storage.size_below(partition.pid, offset)
        self.storage.write("DELETE FROM batches WHERE pid = ? AND last_offset < ?",
                           (partition.pid, offset))
        await self.storage.write("UPDATE partitions SET log_start_offset = ? WHERE id = ?",
                                 (offset, partition.pid))

    async def enforce_retention(self) -> None:
        now_ms = int(time.time() * 1000)
        for (topic_id, _), partition in list(self.logs.items()):
            topic = self.image.topics_by_id.get(topic_id)
            if topic is None or "delete" not in self.topic_config(topic, "cleanup.policy"):
                continue
            retention_ms = self.topic_config(topic, "retention.ms")
            retention_bytes = self.topic_config(topic, "retention.bytes")
            start = partition.log_start_offset
            if retention_ms >= 0:
                start = max(start, await self.storage.first_offset_newer_than(
                    partition.pid, now_ms - retention_ms, partition.high_watermark))
            if 0 <= retention_bytes < partition.size:
                start = max(start, await self.storage.first_offset_keeping(
                    partition.pid, partition.size - retention_bytes, partition.high_watermark))
            if start > partition.log_start_offset:
                log.info("retention: %s-%d log start %d -> %d", topic.name, partition.index,
                         partition.log_start_offset, start)
                await self._move_log_start(partition, start)

    @staticmethod
    async def _every(interval: float, task: Callable[[], Awaitable[None]], what: str) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await task()
            except Exception:
                log.exception("%s failed; trying again in %.1f s", what, interval)

    async def allocate_producer_id(self) -> int:
        """An id no other producer of the cluster has: the next of this broker's block,
        after asking the active controller for a new block when this one is used up.
        Raises RequestError (COORDINATOR_LOAD_IN_PROGRESS, which producers retry)."""
        async with self._producer_id_lock:
            if self._next_producer_id >= self._producer_id_block_end:
                try:
                    response = await self.call_controller(AllocateProducerIdsRequest(
                        version=0, broker_id=self.node_id, incarnation_id=self.incarnation))
                    error = response.error_code
                except (RequestError, PeerUnavailable) as exc:
                    error = getattr(exc, "code", errors.BrokerNotAvailableError.errno)
                if error:
                    raise RequestError(errors.CoordinatorLoadInProgressError,
                                       f"no block of producer ids from the controller (error "
                                       f"{errors.for_code(error).__name__})")
                self._next_producer_id = response.producer_id_start
                self._producer_id_block_end = (response.producer_id_start
                                               + response.producer_id_len)
            producer_id = self._next_producer_id
            self._next_producer_id += 1
            return producer_id


async def serve_forever(config: NodeConfig) -> None:
    from broker.server import KafkaServer

    node = Node(config)
    server = KafkaServer(node)
    await server.bind()
    try:
        await node.open()
    except BaseException:
        await server.stop()
        raise
    # Everything loaded so far lives as long as the node: keep it out of GC passes.
    gc.freeze()
    # Requests in flight are young objects that live for a moment, about ten per pipelined
    # OffsetCommit, a thousand commits deep. At Python's default threshold (700) each
    # collection found them alive and promoted them, and the older generations' passes went
    # through them again: about 5% of a busy coordinator's CPU. A collection of 10,000
    # young objects takes about 3 ms here, no longer than one of the default's middle
    # generation passes took.
    gc.set_threshold(YOUNG_GC_THRESHOLD)
    # SQLite's threads hand each result back to the event loop, and need the GIL for it:
    # at Python's default switch interval (5 ms) a busy loop would hold a commit back for
    # up to that long, which shows directly in produce latency.
    sys.setswitchinterval(SWITCH_INTERVAL)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The supervisor's isolate and heal drills: cut this node off from its peers. Set
    # before the port opens: the supervisor sends them once the node accepts connections.
    loop.add_signal_handler(signal.SIGUSR1, node.peers.isolate, True)
    loop.add_signal_handler(signal.SIGUSR2, node.peers.isolate, False)
    await server.serve()
    log.info("node %d serving Kafka on %s (cluster %s)", node.node_id, config["listeners"],
             node.cluster_id)
    await stop.wait()
    log.info("node %d shutting down", node.node_id)
    await node.controlled_shutdown()
    await server.stop()
    await node.close()
