"""Message schemas of the inter-node APIs kafka-python does not ship, in Kafka's JSON
message-schema format, loaded by kafka-python's own codec (see broker/messages.py).

The field layouts follow Apache Kafka's, so the wire format is Kafka's; only the versions
our nodes use are defined:

- Vote (52): v0-2, flexible. Nodes send v2, whose PreVote flag (KIP-996) lets a node ask
  whether it could win before it bumps its epoch. The tagged NodeEndpoints of the
  response is left out: voters know each other's addresses from controller.quorum.voters.
- BeginQuorumEpoch (53) and EndQuorumEpoch (54): v0 only (not flexible). v1 adds
  directory ids and leader endpoints, which a static voter set does not need.
- AlterPartition (56), BrokerRegistration (62), BrokerHeartbeat (63): v0, a subset of
  Kafka's fields (topic names rather than ids, one listener per broker).

DescribeQuorum (55) is kafka-python's own schema.
"""
