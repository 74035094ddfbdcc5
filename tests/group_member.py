"""A consumer-group member as its own process, so a test can SIGKILL it.

    python group_member.py CLIENT BOOTSTRAP GROUP TOPIC [--instance ID] [--session-ms MS]

CLIENT is `librdkafka` or `aiokafka`; --instance makes it a static member. The member
consumes TOPIC in GROUP. Each time it is given partitions (librdkafka) it prints
{"event": "assigned", "partitions": [...]}; for every record it prints a JSON line
{"event": "consumed", "p", "o", "t"}, commits the next offset
synchronously and prints {"event": "committed", "p", "o", "t"} once the coordinator has
acknowledged it (t: wall-clock seconds, comparable across processes). A commit refused
because a rebalance took the partition away prints nothing: the next owner consumes the
record again. SIGTERM makes the member close cleanly, which leaves the group at once.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time

HEARTBEAT_INTERVAL_MS = 300


def emit(event: str, partition: int, offset: int) -> None:
    print(json.dumps({"event": event, "p": partition, "o": offset, "t": time.time()}), flush=True)


def run_librdkafka(args: argparse.Namespace) -> None:
    from confluent_kafka import Consumer, KafkaException

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    config = {"bootstrap.servers": args.bootstrap, "group.id": args.group,
              "auto.offset.reset": "earliest", "enable.auto.commit": False,
              "session.timeout.ms": args.session_ms,
              "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS}
    if args.instance:
        config["group.instance.id"] = args.instance
    consumer = Consumer(config)

    def assigned(consumer, partitions):
        print(json.dumps({"event": "assigned", "partitions": sorted(p.partition for p in partitions),
                          "t": time.time()}), flush=True)

    consumer.subscribe([args.topic], on_assign=assigned)
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


async def run_aiokafka(args: argparse.Namespace) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError
    from aiokafka.structs import OffsetAndMetadata, TopicPartition

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    topic = args.topic
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=args.bootstrap, group_id=args.group,
                                group_instance_id=args.instance, auto_offset_reset="earliest",
                                enable_auto_commit=False, session_timeout_ms=args.session_ms,
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
    parser = argparse.ArgumentParser()
    for name in ("client", "bootstrap", "group", "topic"):
        parser.add_argument(name)
    parser.add_argument("--instance", help="group.instance.id: a static member")
    parser.add_argument("--session-ms", type=int, default=2000)
    arguments = parser.parse_args()
    if arguments.client == "librdkafka":
        run_librdkafka(arguments)
    else:
        asyncio.run(run_aiokafka(arguments))
