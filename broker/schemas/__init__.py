"""Message schemas of the inter-node APIs kafka-python does not ship, in Kafka's JSON
message-schema format, loaded by kafka-python's own codec (see broker/messages.py)."""
