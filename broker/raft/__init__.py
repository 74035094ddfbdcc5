"""The metadata quorum: Raft over the single-partition log `__cluster_metadata`.

KIP-595 style: durable epoch and vote, randomised election timeouts, pre-votes (KIP-996),
Vote with the log-up-to-date check, BeginQuorumEpoch/EndQuorumEpoch, pull replication
with Kafka's Fetch (followers and observers fetch from the leader; a diverging follower
truncates where the leader says and fetches again), and a majority high watermark that
moves only once the leader has committed an entry of its own epoch (a LeaderChange
control record it appends when elected). See quorum.py for the state machine.

The interface the controller and the metadata image use:

    quorum = MetadataQuorum(config, storage, peers)
    quorum.subscribe(apply)            # before start(): apply(offset, value) is called on
                                       # the event loop for every committed data record, in
                                       # order, from offset 0 on every start (replay), and
                                       # never beyond the high watermark
    quorum.on_leader_change(callback)  # callback(leader_id | None, epoch); for this node
                                       # as leader, only once it is `is_leader`
    await quorum.start(); ...; await quorum.close()

    quorum.leader_id                   # the leader this node knows, or None
    quorum.epoch, quorum.high_watermark
    quorum.is_leader                   # leads, and has applied everything committed before
                                       # its epoch: its image is current, it may act
    await quorum.append([value, ...])  # leader only: one batch; returns the offset of the
                                       # last record once committed and applied here

`append` raises NotLeader(leader_id) when another node leads, and NoQuorum (a NotLeader
with leader_id None) when no leader is known or the records were not committed within
controller.quorum.request.timeout.ms (they may still be committed later). Committed
records are never rolled back: Raft only ever truncates uncommitted entries.
"""
from broker.raft.log import METADATA_TOPIC
from broker.raft.quorum import MetadataQuorum, NoQuorum, NotLeader

__all__ = ["METADATA_TOPIC", "MetadataQuorum", "NoQuorum", "NotLeader", "is_metadata_fetch"]


def is_metadata_fetch(request) -> bool:
    """A replica's Fetch of the metadata log, which the quorum answers."""
    return request.replica_id >= 0 and any(t.topic == METADATA_TOPIC for t in request.topics)
