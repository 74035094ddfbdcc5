"""A verified workload: write numbered records through failures, then prove none was lost.

An idempotent acks=all librdkafka producer writes records whose key is a sequence number
(0, 1, 2, ...), spread over the topic's partitions explicitly (sequence % partitions),
and remembers every acknowledgement: partition, offset, sequence and when. `verify()`
reads every partition back from the beginning and checks that each acknowledged record
is at its offset exactly once, and that sequences only grow along each partition.

    workload = VerifiedWorkload("127.0.0.1:9092", "orders", partitions=3).start()
    ...                                   # kill, isolate, restart brokers
    killed_at = time.monotonic()
    print(workload.resumed_after(killed_at, partition=0))
    workload.stop()
    result = workload.verify()
    assert result.ok, result
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from confluent_kafka import (
    OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition,
)

# librdkafka logs through Python logging, not onto the terminal a console is drawing on.
LIBRDKAFKA_LOG = {"logger": logging.getLogger("broker.workload.librdkafka")}
PRODUCER_CONFIG = {
    **LIBRDKAFKA_LOG,
    "enable.idempotence": True,  # implies acks=all and retries without duplicates
    "acks": "all",
    "linger.ms": 5,
    # A failover takes seconds; a record is given up on only well after that.
    "message.timeout.ms": 120_000,
}
READ_BATCH = 1000


@dataclass(frozen=True)
class Ack:
    partition: int
    # None when acknowledged implicitly: a request's answer was lost (a timeout, a
    # dropped connection) but a later one from the same producer succeeded, so librdkafka
    # reports the earlier records as persisted without knowing their offsets.
    offset: int | None
    sequence: int
    produced_at: float  # time.monotonic() of produce()
    acked_at: float     # time.monotonic() of the delivery report


@dataclass
class Verification:
    """What reading the topic back found, against what the producer was told."""
    acknowledged: int
    consumed: int
    lost: list[Ack] = field(default_factory=list)        # acknowledged, not at its offset
    duplicated: list[int] = field(default_factory=list)  # sequences found more than once
    out_of_order: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order)

    def __str__(self) -> str:
        return (f"{self.acknowledged} acknowledged, {self.consumed} read back: "
                f"{len(self.lost)} lost {self.lost[:5]}, {len(self.duplicated)} duplicated "
                f"{self.duplicated[:5]}, {len(self.out_of_order)} out of order "
                f"{self.out_of_order[:5]}")


class VerifiedWorkload:
    """Produces `rate` records/s to `topic` from a thread of its own until `stop()`."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: float = 500,
                 record_size: int = 100, producer_config: dict | None = None):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.rate = rate
        self.record_size = record_size
        self.config = {"bootstrap.servers": bootstrap, **PRODUCER_CONFIG,
                       **(producer_config or {})}
        self.produced = 0
        self.acks: list[Ack] = []
        self.errors: Counter[str] = Counter()  # delivery failures by librdkafka error name
        self._produced_at: dict[int, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def acknowledged(self) -> int:
        return len(self.acks)

    def start(self) -> "VerifiedWorkload":
        self._producer = Producer(self.config)
        self._thread = threading.Thread(target=self._produce, name=f"workload-{self.topic}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, flush_timeout: float = 60.0) -> None:
        """Stop producing and wait for the answers to what was sent."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._producer.flush(flush_timeout)

    def resumed_after(self, moment: float, partition: int | None = None) -> float | None:
        """Seconds from `moment` (time.monotonic()) to the first acknowledgement of a
        record produced after it (on `partition`, if given); None if there is none yet."""
        acked = [a.acked_at for a in list(self.acks) if a.produced_at >= moment
                 and (partition is None or a.partition == partition)]
        return min(acked) - moment if acked else None

    def wait_acknowledged(self, count: int, timeout: float) -> bool:
        """Until `count` more records than now are acknowledged; False on timeout."""
        goal = len(self.acks) + count
        deadline = time.monotonic() + timeout
        while len(self.acks) < goal:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _produce(self) -> None:
        padding = b"." * self.record_size
        start = time.monotonic()
        sequence = 0
        while not self._stopping.is_set():
            due = start + sequence / self.rate
            while (wait := due - time.monotonic()) > 0 and not self._stopping.is_set():
                self._producer.poll(wait)
            self._producer.poll(0)
            key = str(sequence).encode()
            self._produced_at[sequence] = time.monotonic()
            try:
                self._producer.produce(self.topic, padding, key,
                                       partition=sequence % self.partitions,
                                       on_delivery=self._delivered)
            except BufferError:  # librdkafka's queue is full: let deliveries drain it
                self._producer.poll(0.05)
                continue
            self.produced = sequence = sequence + 1

    def _delivered(self, err: KafkaError | None, msg) -> None:
        sequence = int(msg.key())
        if err is not None:
            self.errors[err.name()] += 1
            return
        self.acks.append(Ack(msg.partition(), msg.offset(), sequence,
                             self._produced_at.pop(sequence), time.monotonic()))

    def verify(self, timeout: float = 60.0) -> Verification:
        """Read every partition from the beginning to its high watermark and compare."""
        found = read_topic(self.bootstrap, self.topic, self.partitions, timeout)
        result = Verification(acknowledged=len(self.acks),
                              consumed=sum(len(records) for records in found.values()))
        where = {(p, offset): sequence for p, records in found.items()
                 for offset, sequence in records}
        stored = {(p, sequence) for (p, _), sequence in where.items()}
        result.lost = [a for a in self.acks
                       if ((a.partition, a.sequence) not in stored if a.offset is None
                           else where.get((a.partition, a.offset)) != a.sequence)]
        counts = Counter(where.values())
        result.duplicated = sorted(s for s, n in counts.items() if n > 1)
        for partition, records in found.items():
            result.out_of_order += [(partition, offset) for (_, before), (offset, sequence)
                                    in zip(records, records[1:]) if sequence <= before]
        return result


# Answers to a query of a partition's offsets while its leadership moves (a failover, a
# preferred replica taking over): asked again until the deadline.
LEADERSHIP_MOVING = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION,
                               KafkaError.LEADER_NOT_AVAILABLE})


def _high_watermark(consumer: Consumer, partition: TopicPartition, deadline: float) -> int:
    """A partition's high watermark, asked of its leader until the deadline."""
    while True:
        try:
            return consumer.get_watermark_offsets(
                partition, timeout=max(deadline - time.monotonic(), 0.1))[1]
        except KafkaException as exc:
            if exc.args[0].code() not in LEADERSHIP_MOVING or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def read_topic(bootstrap: str, topic: str, partitions: int,
               timeout: float) -> dict[int, list[tuple[int, int]]]:
    """{partition: [(offset, sequence), ...]} of every record below the high watermarks."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kraftboard-verify",
                         "enable.auto.commit": False, **LIBRDKAFKA_LOG})
    deadline = time.monotonic() + timeout
    try:
        ends = {p: _high_watermark(consumer, TopicPartition(topic, p), deadline)
                for p in range(partitions)}
        records: dict[int, list[tuple[int, int]]] = {p: [] for p in range(partitions)}
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        last_error = None
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} back: partitions {sorted(pending)} did "
                                   f"not reach their high watermarks {ends} ({last_error})")
            for msg in consumer.consume(READ_BATCH, timeout=0.5):
                if msg.error() is not None:
                    last_error = msg.error()
                    continue
                records[msg.partition()].append((msg.offset(), int(msg.key())))
                if msg.offset() + 1 >= ends[msg.partition()]:
                    pending.discard(msg.partition())
        return records
    finally:
        consumer.close()
