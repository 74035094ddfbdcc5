"""`kraftboard perf`: produce and consume load generators, after Kafka's perf-test tools.

Both drive librdkafka (confluent-kafka) from K worker processes so the client is not the
bottleneck. The parent checks the broker and topic first, prints progress on stderr every
few seconds while the workers run, then a summary (or one JSON object with --json).
"""
from __future__ import annotations

import argparse
import bisect
import gc
import itertools
import json
import math
import multiprocessing
import operator
import queue
import random
import signal
import sys
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message,
                             Producer, TopicPartition)

MIB = 1024 * 1024  # "MB/s" is MiB/s, as in Kafka's perf tools
LATENCY_BUCKETS_PER_S = 100_000  # latencies are counted in 10 µs buckets
PERCENTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99), ("p99_9", 0.999))
PROGRESS_EVERY_S = 2.0
PUBLISH_EVERY_S = 0.5
POLL_EVERY_RECORDS = 1000
# librdkafka waits in whole milliseconds and confluent-kafka truncates a poll's timeout to
# them: a poll(0.0009) returns at once, and a wait made of those spins a CPU that the
# broker under test needs.
SHORTEST_POLL_S = 0.001
CONSUME_BATCH = 2000  # bigger batches fall out of the CPU caches and are slower
CONNECT_TIMEOUT_S = 10.0

PRODUCER_DEFAULTS = {
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "batch.num.messages": 100_000,
    "compression.type": "none",
    "enable.idempotence": False,
}
CONSUMER_DEFAULTS = {
    "group.id": "kraftboard-perf",  # librdkafka requires one; assign() joins no group
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "fetch.max.bytes": 52_428_800,
    "max.partition.fetch.bytes": 10_485_760,
    "queued.max.messages.kbytes": 262_144,
    "queued.min.messages": 1_000_000,
}


class PerfError(Exception):
    """A run that cannot start or finish; the message says what happened and what to do."""


@dataclass(frozen=True)
class Load:
    bootstrap: str
    topic: str
    records: int
    processes: int = 1
    record_size: int = 100
    acks: str = "1"
    throughput: float | None = None  # records/s over all processes; None: no limit
    timeout: float = 10.0  # consume: stop after this long without a new record
    props: dict[str, str] = field(default_factory=dict)
    partitions: tuple[int, ...] = ()  # consume: the topic's partitions, found by preflight

    def share(self, worker: int) -> int:
        """How many records worker number `worker` produces."""
        quotient, remainder = divmod(self.records, self.processes)
        return quotient + (worker < remainder)

    def producer_config(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap, **PRODUCER_DEFAULTS, "acks": self.acks,
                **self.props}

    def consumer_config(self) -> dict[str, Any]:
        return {"bootstrap.servers": self.bootstrap, **CONSUMER_DEFAULTS, **self.props}


def _topic_partitions(make_client: Callable[[dict], Any], config: dict, load: Load) -> list[int]:
    """The topic's partition ids, after checking the client config, the broker and the topic."""
    failures: list[str] = []
    try:
        # librdkafka's own log would repeat the connection failure; the error says it once.
        client = make_client({**config, "log_level": 0,
                              "error_cb": lambda err: failures.append(err.str())})
    except KafkaException as exc:
        raise PerfError(f"bad client property: {exc.args[0].str()}") from None
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while True:
        try:
            metadata = client.list_topics(load.topic, timeout=CONNECT_TIMEOUT_S)
        except KafkaException:
            client.poll(0)  # serves error_cb
            reason = f" ({failures[0]})" if failures else ""
            raise PerfError(f"cannot reach the bootstrap server {load.bootstrap}{reason}; is the "
                            f"broker running and is --bootstrap-server its listener?") from None
        topic = metadata.topics[load.topic]
        if topic.error is None and topic.partitions:
            return sorted(topic.partitions)
        if topic.error is not None and topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            raise PerfError(f"topic {load.topic!r} does not exist on {load.bootstrap}; create it "
                            f"first, e.g. kafka-topics.sh --bootstrap-server {load.bootstrap} "
                            f"--create --topic {load.topic} --partitions 1")
        if time.monotonic() > deadline:
            raise PerfError(f"topic {load.topic!r} is not ready: {topic.error or 'no partitions'}")
        time.sleep(0.2)


class _Reporter:
    """Adds a worker's progress to the counter shared with the parent, a few times a second."""

    def __init__(self, counter):
        self.counter = counter
        self.reported = 0
        self.last = time.monotonic()

    def __call__(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= PUBLISH_EVERY_S:
            with self.counter.get_lock():
                self.counter.value += done - self.reported
            self.reported, self.last = done, now


def _delivery_recorder() -> tuple[array, Counter[str], Callable]:
    """A delivery-report callback and what it records: latencies in seconds, errors by kind."""
    latencies = array("d")
    errors: Counter[str] = Counter()
    append = latencies.append  # the callback runs once per record: keep it lean

    def on_delivery(err, msg) -> None:
        if err is None:
            append(msg.latency())  # librdkafka's: from produce() to this report
        else:
            errors[err.str()] += 1
    return latencies, errors, on_delivery


def _produce_worker(load: Load, worker: int, counter, barrier) -> dict:
    records = load.share(worker)
    latencies, errors, on_delivery = _delivery_recorder()
    producer = Producer({**load.producer_config(), "on_delivery": on_delivery})
    producer.list_topics(load.topic, timeout=CONNECT_TIMEOUT_S)  # connect before the clock starts
    payload = random.Random(worker).randbytes(load.record_size)
    report = _Reporter(counter)
    rate = load.throughput / load.processes if load.throughput else None
    # A rate is kept in steps of about a millisecond. Waiting is done in poll(), so delivery
    # reports are served at once instead of queueing, which would add to their latency.
    step = max(1, int(rate / 1000)) if rate else POLL_EVERY_RECORDS
    topic, produce, poll = load.topic, producer.produce, producer.poll
    barrier.wait()
    start = time.monotonic()
    for sent in range(0, records, step):
        if rate:
            due = start + sent / rate
            while (wait := due - time.monotonic()) > 0:
                poll(max(wait, SHORTEST_POLL_S))
        poll(0)
        report(len(latencies) + errors.total())
        for _ in range(min(step, records - sent)):
            while True:
                try:
                    produce(topic, payload)
                    break
                except BufferError:  # librdkafka's queue is full until deliveries drain it
                    poll(0.01)
    while producer.flush(PUBLISH_EVERY_S):
        report(len(latencies) + errors.total())
    end = time.monotonic()
    report(len(latencies) + errors.total(), force=True)
    buckets = map(operator.mul, latencies, itertools.repeat(LATENCY_BUCKETS_PER_S))
    histogram = Counter(map(int, buckets))
    return {"acked": len(latencies), "errors": dict(errors), "histogram": dict(histogram),
            "start": start, "end": end}


def _consume_worker(load: Load, worker: int, counter, barrier) -> dict:
    errors: Counter[str] = Counter()
    consumed = nbytes = 0
    first = last = None
    consumer = Consumer(load.consumer_config())
    # Knowing the leaders before assign() saves librdkafka's offset-query retry timer
    consumer.list_topics(load.topic, timeout=CONNECT_TIMEOUT_S)
    barrier.wait()
    start = time.monotonic()
    consumer.assign([TopicPartition(load.topic, p, OFFSET_BEGINNING)
                     for p in load.partitions[worker::load.processes]])
    consume = consumer.consume
    seen_total, seen_at = -1, start
    try:
        while True:
            batch = consume(num_messages=CONSUME_BATCH, timeout=0.2)
            now = time.monotonic()
            if batch:
                failed = list(filter(None, map(Message.error, batch)))
                if failed:
                    errors.update(err.str() for err in failed)
                    batch = [m for m in batch if m.error() is None]
                with counter.get_lock():  # take no more than the total still needs
                    take = max(0, min(len(batch), load.records - counter.value))
                    counter.value += take
                if take:
                    nbytes += sum(map(len, batch[:take]))  # len(message) is its value's length
                    consumed += take
                    first = first or now
                    last = now
            total = counter.value
            if total >= load.records:
                break
            if total != seen_total:
                seen_total, seen_at = total, now
            elif now - seen_at > load.timeout:
                break
    finally:
        consumer.close()
    return {"consumed": consumed, "bytes": nbytes, "errors": dict(errors),
            "start": start, "first": first, "last": last}


def _worker_main(work, load: Load, worker: int, counter, barrier, results) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops workers on Ctrl-C
    # Workers make no reference cycles, and the collector's passes over millions of
    # short-lived messages would cost a good part of the throughput.
    gc.disable()
    try:
        result = work(load, worker, counter, barrier)
    except threading.BrokenBarrierError:
        result = {"failure": "stopped because another worker failed"}
    except Exception as exc:  # sent to the parent, which reports it
        barrier.abort()
        result = {"failure": f"{type(exc).__name__}: {exc}"}
    results.put((worker, result))


def _run_workers(work, load: Load, label: str) -> list[dict]:
    # spawn, not fork: a forked child would inherit the parent's librdkafka state
    ctx = multiprocessing.get_context("spawn")
    counter = ctx.Value("q", 0)
    barrier = ctx.Barrier(load.processes)
    results = ctx.Queue()
    workers = [ctx.Process(target=_worker_main, args=(work, load, i, counter, barrier, results),
                           daemon=True) for i in range(load.processes)]
    for process in workers:
        process.start()
    collected: dict[int, dict] = {}
    shown, shown_at = 0, time.monotonic()
    try:
        while len(collected) < len(workers):
            try:
                worker, result = results.get(timeout=PROGRESS_EVERY_S)
                collected[worker] = result
            except queue.Empty:
                for i, process in enumerate(workers):
                    if i not in collected and process.exitcode not in (None, 0):
                        raise PerfError(f"worker {i} died with exit code {process.exitcode}")
            now = time.monotonic()
            if now - shown_at >= PROGRESS_EVERY_S:
                count = counter.value
                print(f"{label}: {count:,} records, {(count - shown) / (now - shown_at):,.0f} "
                      f"records/s", file=sys.stderr, flush=True)
                shown, shown_at = count, now
    finally:
        for process in workers:
            if process.is_alive():
                process.terminate()
            process.join()
    failures = [f"worker {i}: {result['failure']}"
                for i, result in sorted(collected.items()) if "failure" in result]
    if failures:
        raise PerfError("; ".join(failures))
    return list(collected.values())


def _latency_ms(histogram: Counter[int]) -> dict[str, float]:
    """Average, percentiles and maximum in ms; a percentile is its bucket's upper edge."""
    buckets = sorted(histogram.items())
    if not buckets:
        return {}
    ms = 1000 / LATENCY_BUCKETS_PER_S
    cumulative = list(itertools.accumulate(n for _, n in buckets))
    total = cumulative[-1]
    summary = {"avg": round(sum((b + 0.5) * n for b, n in buckets) * ms / total, 3)}
    for name, q in PERCENTILES:
        index = bisect.bisect_left(cumulative, math.ceil(q * total))
        summary[name] = round((buckets[index][0] + 1) * ms, 3)
    summary["max"] = round((buckets[-1][0] + 1) * ms, 3)
    return summary


def produce(load: Load) -> dict:
    """Produce load.records records; the summary has throughput, latency and errors."""
    _topic_partitions(Producer, load.producer_config(), load)
    results = _run_workers(_produce_worker, load, "produce")
    histogram: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    for result in results:
        histogram.update(result["histogram"])
        errors.update(result["errors"])
    acked = sum(r["acked"] for r in results)
    seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"mode": "produce", "topic": load.topic, "records": acked,
            "errors": sum(errors.values()), "error_kinds": dict(errors),
            "seconds": round(seconds, 3), "records_per_s": round(acked / seconds, 1),
            "mb_per_s": round(acked * load.record_size / MIB / seconds, 3),
            "latency_ms": _latency_ms(histogram), "record_size": load.record_size,
            "acks": load.acks, "processes": load.processes, "throughput_limit": load.throughput}


def consume(load: Load) -> dict:
    """Consume load.records records from the beginning; the summary has throughput."""
    partitions = _topic_partitions(Consumer, load.consumer_config(), load)
    if load.processes > len(partitions):
        print(f"kraftboard perf: {load.topic!r} has {len(partitions)} partition(s); using as many "
              f"consumers", file=sys.stderr)
    load = replace(load, processes=min(load.processes, len(partitions)),
                   partitions=tuple(partitions))
    results = _run_workers(_consume_worker, load, "consume")
    errors: Counter[str] = Counter()
    for result in results:
        errors.update(result["errors"])
    consumed = sum(r["consumed"] for r in results)
    nbytes = sum(r["bytes"] for r in results)
    start = min(r["start"] for r in results)
    firsts = [r["first"] for r in results if r["first"] is not None]
    # The clock runs from assign() to the last record, like Kafka's consumer perf test.
    seconds = max(r["last"] for r in results if r["last"] is not None) - start if firsts else 0
    return {"mode": "consume", "topic": load.topic, "records": consumed, "bytes": nbytes,
            "errors": sum(errors.values()), "error_kinds": dict(errors),
            "seconds": round(seconds, 3),
            "records_per_s": round(consumed / seconds, 1) if seconds else None,
            "mb_per_s": round(nbytes / MIB / seconds, 3) if seconds else None,
            "first_record_ms": round((min(firsts) - start) * 1000, 1) if firsts else None,
            "processes": load.processes, "partitions": len(partitions)}


def _format(summary: dict) -> str:
    rate = (f"{summary['records_per_s']:,.0f} records/s, {summary['mb_per_s']:,.2f} MB/s"
            if summary["records_per_s"] else "no throughput")
    lines = [f"{summary['mode']}: {summary['records']:,} records in {summary['seconds']:.2f} s, "
             f"{rate}, {summary['errors']} errors"]
    if summary["mode"] == "produce":
        latency = summary["latency_ms"]
        if latency:
            lines.append("latency ms: " + ", ".join(
                f"{name.replace('_', '.')} {latency[name]:.2f}"
                for name in ("avg", *(p for p, _ in PERCENTILES), "max")))
    elif summary["first_record_ms"] is not None:
        lines.append(f"first record after {summary['first_record_ms']:,.0f} ms; "
                     f"{summary['processes']} consumer(s), {summary['partitions']} partition(s)")
    lines += [f"  {count:,} x {kind}" for kind, count in summary["error_kinds"].items()]
    return "\n".join(lines)


def _run(command: Callable[[Load], dict], args: argparse.Namespace) -> int:
    load = Load(bootstrap=args.bootstrap_server, topic=args.topic, records=args.records,
                processes=args.processes, props=dict(args.props),
                **{name: getattr(args, name)
                   for name in ("record_size", "acks", "throughput", "timeout") if name in args})
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the workers as on Ctrl-C
    try:
        summary = command(load)
    except PerfError as exc:
        print(f"kraftboard perf: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kraftboard perf: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(summary) if args.json else _format(summary))
    if summary["records"] < load.records:
        hint = ("see the errors above" if command is produce else
                f"no new record came for {load.timeout:g} s; does the topic hold that many? "
                f"(`kraftboard perf produce` writes them)")
        print(f"kraftboard perf: only {summary['records']:,} of {load.records:,} records; {hint}",
              file=sys.stderr)
    return 0 if summary["records"] == load.records and not summary["errors"] else 1


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return int(text)


def _throughput(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    return value if value > 0 else None


def _prop(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must look like name=value, not {text!r}")
    return key, value


def add_commands(commands) -> None:
    perf = commands.add_parser(
        "perf", help="load-test a Kafka-compatible broker",
        description="Produce or consume a load with librdkafka and report throughput and "
                    "latency, like Kafka's kafka-producer-perf-test and kafka-consumer-perf-test.")
    modes = perf.add_subparsers(dest="perf_mode", metavar="MODE", required=True)
    produce_cmd = modes.add_parser(
        "produce", help="produce records and report throughput and latency",
        description="Each of K processes produces N/K records of B bytes. Latency runs from "
                    "produce() to the delivery report.")
    consume_cmd = modes.add_parser(
        "consume", help="consume records from the beginning and report throughput",
        description="K consumers read the topic's partitions from the beginning (assign(), no "
                    "consumer group) until N records arrived or none came for --timeout seconds.")
    for command, props in ((produce_cmd, "--producer-props"), (consume_cmd, "--consumer-props")):
        command.add_argument("--bootstrap-server", required=True, metavar="HOST:PORT")
        command.add_argument("--topic", required=True)
        command.add_argument("--records", required=True, type=_positive_int, metavar="N")
        command.add_argument("--processes", type=_positive_int, default=1, metavar="K",
                             help="worker processes (default 1)")
        command.add_argument(props, dest="props", type=_prop, nargs="+", action="extend",
                             default=[], metavar="NAME=VALUE",
                             help="librdkafka properties, over the tool's defaults")
        command.add_argument("--json", action="store_true",
                             help="print the summary as one JSON object")
    produce_cmd.add_argument("--record-size", type=_positive_int, default=100, metavar="B",
                             help="bytes per record value (default 100)")
    produce_cmd.add_argument("--acks", choices=("0", "1", "all", "-1"), default="1")
    produce_cmd.add_argument("--throughput", type=_throughput, default=None, metavar="R",
                             help="records/s over all processes (default, or <= 0: no limit)")
    consume_cmd.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                             help="stop after this long without a new record (default 10)")
    produce_cmd.set_defaults(func=lambda args: _run(produce, args))
    consume_cmd.set_defaults(func=lambda args: _run(consume, args))
