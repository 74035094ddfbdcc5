"""Shared fixtures: a real node started as its own process on a free port."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"node exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"node did not listen on {port} within {timeout} s")


class NodeProcess:
    """One `kraftboard broker` process with its YAML file and data directory."""

    def __init__(self, directory: Path, **settings):
        self.directory = directory
        self.port = free_port()
        self.config_path = directory / "node.yaml"
        self.settings = {"node.id": 1, "listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
                         "log.dirs": str(directory / "data"), **settings}
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "NodeProcess":
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.settings))
        self.log = open(self.directory / "node.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "broker", "broker", "--config", str(self.config_path)],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None:
            self.log.close()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return (self.directory / "node.log").read_text(errors="replace")


@pytest.fixture
def node_factory(tmp_path):
    """Start nodes with extra settings: `node_factory(**{"num.partitions": 3})`."""
    started = []

    def start(name: str = "node", **settings) -> NodeProcess:
        node = NodeProcess(tmp_path / name, **settings).start()
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


@pytest.fixture
def node(node_factory) -> NodeProcess:
    return node_factory()


@pytest.fixture(scope="module")
def shared_node(tmp_path_factory):
    """One node for a whole test module, for tests that only need a working broker."""
    node = NodeProcess(tmp_path_factory.mktemp("shared")).start()
    yield node
    node.stop()


# Quorum timeouts for tests: fast failover, still well above a loaded machine's hiccups.
FAST_QUORUM = {
    "controller.quorum.election.timeout.ms": 300,
    "controller.quorum.fetch.timeout.ms": 600,
    "controller.quorum.election.backoff.max.ms": 300,
    "controller.quorum.request.timeout.ms": 1000,
}


class QuorumCluster:
    """Nodes 1..size as processes, every one a voter listed in every config."""

    def __init__(self, directory: Path, size: int, **settings):
        self.directory = directory
        self.nodes = {i: NodeProcess(directory / f"node-{i}", **{"node.id": i, **FAST_QUORUM,
                                                                   **settings})
                      for i in range(1, size + 1)}
        self.voters = ",".join(f"{i}@127.0.0.1:{n.port}" for i, n in self.nodes.items())
        for node in self.nodes.values():
            node.settings["controller.quorum.voters"] = self.voters

    def start(self) -> "QuorumCluster":
        for node in self.nodes.values():
            node.start()
        return self

    def add_observer(self, node_id: int, **settings) -> NodeProcess:
        """A broker-only node: it follows the metadata log without a vote."""
        node = self.nodes[node_id] = NodeProcess(
            self.directory / f"node-{node_id}", **{"node.id": node_id, **FAST_QUORUM,
                                                   "process.roles": ["broker"],
                                                   "controller.quorum.voters": self.voters,
                                                   **settings})
        return node.start()

    def kill(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.kill()
        node.log.close()

    def restart(self, node_id: int) -> NodeProcess:
        return self.nodes[node_id].start()

    def stop(self) -> None:
        running = [node for node in self.nodes.values() if node.alive()]
        # All at once: each hands its leaderships over while the quorum still stands, where
        # the last of a one-by-one stop would wait in vain for a controller.
        for node in running:
            node.process.terminate()
        for node in running:
            node.stop()


@pytest.fixture
def quorum_cluster(tmp_path):
    """Start a cluster of quorum voters: `quorum_cluster(3)`."""
    clusters = []

    def start(size: int = 3, **settings) -> QuorumCluster:
        cluster = QuorumCluster(tmp_path / f"cluster-{len(clusters)}", size, **settings).start()
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        cluster.stop()


# -- a local cluster driven through the `kraftboard cluster` CLI ------------------------


def free_port_range(count: int = 1) -> int:
    """The first of `count` consecutive free ports; random, so parallel runs rarely collide."""
    for _ in range(100):
        first = random.randint(20000, 60000 - count)
        try:
            for port in range(first, first + count):
                socket.create_server(("127.0.0.1", port)).close()
        except OSError:
            continue
        return first
    raise RuntimeError(f"no {count} free consecutive ports found")


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    return process_state(pid) not in (None, "Z")


def process_state(pid: int) -> str | None:
    """The state letter in /proc/PID/stat (R, S, T for stopped, Z ...), None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def wait_until(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def kraftboard(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


class Cluster:
    """A cluster in a temporary directory; remembers every pid it saw, for cleanup."""

    def __init__(self, data_dir: Path, brokers: int = 1):
        self.dir = data_dir
        self.brokers = brokers
        self.port = free_port_range(brokers)
        self.pids: set[int] = set()
        self.started: subprocess.CompletedProcess | None = None  # set by the shared fixture

    @property
    def socket(self) -> Path:
        return self.dir / "supervisor.sock"

    @property
    def pid_file(self) -> Path:
        return self.dir / "supervisor.pid"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return kraftboard("cluster", *args, "--data-dir", str(self.dir))

    def start(self) -> subprocess.CompletedProcess:
        result = self.cli("start", "--detach", "--brokers", str(self.brokers),
                          "--port", str(self.port))
        if self.pid_file.exists():
            self.pids.add(self.supervisor_pid())
        return result

    def supervisor_pid(self) -> int:
        return int(self.pid_file.read_text())

    def status(self) -> dict:
        result = self.cli("status", "--json")
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        self.pids.update(node["pid"] for node in status["nodes"] if node["pid"])
        return status

    def node(self, node_id: int = 1) -> dict:
        return self.status()["nodes"][node_id - 1]

    def write_node_yaml(self, text: str) -> Path:
        path = self.dir / "node-1" / "node.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(text)
        return path

    def cleanup(self) -> None:
        if self.socket.exists():
            self.cli("stop")
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
