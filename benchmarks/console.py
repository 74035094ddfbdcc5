"""The console's figures: startup, the cost of a refresh with many partitions, the tail.

Run from the repository root (it starts and stops its own clusters in a temporary
directory and asserts nothing):

    python benchmarks/console.py              # everything
    python benchmarks/console.py --partitions 500 --records 200000

1. `kraftboard ui` as a real process in a pseudo-terminal, on a warm venv: seconds
   until the screen shows a broker "online", attaching to a running 3-node cluster and
   starting one from nothing.
2. First paint in-process (headless Textual): from `run_test()` to the first frame,
   and to the first populated cluster view, on a running cluster.
3. One refresh with N partitions (single node): the snapshot fetch (wall time, on the
   UI's event loop but awaiting the network) and the UI-thread work of rendering it
   (diff, histories, table updates) for the cluster, topics and topic-detail views.
4. The tail: the CPU time of appending a batch of 5,000 records to the Line-API log and
   drawing the frame, up to --records, with its ring buffer of 100,000.
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
from tui.widgets.record_log import Record, RecordLog  # noqa: E402

SIZE = (140, 40)
ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=]*[A-Za-z~]")  # cursor moves and colours between cells
TAIL_BATCH = 5000


def console_process_until_online(data_dir: Path, port: int, home: Path) -> float:
    """Seconds from spawning `kraftboard ui` in a pty until it draws "online"."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_STATE_HOME": str(home / "state"), "TERM": "xterm-256color"}
    argv = [sys.executable, "-m", "broker", "ui", "--no-demo", "--data-dir", str(data_dir),
            "--port", str(port)]
    started = time.monotonic()
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(REPO)
        os.execve(sys.executable, argv, env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[1], SIZE[0], 0, 0))
    seen = b""
    try:
        while b"online" not in ESCAPES.sub(b"", seen[-65600:]):
            if time.monotonic() - started > 120:
                raise TimeoutError(f"the console did not show an online broker in 120 s: "
                                   f"{ESCAPES.sub(b'', seen)[-2000:]!r}")
            if select.select([fd], [], [], 1)[0]:
                try:
                    seen += os.read(fd, 65536)
                except OSError:  # the console ended
                    raise RuntimeError(f"the console ended: {seen[-2000:]!r}") from None
        return time.monotonic() - started
    finally:
        os.write(fd, b"q")
        deadline = time.monotonic() + 10
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        os.close(fd)


class TimedApp(KraftboardApp):
    """Records the UI-thread time of handling each snapshot, per view."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.render_seconds: list[tuple[str, float]] = []
        self.fetch_seconds: list[float] = []

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        started = time.perf_counter()
        super().on_snapshot_ready(message)
        view = type(self.visible_view()).__name__
        self.render_seconds.append((view, time.perf_counter() - started))
        self.fetch_seconds.append(message.snapshot.duration)


async def first_paint(bootstrap: str, home: Path) -> dict:
    app = TimedApp(ClusterSource(bootstrap), bootstrap, Settings(path=home / "c.yaml"))
    started = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        painted = time.perf_counter() - started
        while not app.render_seconds:
            await pilot.pause(0.01)
        return {"first frame s": round(painted, 3),
                "first populated cluster view s": round(time.perf_counter() - started, 3)}


async def refresh_cost(bootstrap: str, partitions: int, home: Path) -> dict:
    source = ClusterSource(bootstrap)
    await source.create_topic("wide", partitions, 1, {})
    await source.close()
    app = TimedApp(ClusterSource(bootstrap), bootstrap, Settings(path=home / "c.yaml"),
                   refresh_interval=0.2)
    figures = {}
    async with app.run_test(size=SIZE) as pilot:
        for view, keys in (("cluster", []), ("topics", ["2"]), ("topic detail", ["enter"])):
            await pilot.press(*keys)
            app.render_seconds.clear()
            while len(app.render_seconds) < 6:
                await pilot.pause(0.05)
            first, *steady = [s for _, s in app.render_seconds]
            figures[view] = {"first render ms": round(first * 1000, 1),
                             "refresh render ms (median)": round(
                                 statistics.median(steady) * 1000, 1)}
        figures["snapshot fetch ms (median)"] = round(statistics.median(app.fetch_seconds) * 1000)
    return figures


async def tail_cost(total: int, home: Path) -> dict:
    app = KraftboardApp(ClusterSource("127.0.0.1:1"), "tail", Settings(path=home / "c.yaml"),
                        refresh_interval=3600)
    value = json.dumps({"order": 1, "customer": "customer-01", "amount": 12.5}).encode()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        log = app.screen.query_one(RecordLog)
        frames = []
        for start in range(0, total, TAIL_BATCH):
            batch = [Record(i % 3, i, 0, b"customer-01", value) for i in
                     range(start, start + TAIL_BATCH)]
            began = time.process_time()  # CPU time: pilot.pause() also idles
            log.append(batch)
            await pilot.pause()  # the frame is drawn
            frames.append(time.process_time() - began)
        return {"records": total, "buffered": len(log.records),
                "append + frame, CPU ms (median)": round(statistics.median(frames) * 1000, 2),
                "append + frame, CPU ms (max)": round(max(frames) * 1000, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=2000)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="kraftboard-console-bench-") as tmp:
        home = Path(tmp)
        cold_dir = home / "cold"
        port = free_port_range(3)
        results["kraftboard ui, starting the cluster, s"] = round(
            console_process_until_online(cold_dir, port, home), 2)
        try:
            results["kraftboard ui, attaching to the running cluster, s"] = round(
                console_process_until_online(cold_dir, port, home), 2)
            bootstrap = f"127.0.0.1:{port}"
            results["first paint, in-process"] = asyncio.run(first_paint(bootstrap, home))
        finally:
            stop_cluster(cold_dir)
        wide_dir = home / "wide"
        cluster = start_cluster(wide_dir, brokers=1)
        try:
            results[f"one refresh, {args.partitions} partitions, 1 node"] = asyncio.run(
                refresh_cost(cluster.bootstrap(), args.partitions, home))
        finally:
            stop_cluster(wide_dir)
        results["tail"] = asyncio.run(tail_cost(args.records, home))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
