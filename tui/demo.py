"""Demo topics and a small producer, so the bundled cluster has something to show."""
from __future__ import annotations

import asyncio
import json
import logging
import random

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from tui.source import ClusterSource

log = logging.getLogger(__name__)

DEMO_TOPICS = ("orders", "payments", "bookings")
PARTITIONS = 3


def demo_record(topic: str, n: int, rng: random.Random) -> tuple[bytes, dict]:
    """The n-th record of a demo topic: a customer key and a JSON value."""
    customer = f"customer-{rng.randrange(1, 50):02d}"
    if topic == "orders":
        value = {"order": n, "customer": customer, "items": rng.randrange(1, 6),
                 "amount": round(rng.uniform(5, 250), 2), "currency": "EUR"}
    elif topic == "payments":
        value = {"payment": n, "order": rng.randrange(1, n + 2), "method":
                 rng.choice(["card", "iban", "wallet"]), "status":
                 rng.choice(["authorised", "captured", "captured", "refunded"])}
    else:
        value = {"booking": n, "customer": customer, "room": rng.randrange(100, 130),
                 "nights": rng.randrange(1, 8)}
    return customer.encode(), value


async def create_demo_topics(source: ClusterSource, replication_factor: int) -> None:
    for topic in DEMO_TOPICS:
        try:
            await source.create_topic(topic, PARTITIONS, replication_factor, {})
        except TopicAlreadyExistsError:
            pass


class DemoProducer:
    """Writes `rate` records per second to each demo topic until stopped; pausable."""

    def __init__(self, bootstrap: str, rate: float = 5.0, seed: int = 7):
        self.bootstrap, self.rate = bootstrap, rate
        self.rng = random.Random(seed)
        self.paused = False
        self.sent = 0

    async def run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks=1, linger_ms=20,
                                    client_id="kraftboard-demo")
        await producer.start()
        try:
            while True:
                await asyncio.sleep(1 / self.rate)
                if self.paused:
                    continue
                for topic in DEMO_TOPICS:
                    key, value = demo_record(topic, self.sent, self.rng)
                    try:
                        await producer.send(topic, json.dumps(value).encode(), key=key)
                    except KafkaError as exc:  # a drill took the leader away: carry on
                        log.info("demo producer: %s", exc)
                self.sent += 1
        finally:
            await producer.stop()
