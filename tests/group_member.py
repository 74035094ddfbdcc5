"""A consumer-group member as its own process, so a test can SIGKILL it.

    python group_member.py CLIENT BOOTSTRAP GROUP TOPIC

CLIENT is `librdkafka` or `aiokafka`. The member consumes TOPIC in GROUP and, for every
record, prints a JSON line {"event": "consumed", "p", "o", "t"}, commits the next offset
synchronously and prints {"event": "committed", "p", "o", "t"} once the coordinator has
acknowledged it (t: wall-clock seconds, comparable across processes). A commit refused
because a rebalance took the partition away prints nothing: the next owner consumes the
record again. SIGTERM makes the member close cleanly, which leaves the group at once.
"""
from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

SESSION_TIMEOUT_MS = 2000
HEARTBEAT_INTERVAL_MS = 300


def emit(event: str, partition: int, offset: int) -> None:
    print(json.dumps({"event": event, "p": partition, "o": offset, "t": time.time()}), flush=True)


def run_librdkafka(bootstrap: str, group: str, topic: str) -> None:
    from confluent_kafka import Consumer, KafkaException

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": SESSION_TIMEOUT_MS,
                         "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS})
    consumer.subscribe([topic])
    while not stop:
        message = consumer.poll(0.1)
        if message is None or message.error():
            continue
        emit("consumed", message.partition(), message.offset())
        try:
            consumer.commit(message=message, asynchronous=False)
        except KafkaException:
            continue
        emit("committed", message.partition(), message.offset() + 1)
    consumer.close()


async def run_aiokafka(bootstrap: str, group: str, topic: str) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError
    from aiokafka.structs import OffsetAndMetadata, TopicPartition

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                session_timeout_ms=SESSION_TIMEOUT_MS,
                                heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS)
    await consumer.start()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=100)
            for tp, records in batches.items():
                for record in records:
                    emit("consumed", tp.partition, record.offset)
                    try:
                        await consumer.commit({TopicPartition(topic, tp.partition):
                                               OffsetAndMetadata(record.offset + 1, "")})
                    except KafkaError:
                        break  # the partition moved to another member
                    emit("committed", tp.partition, record.offset + 1)
    finally:
        await consumer.stop()


if __name__ == "__main__":
    client, bootstrap, group, topic = sys.argv[1:5]
    if client == "librdkafka":
        run_librdkafka(bootstrap, group, topic)
    else:
        asyncio.run(run_aiokafka(bootstrap, group, topic))
