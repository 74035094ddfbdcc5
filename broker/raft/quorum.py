"""The Raft state machine of the metadata quorum (KIP-595 with KIP-996 pre-votes).

Roles of a voter, and what moves it on:

    unattached --election timeout--> prospective --majority of pre-votes--> candidate
    candidate --majority of votes--> leader (appends a LeaderChange control record)
    follower --no fetch answered for fetch.timeout--> prospective
    leader --no fetches from a majority for 1.5 x fetch.timeout--> unattached (resigned)
    any role --a higher epoch seen in a request or response--> follower or unattached

A prospective voter asks with PreVote first, changing nothing, so a node coming back from
a partition cannot push the quorum to a new epoch it would lose anyway. Observers
(broker-only nodes) are followers or unattached only: they find the leader by fetching
from any voter, which answers with the leader it knows.

Durability: the epoch, the vote and the leader are written to the `settings` table and
committed before any answer or request that depends on them. The high watermark is
written lazily as a lower bound, so a restarted node replays what it knows was committed
without waiting for a leader.
"""
from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
import time
from typing import TYPE_CHECKING, Callable

from kafka import errors
from kafka.protocol.admin import DescribeQuorumResponse
from kafka.protocol.consumer import FetchRequest, FetchResponse

from broker.peer import Channel, PeerUnavailable, Peers
from broker.protocol import RequestContext
from broker.raft.log import LEADER_CHANGE_KEY, METADATA_TOPIC, MetadataLog
from broker.messages import (
    BeginQuorumEpochRequest, EndQuorumEpochRequest, VoteRequest, VoteResponse,
)
from broker.records import replicated_batches
from broker.storage import Storage

if TYPE_CHECKING:
    from broker.config import NodeConfig

log = logging.getLogger(__name__)

STATE_KEY = "quorum.state"
HIGH_WATERMARK_KEY = "quorum.high.watermark"
FETCH_VERSION = 12  # the first with LastFetchedEpoch and DivergingEpoch, still topic names
VOTE_VERSION = 2    # the first with PreVote
FETCH_MAX_WAIT_MS = 500
FETCH_MAX_BYTES = 1024 * 1024
APPLY_MAX_BYTES = 1024 * 1024
RETRY_BACKOFF = 0.05
CHECK_QUORUM_FACTOR = 1.5  # Kafka's: a leader resigns after 1.5 fetch timeouts unfetched

TopicResponse = FetchResponse.FetchableTopicResponse
PartitionData = TopicResponse.PartitionData
ReplicaState = DescribeQuorumResponse.TopicData.PartitionData.ReplicaState


class NotLeader(Exception):
    """This node does not lead the quorum; `leader_id` does (None: no leader is known)."""

    def __init__(self, leader_id: int | None, message: str = ""):
        super().__init__(message or (f"node {leader_id} leads the metadata quorum"
                                     if leader_id is not None else "no metadata quorum leader"))
        self.leader_id = leader_id


class NoQuorum(NotLeader):
    """No leader is known, or the leader could not commit in time: too few voters are up."""

    def __init__(self, message: str = "the metadata quorum has no leader"):
        super().__init__(None, message)


class Role(enum.Enum):
    UNATTACHED = "unattached"
    FOLLOWER = "follower"
    PROSPECTIVE = "prospective"
    CANDIDATE = "candidate"
    LEADER = "leader"


def wall_ms(monotonic: float) -> int:
    """A time.monotonic() instant as epoch milliseconds; -1 for 'never' (0.0)."""
    if not monotonic:
        return -1
    return int((time.time() - (time.monotonic() - monotonic)) * 1000)


class MetadataQuorum:
    def __init__(self, config: "NodeConfig", storage: Storage, peers: Peers):
        self.node_id = config.node_id
        self.storage = storage
        self.peers = peers
        self.voters = sorted(config.voters)
        self.log = MetadataLog(storage, self.node_id, self.voters)
        self.log.on_change = self._changed
        ms = 1 / 1000
        self.election_timeout = config["controller.quorum.election.timeout.ms"] * ms
        self.fetch_timeout = config["controller.quorum.fetch.timeout.ms"] * ms
        self.election_backoff_max = config["controller.quorum.election.backoff.max.ms"] * ms
        self.request_timeout = config["controller.quorum.request.timeout.ms"] * ms
        self.fetch_max_wait = min(FETCH_MAX_WAIT_MS * ms, self.fetch_timeout / 2)

        self.role = Role.UNATTACHED
        self.epoch = 0
        self.leader_id: int | None = None
        self.voted_for: int | None = None
        self._ready = False  # as leader: everything up to this epoch's start is applied
        self._role_since = 0.0
        self._leader_contact = 0.0  # monotonic time a leader last answered or announced
        self._lock = asyncio.Lock()  # one state transition at a time
        self._role_task: asyncio.Task | None = None
        self._applier: asyncio.Task | None = None
        self._new_commits = asyncio.Event()
        self._applied = 0  # next offset to hand to subscribers
        self._stored_hw = 0
        self._subscribers: list[Callable[[int, bytes], None]] = []
        self._leader_listeners: list[Callable[[int | None, int], None]] = []
        self._appends: dict[int, asyncio.Future] = {}  # last offset -> its append() waiter

    # -- the interface ------------------------------------------------------------------

    @property
    def high_watermark(self) -> int:
        return self.log.high_watermark

    @property
    def is_voter(self) -> bool:
        return self.node_id in self.voters

    @property
    def is_leader(self) -> bool:
        """Leads and has applied every record committed before its epoch: safe to act on."""
        return self.role is Role.LEADER and self._ready

    def subscribe(self, apply: Callable[[int, bytes], None]) -> None:
        if self._applier is not None:
            raise RuntimeError("subscribe before the quorum starts, so no record is missed")
        self._subscribers.append(apply)

    def on_leader_change(self, callback: Callable[[int | None, int], None]) -> None:
        self._leader_listeners.append(callback)

    async def append(self, records: list[bytes]) -> int:
        if not self.is_leader:
            raise self._not_leader()
        last, _ = self.log.append_values(records)
        waiter = self._appends[last] = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self.request_timeout):
                await asyncio.shield(waiter)
        except TimeoutError:
            raise NoQuorum(f"offset {last} was not committed within "
                           f"{self.request_timeout * 1000:.0f} ms; too few voters answer "
                           "(it may still be committed)") from None
        finally:
            self._appends.pop(last, None)
        return last

    def _not_leader(self) -> NotLeader:
        if self.leader_id is None:
            return NoQuorum()
        if self.leader_id == self.node_id:
            return NotLeader(None, f"node {self.node_id} was just elected and is catching up")
        return NotLeader(self.leader_id)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        state = json.loads(await self.storage.get_setting(STATE_KEY) or "{}")
        self._stored_hw = int(await self.storage.get_setting(HIGH_WATERMARK_KEY) or 0)
        await self.log.load(self._stored_hw)
        self.epoch = state.get("epoch", 0)
        self.voted_for = state.get("voted_for")
        leader = state.get("leader")
        self._applier = asyncio.create_task(self._apply_committed(), name="quorum-apply")
        self._new_commits.set()  # replay what is known to be committed
        async with self._lock:
            if leader is not None and leader != self.node_id:
                await self._become(Role.FOLLOWER, self.epoch, leader, self.voted_for)
            else:
                # A leader that restarts lost its leader state: it stands again, later.
                await self._become(Role.UNATTACHED, self.epoch, None, self.voted_for)
        log.info("metadata quorum: node %d starts as %s in epoch %d (voters %s, log end %d)",
                 self.node_id, self.role.value, self.epoch, self.voters, self.log.end_offset)

    async def close(self) -> None:
        if self.role is Role.LEADER:
            await self._resign_gracefully()
        for task in (self._role_task, self._applier):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._role_task, self._applier) if t),
                             return_exceptions=True)
        for waiter in self._appends.values():
            if not waiter.done():
                waiter.set_exception(NotLeader(None, "the node is shutting down"))

    # -- state transitions --------------------------------------------------------------

    async def _become(self, role: Role, epoch: int, leader: int | None, voted_for: int | None,
                      wait: float | None = None) -> None:
        """Persist and enter a new state; the caller holds self._lock."""
        if (epoch, leader, voted_for) != (self.epoch, self.leader_id, self.voted_for):
            await self._put_setting(STATE_KEY, json.dumps(
                {"epoch": epoch, "leader": leader, "voted_for": voted_for}))
        changed = (leader, epoch) != (self.leader_id, self.epoch)
        quiet = not changed and role is self.role  # a retry, not news
        was_leader = self.role is Role.LEADER
        self.role, self.epoch, self.leader_id, self.voted_for = role, epoch, leader, voted_for
        self._role_since = time.monotonic()
        self._ready = False
        if role is Role.LEADER:
            self.log.become_leader(epoch, self.voters, self.voters)
        else:
            self.log.become_follower(-1 if leader is None else leader, epoch, self.voters,
                                     self.voters)
        if was_leader and role is not Role.LEADER:
            for waiter in self._appends.values():
                if not waiter.done():
                    waiter.set_exception(self._not_leader())
        if self._role_task is not None:
            self._role_task.cancel()  # possibly the running task: it ends at its next await
        self._role_task = asyncio.create_task(self._run_role(wait), name=f"quorum-{role.value}")
        if not quiet:
            log.info("metadata quorum: node %d is %s in epoch %d (leader %s)",
                     self.node_id, role.value, epoch, leader)
        if changed and role is not Role.LEADER:
            self._notify_leader_change()

    def _put_setting(self, key: str, value: str) -> asyncio.Future:
        return self.storage.write(
            "INSERT INTO settings (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def _notify_leader_change(self) -> None:
        for callback in self._leader_listeners:
            try:
                callback(self.leader_id, self.epoch)
            except Exception:
                log.exception("leader change listener failed")

    async def _learn(self, leader: int | None, epoch: int) -> bool:
        """Adopt a newer epoch (or this epoch's leader) seen in a request or response."""
        if leader is not None and leader < 0:
            leader = None
        async with self._lock:
            if epoch > self.epoch:
                if leader is None or leader == self.node_id:
                    await self._become(Role.UNATTACHED, epoch, None, None)
                else:
                    await self._become(Role.FOLLOWER, epoch, leader, None)
                return True
            if (epoch == self.epoch and leader is not None and leader != self.node_id
                    and self.leader_id is None):
                await self._become(Role.FOLLOWER, epoch, leader, self.voted_for)
                return True
        return False

    async def _run_role(self, wait: float | None) -> None:
        role = self.role
        try:
            if role is Role.LEADER:
                await self._lead()
            elif role is Role.FOLLOWER:
                await self._follow()
            elif role is Role.UNATTACHED:
                await self._unattached(wait)
            else:
                if wait:
                    await asyncio.sleep(wait)
                await self._stand(pre_vote=role is Role.PROSPECTIVE)
        except Exception:
            log.exception("metadata quorum: %s role failed; starting over", role.value)
            await asyncio.sleep(self.election_timeout)
            async with self._lock:
                await self._become(Role.UNATTACHED, self.epoch, None, self.voted_for)

    def _election_wait(self) -> float:
        return self.election_timeout * (1 + random.random())

    # -- roles --------------------------------------------------------------------------

    async def _unattached(self, wait: float | None) -> None:
        if not self.is_voter:
            await self._discover_leader()
            return
        if self.voters != [self.node_id]:
            await asyncio.sleep(self._election_wait() if wait is None else wait)
        async with self._lock:
            await self._become(Role.PROSPECTIVE, self.epoch, None, self.voted_for)

    async def _discover_leader(self) -> None:
        """An observer without a leader asks the voters in turn, by fetching."""
        while True:
            for voter in random.sample(self.voters, len(self.voters)):
                try:
                    response = await self._fetch_from(voter)
                except PeerUnavailable:
                    continue
                current = response.responses[0].partitions[0].current_leader
                if current is not None and await self._learn(current.leader_id,
                                                             current.leader_epoch):
                    return
            await asyncio.sleep(self.election_timeout)

    async def _stand(self, pre_vote: bool) -> None:
        """Ask every voter; a majority moves a prospective voter to candidate (a new,
        durable epoch voted for itself) and a candidate to leader."""
        epoch = self.epoch + 1 if pre_vote else self.epoch
        won = await self._collect_votes(epoch, pre_vote)
        async with self._lock:
            if won is None or self.role is not (Role.PROSPECTIVE if pre_vote else Role.CANDIDATE):
                return  # a newer epoch was learnt meanwhile
            if won and pre_vote:
                await self._become(Role.CANDIDATE, epoch, None, self.node_id)
            elif won:
                await self._become(Role.LEADER, epoch, self.node_id, self.node_id)
            else:
                await self._become(Role.PROSPECTIVE, self.epoch, None, self.voted_for,
                                   wait=RETRY_BACKOFF + random.random() * self.election_backoff_max)

    async def _collect_votes(self, epoch: int, pre_vote: bool) -> bool | None:
        """True for a majority, False for none within an election timeout, None when an
        answer showed a newer epoch (already adopted)."""
        granted, needed = 1, len(self.voters) // 2 + 1
        if granted >= needed:
            return True
        asks = [asyncio.create_task(self._ask_vote(v, epoch, pre_vote))
                for v in self.voters if v != self.node_id]
        try:
            for answer in asyncio.as_completed(asks, timeout=self._election_wait()):
                voter, response = await answer
                if response is None or not response.topics:
                    continue
                result = response.topics[0].partitions[0]
                # Adopt a newer epoch; in this epoch, only a leader vouching for itself (the
                # others may name a leader that is gone).
                if ((result.leader_epoch > self.epoch or result.leader_id == voter)
                        and await self._learn(result.leader_id, result.leader_epoch)):
                    return None
                if result.vote_granted:
                    granted += 1
                    if granted >= needed:
                        return True
        except TimeoutError:
            pass
        finally:
            for ask in asks:
                ask.cancel()
        return False

    async def _ask_vote(self, voter: int, epoch: int, pre_vote: bool
                        ) -> tuple[int, VoteResponse | None]:
        topic = VoteRequest.TopicData
        request = VoteRequest(version=VOTE_VERSION, cluster_id=None, voter_id=voter, topics=[
            topic(topic_name=METADATA_TOPIC, partitions=[topic.PartitionData(
                partition_index=0, replica_epoch=epoch, replica_id=self.node_id,
                replica_directory_id=None, voter_directory_id=None,
                last_offset_epoch=self.log.last_epoch, last_offset=self.log.end_offset,
                pre_vote=pre_vote)])])
        try:
            return voter, await self.peers.request(voter, request, self.request_timeout,
                                                   Channel.QUORUM)
        except PeerUnavailable:
            return voter, None

    async def _lead(self) -> None:
        epoch = self.epoch
        control = json.dumps({"leader": self.node_id, "epoch": epoch, "voters": self.voters})
        self.log.append_values([control.encode()], LEADER_CHANGE_KEY)
        loop = asyncio.get_running_loop()
        announced: dict[int, float] = {}
        while True:
            now = time.monotonic()
            for voter in self.voters:
                if voter == self.node_id or self.log.voter_progress(voter).last_fetch:
                    continue
                if now - announced.get(voter, 0.0) >= self.election_timeout:
                    announced[voter] = now
                    loop.create_task(self._announce(voter, epoch))
            if not self._majority_fetched(now):
                log.warning("metadata quorum: leader %d heard from no majority for %.1f s;"
                            " resigning epoch %d", self.node_id,
                            CHECK_QUORUM_FACTOR * self.fetch_timeout, epoch)
                async with self._lock:
                    await self._become(Role.UNATTACHED, epoch, None, self.voted_for)
                return
            await asyncio.sleep(min(self.election_timeout, self.fetch_timeout) / 4)

    def _majority_fetched(self, now: float) -> bool:
        limit = CHECK_QUORUM_FACTOR * self.fetch_timeout
        heard = sum(1 for v in self.voters if v == self.node_id
                    or now - max(self.log.voter_progress(v).last_fetch, self._role_since) <= limit)
        return heard > len(self.voters) // 2

    async def _announce(self, voter: int, epoch: int) -> None:
        topic = BeginQuorumEpochRequest.TopicData
        request = BeginQuorumEpochRequest(version=0, cluster_id=None, topics=[
            topic(topic_name=METADATA_TOPIC, partitions=[topic.PartitionData(
                partition_index=0, leader_id=self.node_id, leader_epoch=epoch)])])
        try:
            response = await self.peers.request(voter, request, self.request_timeout,
                                                Channel.QUORUM)
        except PeerUnavailable:
            return
        for result in (p for t in response.topics for p in t.partitions):
            await self._learn(result.leader_id, result.leader_epoch)

    async def _resign_gracefully(self) -> None:
        """EndQuorumEpoch: the others elect a successor now rather than after a timeout."""
        others = [v for v in self.voters if v != self.node_id]
        others.sort(key=lambda v: self.log.voter_progress(v).end_offset, reverse=True)
        topic = EndQuorumEpochRequest.TopicData
        request = EndQuorumEpochRequest(version=0, cluster_id=None, topics=[
            topic(topic_name=METADATA_TOPIC, partitions=[topic.PartitionData(
                partition_index=0, leader_id=self.node_id, leader_epoch=self.epoch,
                preferred_successors=others)])])
        await asyncio.gather(*(self.peers.request(v, request, self.request_timeout, Channel.QUORUM)
                               for v in others), return_exceptions=True)

    async def _follow(self) -> None:
        leader = self.leader_id
        last_answer = time.monotonic()
        while time.monotonic() - last_answer < self.fetch_timeout:
            try:
                response = await self._fetch_from(leader)
            except PeerUnavailable as exc:
                log.debug("metadata fetch from node %d failed: %s", leader, exc)
                await asyncio.sleep(RETRY_BACKOFF)
                continue
            if await self._fetched(response):
                last_answer = self._leader_contact = time.monotonic()
            else:
                await asyncio.sleep(RETRY_BACKOFF)
        log.warning("metadata quorum: no answer from leader %d for %.1f s", leader,
                    self.fetch_timeout)
        async with self._lock:
            if self.is_voter:
                await self._become(Role.PROSPECTIVE, self.epoch, None, self.voted_for, wait=0)
            else:
                await self._become(Role.UNATTACHED, self.epoch, None, None)

    async def _fetch_from(self, node: int):
        topic = FetchRequest.FetchTopic
        request = FetchRequest(
            version=FETCH_VERSION, replica_id=self.node_id,
            max_wait_ms=int(self.fetch_max_wait * 1000), min_bytes=1, max_bytes=FETCH_MAX_BYTES,
            isolation_level=0, session_id=0, session_epoch=-1, rack_id="", forgotten_topics_data=[],
            topics=[topic(topic=METADATA_TOPIC, partitions=[topic.FetchPartition(
                partition=0, current_leader_epoch=self.epoch, fetch_offset=self.log.end_offset,
                last_fetched_epoch=self.log.last_epoch, log_start_offset=0,
                partition_max_bytes=FETCH_MAX_BYTES)])])
        return await self.peers.request(node, request, self.fetch_max_wait + self.request_timeout,
                                        Channel.METADATA_FETCH)

    async def _fetched(self, response) -> bool:
        """Apply a leader's fetch answer; False when it was an error."""
        result = response.responses[0].partitions[0]
        current = result.current_leader
        if current is not None and (current.leader_epoch, current.leader_id) != (self.epoch,
                                                                                 self.leader_id):
            await self._learn(current.leader_id, current.leader_epoch)
            return False
        if result.error_code:
            log.debug("metadata fetch answered %s", errors.for_code(result.error_code).__name__)
            return False
        diverging = result.diverging_epoch
        if diverging is not None and diverging.end_offset >= 0:
            _, ours = self.log.end_offset_for_epoch(diverging.epoch)
            await self.log.truncate_to(min(diverging.end_offset, max(ours, 0)))
            return True
        if result.records:
            commit = self.log.append_replicated(replicated_batches(result.records))
            if commit is not None:
                await commit
        self.log.follower_high_watermark(result.high_watermark)
        return True

    # -- serving peers ------------------------------------------------------------------

    async def vote(self, candidate: int, epoch: int, last_epoch: int, last_offset: int,
                   pre_vote: bool) -> tuple[int, bool]:
        """Handle a Vote; returns (error code, granted)."""
        if not self.is_voter or candidate not in self.voters:
            return errors.InconsistentVoterSetError.errno, False
        if epoch < self.epoch:
            return errors.FencedLeaderEpochError.errno, False
        log_ok = (last_epoch, last_offset) >= (self.log.last_epoch, self.log.end_offset)
        if pre_vote:
            leader_alive = self.role is Role.LEADER or (
                self.role is Role.FOLLOWER
                and time.monotonic() - self._leader_contact < self.fetch_timeout)
            return 0, log_ok and not leader_alive
        async with self._lock:
            if epoch < self.epoch:
                return errors.FencedLeaderEpochError.errno, False
            newer = epoch > self.epoch  # a newer epoch: we step down, leaderless, unvoted
            granted = log_ok and (newer or (
                self.leader_id is None and self.voted_for in (None, candidate)
                and self.role in (Role.UNATTACHED, Role.PROSPECTIVE)))
            if newer or (granted and self.voted_for is None):
                # Granting restarts the election timer, as Raft wants.
                await self._become(Role.UNATTACHED, epoch, None, candidate if granted else None)
            if granted:
                log.info("metadata quorum: node %d votes for %d in epoch %d",
                         self.node_id, candidate, epoch)
            return 0, granted

    async def begin_epoch(self, leader: int, epoch: int) -> int:
        """Handle BeginQuorumEpoch; returns the error code."""
        if epoch < self.epoch:
            return errors.FencedLeaderEpochError.errno
        self._leader_contact = time.monotonic()
        await self._learn(leader, epoch)
        return 0

    async def end_epoch(self, leader: int, epoch: int, successors: list[int]) -> int:
        """Handle EndQuorumEpoch: stand soon, the most caught-up successors first."""
        if epoch < self.epoch:
            return errors.FencedLeaderEpochError.errno
        async with self._lock:
            if (epoch, leader) == (self.epoch, self.leader_id) and self.is_voter:
                rank = successors.index(self.node_id) if self.node_id in successors else len(successors)
                wait = rank * self.election_backoff_max / len(self.voters)
                log.info("metadata quorum: leader %d resigned epoch %d; standing in %.2f s",
                         leader, epoch, wait)
                await self._become(Role.UNATTACHED, epoch, None, self.voted_for, wait=wait)
        return 0

    async def fetch(self, request, ctx: RequestContext) -> FetchResponse:
        """A follower's or observer's Fetch of the metadata log."""
        version = ctx.api_version
        wanted = request.topics[0].partitions[0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0, request.max_wait_ms) / 1000
        first_hw = None
        while True:
            result = await self._fetch_once(request.replica_id, wanted, version)
            first_hw = result.high_watermark if first_hw is None else first_hw
            left = deadline - loop.time()
            # A new high watermark is news too: it is how followers learn what is committed.
            if (result.records or result.error_code or result.diverging_epoch is not None
                    or result.high_watermark != first_hw or left <= 0):
                break
            waiter = self.log.new_data_waiter(loop)
            if (self.log.local_end <= wanted.fetch_offset
                    and self.log.high_watermark == result.high_watermark):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await waiter
            waiter.cancel()
        return FetchResponse(version=version, throttle_time_ms=0, error_code=0, session_id=0,
                             responses=[TopicResponse(version=version, topic=METADATA_TOPIC,
                                                      partitions=[result])])

    async def _fetch_once(self, replica: int, wanted, version: int):
        log_ = self.log
        result = PartitionData(
            version=version, partition_index=0, error_code=0, high_watermark=log_.high_watermark,
            last_stable_offset=log_.high_watermark, log_start_offset=log_.log_start_offset,
            aborted_transactions=None, preferred_read_replica=-1, records=b"")
        result.current_leader = PartitionData.LeaderIdAndEpoch(
            leader_id=-1 if self.leader_id is None else self.leader_id, leader_epoch=self.epoch)
        if wanted.current_leader_epoch > self.epoch:
            result.error_code = errors.UnknownLeaderEpochError.errno
        elif wanted.current_leader_epoch < self.epoch:
            result.error_code = errors.FencedLeaderEpochError.errno
        elif self.role is not Role.LEADER:
            result.error_code = errors.NotLeaderForPartitionError.errno
        else:
            epoch, end = log_.end_offset_for_epoch(wanted.last_fetched_epoch)
            end = max(end, log_.log_start_offset)
            if wanted.fetch_offset > log_.end_offset or (
                    wanted.last_fetched_epoch >= 0
                    and (epoch != wanted.last_fetched_epoch or wanted.fetch_offset > end)):
                result.diverging_epoch = PartitionData.EpochEndOffset(epoch=epoch, end_offset=end)
            else:
                log_.replica_fetched(replica, wanted.fetch_offset)
                result.high_watermark = result.last_stable_offset = log_.high_watermark
                result.records = await log_.read(wanted.fetch_offset,
                                                 wanted.partition_max_bytes, log_.local_end)
        return result

    def describe(self, version: int) -> DescribeQuorumResponse.TopicData.PartitionData:
        """DescribeQuorum's partition data, as the leader knows it."""
        partition = DescribeQuorumResponse.TopicData.PartitionData
        now = time.monotonic()

        def state(replica: int) -> ReplicaState:
            if replica == self.node_id:
                end, fetched, caught_up = self.log.local_end, now, now
            else:
                progress = self.log.voter_progress(replica)
                end, fetched = progress.end_offset, progress.last_fetch
                caught_up = progress.last_caught_up if fetched else 0.0  # unknown before a fetch
            return ReplicaState(version=version, replica_id=replica, replica_directory_id=None,
                                log_end_offset=end, last_fetch_timestamp=wall_ms(fetched),
                                last_caught_up_timestamp=wall_ms(caught_up))

        observers = [r for r in self.log.followers if r not in self.voters]
        return partition(version=version, partition_index=0, error_code=0, error_message=None,
                         leader_id=self.node_id, leader_epoch=self.epoch,
                         high_watermark=self.log.high_watermark,
                         current_voters=[state(v) for v in self.voters],
                         observers=[state(o) for o in observers])

    # -- committed records --------------------------------------------------------------

    def _changed(self) -> None:
        if self.log.high_watermark > self._applied:
            self._new_commits.set()

    async def _apply_committed(self) -> None:
        """Hand committed records to the subscribers, in order, exactly once each."""
        while True:
            await self._new_commits.wait()
            self._new_commits.clear()
            while self._applied < self.log.high_watermark:
                start = self._applied
                records, self._applied = await self.log.records(
                    start, self.log.high_watermark, APPLY_MAX_BYTES)
                if self._applied == start:
                    break  # the high watermark is inside a batch; wait for it to pass
                for offset, value in records:
                    for apply in self._subscribers:
                        try:
                            apply(offset, value)
                        except Exception:
                            log.exception("metadata record %d could not be applied", offset)
            for last, waiter in list(self._appends.items()):
                if last < self._applied and not waiter.done():
                    waiter.set_result(None)
            if (self.role is Role.LEADER and not self._ready
                    and self._applied > self.log.epoch_start):
                self._ready = True
                log.info("metadata quorum: node %d leads epoch %d", self.node_id, self.epoch)
                self._notify_leader_change()
            if self._applied > self._stored_hw:
                self._stored_hw = self._applied
                self._put_setting(HIGH_WATERMARK_KEY, str(self._stored_hw))  # lazily
