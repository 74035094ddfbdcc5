"""The supervisor's drills on three kraftboard nodes: what a producer sees when a partition
leader is stopped gracefully (controlled shutdown) rather than killed, and how soon
leadership returns to the preferred replica after a restart.

Starts `kraftboard cluster start --brokers 3` in a temporary directory (the local
profile), runs a verified workload (idempotent acks=all librdkafka producer) throughout,
prints the figures and asserts nothing. Everything it starts is stopped when it ends,
also on Ctrl-C. Run from the repository root:

    python benchmarks/drills.py              # 5 repetitions of each drill
    python benchmarks/drills.py --quick      # 3
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from cluster import NODES, PARTITIONS, WORKLOAD_RATE, LocalCluster, summary, wait_for
from single_node import BenchError, create_topic, failures_reported

# benchmarks/cluster.py put the repository on sys.path
from broker.cluster import probe  # noqa: E402
from broker.workload import VerifiedWorkload  # noqa: E402

TOPIC = "drills"
SETTLE = 2.0  # seconds of writes after a drill that count towards its longest gap


def longest_gap(workload: VerifiedWorkload, partition: int, start: float, end: float) -> float:
    """The longest time between two acknowledgements on `partition` within [start, end]."""
    times = sorted(a.acked_at for a in list(workload.acks)
                   if a.partition == partition and start <= a.acked_at <= end)
    return max((b - a for a, b in zip(times, times[1:])), default=end - start)


def leader_drill(cluster: LocalCluster, workload: VerifiedWorkload, op: str,
                 repetition: int) -> tuple[float, float, float]:
    """`op` ("stop" or "kill") on the leader of a partition the controller does not lead.

    Returns the longest gap between acknowledged writes on that partition around the
    drill, the seconds the op took, and the seconds from `restart` returning to the
    preferred replica leading its partition again (auto leader rebalance)."""
    controller = wait_for(lambda: probe.quorum_leader(cluster.bootstrap()), "a controller")
    state = probe.partitions(cluster.bootstrap(), TOPIC)
    candidates = sorted(p for p, s in state.items() if s.leader != controller)
    partition = candidates[repetition % len(candidates)]
    victim = state[partition].leader
    began = time.monotonic()
    done = cluster.drill(op, victim)
    wait_for(lambda: workload.resumed_after(done, partition) is not None,
             f"writes to partition {partition} after {op} of node {victim}")
    time.sleep(SETTLE)
    gap = longest_gap(workload, partition, began - 0.5, time.monotonic())
    restarted = cluster.drill("restart", victim)
    wait_for(lambda: probe.partitions(cluster.bootstrap(victim), TOPIC)[partition].leader
             == victim, f"node {victim} leading partition {partition} again")
    back = time.monotonic() - restarted
    print(f"{op} {repetition + 1}: node {victim} (leader of partition {partition}): longest "
          f"write gap {gap:.3f} s, {op} took {done - began:.2f} s, leader again {back:.2f} s "
          "after its restart", file=sys.stderr)
    wait_for(lambda: cluster.online_everywhere(TOPIC), "every replica back in sync")
    return gap, done - began, back


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repetitions", type=int, default=5, help="of each drill (default 5)")
    parser.add_argument("--quick", action="store_true", help="3 repetitions")
    args = parser.parse_args()
    repetitions = 3 if args.quick else args.repetitions
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up as on Ctrl-C
    idle_load = os.getloadavg()[0]
    results: dict[str, list[tuple[float, float, float]]] = {"stop": [], "kill": []}
    with tempfile.TemporaryDirectory(prefix="kraftboard-drills-bench-") as scratch:
        cluster = LocalCluster(Path(scratch) / "cluster")
        workload = None
        with failures_reported():
            try:
                cluster.start()
                wait_for(lambda: cluster.brokers() == len(NODES), "every broker registered")
                create_topic(cluster.bootstrap(), TOPIC, PARTITIONS, len(NODES),
                             {"min.insync.replicas": "2"})
                wait_for(lambda: cluster.online_everywhere(TOPIC), f"{TOPIC} online")
                workload = VerifiedWorkload(cluster.bootstrap(), TOPIC, PARTITIONS,
                                            rate=WORKLOAD_RATE).start()
                if not workload.wait_acknowledged(WORKLOAD_RATE, 30):
                    raise BenchError(f"the workload is not acknowledged: {dict(workload.errors)}")
                for repetition in range(repetitions):
                    for op in results:
                        results[op].append(leader_drill(cluster, workload, op, repetition))
                workload.stop()
                verification = workload.verify()
            finally:
                if workload is not None:
                    workload.stop()
                cluster.stop()
    print()
    print("kraftboard drills benchmark")
    print(f"  {os.cpu_count()} CPUs, load average {idle_load:.2f} before the run; 3 combined "
          f"nodes, local profile; topic of {PARTITIONS} partitions, RF 3, min.insync.replicas 2; "
          f"verified workload at {WORKLOAD_RATE} records/s; {repetitions} repetitions")
    print()
    rows = [
        ("graceful stop: longest write gap on the leader's partition",
         summary([r[0] for r in results["stop"]])),
        ("SIGKILL: longest write gap on the leader's partition",
         summary([r[0] for r in results["kill"]])),
        ("`cluster stop ID`: SIGTERM to exit", summary([r[1] for r in results["stop"]])),
        ("restart to preferred leader again (auto rebalance, 5 s check)",
         summary([r[2] for r in results["stop"] + results["kill"]])),
    ]
    width = max(len(label) for label, _ in rows) + 2
    for label, value in rows:
        print(f"{label:<{width}}{value}")
    print(f"producer delivery errors: {dict(workload.errors) or 'none'}; {verification}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
