"""Kafka message schemas (Kafka's JSON format) for the quorum APIs kafka-python lacks.

The field layouts follow Apache Kafka's, so the wire format is Kafka's; only the versions
our nodes use are defined:

- Vote (52): v0-2, flexible. Nodes send v2, whose PreVote flag (KIP-996) lets a node ask
  whether it could win before it bumps its epoch. The tagged NodeEndpoints of the
  response is left out: voters know each other's addresses from controller.quorum.voters.
- BeginQuorumEpoch (53) and EndQuorumEpoch (54): v0 only (not flexible). v1 adds
  directory ids and leader endpoints, which a static voter set does not need.

DescribeQuorum (55) is kafka-python's own schema.
"""
