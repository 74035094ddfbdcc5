"""`kraftboard cluster` end to end: the real CLI, supervisor and node processes."""
from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time

import pytest

from conftest import REPO, Cluster, accepts, alive, kraftboard, wait_until

@pytest.fixture
def cluster(tmp_path):
    cluster = Cluster(tmp_path / "cluster")
    yield cluster
    cluster.cleanup()


def start(cluster: Cluster) -> subprocess.CompletedProcess:
    result = cluster.start()
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def running(cluster):
    start(cluster)
    return cluster


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One cluster for the tests that only look at it, so the file stays fast."""
    cluster = Cluster(tmp_path_factory.mktemp("shared") / "cluster")
    cluster.started = start(cluster)
    yield cluster
    cluster.cleanup()


def test_start_detached_prints_how_to_connect(shared):
    bootstrap = f"127.0.0.1:{shared.port}"
    assert f"bootstrap  {bootstrap}" in shared.started.stdout
    assert f"kcat -b {bootstrap}" in shared.started.stdout
    assert f'bootstrap_servers="{bootstrap}"' in shared.started.stdout
    assert alive(shared.supervisor_pid())


def test_status_json(shared):
    # The controller is what the cluster says over the Kafka protocol, once it has elected one.
    assert wait_until(lambda: shared.status()["controller"] == 1), shared.status()
    status = shared.status()
    node = status["nodes"][0]
    assert status == {"bootstrap": f"127.0.0.1:{shared.port}", "controller": 1,
                      "nodes": [{"id": 1, "host": "127.0.0.1", "port": shared.port,
                                 "pid": node["pid"], "state": "running", "controller": True}]}
    assert alive(node["pid"])
    assert accepts(shared.port)


def test_status_table(shared):
    result = shared.cli("status")
    assert result.returncode == 0, result.stderr
    assert f"1   127.0.0.1:{shared.port}  {shared.node()['pid']}  running" in result.stdout


def test_control_socket_is_private(shared):
    mode = os.stat(shared.socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_start_again_reports_the_running_cluster(shared):
    supervisor = shared.supervisor_pid()
    result = start(shared)
    assert "already running" in result.stdout
    assert "running" in result.stdout.split("already running", 1)[1]
    assert shared.supervisor_pid() == supervisor


def test_kill_then_restart(running):
    first = running.node()["pid"]
    result = running.cli("kill", "1")
    assert result.returncode == 0, result.stderr
    node = running.node()
    assert (node["state"], node["pid"]) == ("killed", None)
    assert not alive(first)
    assert not accepts(running.port)

    result = running.cli("restart", "1")
    assert result.returncode == 0, result.stderr
    second = running.node()
    assert second["state"] == "running"
    assert second["pid"] != first and alive(second["pid"])
    assert accepts(running.port)

    # Restarting a running node stops it first.
    result = running.cli("restart", "1")
    assert result.returncode == 0, result.stderr
    third = running.node()
    assert third["state"] == "running" and third["pid"] != second["pid"]
    assert not alive(second["pid"])
    assert accepts(running.port)


def test_a_node_that_dies_on_its_own_is_noticed_not_restarted(running):
    pid = running.node()["pid"]
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: running.node()["state"] == "exited"), running.status()
    time.sleep(0.5)
    assert running.node() == {"id": 1, "host": "127.0.0.1", "port": running.port,
                              "pid": None, "state": "exited", "controller": False}
    assert "exited (" in running.cli("status").stdout

    # restart reads node.yaml again: a bad edit is refused, a good one is taken.
    path = running.dir / "node-1" / "node.yaml"
    good = path.read_text()
    path.write_text(good + "log.retention.ms: soon\n")
    result = running.cli("restart", "1")
    assert result.returncode == 1
    assert f"refused config: {path}: log.retention.ms: must be an integer" in result.stderr
    path.write_text(good)
    assert running.cli("restart", "1").returncode == 0
    assert running.node()["state"] == "running"


@pytest.mark.parametrize("command", ["kill", "restart", "stop", "pause", "resume", "isolate",
                                     "heal"])
def test_unknown_node_id(shared, command):
    result = shared.cli(command, "7")
    assert result.returncode == 2
    assert "no node 7" in result.stderr and "valid ids: 1" in result.stderr


def test_stop(running):
    supervisor, node = running.supervisor_pid(), running.node()["pid"]
    result = running.cli("stop")
    assert result.returncode == 0, result.stderr
    assert not running.socket.exists()
    assert not running.pid_file.exists()
    assert wait_until(lambda: not alive(supervisor))
    assert not alive(node)
    assert running.cli("status").returncode == 1


def test_a_whole_cluster_stops_with_its_controller_last_and_nobody_killed(tmp_path):
    """Every broker but the last hands its leaderships over; the last, with nobody left to
    take them, skips its controlled shutdown instead of waiting for a quorum it lacks.
    Each node ends on its SIGTERM, none needs the supervisor's SIGKILL."""
    cluster = Cluster(tmp_path / "cluster", brokers=3)
    try:
        assert cluster.start().returncode == 0
        assert wait_until(lambda: cluster.status()["controller"] is not None)
        controller = cluster.status()["controller"]
        assert cluster.cli("stop").returncode == 0
        logs = {i: (cluster.dir / f"node-{i}" / "node.log").read_text() for i in (1, 2, 3)}
        assert "no other broker is up to take over" in logs[controller], logs[controller]
        for node_id, text in logs.items():
            assert "stopping anyway" not in text, text
            if node_id != controller:
                assert f"broker {node_id} leads no partition now" in text, text
        assert "killing it" not in (cluster.dir / "supervisor.log").read_text()
    finally:
        cluster.cleanup()


def test_foreground_start_runs_until_sigterm(cluster):
    process = subprocess.Popen(
        [sys.executable, "-m", "broker", "cluster", "start", "--brokers", "1",
         "--port", str(cluster.port), "--data-dir", str(cluster.dir)],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    cluster.pids.add(process.pid)
    try:
        banner = process.stdout.readline() + process.stdout.readline()
        assert f"bootstrap  127.0.0.1:{cluster.port}" in banner
        node = cluster.node()["pid"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        process.kill()
        process.stdout.close()
    assert not cluster.socket.exists() and not cluster.pid_file.exists()
    assert not alive(node)


@pytest.mark.parametrize("command", [["status"], ["stop"], ["kill", "1"]])
def test_no_cluster_running(tmp_path, command):
    result = kraftboard("cluster", *command, "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert f"no cluster running in {tmp_path}; start one with `kraftboard cluster start" \
        in result.stderr


def test_default_data_dir_follows_xdg_data_home(tmp_path):
    result = kraftboard("cluster", "status", env={**os.environ, "XDG_DATA_HOME": str(tmp_path)})
    assert result.returncode == 1
    assert f"no cluster running in {tmp_path / 'kraftboard' / 'cluster'};" in result.stderr


@pytest.mark.parametrize("line, key, reason", [
    ("num.partition: 3", "num.partition", "unknown setting (did you mean 'num.partitions'?)"),
    ("min.insync.replicas: 0", "min.insync.replicas", "must be >= 1"),
    ("message.max.bytes: 3000000000", "message.max.bytes", "3000000000 is not a number of type INT"),
    ("offsets.topic.replication.factor: 40000", "offsets.topic.replication.factor",
     "40000 is not a number of type SHORT"),
])
def test_bad_node_yaml_is_refused_before_anything_starts(cluster, line, key, reason):
    path = cluster.write_node_yaml(f"node.id: 1\nlog.dirs: .\n{line}\n")
    result = cluster.start()
    assert result.returncode == 2
    assert f"{path}: {key}: {reason}" in result.stderr
    assert not cluster.pid_file.exists() and not cluster.socket.exists()


def test_busy_port_is_refused(cluster):
    with socket.create_server(("127.0.0.1", cluster.port)):
        result = cluster.start()
    assert result.returncode == 1
    assert f"port {cluster.port} (node 1) is already in use" in result.stderr
    assert "--port" in result.stderr
    assert not cluster.pid_file.exists()
    # Nothing was written, so a retry with another --port is not stuck with this one.
    assert not (cluster.dir / "node-1" / "node.yaml").exists()


def test_a_node_that_cannot_start_shows_its_log(cluster):
    path = cluster.write_node_yaml(
        f"node.id: 1\nlisteners: PLAINTEXT://127.0.0.1:{cluster.port}\nlog.dirs: data\n")
    (path.parent / "data").write_text("a file where the data directory should be\n")
    result = cluster.start()
    assert result.returncode == 1
    assert "node 1 ended (exited, code 1) before accepting connections" in result.stderr
    assert "Its log ends with:" in result.stderr
    assert "node 1 cannot start" in result.stderr
    assert str(path.parent / "node.log") in result.stderr
    assert not cluster.pid_file.exists() and not cluster.socket.exists()


def test_stale_socket_is_replaced(cluster):
    cluster.dir.mkdir()
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(cluster.socket))  # bound, never listening: what a crash leaves
    result = cluster.start()
    assert result.returncode == 0, result.stderr
    assert cluster.status()["nodes"][0]["state"] == "running"
    assert stat.S_IMODE(os.stat(cluster.socket).st_mode) == 0o600
