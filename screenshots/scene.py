"""A deterministic scene for screenshots and snapshot tests.

A local cluster holds fixed topics with fixed records (fixed keys, values, partitions
and timestamps) and a consumer group with fixed committed offsets. `StableSource` reads it like any console would and then pins what
changes from run to run — clock times, durations, ports, process ids, the quorum's
epoch and offsets, fetch ages — so two runs draw the same screen.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

from aiokafka import TopicPartition

from broker.cluster.layout import Layout
from tests.conftest import free_port_range
from tui.app import KraftboardApp
from tui.config import Settings
from tui.demo import DEMO_TOPICS, demo_record
from tui.local import LocalCluster
from tui.snapshot import Broker, LocalNode, Quorum, Snapshot, Voter
from tui.source import ClusterSource

REPO = Path(__file__).resolve().parent.parent
RECORDS = 30  # per topic
GROUP, COMMITTED = "billing", 4  # a group that read 4 records of each payments partition
PARTITIONS = 3
EPOCH = 1_767_261_600  # 2026-01-01 10:00:00 UTC: the pinned clock
FIRST_PORT = 9092  # the ports shown, whatever the cluster listens on
SIZE = (130, 36)

# (file name, keys that open the view, table id that must fill first)
# (file name, keys that open the view from anywhere, table that must fill first).
VIEWS = [
    ("cluster", ["1"], "brokers"),
    ("topics", ["2"], "topics"),
    ("topic-detail", ["2", "enter"], "partitions"),
    ("groups", ["3"], "groups"),
    ("messages", ["4"], None),
    ("drills", ["5"], "drill-partitions"),
]


def kraftboard(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker", "--log-level", "WARNING", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def start_cluster(data_dir: Path, brokers: int) -> LocalCluster:
    """`kraftboard cluster start --detach` on free ports, as the console starts it."""
    for _ in range(3):  # free ports can be taken before the nodes bind them: retry
        done = kraftboard("cluster", "start", "--detach", "--brokers", str(brokers),
                          "--data-dir", str(data_dir), "--port", str(free_port_range(brokers)))
        if done.returncode == 0:
            return LocalCluster(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)  # its node.yaml files name the ports
    raise RuntimeError(f"the cluster did not start: {done.stderr}")


def stop_cluster(data_dir: Path) -> None:
    if Layout(data_dir).socket.exists():
        kraftboard("cluster", "stop", "--data-dir", str(data_dir))


async def fill(source: ClusterSource, brokers: int) -> None:
    """Once every broker is online: the demo topics with RECORDS fixed records each."""
    for _ in range(120):  # a fresh cluster takes a moment to register its brokers
        try:
            if len((await source.snapshot()).brokers) == brokers:
                break
        except Exception:
            pass
        await asyncio.sleep(0.5)
    else:
        raise TimeoutError(f"{brokers} brokers did not come online")
    for topic in DEMO_TOPICS:
        await source.create_topic(topic, PARTITIONS, min(brokers, 3), {})
    producer = await source.producer("all")
    for topic in DEMO_TOPICS:
        rng = random.Random(topic)
        for n in range(RECORDS):
            key, value = demo_record(topic, n, rng)
            await producer.send_and_wait(topic, json.dumps(value).encode(), key=key,
                                         partition=n % PARTITIONS,
                                         timestamp_ms=(EPOCH + n) * 1000)
    await commit_group(source, GROUP, DEMO_TOPICS[1], COMMITTED)


async def commit_group(source: ClusterSource, group: str, topic: str, offset: int) -> None:
    """A consumer group that committed `offset` on every partition of `topic`, then left."""
    consumer = source.consumer(group_id=group)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        await consumer.commit({TopicPartition(topic, p): offset for p in range(PARTITIONS)})
    finally:
        await consumer.stop()


def pinned(snapshot: Snapshot) -> Snapshot:
    """The snapshot with every run-to-run difference pinned to a fixed value.

    The clock stands still, so no rates are computed: the scene has no traffic anyway.
    """
    def stable_voter(voter: Voter) -> Voter:
        return Voter(voter.id, 100, EPOCH * 1000 - 200 * voter.id)

    quorum = snapshot.quorum and Quorum(
        snapshot.quorum.leader, 1, 100, tuple(map(stable_voter, snapshot.quorum.voters)))
    return dataclasses.replace(
        snapshot, taken_at=float(EPOCH), duration=0.042, cluster_id="stable",
        brokers={b.id: Broker(b.id, b.host, FIRST_PORT + b.id - 1) for b in
                 snapshot.brokers.values()},
        quorum=quorum,
        local=snapshot.local and {n.id: LocalNode(n.id, n.state, 4000 + n.id)
                                  for n in snapshot.local.values()})


class StableSource(ClusterSource):
    """A real source whose snapshots are pinned."""

    async def snapshot(self) -> Snapshot:
        return pinned(await super().snapshot())


def stable_app(cluster: LocalCluster, settings_path: Path, theme: str | None = None
               ) -> KraftboardApp:
    source = StableSource(cluster.bootstrap(), local=cluster)
    settings = Settings(path=settings_path)
    if theme:
        settings.theme = theme
    return KraftboardApp(source, f"local cluster 127.0.0.1:{FIRST_PORT}", settings,
                         refresh_interval=0.5)


async def settle(pilot, table_id: str | None, timeout: float = 30.0) -> None:
    """Wait for data: the view's table filled (if any), the tail caught up, then a beat."""
    from tui.widgets.live_table import LiveTable
    from tui.widgets.record_log import RecordLog
    app = pilot.app
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        view = app.visible_view()
        ready = app.snapshot is not None
        if ready and table_id:
            ready = view.query_one(f"#{table_id}", LiveTable).row_count > 0
        if ready and view.query(RecordLog):
            ready = len(view.query_one(RecordLog).rows) >= RECORDS
        if ready:
            break
        await pilot.pause(0.1)
    else:
        raise TimeoutError(f"the view did not fill in within {timeout} s")
    await pilot.pause(1.2)  # two more refreshes: the event log settles
