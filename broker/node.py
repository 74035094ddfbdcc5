"""A node: its topics and partition logs, the operations the Kafka APIs call, its lifecycle."""
from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterable

from kafka import errors

from broker.config import TOPIC_SETTINGS, ConfigError, NodeConfig, validate_topic_configs
from broker.errors import RequestError
from broker.partition import PRODUCER_BATCHES_KEPT, PartitionLog
from broker.peer import Peers
from broker.raft import MetadataQuorum
from broker.storage import Storage

log = logging.getLogger(__name__)

LEGAL_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_NAME_LENGTH = 249
INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})
PRODUCER_ID_BLOCK = 1000


@dataclass
class Topic:
    name: str
    topic_id: uuid.UUID
    configs: dict[str, Any]  # only what was set explicitly; the rest comes from the node
    partitions: list[PartitionLog]

    @property
    def internal(self) -> bool:
        return self.name in INTERNAL_TOPICS


def check_topic_name(name: str | None) -> None:
    if not name:
        raise RequestError(errors.InvalidTopicError, "topic name is empty")
    if name in (".", ".."):
        raise RequestError(errors.InvalidTopicError, f"topic name {name!r} is not allowed")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise RequestError(errors.InvalidTopicError,
                           f"topic name is longer than {MAX_TOPIC_NAME_LENGTH} characters")
    if not LEGAL_TOPIC_NAME.match(name):
        raise RequestError(errors.InvalidTopicError,
                           f"topic name {name!r} may contain only ASCII letters, digits, '.', '_' and '-'")


class Node:
    def __init__(self, config: NodeConfig):
        self.config = config
        self.node_id = config.node_id
        self.cluster_id = ""
        self.storage = Storage(config.data_dir / "kraftboard.db",
                               fsync_every_commit=config["log.flush.interval.messages"] == 1)
        self.storage.on_failure = self._forget_uncommitted
        self.peers = Peers(self.node_id, config.voters.get)
        self.quorum = MetadataQuorum(config, self.storage, self.peers)
        self.topics: dict[str, Topic] = {}
        self.topics_by_id: dict[uuid.UUID, Topic] = {}
        self._next_partition_id = 0
        self._next_producer_id = 0
        self._producer_id_block_end = 0
        self._background: list[asyncio.Task] = []

    # -- lifecycle ----------------------------------------------------------------------

    async def open(self) -> None:
        await self.storage.open()
        self.cluster_id = await self.storage.get_setting("cluster.id") or ""
        if not self.cluster_id:
            self.cluster_id = uuid.uuid4().hex[:22]
            await self._put_setting("cluster.id", self.cluster_id)
        self._producer_id_block_end = int(await self.storage.get_setting("producer.id.block.end") or 0)
        self._next_producer_id = self._producer_id_block_end
        self._next_partition_id = await self.storage.max_partition_id()
        logs: dict[str, list[PartitionLog]] = {}
        for stored in await self.storage.load_partitions():
            partition = PartitionLog(self.storage, stored.id, stored.topic, stored.partition,
                                     self.node_id, stored.log_start_offset, stored.end_offset,
                                     stored.size)
            partition.epoch_starts = await self.storage.epoch_starts(stored.id)
            partition.become_leader(0, [self.node_id], [self.node_id])
            partition.restore_producers(
                await self.storage.recent_producer_batches(stored.id, PRODUCER_BATCHES_KEPT))
            logs.setdefault(stored.topic, []).append(partition)
        for name, topic_id, configs in await self.storage.load_topics():
            self._add_topic(Topic(name, uuid.UUID(bytes=topic_id), configs, logs.get(name, [])))
        self._background.append(asyncio.create_task(self._retention_loop(), name="retention"))
        await self.quorum.start()
        log.info("node %d opened %s: %d topics", self.node_id, self.storage.path, len(self.topics))

    async def close(self) -> None:
        for task in self._background:
            task.cancel()
        await self.quorum.close()
        self.peers.close()
        await self.storage.close()

    def _add_topic(self, topic: Topic) -> None:
        self.topics[topic.name] = topic
        self.topics_by_id[topic.topic_id] = topic

    def _forget_uncommitted(self) -> None:
        for topic in self.topics.values():
            for partition in topic.partitions:
                partition.rollback()

    async def _put_setting(self, key: str, value: str) -> None:
        await self.storage.write(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    # -- topics -------------------------------------------------------------------------

    def topic(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is None:
            raise RequestError(errors.UnknownTopicOrPartitionError,
                               f"this server does not host topic {name!r}")
        return topic

    def partition(self, topic: str, index: int) -> PartitionLog:
        partitions = self.topic(topic).partitions
        if not 0 <= index < len(partitions):
            raise RequestError(errors.UnknownTopicOrPartitionError,
                               f"topic {topic!r} has no partition {index}")
        return partitions[index]

    def topic_config(self, topic: Topic, key: str) -> Any:
        if key in topic.configs:
            return topic.configs[key]
        return self.config.topic_default(key)

    def broker_count(self) -> int:
        return 1

    def check_new_topic(self, name: str, num_partitions: int, replication_factor: int,
                        configs: dict[str, Any]) -> tuple[int, int, dict[str, Any]]:
        """Validate a CreateTopics entry; returns the partitions, RF and configs to use."""
        check_topic_name(name)
        if name in self.topics:
            raise RequestError(errors.TopicAlreadyExistsError, f"topic {name!r} already exists")
        if num_partitions == -1:
            num_partitions = self.config["num.partitions"]
        if replication_factor == -1:
            replication_factor = self.config["default.replication.factor"]
        if num_partitions <= 0:
            raise RequestError(errors.InvalidPartitionsError, "number of partitions must be at least 1")
        if replication_factor <= 0:
            raise RequestError(errors.InvalidReplicationFactorError,
                               "replication factor must be at least 1")
        if replication_factor > self.broker_count():
            raise RequestError(errors.InvalidReplicationFactorError,
                               f"replication factor {replication_factor} is larger than the "
                               f"{self.broker_count()} available brokers")
        try:
            configs = validate_topic_configs(configs)
        except ConfigError as exc:
            raise RequestError(errors.InvalidConfigurationError, str(exc)) from None
        return num_partitions, replication_factor, configs

    async def create_topic(self, name: str, num_partitions: int = -1, replication_factor: int = -1,
                           configs: dict[str, Any] | None = None) -> Topic:
        num_partitions, _, configs = self.check_new_topic(
            name, num_partitions, replication_factor, configs or {})
        topic = Topic(name, uuid.uuid4(), configs, [])
        self._add_topic(topic)
        self.storage.write("INSERT INTO topics (name, topic_id, configs) VALUES (?, ?, ?)",
                           (name, topic.topic_id.bytes, json.dumps(configs)))
        await self._add_partition_logs(topic, num_partitions)
        log.info("created topic %s with %d partitions", name, num_partitions)
        return topic

    async def _add_partition_logs(self, topic: Topic, count: int) -> None:
        commit = None
        for index in range(len(topic.partitions), count):
            self._next_partition_id += 1
            pid = self._next_partition_id
            partition = PartitionLog(self.storage, pid, topic.name, index, self.node_id)
            partition.become_leader(0, [self.node_id], [self.node_id])
            topic.partitions.append(partition)
            commit = self.storage.write(
                "INSERT INTO partitions (id, topic, partition) VALUES (?, ?, ?)",
                (pid, topic.name, index))
        if commit is not None:
            await commit

    def check_partition_count(self, name: str, count: int) -> Topic:
        topic = self.topic(name)
        if count <= len(topic.partitions):
            raise RequestError(errors.InvalidPartitionsError,
                               f"topic {name!r} has {len(topic.partitions)} partitions; "
                               f"the new count must be larger, not {count}")
        return topic

    async def create_partitions(self, name: str, count: int) -> None:
        topic = self.check_partition_count(name, count)
        await self._add_partition_logs(topic, count)

    async def delete_topic(self, name: str) -> None:
        topic = self.topic(name)
        del self.topics[name]
        del self.topics_by_id[topic.topic_id]
        for partition in topic.partitions:
            self.storage.write("DELETE FROM batches WHERE pid = ?", (partition.pid,))
            partition.close()
        self.storage.write("DELETE FROM partitions WHERE topic = ?", (name,))
        await self.storage.write("DELETE FROM topics WHERE name = ?", (name,))
        log.info("deleted topic %s", name)

    async def set_topic_configs(self, topic: Topic, configs: dict[str, Any]) -> None:
        """Replace the topic's explicit configs (already validated)."""
        topic.configs = configs
        await self.storage.write("UPDATE topics SET configs = ? WHERE name = ?",
                                 (json.dumps(configs), topic.name))

    async def auto_create(self, names: Iterable[str]) -> None:
        if not self.config["auto.create.topics.enable"]:
            return
        for name in names:
            if name not in self.topics:
                try:
                    await self.create_topic(name)
                except RequestError:
                    pass  # the caller answers for the name as it stands

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

    async def _move_log_start(self, partition: PartitionLog, offset: int) -> None:
        partition.log_start_offset = offset
        self.storage.write("DELETE FROM batches WHERE pid = ? AND last_offset < ?",
                           (partition.pid, offset))
        await self.storage.write("UPDATE partitions SET log_start_offset = ? WHERE id = ?",
                                 (offset, partition.pid))
        partition.size = await self.storage.partition_size(partition.pid)

    async def enforce_retention(self) -> None:
        now_ms = int(time.time() * 1000)
        for topic in list(self.topics.values()):
            if "delete" not in self.topic_config(topic, "cleanup.policy"):
                continue
            retention_ms = self.topic_config(topic, "retention.ms")
            retention_bytes = self.topic_config(topic, "retention.bytes")
            for partition in topic.partitions:
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

    async def _retention_loop(self) -> None:
        interval = self.config["log.retention.check.interval.ms"] / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.enforce_retention()
            except Exception:
                log.exception("retention check failed; trying again in %.0f s", interval)

    async def allocate_producer_id(self) -> int:
        if self._next_producer_id >= self._producer_id_block_end:
            # Reserve a block durably first, so a restart never hands out an id twice.
            self._producer_id_block_end = self._next_producer_id + PRODUCER_ID_BLOCK
            await self._put_setting("producer.id.block.end", str(self._producer_id_block_end))
        producer_id = self._next_producer_id
        self._next_producer_id += 1
        return producer_id


async def serve_forever(config: NodeConfig) -> None:
    from broker.server import KafkaServer

    node = Node(config)
    await node.open()
    server = KafkaServer(node)
    try:
        await server.start()
    except OSError:
        await node.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Drills: SIGUSR1 cuts the node off from its peers (clients are still served), SIGUSR2 heals.
    loop.add_signal_handler(signal.SIGUSR1, node.peers.isolate, True)
    loop.add_signal_handler(signal.SIGUSR2, node.peers.isolate, False)
    host, port = config.listen_address
    log.info("node %d serving Kafka on %s:%d (cluster %s)", node.node_id, host, port, node.cluster_id)
    await stop.wait()
    log.info("node %d shutting down", node.node_id)
    await server.stop()
    await node.close()
