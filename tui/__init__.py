"""kraftboard's console: a Textual app that talks the Kafka protocol to any cluster."""
