"""Three kraftboard nodes under `kraftboard cluster`: startup, failover, and throughput
with replication against one node, measured in the same run on the same machine.

Starts everything itself on 127.0.0.1 (clusters in temporary directories with the
local profile `cluster start` writes), prints the setup and the figures with their
targets, and asserts nothing. Everything it starts is stopped when it ends, also on
Ctrl-C. Run from the repository root:

    python benchmarks/cluster.py             # 5 repetitions, 1,000,000 records
    python benchmarks/cluster.py --quick     # 3 repetitions, 300,000 records
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import confluent_kafka
import yaml
from confluent_kafka import Producer
from kafka.protocol.admin import CreateTopicsRequest
from kafka.protocol.metadata import MetadataRequest

from single_node import (HOST, REPO, BenchError, create_topic, failures_reported,
                         filesystem_of, kraftboard_node, perf)

sys.path.insert(0, str(REPO))  # run as `python benchmarks/cluster.py`: find the broker package
from broker.cluster import client, probe  # noqa: E402
from broker.workload import VerifiedWorkload  # noqa: E402

NODES = (1, 2, 3)
PARTITIONS = 3
WAIT = 30.0
WORKLOAD_RATE = 600  # records/s over all partitions: one record per partition every 5 ms
PROFILE_KEYS = ("broker.heartbeat.interval.ms", "broker.session.timeout.ms",
                "replica.lag.time.max.ms", "controller.quorum.election.timeout.ms",
                "controller.quorum.fetch.timeout.ms")


def wait_for(condition, what: str):
    return probe.wait_for(condition, what, WAIT, interval=0.02)


def free_port_range(count: int) -> int:
    """The first of `count` consecutive ports nothing listens on."""
    for first in range(20000, 60000, 97):
        try:
            for port in range(first, first + count):
                socket.create_server((HOST, port)).close()
        except OSError:
            continue
        return first
    raise BenchError(f"no {count} consecutive free ports")


class LocalCluster:
    """`kraftboard cluster start --brokers 3` in a directory, driven by its supervisor."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.port = free_port_range(len(NODES))

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "broker", "cluster", *args,
                               "--data-dir", str(self.dir)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        result = self.cli("start", "--detach", "--brokers", str(len(NODES)),
                          "--port", str(self.port))
        if result.returncode != 0:
            raise BenchError(f"cluster start failed: {result.stderr.strip()}")

    def stop(self) -> None:
        if (self.dir / "supervisor.sock").exists():
            self.cli("stop")

    def bootstrap(self, without: int | None = None) -> str:
        return ",".join(f"{HOST}:{self.port + i - 1}" for i in NODES if i != without)

    def drill(self, op: str, node_id: int) -> float:
        """A supervisor op on one node; returns when it was done (time.monotonic())."""
        response = client.request(self.dir, op, id=node_id)
        if not response["ok"]:
            raise BenchError(f"{op} {node_id}: {response['error']}")
        return time.monotonic()

    def profile(self) -> dict:
        settings = yaml.safe_load((self.dir / "node-1" / "node.yaml").read_text())
        return {key: settings.get(key) for key in PROFILE_KEYS}

    def brokers(self, ask: str | None = None) -> int:
        metadata = probe.ask_any(ask or self.bootstrap(), MetadataRequest(version=1, topics=None))
        return len(metadata.brokers)

    def online(self, topic: str, ask: str | None = None) -> bool:
        """Every partition has a leader and a full ISR, as the node asked sees it."""
        state = probe.partitions(ask or self.bootstrap(), topic)
        return len(state) == PARTITIONS and all(
            p.leader >= 0 and sorted(p.isr) == sorted(p.replicas) for p in state.values())

    def online_everywhere(self, topic: str) -> bool:
        return all(self.online(topic, f"{HOST}:{self.port + i - 1}") for i in NODES)

    def create_topic(self, name: str, partitions: int, replication: int, ask: str) -> int:
        """CreateTopics through any node (it forwards to the controller); the error code."""
        topic = CreateTopicsRequest.CreatableTopic
        request = CreateTopicsRequest(version=5, timeout_ms=2000, validate_only=False, topics=[
            topic(name=name, num_partitions=partitions, replication_factor=replication,
                  assignments=[], configs=[topic.CreatableTopicConfig(
                      name="min.insync.replicas", value="2")] if replication >= 2 else [])])
        return probe.ask_any(ask, request, timeout=3.0).topics[0].error_code


def first_writes(bootstrap: str, topic: str) -> None:
    """One acks=all record to every partition, acknowledged."""
    delivered = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for partition in range(PARTITIONS):
        producer.produce(topic, b"first", partition=partition,
                         on_delivery=lambda err, msg: delivered.append(err))
    producer.flush(WAIT)
    if len(delivered) != PARTITIONS or any(delivered):
        raise BenchError(f"first writes to {topic} failed: {delivered}")


def measure_startup(scratch: Path, index: int) -> dict:
    """Seconds from `cluster start` to each step of a usable cluster."""
    cluster = LocalCluster(scratch / f"startup-{index}")
    steps = {}
    start = time.monotonic()
    try:
        cluster.start()
        steps["cli"] = time.monotonic() - start
        wait_for(lambda: cluster.brokers() == len(NODES), "every broker registered")
        steps["registered"] = time.monotonic() - start
        wait_for(lambda: cluster.create_topic("startup", PARTITIONS, len(NODES),
                                              cluster.bootstrap()) == 0, "CreateTopics")
        steps["created"] = time.monotonic() - start
        wait_for(lambda: cluster.online_everywhere("startup"), "every partition online")
        steps["online"] = time.monotonic() - start
        first_writes(cluster.bootstrap(), "startup")
        steps["written"] = time.monotonic() - start
    finally:
        cluster.stop()
    return steps


def measure_failover(cluster: LocalCluster, repetitions: int) -> tuple[list[float], object]:
    """Seconds from SIGKILL of a partition's leader (not the controller) to the first
    acknowledged acks=all write on that partition; and the workload's verification."""
    create_topic(cluster.bootstrap(), "failover", PARTITIONS, len(NODES),
                 {"min.insync.replicas": "2"})
    wait_for(lambda: cluster.online("failover"), "failover online")
    workload = VerifiedWorkload(cluster.bootstrap(), "failover", PARTITIONS,
                                rate=WORKLOAD_RATE).start()
    times = []
    try:
        if not workload.wait_acknowledged(WORKLOAD_RATE, WAIT):
            raise BenchError(f"the workload is not acknowledged: {dict(workload.errors)}")
        for repetition in range(repetitions):
            controller = probe.quorum_leader(cluster.bootstrap())
            leaders = {p: s.leader for p, s in probe.partitions(cluster.bootstrap(),
                                                                "failover").items()}
            candidates = sorted(p for p, leader in leaders.items() if leader != controller)
            partition = candidates[repetition % len(candidates)]
            victim = leaders[partition]
            killed = cluster.drill("kill", victim)
            times.append(wait_for(lambda: workload.resumed_after(killed, partition),
                                  f"writes to partition {partition} after killing node {victim}"))
            print(f"failover {repetition + 1}: node {victim} (leader of partition {partition}) "
                  f"killed, writes resumed after {times[-1]:.2f} s", file=sys.stderr)
            cluster.drill("restart", victim)
            wait_for(lambda: cluster.online("failover", cluster.bootstrap(victim)),
                     f"node {victim} back in every ISR")
    finally:
        workload.stop()
    return times, workload.verify()


def measure_controller_failover(cluster: LocalCluster, repetitions: int) -> list[float]:
    """Seconds from SIGKILL of the active controller to a successful CreateTopics."""
    times = []
    for repetition in range(repetitions):
        controller = wait_for(lambda: probe.quorum_leader(cluster.bootstrap()), "a controller")
        survivors = cluster.bootstrap(controller)
        name = f"after-controller-{repetition}"
        killed = cluster.drill("kill", controller)
        # TOPIC_ALREADY_EXISTS: an earlier attempt went through but its answer was lost.
        wait_for(lambda: cluster.create_topic(name, 1, 1, survivors) in (0, 36),
                 "CreateTopics after the controller died")
        times.append(time.monotonic() - killed)
        print(f"controller failover {repetition + 1}: node {controller} killed, CreateTopics "
              f"succeeded after {times[-1]:.2f} s", file=sys.stderr)
        cluster.drill("restart", controller)
        wait_for(lambda: cluster.brokers(cluster.bootstrap()) == len(NODES)
                 and cluster.online("failover", cluster.bootstrap(controller)),
                 f"node {controller} back")
    return times


def measure_throughput(bootstrap: str, topic: str, acks: str, args) -> dict:
    return perf("produce", bootstrap, topic, args.records, "--record-size",
                str(args.record_size), "--acks", acks)


def single_node_throughput(scratch: Path, args) -> dict:
    directory = scratch / "single"
    directory.mkdir()
    node = kraftboard_node(directory)
    try:
        node.start()
        create_topic(node.bootstrap, "throughput", PARTITIONS)
        return measure_throughput(node.bootstrap, "throughput", "1", args)
    finally:
        node.stop()


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s" if values else "n/a"


def report(args, figures: dict, profile: dict, idle_load: float, scratch: Path) -> None:
    single, replicated = figures["single"], figures["replicated"]
    startup = figures["startup"]
    verification = figures["verification"]
    print()
    print("kraftboard cluster benchmark")
    print(f"  machine    {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}, librdkafka {confluent_kafka.libversion()[0]} "
          f"(confluent-kafka {confluent_kafka.__version__})")
    print(f"             load average {idle_load:.2f} before the run (other work skews the figures)")
    print(f"  cluster    `kraftboard cluster start --brokers 3 --detach`: 3 combined nodes "
          f"(broker + controller), SQLite in a temporary directory ({filesystem_of(scratch)})")
    print("             local profile: " + ", ".join(f"{k} {v}" for k, v in profile.items()))
    print(f"  failover   topic of {PARTITIONS} partitions, RF 3, min.insync.replicas 2; a verified "
          f"workload (idempotent acks=all librdkafka producer, {WORKLOAD_RATE} records/s, "
          f"linger.ms 5, client defaults otherwise); {args.repetitions} repetitions each")
    print(f"  throughput `kraftboard perf produce`: {args.records:,} records x {args.record_size} B, "
          f"1 producer process, linger.ms=5, topic of {PARTITIONS} partitions")
    print()
    ratio = replicated["records_per_s"] / single["records_per_s"]
    failover_max = max(figures["failover"], default=None)
    controller_max = max(figures["controller"], default=None)
    online_max = max(s["online"] for s in startup)
    rows = [
        ("leader failover: SIGKILL to first acks=all ack", summary(figures["failover"]),
         "<= 2 s", failover_max is not None and failover_max <= 2),
        ("controller failover: SIGKILL to CreateTopics ok", summary(figures["controller"]),
         "<= 1.5 s", controller_max is not None and controller_max <= 1.5),
        ("produce, 1 node, RF 1, acks=1, records/s", f"{single['records_per_s']:,.0f}", "", None),
        ("produce, 3 nodes, RF 3, acks=all, records/s", f"{replicated['records_per_s']:,.0f}",
         "", None),
        ("  ratio 3 nodes / 1 node", f"{ratio:.2f}x", ">= 0.4x", ratio >= 0.4),
        ("  p99 latency, 1 node / 3 nodes, ms",
         f"{single['latency_ms'].get('p99', 0):,.1f} / {replicated['latency_ms'].get('p99', 0):,.1f}",
         "", None),
        ("start to every partition online", summary([s["online"] for s in startup]), "<= 3 s",
         online_max <= 3),
    ]
    for step, label in (("cli", "CLI returned"), ("registered", "every broker registered"),
                        ("created", "CreateTopics RF 3 ok"),
                        ("written", "first acks=all write on every partition")):
        rows.append((f"  start to {label}", summary([s[step] for s in startup]), "", None))
    width = max(len(row[0]) for row in rows) + 2
    print(f"{'figure':<{width}}{'value':<30}target")
    print("-" * (width + 45))
    for label, value, target, met in rows:
        verdict = "" if met is None else (" (met)" if met else " (missed)")
        print(f"{label:<{width}}{value:<30}{target}{verdict}")
    print()
    print(f"failover workload: {verification}")
    errors = {k: v for k, v in (("1 node", single), ("3 nodes", replicated)) if v["errors"]}
    for name, run in errors.items():
        print(f"{name}: {run['errors']:,} produce errors: {run['error_kinds']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=5,
                        help="kills per failover figure, cluster starts (default 5)")
    parser.add_argument("--records", type=int, default=1_000_000,
                        help="records per throughput run (default 1,000,000)")
    parser.add_argument("--record-size", type=int, default=100, metavar="BYTES")
    parser.add_argument("--quick", action="store_true", help="3 repetitions, 300,000 records")
    parser.add_argument("--json-out", type=Path, help="also write every figure to this file")
    args = parser.parse_args()
    if args.quick:
        args.repetitions, args.records = 3, 300_000

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on Ctrl-C
    idle_load = os.getloadavg()[0]
    figures: dict = {}
    with tempfile.TemporaryDirectory(prefix="kraftboard-cluster-bench-") as scratch:
        scratch = Path(scratch)
        cluster = LocalCluster(scratch / "cluster")
        with failures_reported():
            try:
                print("--- one node, RF 1, acks=1", file=sys.stderr)
                figures["single"] = single_node_throughput(scratch, args)
                print("--- cluster starts", file=sys.stderr)
                figures["startup"] = [measure_startup(scratch, i) for i in range(args.repetitions)]
                cluster.start()
                wait_for(lambda: cluster.brokers() == len(NODES), "every broker registered")
                profile = cluster.profile()
                print("--- three nodes, RF 3, acks=all", file=sys.stderr)
                create_topic(cluster.bootstrap(), "throughput", PARTITIONS, len(NODES),
                             {"min.insync.replicas": "2"})
                figures["replicated"] = measure_throughput(cluster.bootstrap(), "throughput", "all",
                                                           args)
                print("--- failover", file=sys.stderr)
                figures["failover"], verification = measure_failover(cluster, args.repetitions)
                figures["verification"] = str(verification)
                figures["controller"] = measure_controller_failover(cluster, args.repetitions)
            finally:
                cluster.stop()
        report(args, figures, profile, idle_load, scratch)
        if args.json_out:
            args.json_out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
