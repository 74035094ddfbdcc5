"""Where a local cluster keeps its files, and the node configs the supervisor writes."""
from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from broker.cluster import ClusterError
from broker.config import ConfigError, NodeConfig

NODE_YAML = """\
# Node {id} of a local kraftboard cluster. Kafka config names; your edits are kept.
node.id: {id}
process.roles: [broker, controller]
listeners: PLAINTEXT://127.0.0.1:{port}
log.dirs: .            # relative to this file
default.replication.factor: {replication}
controller.quorum.voters: {voters}
# Local profile: faster failover than Kafka's defaults (1000, 2000, 1000 and 2000 ms)...
controller.quorum.election.timeout.ms: 300
controller.quorum.fetch.timeout.ms: 600
controller.quorum.election.backoff.max.ms: 300
controller.quorum.request.timeout.ms: 1000
# ... and for brokers (Kafka: heartbeat 2000, session 9000, replica lag 30000 ms).
broker.heartbeat.interval.ms: 200
broker.session.timeout.ms: 1000
replica.lag.time.max.ms: 2000
# ... for consumer groups (Kafka: 50 offsets partitions, first rebalance after 3000 ms) ...
offsets.topic.num.partitions: 10
group.initial.rebalance.delay.ms: 300
# ... and leadership goes back to preferred replicas within seconds (Kafka: every 300 s).
leader.imbalance.check.interval.seconds: 5
"""

# sun_path is 108 bytes on Linux, including the terminating NUL.
MAX_SOCKET_PATH = 107


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "kraftboard" / "cluster"


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def socket(self) -> Path:
        return self.root / "supervisor.sock"

    @property
    def pid_file(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def log(self) -> Path:
        return self.root / "supervisor.log"

    def node_config(self, index: int) -> Path:
        return self.root / f"node-{index}" / "node.yaml"


def prepare_nodes(layout: Layout, brokers: int, base_port: int) -> list[NodeConfig]:
    """Write the missing node.yaml files and return every node's validated config.

    Raises ConfigError for a bad file and ClusterError for a port that cannot be bound;
    then the files written by this call are removed again, so a retry with other
    options (say --port) writes them afresh.
    """
    if len(os.fsencode(layout.socket)) > MAX_SOCKET_PATH:
        raise ClusterError(f"{layout.root} is too long a path for the control socket; "
                           "choose a shorter --data-dir")
    layout.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    voters = ",".join(f"{i}@127.0.0.1:{base_port + i - 1}" for i in range(1, brokers + 1))
    try:
        for index in range(1, brokers + 1):
            path = layout.node_config(index)
            if not path.exists():
                path.parent.mkdir(exist_ok=True)
                path.write_text(NODE_YAML.format(id=index, port=base_port + index - 1,
                                                 replication=min(brokers, 3), voters=voters))
                written.append(path)
        configs = [NodeConfig.load(layout.node_config(i)) for i in range(1, brokers + 1)]
        _check_unique(configs)
        for config in configs:
            _check_port_free(config, fresh=config.path in written)
    except (ConfigError, ClusterError):
        for path in written:
            path.unlink()
        raise
    return configs


def _check_unique(configs: list[NodeConfig]) -> None:
    seen: dict[object, NodeConfig] = {}
    for config in configs:
        for key, value in (("node.id", config.node_id), ("listeners", config.listen_address)):
            other = seen.setdefault((key, value), config)
            if other is not config:
                raise ConfigError(f"{config.path}: {key}: same as in {other.path}; "
                                  "each node needs its own")


def _check_port_free(config: NodeConfig, fresh: bool) -> None:
    host, port = config.listen_address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        socket.create_server((host, port), family=family).close()
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise ClusterError(f"node {config.node_id} cannot listen on {host}:{port} "
                               f"({exc.strerror}); change listeners in {config.path}") from None
        remedy = ("start on other ports with --port" if fresh
                  else f"change listeners in {config.path}")
        raise ClusterError(f"port {port} (node {config.node_id}) is already in use. "
                           f"Stop what holds it (`ss -ltnp 'sport = :{port}'` shows it), "
                           f"or {remedy}.") from None
