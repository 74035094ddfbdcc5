"""`kraftboard perf produce` then `perf consume` against a real node process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECORDS = 2000


def perf(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker", "perf", *argv], cwd=REPO,
                          capture_output=True, text=True, timeout=90)


def test_produce_then_consume_counts_every_record(node_factory):
    # Two partitions, auto-created by the producer's metadata request, so each of the two
    # consumer processes gets one.
    node = node_factory(**{"num.partitions": 2})
    target = ["--bootstrap-server", node.bootstrap, "--topic", "perf", "--records", str(RECORDS)]

    produced = perf("produce", *target, "--record-size", "100", "--processes", "2", "--json")
    assert produced.returncode == 0, produced.stderr
    summary = json.loads(produced.stdout)
    assert (summary["records"], summary["errors"]) == (RECORDS, 0)
    assert summary["latency_ms"]["max"] >= summary["latency_ms"]["p50"] > 0

    consumed = perf("consume", *target, "--processes", "2", "--json")
    assert consumed.returncode == 0, consumed.stderr
    summary = json.loads(consumed.stdout)
    assert (summary["records"], summary["bytes"], summary["errors"]) == (RECORDS, RECORDS * 100, 0)
    assert (summary["processes"], summary["partitions"]) == (2, 2)


def test_a_capped_producer_keeps_under_its_rate(node):
    """--throughput paces the records (waiting in librdkafka's poll, whole milliseconds at a
    time) and still delivers every one of them."""
    done = perf("produce", "--bootstrap-server", node.bootstrap, "--topic", "paced",
                "--records", str(RECORDS), "--throughput", "4000", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["records"], summary["errors"]) == (RECORDS, 0)
    # Records go in steps of a millisecond's worth, the last step due 1 ms before the cap
    # would have it: 1% over the cap is the most pacing allows. Unpaced, it is ten times that.
    assert summary["records_per_s"] <= 4000 * 1.01


def test_missing_topic_says_to_create_it(node):
    done = perf("consume", "--bootstrap-server", node.bootstrap, "--topic", "absent",
                "--records", "10")
    assert done.returncode == 1
    assert "topic 'absent' does not exist" in done.stderr and "--create" in done.stderr
