"""Inter-node request and response classes whose schemas kafka-python does not ship.

They are generated from broker/schemas/*.json by kafka-python's own codec, exactly as its
built-in messages are, so they frame, encode and decode like any other Kafka API.
"""
from kafka.protocol.api_message import ApiMessage

import broker.schemas as schemas


class VoteRequest(ApiMessage, load_json=schemas): pass
class VoteResponse(ApiMessage, load_json=schemas): pass
class BeginQuorumEpochRequest(ApiMessage, load_json=schemas): pass
class BeginQuorumEpochResponse(ApiMessage, load_json=schemas): pass
class EndQuorumEpochRequest(ApiMessage, load_json=schemas): pass
class EndQuorumEpochResponse(ApiMessage, load_json=schemas): pass
class AlterPartitionRequest(ApiMessage, load_json=schemas): pass
class AlterPartitionResponse(ApiMessage, load_json=schemas): pass
class BrokerRegistrationRequest(ApiMessage, load_json=schemas): pass
class BrokerRegistrationResponse(ApiMessage, load_json=schemas): pass
class BrokerHeartbeatRequest(ApiMessage, load_json=schemas): pass
class BrokerHeartbeatResponse(ApiMessage, load_json=schemas): pass
class AllocateProducerIdsRequest(ApiMessage, load_json=schemas): pass
class AllocateProducerIdsResponse(ApiMessage, load_json=schemas): pass
