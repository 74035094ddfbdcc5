"""Node and topic configuration, with Apache Kafka's config names.

A node reads one YAML file. Every key is checked against the definitions below; an
unknown key, a value of the wrong type or out of range is refused with the file, the key
and the reason, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml


class ConfigError(Exception):
    """A configuration that cannot be used; the message says where and why."""


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type | tuple[type, ...]
    default: Any
    doc: str
    check: Callable[[Any], str | None] | None = None  # returns the reason a value is refused


def at_least(low: int) -> Callable[[Any], str | None]:
    return lambda v: None if v >= low else f"must be >= {low}"


def between(low: float, high: float) -> Callable[[Any], str | None]:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high}"


def one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _roles(value: Any) -> str | None:
    if not value or any(r not in ("broker", "controller") for r in value):
        return "must be a list of 'broker' and/or 'controller'"
    return None


def _listeners(value: Any) -> str | None:
    try:
        parse_listener(value)
    except ValueError as exc:
        return str(exc)
    return None


def _cleanup_policy(value: Any) -> str | None:
    parts = [p.strip() for p in str(value).split(",")]
    if not parts or any(p not in ("delete", "compact") for p in parts):
        return "must be 'delete', 'compact' or 'compact,delete'"
    return None


def _voters(value: Any) -> str | None:
    try:
        parse_voters(value)
    except ValueError as exc:
        return str(exc)
    return None


def parse_voters(entries: list[str]) -> dict[int, tuple[str, int]]:
    """`controller.quorum.voters` entries `ID@HOST:PORT` -> {id: (host, port)}."""
    voters: dict[int, tuple[str, int]] = {}
    for entry in entries:
        if not entry:
            continue
        node_id, at, address = str(entry).partition("@")
        host, colon, port = address.rpartition(":")
        if (not at or not colon or not host or not node_id.strip().isdigit()
                or not port.isdigit() or not 0 < int(port) < 65536):
            raise ValueError(f"entry {entry!r} must look like ID@HOST:PORT")
        if int(node_id) in voters:
            raise ValueError(f"node {int(node_id)} is listed twice")
        voters[int(node_id)] = (host.strip(), int(port))
    return voters


def parse_listener(value: str) -> tuple[str, int]:
    """`PLAINTEXT://host:port` (or `host:port`) -> (host, port)."""
    text = str(value).split(",")[0].strip()
    if "://" in text:
        scheme, text = text.split("://", 1)
        if scheme.upper() != "PLAINTEXT":
            raise ValueError(f"only PLAINTEXT listeners are supported, not {scheme}")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must look like PLAINTEXT://host:port")
    return host or "0.0.0.0", int(port)


# Broker settings. Defaults are Apache Kafka's unless the comment says otherwise.
NODE_SETTINGS = {s.name: s for s in [
    Setting("node.id", int, None, "this node's id, unique in the cluster", at_least(0)),
    Setting("process.roles", list, ["broker", "controller"], "broker, controller or both", _roles),
    Setting("listeners", str, "PLAINTEXT://127.0.0.1:9092", "where clients connect", _listeners),
    Setting("advertised.listeners", str, None, "the address given to clients (defaults to listeners)",
            _listeners),
    Setting("log.dirs", str, None, "the node's data directory"),
    Setting("num.partitions", int, 1, "partitions of an auto-created topic", at_least(1)),
    Setting("default.replication.factor", int, 1, "replicas of an auto-created topic", at_least(1)),
    Setting("min.insync.replicas", int, 1, "default for topics", at_least(1)),
    Setting("auto.create.topics.enable", bool, True, "create a topic on Metadata or Produce to it"),
    Setting("message.max.bytes", int, 1048588, "largest record batch a topic accepts", at_least(0)),
    Setting("socket.request.max.bytes", int, 104857600, "largest request frame", at_least(1)),
    Setting("log.retention.ms", int, 604800000, "default retention.ms (-1: forever)", at_least(-1)),
    Setting("log.retention.bytes", int, -1, "default retention.bytes (-1: no limit)", at_least(-1)),
    Setting("log.retention.check.interval.ms", int, 300000, "how often retention runs", at_least(1)),
    Setting("log.cleanup.policy", str, "delete", "default cleanup.policy", _cleanup_policy),
    Setting("log.flush.interval.messages", int, 9223372036854775807,
            "1 makes every commit fsync (SQLite synchronous=FULL); durability otherwise "
            "comes from replication, as in Kafka", at_least(1)),
    Setting("offsets.topic.num.partitions", int, 50, "partitions of __consumer_offsets", at_least(1)),
    Setting("offsets.topic.replication.factor", int, 3,
            "replicas of __consumer_offsets, at most the number of controller quorum voters",
            at_least(1)),
    Setting("offsets.commit.timeout.ms", int, 5000,
            "how long an offset commit waits for every in-sync replica", at_least(1)),
    Setting("offset.metadata.max.bytes", int, 4096, "largest metadata string of a committed offset",
            at_least(0)),
    Setting("group.min.session.timeout.ms", int, 6000, "shortest session timeout a member may ask for",
            at_least(1)),
    Setting("group.max.session.timeout.ms", int, 1800000,
            "longest session timeout a member may ask for", at_least(1)),
    Setting("log.cleaner.backoff.ms", int, 15000, "how often compacted logs are checked for cleaning",
            at_least(1)),
    Setting("log.cleaner.min.cleanable.ratio", float, 0.5, "default min.cleanable.dirty.ratio",
            between(0, 1)),
    Setting("log.cleaner.delete.retention.ms", int, 86400000, "default delete.retention.ms",
            at_least(0)),
    Setting("broker.heartbeat.interval.ms", int, 2000, "how often a broker heartbeats to the controller",
            at_least(1)),
    Setting("broker.session.timeout.ms", int, 9000,
            "a broker silent this long is fenced and loses its leaderships", at_least(1)),
    Setting("replica.lag.time.max.ms", int, 30000,
            "a follower not caught up for this long leaves the ISR", at_least(1)),
    Setting("replica.fetch.wait.max.ms", int, 500, "a follower fetch's max_wait_ms", at_least(0)),
    Setting("unclean.leader.election.enable", bool, False,
            "default for topics: elect an out-of-sync replica rather than none"),
    Setting("auto.leader.rebalance.enable", bool, True,
            "move leadership back to preferred replicas"),
    Setting("leader.imbalance.check.interval.seconds", int, 300,
            "how often leadership is rebalanced", at_least(1)),
    Setting("leader.imbalance.per.broker.percentage", int, 10,
            "accepted for compatibility; as Kafka's KRaft controller, every partition whose "
            "preferred replica can lead is rebalanced", at_least(0)),
    Setting("controller.quorum.voters", list, [],
            "the metadata quorum's voters, ID@HOST:PORT each (empty: this node alone)", _voters),
    Setting("controller.quorum.election.timeout.ms", int, 1000,
            "a voter that hears of no leader this long stands for election", at_least(1)),
    Setting("controller.quorum.fetch.timeout.ms", int, 2000,
            "a follower that cannot fetch from its leader this long stands for election",
            at_least(1)),
    Setting("controller.quorum.election.backoff.max.ms", int, 1000,
            "the longest random wait before standing again after a lost election", at_least(0)),
    Setting("controller.quorum.request.timeout.ms", int, 2000,
            "how long a quorum request waits for its answer", at_least(1)),
    Setting("transactional.id.expiration.ms", int, 604800000, "producer id expiry", at_least(1)),
    Setting("group.initial.rebalance.delay.ms", int, 3000, "wait for more members", at_least(0)),
]}

# Topic settings a client can set per topic (CreateTopics, AlterConfigs).
TOPIC_SETTINGS = {s.name: s for s in [
    Setting("retention.ms", int, None, "delete batches older than this (-1: forever)", at_least(-1)),
    Setting("retention.bytes", int, None, "delete the oldest batches past this size", at_least(-1)),
    Setting("cleanup.policy", str, None, "delete, compact or both", _cleanup_policy),
    Setting("max.message.bytes", int, None, "largest record batch accepted", at_least(0)),
    Setting("min.insync.replicas", int, None, "replicas an acks=all write needs", at_least(1)),
    Setting("message.timestamp.type", str, "CreateTime", "CreateTime or LogAppendTime",
            one_of("CreateTime", "LogAppendTime")),
    Setting("segment.bytes", int, 1073741824, "accepted for compatibility", at_least(14)),
    Setting("segment.ms", int, 604800000, "accepted for compatibility", at_least(1)),
    Setting("delete.retention.ms", int, None, "how long tombstones survive compaction",
            at_least(0)),
    Setting("min.cleanable.dirty.ratio", float, None,
            "compact once this share of the log is new since the last cleaning", between(0, 1)),
    Setting("unclean.leader.election.enable", bool, False, "elect an out-of-sync replica",
            None),
]}

# Topic settings whose default is a broker setting.
TOPIC_DEFAULT_FROM_NODE = {
    "retention.ms": "log.retention.ms",
    "retention.bytes": "log.retention.bytes",
    "cleanup.policy": "log.cleanup.policy",
    "max.message.bytes": "message.max.bytes",
    "min.insync.replicas": "min.insync.replicas",
    "unclean.leader.election.enable": "unclean.leader.election.enable",
    "delete.retention.ms": "log.cleaner.delete.retention.ms",
    "min.cleanable.dirty.ratio": "log.cleaner.min.cleanable.ratio",
}


def coerce(setting: Setting, value: Any) -> Any:
    """Turn a YAML or wire value into the setting's type, or raise ValueError with why."""
    kind = setting.kind
    if kind is bool:
        if isinstance(value, bool):
            result = value
        elif str(value).lower() in ("true", "false"):
            result = str(value).lower() == "true"
        else:
            raise ValueError("must be true or false")
    elif kind is int:
        if isinstance(value, bool):
            raise ValueError("must be an integer")
        try:
            result = int(str(value).strip())
        except ValueError:
            raise ValueError(f"must be an integer, not {value!r}") from None
    elif kind is float:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            result = float(str(value).strip())
        except ValueError:
            raise ValueError(f"must be a number, not {value!r}") from None
    elif kind is list:
        result = value if isinstance(value, list) else [p.strip() for p in str(value).split(",")]
    else:
        result = str(value)
    if setting.check is not None:
        reason = setting.check(result)
        if reason:
            raise ValueError(reason)
    return result


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file of config names to values (an empty file is an empty mapping)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of Kafka config names to values")
    return raw


def unknown_key_reason(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return "unknown setting" + (f" (did you mean {close[0]!r}?)" if close else "")


def validate_topic_configs(configs: dict[str, Any]) -> dict[str, Any]:
    """Check topic-level configs from a client. Raises ConfigError naming the key."""
    result = {}
    for key, value in configs.items():
        setting = TOPIC_SETTINGS.get(key)
        if setting is None:
            raise ConfigError(f"{key}: {unknown_key_reason(key, TOPIC_SETTINGS)}")
        try:
            result[key] = coerce(setting, value)
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from None
    return result


@dataclass
class NodeConfig:
    values: dict[str, Any]
    explicit: frozenset[str] = frozenset()  # keys the file set, as opposed to defaults
    path: Path | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def node_id(self) -> int:
        return self.values["node.id"]

    @property
    def data_dir(self) -> Path:
        return Path(self.values["log.dirs"])

    @property
    def is_controller(self) -> bool:
        return "controller" in self.values["process.roles"]

    @property
    def voters(self) -> dict[int, tuple[str, int]]:
        """The quorum's voters; a controller with none configured is the quorum alone."""
        voters = parse_voters(self.values["controller.quorum.voters"])
        if not voters and self.is_controller:
            return {self.node_id: self.advertised_address}
        return voters

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_listener(self.values["listeners"])

    @property
    def advertised_address(self) -> tuple[str, int]:
        host, port = parse_listener(self.values["advertised.listeners"] or self.values["listeners"])
        return ("127.0.0.1" if host in ("0.0.0.0", "") else host), port

    def topic_default(self, key: str) -> Any:
        node_key = TOPIC_DEFAULT_FROM_NODE.get(key)
        return self.values[node_key] if node_key else TOPIC_SETTINGS[key].default

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "<config>") -> "NodeConfig":
        values = {name: s.default for name, s in NODE_SETTINGS.items()}
        for key, value in raw.items():
            setting = NODE_SETTINGS.get(str(key))
            if setting is None:
                raise ConfigError(f"{source}: {key}: {unknown_key_reason(str(key), NODE_SETTINGS)}")
            try:
                values[key] = coerce(setting, value)
            except ValueError as exc:
                raise ConfigError(f"{source}: {key}: {exc}") from None
        for required in ("node.id", "log.dirs"):
            if values[required] is None:
                raise ConfigError(f"{source}: {required}: is required ({NODE_SETTINGS[required].doc})")
        config = cls(values, frozenset(raw))
        config._check_quorum_role(source)
        return config

    def _check_quorum_role(self, source: str) -> None:
        voters = parse_voters(self.values["controller.quorum.voters"])
        if self.is_controller and voters and self.node_id not in voters:
            raise ConfigError(f"{source}: controller.quorum.voters: node {self.node_id} has the "
                              f"controller role but is not one of the voters {sorted(voters)}")
        if not self.is_controller and not voters:
            raise ConfigError(f"{source}: controller.quorum.voters: a broker-only node needs "
                              "the controllers' addresses")
        if not self.is_controller and self.node_id in voters:
            raise ConfigError(f"{source}: controller.quorum.voters: node {self.node_id} is "
                              "listed as a voter but process.roles lacks 'controller'")

    @classmethod
    def load(cls, path: str | Path) -> "NodeConfig":
        path = Path(path)
        config = cls.from_dict(read_yaml_mapping(path), source=str(path))
        config.path = path
        # A relative log.dirs is relative to the config file, so a cluster directory can move.
        if not Path(config.values["log.dirs"]).is_absolute():
            config.values["log.dirs"] = str((path.parent / config.values["log.dirs"]).resolve())
        return config
