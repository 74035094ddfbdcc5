"""One classic consumer group: members, generations and the rebalance protocol.

The states are Kafka's: Empty → PreparingRebalance → CompletingRebalance → Stable, back to
PreparingRebalance whenever a member joins, leaves, changes its subscription or misses
its session timeout, and Dead once the group is deleted or its coordinator moves away.

- JoinGroup: every member (re)joins during PreparingRebalance. The join completes when
  all known members have rejoined or the rebalance timeout passes (members that did not
  rejoin are dropped); a group that was Empty first waits
  `group.initial.rebalance.delay.ms` for more members. Then the generation goes up, one
  protocol is chosen by vote, and the leader gets every member's subscription.
- SyncGroup: the leader sends the assignment (computed client-side); the coordinator
  stores the group with it, then hands every member its part: Stable.
- Heartbeat: keeps a member alive for its session timeout and tells it when to rejoin.

Everything runs on the event loop: the checks and changes of one call happen between
awaits, so they always see one consistent group.
"""
from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable

from kafka import errors
from kafka.protocol.consumer.metadata import ConsumerProtocolSubscription

from broker.errors import RequestError
from broker.groups.records import CommittedOffset, GroupMetadataValue, Member as StoredMember

log = logging.getLogger(__name__)


class State(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass
class JoinRequest:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    require_known_member_id: bool  # JoinGroup v4+: a new member first gets its id


@dataclass
class JoinResult:
    member_id: str
    error: type[errors.BrokerResponseError] | None = None
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    # (member id, group instance id, metadata): for the leader only
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)


@dataclass
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    join_waiter: asyncio.Future | None = None
    sync_waiter: asyncio.Future | None = None
    expiry: asyncio.TimerHandle | None = None

    @classmethod
    def joining(cls, member_id: str, request: JoinRequest, assignment: bytes = b"") -> "Member":
        return cls(member_id, request.group_instance_id, request.client_id, request.client_host,
                   request.session_timeout_ms, request.rebalance_timeout_ms, request.protocols,
                   assignment)

    def metadata(self, protocol: str | None) -> bytes:
        return next((m for name, m in self.protocols if name == protocol), b"")

    def answer_join(self, result: JoinResult) -> None:
        if self.join_waiter is not None and not self.join_waiter.done():
            self.join_waiter.set_result(result)
        self.join_waiter = None

    def answer_sync(self, result: bytes | RequestError) -> None:
        waiter, self.sync_waiter = self.sync_waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(result, RequestError):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)


@dataclass(frozen=True)
class GroupSettings:
    initial_rebalance_delay_ms: int


# Persist the group with these assignments (member id -> bytes): a coroutine that raises
# RequestError with the code to answer when the write fails.
StoreGroup = Callable[["Group", dict[str, bytes]], Awaitable[None]]


def rebalance_error() -> RequestError:
    return RequestError(errors.RebalanceInProgressError, "the group is rebalancing")


class Group:
    def __init__(self, group_id: str, settings: GroupSettings, store: StoreGroup):
        self.group_id = group_id
        self.settings = settings
        self.store = store
        self.state = State.EMPTY
        self.state_timestamp = int(time.time() * 1000)
        self.generation = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}  # group instance id -> member id
        self.pending_members: dict[str, asyncio.TimerHandle] = {}  # ids given, not yet joined
        self.offsets: dict[tuple[str, int], CommittedOffset] = {}
        # Partitions with a commit being written: their offsets do not expire meanwhile.
        self.pending_commits: Counter[tuple[str, int]] = Counter()
        self._join_timer: asyncio.TimerHandle | None = None
        self._delaying = False  # a new group's initial rebalance delay is running
        self._delay_left_ms = 0
        self._joined_during_delay = False

    # -- reading ------------------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        return not self.members

    def subscribed_topics(self) -> set[str] | None:
        """Topics the members subscribe to (consumer protocol), None when unknowable."""
        if self.protocol_type != "consumer" or self.protocol_name is None:
            return None
        topics = set()
        for member in self.members.values():
            try:
                topics.update(ConsumerProtocolSubscription.decode(
                    member.metadata(self.protocol_name)).topics)
            except Exception:  # a subscription this broker cannot parse
                return None
        return topics

    def commits_started(self, partitions: Iterable[tuple[str, int]]) -> None:
        for tp in partitions:
            self.pending_commits[tp] += 1

    def commits_ended(self, partitions: Iterable[tuple[str, int]]) -> None:
        # By hand: Counter's `-=` costs a commit three times as much.
        for tp in partitions:
            left = self.pending_commits[tp] - 1
            if left:
                self.pending_commits[tp] = left
            else:
                del self.pending_commits[tp]

    def expired_offsets(self, now_ms: int, retention_ms: int) -> list[tuple[str, int]]:
        """Committed offsets past their retention, by Kafka's rule. An offset with an
        expire timestamp of its own expires then. Otherwise, `retention_ms` counts:
        - in a group that only stores offsets (no member ever joined), from each commit;
        - in an empty group, from when its last member left;
        - in a stable consumer group, from each commit, for topics no member subscribes to.
        No other group loses offsets, nor does a partition with a commit being written."""
        if self.protocol_type is None:
            since, subscribed = None, set()
        elif self.state is State.EMPTY:
            since, subscribed = self.state_timestamp, set()
        elif self.state is State.STABLE and (topics := self.subscribed_topics()) is not None:
            since, subscribed = None, topics
        else:
            return []
        return [tp for tp, c in self.offsets.items()
                if tp[0] not in subscribed and not self.pending_commits[tp]
                and (now_ms >= c.expire_timestamp if c.expire_timestamp >= 0 else
                     now_ms - (c.commit_timestamp if since is None else since) >= retention_ms)]

    def stored_value(self, assignments: dict[str, bytes]) -> GroupMetadataValue:
        """The group record for this generation with these assignments."""
        return GroupMetadataValue(
            version=3, protocol_type=self.protocol_type or "", generation=self.generation,
            protocol=self.protocol_name, leader=self.leader,
            current_state_timestamp=self.state_timestamp,
            members=[StoredMember(version=3, member_id=m.member_id,
                                  group_instance_id=m.group_instance_id, client_id=m.client_id,
                                  client_host=m.client_host,
                                  rebalance_timeout=m.rebalance_timeout_ms,
                                  session_timeout=m.session_timeout_ms,
                                  subscription=m.metadata(self.protocol_name),
                                  assignment=assignments.get(m.member_id, b""))
                     for m in self.members.values()])

    def restore(self, value: GroupMetadataValue) -> None:
        """Take the stored generation: its members are alive for one more session timeout."""
        self.generation = value.generation
        self.protocol_type = value.protocol_type or None
        self.protocol_name = value.protocol
        self.leader = value.leader
        self.state_timestamp = value.current_state_timestamp
        for stored in value.members:
            member = Member(stored.member_id, stored.group_instance_id, stored.client_id,
                            stored.client_host, stored.session_timeout,
                            stored.rebalance_timeout, [(value.protocol, stored.subscription)],
                            stored.assignment)
            self._add(member)
            self._heartbeat(member)
        if self.members:
            self._transition(State.STABLE)
        else:
            self.state = State.EMPTY  # since the stored timestamp, which offset expiry counts from

    # -- JoinGroup ----------------------------------------------------------------------

    async def join(self, request: JoinRequest) -> JoinResult:
        self._check_alive()
        if not self._supports(request.protocol_type, request.protocols):
            raise RequestError(errors.InconsistentGroupProtocolError,
                               "the member's protocols have none in common with the group's")
        if self.is_empty:
            self.protocol_type = request.protocol_type
        if not request.member_id:
            return await self._join_new(request)
        return await self._join_known(request)

    async def _join_new(self, request: JoinRequest) -> JoinResult:
        prefix = request.group_instance_id or request.client_id
        member_id = f"{prefix}-{uuid.uuid4()}"
        if request.group_instance_id is not None:
            old_id = self.static_members.get(request.group_instance_id)
            if old_id is not None:
                return await self._replace_static_member(old_id, member_id, request)
        elif request.require_known_member_id:
            # The member comes back with this id: a client that dies before then leaves no
            # member behind for a rebalance to wait on.
            loop = asyncio.get_running_loop()
            self.pending_members[member_id] = loop.call_later(
                request.session_timeout_ms / 1000, self._expire_pending, member_id)
            return JoinResult(member_id, errors.MemberIdRequiredError)
        return await self._add_and_rebalance(member_id, request)

    async def _join_known(self, request: JoinRequest) -> JoinResult:
        member_id = request.member_id
        if member_id in self.pending_members:
            self.pending_members.pop(member_id).cancel()
            return await self._add_and_rebalance(member_id, request)
        member = self._member(member_id, request.group_instance_id)
        if self.state is State.EMPTY:
            raise RequestError(errors.UnknownMemberIdError, f"{member_id} is not in the group")
        if self.state is State.PREPARING_REBALANCE:
            self._update(member, request)
            waiting = self._await_join(member)
            self._try_complete_join()
            return await waiting
        if self.state is State.COMPLETING_REBALANCE and member.protocols == request.protocols:
            # The member lost our answer: the same generation again.
            return self._join_result(member)
        if self.state is State.STABLE and member.member_id != self.leader \
                and member.protocols == request.protocols:
            return self._join_result(member)
        self._update(member, request)
        waiting = self._await_join(member)
        self._prepare_rebalance(f"{member_id} rejoined with new metadata")
        return await waiting

    async def _add_and_rebalance(self, member_id: str, request: JoinRequest) -> JoinResult:
        member = Member.joining(member_id, request)
        self._add(member)
        self._joined_during_delay = True
        waiting = self._await_join(member)
        if self.state is State.PREPARING_REBALANCE:
            self._try_complete_join()
        else:
            self._prepare_rebalance(f"{member_id} joined")
        return await waiting

    async def _replace_static_member(self, old_id: str, new_id: str,
                                     request: JoinRequest) -> JoinResult:
        """A static member restarted: it takes its old place under a new member id, and a
        Stable group keeps its assignment (no rebalance for a bounce)."""
        old = self.members.pop(old_id)
        fenced = RequestError(errors.FencedInstanceIdError,
                              f"{request.group_instance_id} joined again as {new_id}")
        old.answer_join(JoinResult(old_id, errors.FencedInstanceIdError))
        old.answer_sync(fenced)
        if old.expiry is not None:
            old.expiry.cancel()
        member = Member.joining(new_id, request, old.assignment)
        was_leader = self.leader == old_id
        self._add(member)
        if was_leader:
            self.leader = new_id
        self._heartbeat(member)
        if self.state is State.STABLE and self._select_protocol() == self.protocol_name:
            await self.store(self, {m.member_id: m.assignment for m in self.members.values()})
            # The old leader id is named, so a restarted leader does not assign again.
            result = self._join_result(member)
            result.leader = old_id if was_leader else result.leader
            result.members = []
            return result
        waiting = self._await_join(member)
        if self.state is State.PREPARING_REBALANCE:
            self._try_complete_join()
        else:
            self._prepare_rebalance(f"static member {request.group_instance_id} rejoined")
        return await waiting

    def _update(self, member: Member, request: JoinRequest) -> None:
        member.protocols = request.protocols
        member.session_timeout_ms = request.session_timeout_ms
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        member.client_id, member.client_host = request.client_id, request.client_host

    def _await_join(self, member: Member) -> Awaitable[JoinResult]:
        # A second JoinGroup from the same member replaces its first.
        member.answer_join(JoinResult(member.member_id, errors.RebalanceInProgressError))
        member.join_waiter = asyncio.get_running_loop().create_future()
        # Shielded: a client that disconnects must not cancel the group's own future.
        return asyncio.shield(member.join_waiter)

    def _join_result(self, member: Member) -> JoinResult:
        is_leader = member.member_id == self.leader
        return JoinResult(
            member.member_id, None, self.generation, self.protocol_type, self.protocol_name,
            self.leader or "",
            [(m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
             for m in self.members.values()] if is_leader else [])

    def _supports(self, protocol_type: str, protocols: list[tuple[str, bytes]]) -> bool:
        if not protocol_type or not protocols:
            return False
        if self.is_empty:
            return True
        names = {name for name, _ in protocols}
        return protocol_type == self.protocol_type and bool(names & self._common_protocols())

    def _common_protocols(self) -> set[str]:
        sets = [{name for name, _ in m.protocols} for m in self.members.values()]
        return set.intersection(*sets) if sets else set()

    def _select_protocol(self) -> str | None:
        """Each member votes for its most preferred protocol that every member supports."""
        common = self._common_protocols()
        votes = Counter(next(name for name, _ in m.protocols if name in common)
                        for m in self.members.values())
        return votes.most_common(1)[0][0] if votes else None

    # -- rebalancing --------------------------------------------------------------------

    def _prepare_rebalance(self, reason: str) -> None:
        if self.state is State.DEAD:
            return
        if self.state is State.COMPLETING_REBALANCE:
            for member in self.members.values():
                member.assignment = b""
                member.answer_sync(rebalance_error())
        loop = asyncio.get_running_loop()
        if self._join_timer is not None:
            self._join_timer.cancel()
        rebalance_timeout_ms = max((m.rebalance_timeout_ms for m in self.members.values()),
                                   default=0)
        delay_ms = self.settings.initial_rebalance_delay_ms
        self._delaying = self.state is State.EMPTY and delay_ms > 0
        if self._delaying:
            # A new group waits for more members before its first generation.
            self._delay_left_ms = max(rebalance_timeout_ms - delay_ms, 0)
            self._joined_during_delay = False
            self._join_timer = loop.call_later(delay_ms / 1000, self._initial_delay_over)
        else:
            self._join_timer = loop.call_later(rebalance_timeout_ms / 1000, self._complete_join)
        log.info("group %s rebalancing (generation %d): %s", self.group_id, self.generation,
                 reason)
        self._transition(State.PREPARING_REBALANCE)
        self._try_complete_join()

    def _initial_delay_over(self) -> None:
        """Members kept arriving: wait once more, within the rebalance timeout."""
        if self._joined_during_delay and self._delay_left_ms > 0:
            wait_ms = min(self.settings.initial_rebalance_delay_ms, self._delay_left_ms)
            self._delay_left_ms -= wait_ms
            self._joined_during_delay = False
            self._join_timer = asyncio.get_running_loop().call_later(
                wait_ms / 1000, self._initial_delay_over)
            return
        self._complete_join()

    def _try_complete_join(self) -> None:
        """Complete the join early once every known member has rejoined (not during a new
        group's initial delay)."""
        if self.state is not State.PREPARING_REBALANCE or self._delaying:
            return
        if not self.pending_members and all(m.join_waiter is not None
                                            for m in self.members.values()):
            self._complete_join()

    def _complete_join(self) -> None:
        if self.state is not State.PREPARING_REBALANCE:
            return
        if self._join_timer is not None:
            self._join_timer.cancel()
            self._join_timer = None
        self._delaying = False
        for member in [m for m in self.members.values() if m.join_waiter is None]:
            if member.group_instance_id is None:  # static members keep their place
                self._remove(member, "did not rejoin in time")
        self.generation += 1
        if self.is_empty:
            self.protocol_name = self.leader = None
            self._transition(State.EMPTY)
            log.info("group %s is empty at generation %d", self.group_id, self.generation)
            asyncio.ensure_future(self._store_quietly({}))
            return
        self.protocol_name = self._select_protocol()
        if self.leader not in self.members:
            self.leader = next(iter(self.members))
        self._transition(State.COMPLETING_REBALANCE)
        log.info("group %s generation %d: %d members, protocol %s, leader %s", self.group_id,
                 self.generation, len(self.members), self.protocol_name, self.leader)
        for member in self.members.values():
            if member.join_waiter is not None:
                member.answer_join(self._join_result(member))
                self._heartbeat(member)

    async def _store_quietly(self, assignments: dict[str, bytes]) -> None:
        try:
            await self.store(self, assignments)
        except RequestError as exc:
            log.info("group %s not stored: %s", self.group_id, exc.message)

    # -- SyncGroup ----------------------------------------------------------------------

    async def sync(self, member_id: str, instance_id: str | None, generation: int,
                   protocol_type: str | None, protocol_name: str | None,
                   assignments: dict[str, bytes]) -> bytes:
        self._check_alive()
        member = self._member(member_id, instance_id)
        if generation != self.generation:
            raise RequestError(errors.IllegalGenerationError,
                               f"generation {generation} is not the group's {self.generation}")
        if (protocol_type is not None and protocol_type != self.protocol_type) or \
                (protocol_name is not None and protocol_name != self.protocol_name):
            raise RequestError(errors.InconsistentGroupProtocolError,
                               "protocol type or name differ from the group's")
        if self.state is State.EMPTY:
            raise RequestError(errors.UnknownMemberIdError, f"{member_id} is not in the group")
        if self.state is State.PREPARING_REBALANCE:
            raise rebalance_error()
        self._heartbeat(member)
        if self.state is State.STABLE:
            return member.assignment
        member.sync_waiter = asyncio.get_running_loop().create_future()
        waiting = asyncio.shield(member.sync_waiter)
        if member_id == self.leader:
            await self._complete_sync(assignments)
        return await waiting

    async def _complete_sync(self, assignments: dict[str, bytes]) -> None:
        """The leader's assignment: stored with the group, then given to every member."""
        generation = self.generation
        assignments = {m: assignments.get(m, b"") for m in self.members}
        try:
            await self.store(self, assignments)
        except RequestError as exc:
            if self.state is State.COMPLETING_REBALANCE and self.generation == generation:
                for member in self.members.values():
                    member.assignment = b""
                    member.answer_sync(exc)
            return
        if self.state is not State.COMPLETING_REBALANCE or self.generation != generation:
            return  # a rebalance started while the group was written
        self._transition(State.STABLE)
        for member_id, member in self.members.items():
            member.assignment = assignments[member_id]
            member.answer_sync(member.assignment)

    # -- Heartbeat, LeaveGroup, expiry ---------------------------------------------------

    def heartbeat(self, member_id: str, instance_id: str | None, generation: int) -> None:
        self._check_alive()
        if self.state is State.EMPTY:
            raise RequestError(errors.UnknownMemberIdError, f"{member_id} is not in the group")
        member = self._member(member_id, instance_id)
        if generation != self.generation:
            raise RequestError(errors.IllegalGenerationError,
                               f"generation {generation} is not the group's {self.generation}")
        self._heartbeat(member)
        if self.state is State.PREPARING_REBALANCE:
            raise rebalance_error()

    def leave(self, member_id: str, instance_id: str | None) -> None:
        """One member leaves (LeaveGroup, or an admin removing it by instance id)."""
        self._check_alive()
        if instance_id is not None:
            known = self.static_members.get(instance_id)
            if known is None:
                raise RequestError(errors.UnknownMemberIdError, f"no member has instance id {instance_id}")
            if member_id and member_id != known:
                raise RequestError(errors.FencedInstanceIdError,
                                   f"instance {instance_id} belongs to {known}, not {member_id}")
            member_id = known
        if member_id in self.pending_members:
            self.pending_members.pop(member_id).cancel()
            self._try_complete_join()
            return
        member = self.members.get(member_id)
        if member is None:
            raise RequestError(errors.UnknownMemberIdError, f"{member_id} is not in the group")
        self._remove_and_rebalance(member, "left the group")

    def check_commit(self, member_id: str, instance_id: str | None, generation: int) -> None:
        """May this member commit offsets now? Generation -1 commits (admin tools, manual
        assignment) are for an empty group only."""
        self._check_alive()
        if generation < 0 and self.state is State.EMPTY:
            return
        if self.state is State.COMPLETING_REBALANCE:
            raise rebalance_error()
        member = self._member(member_id, instance_id)
        if generation != self.generation:
            raise RequestError(errors.IllegalGenerationError,
                               f"generation {generation} is not the group's {self.generation}")
        self._heartbeat(member)

    def _remove_and_rebalance(self, member: Member, reason: str) -> None:
        self._remove(member, reason)
        if self.state is State.PREPARING_REBALANCE:
            self._try_complete_join()
        elif self.state in (State.STABLE, State.COMPLETING_REBALANCE):
            self._prepare_rebalance(f"{member.member_id} {reason}")

    def _expire(self, member_id: str) -> None:
        member = self.members.get(member_id)
        if member is None or self.state is State.DEAD:
            return
        if member.join_waiter is not None or member.sync_waiter is not None:
            self._heartbeat(member)  # a member waiting on us is alive
            return
        log.info("group %s: member %s missed its session timeout", self.group_id, member_id)
        self._remove_and_rebalance(member, "missed its session timeout")

    def _expire_pending(self, member_id: str) -> None:
        if self.pending_members.pop(member_id, None) is not None:
            self._try_complete_join()

    def _heartbeat(self, member: Member) -> None:
        if member.expiry is not None:
            member.expiry.cancel()
        member.expiry = asyncio.get_running_loop().call_later(
            member.session_timeout_ms / 1000, self._expire, member.member_id)

    # -- membership -----------------------------------------------------------------------

    def _add(self, member: Member) -> None:
        self.members[member.member_id] = member
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader is None:
            self.leader = member.member_id

    def _remove(self, member: Member, reason: str) -> None:
        log.info("group %s: member %s %s", self.group_id, member.member_id, reason)
        if member.expiry is not None:
            member.expiry.cancel()
        gone = RequestError(errors.UnknownMemberIdError, f"{member.member_id} {reason}")
        member.answer_join(JoinResult(member.member_id, errors.UnknownMemberIdError))
        member.answer_sync(gone)
        del self.members[member.member_id]
        if member.group_instance_id is not None:
            self.static_members.pop(member.group_instance_id, None)
        if self.leader == member.member_id:
            self.leader = next(iter(self.members), None)

    def _member(self, member_id: str, instance_id: str | None) -> Member:
        if instance_id is not None:
            known = self.static_members.get(instance_id)
            if known is not None and known != member_id:
                raise RequestError(errors.FencedInstanceIdError,
                                   f"instance {instance_id} belongs to {known}, not {member_id}")
        member = self.members.get(member_id)
        if member is None:
            raise RequestError(errors.UnknownMemberIdError, f"{member_id} is not in the group")
        return member

    def _check_alive(self) -> None:
        if self.state is State.DEAD:
            # Deleted, or its coordinator moved: the client looks the coordinator up again.
            raise RequestError(errors.CoordinatorNotAvailableError,
                               f"group {self.group_id} is gone from this coordinator")

    def _transition(self, state: State) -> None:
        self.state = state
        self.state_timestamp = int(time.time() * 1000)

    def unload(self, error: RequestError) -> None:
        """The group leaves this coordinator (deleted, or leadership moved): Dead, and
        every waiting member is answered with `error`."""
        if self._join_timer is not None:
            self._join_timer.cancel()
        for timer in self.pending_members.values():
            timer.cancel()
        for member in self.members.values():
            if member.expiry is not None:
                member.expiry.cancel()
            member.answer_join(JoinResult(member.member_id, error.error))
            member.answer_sync(error)
        self._transition(State.DEAD)
