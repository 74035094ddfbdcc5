"""The console's figures: startup, idle CPU, the cost of a refresh on a wide cluster, the tail.

Run from the repository root (it starts and stops its own clusters in a temporary
directory and asserts nothing):

    python benchmarks/console.py              # everything
    python benchmarks/console.py --partitions 500 --groups 50 --records 200000 --idle 10
    python benchmarks/console.py --live-rate 0    # the live tail as fast as perf produces

1. `kraftboard ui` as a real process in a pseudo-terminal, on a warm venv: seconds
   until the screen shows a broker "online", starting the 3-node cluster from nothing
   and attaching to it while it runs.
2. First paint in-process (headless Textual): from `run_test()` to the first frame,
   and to the first populated cluster view, on the running cluster.
3. Idle CPU: `kraftboard ui` as `make run` opens it (the bundled cluster, its demo
   topics and demo producer), left alone for --idle seconds after it shows the
   cluster: CPU seconds of the console process (/proc/PID/stat), as % of one core.
4. A wide cluster (one node, a topic of --partitions partitions, --groups consumer
   groups with committed offsets): per view, the UI-thread time of rendering one
   snapshot; the UI thread's CPU time per refresh cycle (fetch, decode and render: the
   Kafka clients run on the UI's event loop); the longest and 99th-percentile stall of
   that event loop while refreshing, and while switching views (their tables fill); and
   the idle CPU of `kraftboard ui --no-demo` on it.
5. The tail: (a) appending batches of 5,000 records to the messages view's log and
   drawing the frame, up to --records (CPU ms per step and event-loop stalls);
   (b) a live tail of a topic that `kraftboard perf produce` fills with --live-records
   records at --live-rate records/s (0: as fast as it can): event-loop stalls while the
   console keeps up, and how fast it tails.

A stall is measured by a probe task that sleeps 5 ms at a time on the console's event
loop: how late it wakes up is how long the loop (the UI thread) was busy with one step,
during which no frame could be drawn and no key handled.
"""
from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import pty
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from screenshots.scene import REPO, start_cluster, stop_cluster  # noqa: E402
from tests.conftest import free_port_range  # noqa: E402
from tui.app import KraftboardApp, SnapshotReady  # noqa: E402
from tui.config import Settings  # noqa: E402
from tui.source import ClusterSource  # noqa: E402
from tui.widgets.record_log import RecordLog  # noqa: E402

SIZE = (140, 40)
ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=]*[A-Za-z~]")  # cursor moves and colours between cells
TAIL_BATCH = 5000
PROBE_INTERVAL = 0.005
GROUP_PARTITIONS = 10  # partitions of the wide topic each benchmark group has offsets for


class ConsoleProcess:
    """`kraftboard ui ARGS` in a pseudo-terminal, as a user runs it."""

    def __init__(self, args: list[str], home: Path):
        env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"),
               "XDG_STATE_HOME": str(home / "state"), "TERM": "xterm-256color"}
        argv = [sys.executable, "-m", "broker", "ui", *args]
        self.started = time.monotonic()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(REPO)
            os.execve(sys.executable, argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
        self.seen = b""

    def _read(self, timeout: float) -> None:
        if select.select([self.fd], [], [], timeout)[0]:
            try:
                self.seen = (self.seen + os.read(self.fd, 65536))[-65600:]
            except OSError:  # the console ended
                raise RuntimeError(f"the console ended: {self.seen[-2000:]!r}") from None

    def until_shown(self, text: bytes, timeout: float = 120) -> float:
        """Seconds from the spawn until the screen shows `text`."""
        while text not in ESCAPES.sub(b"", self.seen):
            if time.monotonic() - self.started > timeout:
                raise TimeoutError(f"the console did not show {text!r} in {timeout} s: "
                                   f"{ESCAPES.sub(b'', self.seen)[-2000:]!r}")
            self._read(1)
        return time.monotonic() - self.started

    def drain(self, seconds: float) -> None:
        """Read what the console draws for `seconds`, so it never blocks on a full pty."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._read(left)

    def cpu_seconds(self) -> float:
        """User and system CPU time of the console process (all its threads) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def idle_cpu_percent(self, seconds: float) -> float:
        """% of one core the console uses while nobody types, over `seconds`."""
        self.drain(3)  # the first refreshes, the demo topics, the first draws settle
        before, started = self.cpu_seconds(), time.monotonic()
        self.drain(seconds)
        return 100 * (self.cpu_seconds() - before) / (time.monotonic() - started)

    def close(self) -> None:
        os.write(self.fd, b"q")
        deadline = time.monotonic() + 10
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
            time.sleep(0.1)
        os.close(self.fd)


def seconds_until_online(args: list[str], home: Path) -> float:
    console = ConsoleProcess(args, home)
    try:
        return console.until_shown(b"online")
    finally:
        console.close()


def idle_cpu(args: list[str], home: Path, seconds: float) -> float:
    console = ConsoleProcess(args, home)
    try:
        console.until_shown(b"online")
        return round(console.idle_cpu_percent(seconds), 2)
    finally:
        console.close()


class StallProbe:
    """Sleeps PROBE_INTERVAL at a time on the event loop and records how late it wakes."""

    def __init__(self):
        self.stalls: list[float] = []
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(PROBE_INTERVAL)
            self.stalls.append(time.perf_counter() - before - PROBE_INTERVAL)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def pause(self) -> None:
        self._task.cancel()

    def stop(self) -> dict:
        self.pause()
        return stall_figures(self.stalls)


def stall_figures(stalls: list[float]) -> dict:
    ordered = sorted(stalls)
    return {"event-loop stall ms (max)": round(ordered[-1] * 1000, 1),
            "event-loop stall ms (p99)": round(ordered[int(len(ordered) * 0.99)] * 1000, 1)}


def percentile_ms(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(int(len(ordered) * fraction), len(ordered) - 1)] * 1000, 1)


class TimedApp(KraftboardApp):
    """Records the UI-thread time of handling each snapshot, and its CPU time per cycle.

    It refreshes every refresh_interval whatever a refresh costs, to measure that cost.
    """

    REFRESH_CPU_SHARE = 1.0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.render_seconds: list[tuple[str, float]] = []
        self.fetch_seconds: list[float] = []
        self.cycle_cpu: list[float] = []  # UI-thread CPU from one snapshot to the next
        self._cpu_mark: float | None = None

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        started = time.perf_counter()
        super().on_snapshot_ready(message)
        view = type(self.visible_view()).__name__
        self.render_seconds.append((view, time.perf_counter() - started))
        self.fetch_seconds.append(message.snapshot.duration)
        now = time.thread_time()
        if self._cpu_mark is not None:
            self.cycle_cpu.append(now - self._cpu_mark)
        self._cpu_mark = now


async def first_paint(bootstrap: str, home: Path) -> dict:
    app = TimedApp(ClusterSource(bootstrap), bootstrap, Settings(path=home / "c.yaml"))
    started = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        painted = time.perf_counter() - started
        while not app.render_seconds:
            await pilot.pause(0.01)
        return {"first frame s": round(painted, 3),
                "first populated cluster view s": round(time.perf_counter() - started, 3)}


async def fill_wide(bootstrap: str, partitions: int, groups: int) -> None:
    """A topic of `partitions` partitions and `groups` groups with committed offsets."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    source = ClusterSource(bootstrap)
    try:
        await source.create_topic("wide", partitions, 1, {})
        await source.produce("wide", b"x", partition=0)
    finally:
        await source.close()

    async def commit(n: int) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=f"bench-{n:03d}",
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            parts = [TopicPartition("wide", (n + i) % partitions)
                     for i in range(GROUP_PARTITIONS)]
            consumer.assign(parts)
            await consumer.commit({tp: OffsetAndMetadata(0, "") for tp in parts})
        finally:
            await consumer.stop()

    for start in range(0, groups, 20):
        await asyncio.gather(*(commit(n) for n in range(start, min(start + 20, groups))))


async def refresh_cost(bootstrap: str, home: Path) -> dict:
    """Per view: rendering one snapshot, and event-loop stalls while refreshes go on."""
    app = TimedApp(ClusterSource(bootstrap), bootstrap, Settings(path=home / "c.yaml"),
                   refresh_interval=0.2)
    figures: dict = {}
    switching, refreshing = StallProbe(), StallProbe()
    cycles: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        while not app.render_seconds:
            await pilot.pause(0.05)
        figures["consumer groups"] = len(app.snapshot.groups)
        figures["partitions"] = len(app.snapshot.partitions)
        for view, keys in (("cluster", ["1"]), ("topics", ["2"]), ("topic detail", ["enter"]),
                           ("groups", ["3"])):
            switching.start()  # the view composes and fills its tables
            await pilot.press(*keys)
            app.render_seconds.clear()
            while len(app.render_seconds) < 2:
                await pilot.pause(0.05)
            switching.pause()
            refreshing.start()
            first_cycle = len(app.cycle_cpu) + 1  # the one before may include the switch
            while len(app.render_seconds) < 8:
                await pilot.pause(0.05)
            refreshing.pause()
            cycles += app.cycle_cpu[first_cycle:]
            figures[view] = {"render ms (median)": round(
                statistics.median(s for _, s in app.render_seconds[1:]) * 1000, 1)}
        figures["UI-thread CPU per refresh cycle ms (median)"] = round(
            statistics.median(cycles) * 1000, 1)
        figures["UI-thread CPU per refresh cycle ms (p99)"] = percentile_ms(cycles, 0.99)
        figures["snapshot fetch ms (median)"] = round(statistics.median(app.fetch_seconds) * 1000)
        figures["while refreshing"] = refreshing.stop()
        figures["while switching views (tables fill)"] = switching.stop()
    return figures


def tail_app(bootstrap: str, home: Path) -> KraftboardApp:
    return KraftboardApp(ClusterSource(bootstrap), "tail", Settings(path=home / "c.yaml"),
                         refresh_interval=3600)


async def tail_cost(total: int, home: Path) -> dict:
    """Batches of TAIL_BATCH records appended as the tail's worker does, each frame drawn."""
    value = json.dumps({"order": 1, "customer": "customer-01", "amount": 12.5}).encode()
    app = tail_app("127.0.0.1:1", home)  # no cluster: the records come from here
    probe = StallProbe()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        log = app.screen.query_one(RecordLog)
        steps = []
        probe.start()
        for start in range(0, total, TAIL_BATCH):
            batch = [(i % 3, i, 0, b"customer-01", value, ()) for i in
                     range(start, start + TAIL_BATCH)]
            began = time.thread_time()  # CPU time: pilot.pause() also idles
            log.append(batch)
            await pilot.pause()  # the frame is drawn
            steps.append(time.thread_time() - began)
        return {"records": total, "buffered": len(log.rows),
                "append + frame, CPU ms (median)": round(statistics.median(steps) * 1000, 2),
                "append + frame, CPU ms (p99)": percentile_ms(steps, 0.99),
                "append + frame, CPU ms (max)": round(max(steps) * 1000, 2)} | probe.stop()


async def live_tail(bootstrap: str, records: int, rate: int, home: Path) -> dict:
    """The messages view tailing a topic while `kraftboard perf produce` fills it."""
    source = ClusterSource(bootstrap)
    try:
        await source.create_topic("firehose", 3, 1, {})
    finally:
        await source.close()
    app = tail_app(bootstrap, home)
    probe = StallProbe()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        view = app.screen
        view.tail("firehose")
        log = view.query_one(RecordLog)
        await asyncio.sleep(2)  # the tail's consumer is assigned (records before it are missed)
        probe.start()
        started = time.monotonic()
        producer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "broker", "perf", "produce", "--bootstrap-server", bootstrap,
            "--topic", "firehose", "--records", str(records), "--record-size", "100",
            "--acks", "1", "--throughput", str(rate), "--json", cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        produced = json.loads((await producer.communicate())[0].splitlines()[-1])
        tailed, last_growth = 0, time.monotonic()
        while tailed < records and time.monotonic() - last_growth < 5:  # until it stops
            await pilot.pause(0.1)
            if log.dropped + len(log.rows) > tailed:
                tailed, last_growth = log.dropped + len(log.rows), time.monotonic()
        return {"records produced": records,
                "producer records/s": round(produced["records_per_s"]),
                "records tailed": tailed,
                "tailed records/s": round(tailed / (last_growth - started))
                } | probe.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=2000)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--live-records", type=int, default=1_000_000)
    parser.add_argument("--live-rate", type=int, default=100_000, metavar="RECORDS_PER_S")
    parser.add_argument("--idle", type=float, default=20, metavar="SECONDS")
    args = parser.parse_args()
    results: dict = {"load average before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="kraftboard-console-bench-") as tmp:
        home = Path(tmp)
        cold_dir = home / "cold"
        port = free_port_range(3)
        bundled = ["--data-dir", str(cold_dir), "--port", str(port)]
        results["kraftboard ui, starting the cluster, s"] = round(
            seconds_until_online([*bundled, "--no-demo"], home), 2)
        try:
            results["kraftboard ui, attaching to the running cluster, s"] = round(
                seconds_until_online([*bundled, "--no-demo"], home), 2)
            results["first paint, in-process"] = asyncio.run(
                first_paint(f"127.0.0.1:{port}", home))
            results[f"idle CPU % of a core, kraftboard ui with its demo, {args.idle:g} s"] = \
                idle_cpu(bundled, home, args.idle)
        finally:
            stop_cluster(cold_dir)
        wide_dir = home / "wide"
        cluster = start_cluster(wide_dir, brokers=1)
        try:
            bootstrap = cluster.bootstrap()
            asyncio.run(fill_wide(bootstrap, args.partitions, args.groups))
            results[f"one refresh, {args.partitions} partitions, {args.groups} groups, 1 node"] \
                = asyncio.run(refresh_cost(bootstrap, home))
            results[f"idle CPU % of a core, kraftboard ui --no-demo on that node, "
                    f"{args.idle:g} s"] = idle_cpu(
                ["--no-demo", "--data-dir", str(wide_dir)], home, args.idle)
            results[f"live tail, {args.live_rate or 'unlimited'} records/s produced"] = \
                asyncio.run(live_tail(bootstrap, args.live_records, args.live_rate, home))
        finally:
            stop_cluster(wide_dir)
        results["tail, synthetic batches"] = asyncio.run(tail_cost(args.records, home))
    results["load average after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
