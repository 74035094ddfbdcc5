"""The active controller: turns admin requests and broker reports into metadata records.

Runs on every controller node and acts while its node leads the metadata quorum. Every
change is validated against the image, written as records through the quorum, and
answered once committed; the image (applied on every node) is then the truth. Operations
are serialised, so each validation sees every change before it.

It also keeps the brokers honest: a broker that misses heartbeats for
`broker.session.timeout.ms` is fenced, its leaderships move to another in-sync replica,
and it leaves the ISRs; it is unfenced when it heartbeats again having caught up. Once
back in sync, a partition's preferred replica (its first) leads again: on ElectLeaders,
or every `leader.imbalance.check.interval.seconds` with `auto.leader.rebalance.enable`,
provided it heartbeated within half a session. Heartbeats count for one term as active
controller only, as brokers send them to the active controller alone.
"""
from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from kafka import errors

from broker.config import ConfigError, NodeConfig, validate_topic_configs
from broker.errors import RequestError
from broker.raft import NotLeader
from broker.metadata import (
    NO_LEADER, BrokerInfo, MetadataImage, PartitionInfo, TopicInfo, check_topic_name,
    cluster_record, encode_record, fence_record, producer_ids_record, register_broker_record,
    remove_topic_record, topic_configs_record, topic_record,
)

log = logging.getLogger(__name__)

PRODUCER_ID_BLOCK = 1000  # producer ids per AllocateProducerIds, as in Kafka


# Replicas placed by hand (CreateTopics, CreatePartitions): broker ids per partition, in order.
Assignment = list[list[int]]


def invalid_assignment(problem: str) -> RequestError:
    return RequestError(errors.InvalidReplicationAssignmentError,
                        f"The manual partition assignment {problem}")


def assign_replicas(brokers: list[int], partitions: range, replication_factor: int,
                    start: int) -> list[list[int]]:
    """Kafka's round-robin placement: partition p's replicas start at broker start+p."""
    return [[brokers[(start + p + r) % len(brokers)] for r in range(replication_factor)]
            for p in partitions]


class Controller:
    def __init__(self, config: NodeConfig, image: MetadataImage, quorum):
        self.config = config
        self.image = image
        self.quorum = quorum
        self._lock = asyncio.Lock()
        # Broker id -> monotonic time of its last heartbeat to this node, in the quorum
        # epoch `_heartbeats_epoch` (see `_term_heartbeats`).
        self._heartbeats: dict[int, float] = {}
        self._heartbeats_epoch = -1
        self._term_started = 0.0
        self._placement = 0

    @property
    def active(self) -> bool:
        return self.quorum.is_leader

    async def _commit(self, records: list[dict[str, Any]]) -> None:
        if not self.active:
            raise RequestError(errors.NotControllerError,
                               f"node {self.config.node_id} is not the active controller")
        try:
            await self.quorum.append([encode_record(r) for r in records])
        except NotLeader as exc:
            raise RequestError(errors.NotControllerError, str(exc)) from None

    def _term_heartbeats(self) -> dict[int, float]:
        """The heartbeats received in this node's current term as active controller. A
        new term starts with none, and every broker gets a full session from its start:
        times kept from an earlier term are stale (brokers heartbeat to the active
        controller only), and a controller that regained leadership fenced healthy
        brokers on them."""
        if self._heartbeats_epoch != self.quorum.epoch:
            self._heartbeats_epoch, self._heartbeats = self.quorum.epoch, {}
            self._term_started = time.monotonic()
        return self._heartbeats

    async def activate(self) -> None:
        """This node now leads the quorum: name the cluster if no leader has yet."""
        if self.image.cluster_id is None:
            async with self._lock:
                await self._commit([cluster_record(uuid.uuid4().hex[:22])])

    # -- topics -------------------------------------------------------------------------

    def topic(self, name: str) -> TopicInfo:
        topic = self.image.topics.get(name)
        if topic is None:
            raise RequestError(errors.UnknownTopicOrPartitionError, f"topic {name!r} does not exist")
        return topic

    def check_new_topic(self, name: str, num_partitions: int, replication_factor: int,
                        configs: dict[str, Any],
                        replicas_by_index: list[tuple[int, list[int]]] | None = None
                        ) -> tuple[int, int, dict[str, Any], Assignment | None]:
        """Validate a CreateTopics entry; returns the partitions, RF, configs and manual
        assignment to use. Replicas placed by hand (partition index, broker ids) give the
        counts, which must then be -1."""
        check_topic_name(name)
        if name in self.image.topics:
            raise RequestError(errors.TopicAlreadyExistsError, f"topic {name!r} already exists")
        assignment = None
        if replicas_by_index:
            for field, value in (("replication factor", replication_factor),
                                 ("numPartitions", num_partitions)):
                if value != -1:
                    raise RequestError(errors.InvalidRequestError,
                                       f"A manual partition assignment was specified, but "
                                       f"{field} was not set to -1.")
            assignment = self._ordered_assignment(replicas_by_index)
            num_partitions, replication_factor = len(assignment), len(assignment[0])
        if num_partitions == -1:
            num_partitions = self.config["num.partitions"]
        if replication_factor == -1:
            replication_factor = self.config["default.replication.factor"]
        if num_partitions <= 0:
            raise RequestError(errors.InvalidPartitionsError, "number of partitions must be at least 1")
        if replication_factor <= 0:
            raise RequestError(errors.InvalidReplicationFactorError,
                               "replication factor must be at least 1")
        live = len(self.image.live_brokers())
        if assignment is None and replication_factor > live:  # placed by hand: checked above
            raise RequestError(errors.InvalidReplicationFactorError,
                               f"replication factor {replication_factor} is larger than the "
                               f"{live} available brokers")
        try:
            configs = validate_topic_configs(configs)
        except ConfigError as exc:
            raise RequestError(errors.InvalidConfigurationError, str(exc)) from None
        return num_partitions, replication_factor, configs, assignment

    def _ordered_assignment(self, replicas_by_index: list[tuple[int, list[int]]]) -> Assignment:
        by_index: dict[int, list[int]] = {}
        for index, replicas in replicas_by_index:
            if index in by_index:
                raise RequestError(errors.InvalidReplicationAssignmentError,
                                   f"Found multiple manual partition assignments for partition "
                                   f"{index}")
            self.check_assignment([replicas], index, next(map(len, by_index.values()), None))
            by_index[index] = replicas
        if sorted(by_index) != list(range(len(by_index))):
            raise RequestError(errors.InvalidReplicationAssignmentError,
                               "partitions should be a consecutive 0-based integer sequence")
        return [by_index[index] for index in range(len(by_index))]

    def check_assignment(self, assignment: Assignment, first_index: int,
                         replication_factor: int | None) -> None:
        """Kafka's checks of manually placed replicas for partitions `first_index` on: known
        brokers, each once, as many for every partition, and one of them unfenced."""
        for index, replicas in enumerate(assignment, first_index):
            if not replicas:
                raise invalid_assignment("includes an empty replica list.")
            previous = None
            for broker_id in sorted(replicas):
                if broker_id not in self.image.brokers:
                    raise invalid_assignment(f"includes broker {broker_id}, but no such "
                                             "broker is registered.")
                if broker_id == previous:
                    raise invalid_assignment(f"includes the broker {broker_id} more than once.")
                previous = broker_id
            if replication_factor is not None and len(replicas) != replication_factor:
                raise invalid_assignment(
                    f"includes a partition with {len(replicas)} replica(s), but this is not "
                    f"consistent with previous partitions, which have {replication_factor} "
                    "replica(s).")
            replication_factor = len(replicas)
            if all(self.image.brokers[b].fenced for b in replicas):
                raise RequestError(errors.InvalidReplicationAssignmentError,
                                   f"All brokers specified in the manual partition assignment "
                                   f"for partition {index} are fenced or in controlled shutdown.")

    def _new_partitions(self, topic: TopicInfo, indexes: range, replication_factor: int,
                        assignment: Assignment | None) -> list[dict]:
        if assignment is None:
            self._placement += 1
            assignment = assign_replicas(self.image.live_brokers(), indexes, replication_factor,
                                         self._placement)
        records = []
        for index, replicas in zip(indexes, assignment):
            # A manual assignment may name fenced brokers: they join the ISR once caught up.
            isr = [b for b in replicas if not self.image.brokers[b].fenced]
            records.append(PartitionInfo(topic.name, index, list(replicas), isr, isr[0])
                           .as_record(topic.id))
        return records

    async def create_topic(self, name: str, num_partitions: int = -1, replication_factor: int = -1,
                           configs: dict[str, Any] | None = None,
                           replicas_by_index: list[tuple[int, list[int]]] | None = None
                           ) -> TopicInfo:
        async with self._lock:
            num_partitions, replication_factor, configs, assignment = self.check_new_topic(
                name, num_partitions, replication_factor, configs or {}, replicas_by_index)
            topic = TopicInfo(name, uuid.uuid4(), configs)
            await self._commit([topic_record(name, topic.id, configs),
                                *self._new_partitions(topic, range(num_partitions),
                                                      replication_factor, assignment)])
            log.info("created topic %s: %d partitions, RF %d", name, num_partitions,
                     replication_factor)
            return self.image.topics[name]

    def check_partition_count(self, name: str, count: int,
                              assignment: Assignment | None = None) -> TopicInfo:
        """Validate a CreatePartitions entry, with the replicas of the new partitions if
        they are placed by hand."""
        topic = self.topic(name)
        if count <= len(topic.partitions):
            raise RequestError(errors.InvalidPartitionsError,
                               f"topic {name!r} has {len(topic.partitions)} partitions; "
                               f"the new count must be larger, not {count}")
        if assignment is not None:
            added = count - len(topic.partitions)
            if len(assignment) != added:
                raise RequestError(errors.InvalidReplicationAssignmentError,
                                   f"Attempted to add {added} additional partition(s), but only "
                                   f"{len(assignment)} assignment(s) were specified.")
            self.check_assignment(assignment, len(topic.partitions),
                                  len(topic.partitions[0].replicas))
        return topic

    async def create_partitions(self, name: str, count: int,
                                assignment: Assignment | None = None) -> None:
        async with self._lock:
            topic = self.check_partition_count(name, count, assignment)
            await self._commit(self._new_partitions(
                topic, range(len(topic.partitions), count), len(topic.partitions[0].replicas),
                assignment))

    async def delete_topic(self, name: str) -> None:
        async with self._lock:
            await self._commit([remove_topic_record(self.topic(name).id)])
            log.info("deleted topic %s", name)

    async def set_topic_configs(self, name: str, configs: dict[str, Any]) -> None:
        async with self._lock:
            await self._commit([topic_configs_record(self.topic(name).id, configs)])

    # -- brokers ------------------------------------------------------------------------

    async def register_broker(self, broker: BrokerInfo) -> None:
        """A broker (re)started: it comes back fenced, so it leads nothing until it has
        caught up with the metadata log."""
        async with self._lock:
            self._term_heartbeats()[broker.id] = time.monotonic()
            known = self.image.brokers.get(broker.id)
            if known is not None and known.incarnation == broker.incarnation:
                return
            records = [register_broker_record(broker)]
            if known is not None and not known.fenced:
                records += self._move_away_from(broker.id)
            await self._commit(records)
            log.info("broker %d registered with listeners %s", broker.id, broker.endpoints)

    async def heartbeat(self, broker_id: int, incarnation: str, metadata_offset: int,
                        want_shut_down: bool = False) -> bool:
        """Record a heartbeat; returns whether the broker is (still) fenced.

        A broker that wants to shut down (Kafka's controlled shutdown) is fenced at once:
        its leaderships move to other in-sync replicas and it leaves the ISRs while it is
        still up, so clients move on before it goes. It is not unfenced again.
        """
        broker = self.image.brokers.get(broker_id)
        if broker is None or broker.incarnation != incarnation:
            raise RequestError(errors.BrokerNotAvailableError,
                               f"broker {broker_id} must register again")
        self._term_heartbeats()[broker_id] = time.monotonic()
        if want_shut_down:
            if not broker.fenced:
                async with self._lock:
                    await self._fence(broker_id)
                log.info("broker %d is shutting down: fenced, its leaderships moved", broker_id)
            return True
        # As in Kafka: caught up once it has applied its own registration. Records
        # committed since would make a target that moves on as long as the log does.
        caught_up = metadata_offset >= broker.registered_at
        if broker.fenced and caught_up:
            async with self._lock:
                await self._commit([fence_record(broker_id, False),
                                    *self._elect_offline_partitions(broker_id)])
                log.info("broker %d unfenced", broker_id)
        return self.image.brokers[broker_id].fenced

    async def allocate_producer_ids(self, broker_id: int, incarnation: str) -> int:
        """A block of PRODUCER_ID_BLOCK producer ids for a broker; returns its first id.
        Committed before it is given, so no two brokers, and no restart of the controller,
        ever hand out the same id."""
        broker = self.image.brokers.get(broker_id)
        if broker is None or broker.incarnation != incarnation:
            raise RequestError(errors.BrokerNotAvailableError,
                               f"broker {broker_id} must register again")
        async with self._lock:
            start = self.image.next_producer_id
            await self._commit([producer_ids_record(broker_id, start + PRODUCER_ID_BLOCK)])
        return start

    def _responsive_brokers(self) -> set[int]:
        """Brokers that heartbeated to this controller within half a session."""
        recent = time.monotonic() - self.config["broker.session.timeout.ms"] / 2000
        return {b for b, last in self._term_heartbeats().items() if last >= recent}

    async def fence_expired_brokers(self) -> None:
        timeout = self.config["broker.session.timeout.ms"] / 1000
        heartbeats = self._term_heartbeats()
        now = time.monotonic()
        for broker in list(self.image.brokers.values()):
            last = heartbeats.get(broker.id, self._term_started)
            if not broker.fenced and now - last > timeout:
                async with self._lock:
                    await self._fence(broker.id)
                log.warning("broker %d missed heartbeats for %.1f s: fenced", broker.id, now - last)

    async def _fence(self, broker_id: int) -> None:
        """The caller holds self._lock."""
        if not self.image.brokers[broker_id].fenced:
            await self._commit([fence_record(broker_id, True), *self._move_away_from(broker_id)])

    async def run(self) -> None:
        """While this node is the active controller: fence brokers whose session expired
        and, every leader.imbalance.check.interval.seconds, rebalance leadership."""
        checks = [self._every(self.config["broker.heartbeat.interval.ms"] / 2000,
                              self._check_brokers)]
        if self.config["auto.leader.rebalance.enable"]:
            checks.append(self._every(self.config["leader.imbalance.check.interval.seconds"],
                                      self.rebalance_leaders))
        await asyncio.gather(*checks)

    async def _check_brokers(self) -> None:
        await self.activate()
        await self.fence_expired_brokers()

    async def _every(self, interval: float, check: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            if self.active:
                try:
                    await check()
                except RequestError as exc:  # lost leadership half-way
                    log.info("%s stopped: %s", check.__name__, exc.message)

    # -- partitions ---------------------------------------------------------------------

    def _partitions(self):
        for topic in self.image.topics.values():
            for partition in topic.partitions:
                yield topic, partition

    def _find(self, topic_name: str, index: int) -> tuple[TopicInfo, PartitionInfo]:
        topic = self.topic(topic_name)
        if not 0 <= index < len(topic.partitions):
            raise RequestError(errors.UnknownTopicOrPartitionError,
                               f"{topic_name} has no partition {index}")
        return topic, topic.partitions[index]

    def _changed(self, topic: TopicInfo, partition: PartitionInfo, leader: int,
                 isr: list[int]) -> dict[str, Any]:
        new_leader = leader != partition.leader
        return PartitionInfo(partition.topic, partition.index, partition.replicas, isr, leader,
                             partition.leader_epoch + (1 if new_leader else 0),
                             partition.partition_epoch + 1).as_record(topic.id)

    def _move_away_from(self, broker_id: int) -> list[dict[str, Any]]:
        """A fenced broker leaves every ISR and gives up its leaderships."""
        live = set(self.image.live_brokers()) - {broker_id}
        records = []
        for topic, partition in self._partitions():
            if broker_id not in partition.replicas:
                continue
            isr = [r for r in partition.isr if r != broker_id] or partition.isr
            leader = partition.leader
            if leader == broker_id:
                leader = next((r for r in partition.replicas if r in isr and r in live), NO_LEADER)
                if leader == NO_LEADER and self._unclean_allowed(topic):
                    leader = next((r for r in partition.replicas if r in live), NO_LEADER)
                    isr = [leader] if leader != NO_LEADER else isr
            if leader != partition.leader or isr != partition.isr:
                records.append(self._changed(topic, partition, leader, isr))
        return records

    def _elect_offline_partitions(self, broker_id: int) -> list[dict[str, Any]]:
        """A returning broker leads the partitions that had no leader and kept it in ISR;
        and, where `unclean.leader.election.enable` allows it, those it is only a replica
        of, with an ISR of itself: what only the old ISR had is lost."""
        records = []
        for topic, p in self._partitions():
            if p.leader != NO_LEADER or broker_id not in p.replicas:
                continue
            if broker_id in p.isr:
                records.append(self._changed(topic, p, broker_id, p.isr))
            elif self._unclean_allowed(topic):
                log.warning("unclean election: %s-%d is led by out-of-sync broker %d",
                            topic.name, p.index, broker_id)
                records.append(self._changed(topic, p, broker_id, [broker_id]))
        return records

    def _unclean_allowed(self, topic: TopicInfo) -> bool:
        return bool(topic.configs.get("unclean.leader.election.enable",
                                      self.config["unclean.leader.election.enable"]))

    async def alter_partition(self, topic_name: str, index: int, leader_id: int, leader_epoch: int,
                              partition_epoch: int, new_isr: list[int]) -> PartitionInfo:
        async with self._lock:
            topic, partition = self._find(topic_name, index)
            if leader_id != partition.leader or leader_epoch != partition.leader_epoch:
                raise RequestError(errors.FencedLeaderEpochError,
                                   f"leader {leader_id} epoch {leader_epoch} is not current")
            if partition_epoch != partition.partition_epoch:
                raise RequestError(errors.InvalidUpdateVersionError,
                                   f"partition epoch {partition_epoch} is stale")
            live = set(self.image.live_brokers())
            if leader_id not in new_isr or any(r not in partition.replicas or r not in live
                                               for r in new_isr):
                raise RequestError(errors.IneligibleReplicaError,
                                   f"ISR {new_isr} must hold the leader and live replicas only")
            await self._commit([self._changed(topic, partition, partition.leader, new_isr)])
            return self.image.topics[topic_name].partitions[index]

    async def elect_leaders(self, unclean: bool, wanted: list[tuple[str, int]] | None = None
                            ) -> dict[tuple[str, int], RequestError | None]:
        """ElectLeaders for the partitions asked for (None: every partition), as Kafka's
        controller: a preferred election gives leadership back to the first replica where
        it is live and in sync; an unclean one elects a leader for a partition that has
        none, out of sync if need be. Returns each partition's outcome, in order."""
        async with self._lock:
            live = set(self.image.live_brokers())
            if not unclean:
                # Leadership goes back only to a broker heard from lately: an unfenced one
                # that has gone quiet may be cut off, and leading from there it would stall
                # its partitions until it is fenced.
                live &= self._responsive_brokers()
            asked = (dict.fromkeys(wanted) if wanted is not None
                     else [(t.name, p.index) for t, p in self._partitions()])
            results: dict[tuple[str, int], RequestError | None] = {}
            records = []
            for name, index in asked:
                try:
                    topic, partition = self._find(name, index)
                    leader, isr = (self._unclean_choice if unclean else self._preferred_choice)(
                        partition, live)
                except RequestError as exc:
                    results[(name, index)] = exc
                    continue
                records.append(self._changed(topic, partition, leader, isr))
                results[(name, index)] = None
            if records:
                await self._commit(records)
        return results

    @staticmethod
    def _preferred_choice(partition: PartitionInfo, live: set[int]) -> tuple[int, list[int]]:
        preferred = partition.replicas[0]
        if partition.leader == preferred:
            raise RequestError(errors.ElectionNotNeededError,
                               f"the preferred replica {preferred} leads already")
        if preferred not in partition.isr or preferred not in live:
            raise RequestError(errors.PreferredLeaderNotAvailableError,
                               f"the preferred replica {preferred} is not live, in sync and "
                               "heard from lately")
        return preferred, partition.isr

    @staticmethod
    def _unclean_choice(partition: PartitionInfo, live: set[int]) -> tuple[int, list[int]]:
        if partition.leader != NO_LEADER:
            raise RequestError(errors.ElectionNotNeededError,
                               f"broker {partition.leader} leads already")
        in_sync = [r for r in partition.replicas if r in partition.isr and r in live]
        if in_sync:
            return in_sync[0], partition.isr
        out_of_sync = [r for r in partition.replicas if r in live]
        if out_of_sync:
            return out_of_sync[0], out_of_sync[:1]  # what it lacks is lost: the ISR starts over
        raise RequestError(errors.EligibleLeadersNotAvailableError, "no replica is live")

    async def rebalance_leaders(self) -> None:
        """auto.leader.rebalance.enable: the preferred replicas lead again where they can."""
        results = await self.elect_leaders(unclean=False)
        moved = [f"{name}-{index}" for (name, index), error in results.items() if error is None]
        if moved:
            log.info("leadership back to the preferred replicas of %s", ", ".join(moved))
