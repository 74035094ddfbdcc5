"""Consumer groups: the coordinator (coordinator.py), one group's state machine
(group.py), and the groups and offsets of a `__consumer_offsets` partition (store.py),
kept as records in Kafka's own format (records.py)."""
