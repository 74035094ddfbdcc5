"""Request and response classes for Vote, BeginQuorumEpoch and EndQuorumEpoch.

kafka-python builds them from our schema files, exactly as it builds its own messages;
DescribeQuorum comes with kafka-python.
"""
from kafka.protocol.api_message import ApiMessage

from broker.raft import schemas


class VoteRequest(ApiMessage, load_json=schemas): pass
class VoteResponse(ApiMessage, load_json=schemas): pass
class BeginQuorumEpochRequest(ApiMessage, load_json=schemas): pass
class BeginQuorumEpochResponse(ApiMessage, load_json=schemas): pass
class EndQuorumEpochRequest(ApiMessage, load_json=schemas): pass
class EndQuorumEpochResponse(ApiMessage, load_json=schemas): pass
