"""kraftboard's broker: a Kafka-wire-compatible node on SQLite, and the local cluster around it."""
