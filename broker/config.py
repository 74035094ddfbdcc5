"""Node and topic configuration, with Apache Kafka's config names.

A node reads one YAML file. Every key is checked against the definitions below; an
unknown key, a value of the wrong type or out of range is refused with the file, the key
and the reason, so a typo never silently falls back to a default.
"""
from __future__ import annotations

import difflib
import ssl
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml


class ConfigError(Exception):
    """A configuration that cannot be used; the message says where and why."""


class ConfigType(IntEnum):
    """Kafka's type of a setting (its ConfigDef.Type), as DescribeConfigs reports it."""
    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7
    PASSWORD = 9  # sensitive: its value is never shown


KIND_TYPES = {bool: ConfigType.BOOLEAN, str: ConfigType.STRING, int: ConfigType.INT,
              float: ConfigType.DOUBLE, list: ConfigType.LIST}
INTEGER_BITS = {ConfigType.SHORT: 16, ConfigType.INT: 32, ConfigType.LONG: 64}


@dataclass(frozen=True)
class Setting:
    name: str
    kind: type | tuple[type, ...]
    default: Any
    doc: str
    check: Callable[[Any], str | None] | None = None  # returns the reason a value is refused
    kafka_type: ConfigType | None = None  # when Kafka's is not the one `kind` maps to

    @property
    def config_type(self) -> ConfigType:
        return self.kafka_type or KIND_TYPES[self.kind]

    @property
    def sensitive(self) -> bool:
        return self.config_type is ConfigType.PASSWORD


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
        parse_listeners(value)
    except ValueError as exc:
        return str(exc)
    return None


def _mechanisms(value: Any) -> str | None:
    unknown = [m for m in value if m not in SASL_MECHANISMS]
    if not value or unknown:
        return (f"{', '.join(map(str, unknown)) or 'an empty list'} is not supported; "
                f"kraftboard offers {', '.join(SASL_MECHANISMS)}")
    return None


def _users(value: Any) -> str | None:
    if not all(isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()):
        return "must map user names to passwords, both non-empty strings"
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


# Kafka's security protocols. As with Kafka's default `listener.security.protocol.map`,
# a listener's name is its security protocol.
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
CLIENT_AUTH = {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL,
               "required": ssl.CERT_REQUIRED}


@dataclass(frozen=True)
class Endpoint:
    """One listener: `NAME://host:port`, its name being its security protocol."""
    name: str
    host: str
    port: int

    @property
    def uses_tls(self) -> bool:
        return self.name in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.name.startswith("SASL_")


def parse_listeners(value: str) -> list[Endpoint]:
    """`PLAINTEXT://host:port,SASL_SSL://host:port` (a bare `host:port` is PLAINTEXT)."""
    endpoints: list[Endpoint] = []
    for entry in str(value).split(","):
        text = entry.strip()
        name = "PLAINTEXT"
        if "://" in text:
            name, text = text.split("://", 1)
            name = name.strip().upper()
            if name not in SECURITY_PROTOCOLS:
                raise ValueError(f"{name} in {entry.strip()!r} is not a security protocol; "
                                 f"use one of {', '.join(SECURITY_PROTOCOLS)}")
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{entry.strip()!r} must look like PLAINTEXT://host:port")
        if any(e.name == name for e in endpoints):
            raise ValueError(f"listener {name} is listed twice")
        if any(e.port == int(port) for e in endpoints):
            raise ValueError(f"port {port} is used by two listeners")
        endpoints.append(Endpoint(name, host or "0.0.0.0", int(port)))
    return endpoints


# Broker settings. Defaults are Apache Kafka's unless the comment says otherwise.
NODE_SETTINGS = {s.name: s for s in [
    Setting("node.id", int, None, "this node's id, unique in the cluster", at_least(0)),
    Setting("process.roles", list, ["broker", "controller"], "broker, controller or both", _roles),
    Setting("listeners", str, "PLAINTEXT://127.0.0.1:9092",
            "where clients connect: NAME://host:port, comma-separated, NAME one of "
            + ", ".join(SECURITY_PROTOCOLS), _listeners),
    Setting("advertised.listeners", str, None,
            "the addresses given to clients, by listener name (defaults to listeners)",
            _listeners),
    Setting("inter.broker.listener.name", str, "PLAINTEXT",
            "the listener peers talk to; it must be a PLAINTEXT listener"),
    Setting("ssl.keystore.type", str, "PEM", "only PEM: a file with the key and certificate chain",
            one_of("PEM")),
    Setting("ssl.keystore.location", str, None,
            "PEM file with this node's private key and certificate chain (SSL listeners)"),
    Setting("ssl.key.password", str, None, "the password of an encrypted private key",
            kafka_type=ConfigType.PASSWORD),
    Setting("ssl.truststore.type", str, "PEM", "only PEM: CA certificates", one_of("PEM")),
    Setting("ssl.truststore.location", str, None,
            "PEM file with the CA certificates that sign client certificates"),
    Setting("ssl.client.auth", str, "none", "none, requested or required (mutual TLS)",
            one_of(*CLIENT_AUTH)),
    Setting("sasl.enabled.mechanisms", list, list(SASL_MECHANISMS),
            "mechanisms SASL listeners offer: " + ", ".join(SASL_MECHANISMS), _mechanisms),
    Setting("sasl.users", dict, {},
            "kraftboard's own key, not Kafka's: user name -> password for SASL listeners",
            _users, kafka_type=ConfigType.PASSWORD),
    Setting("log.dirs", str, None, "the node's data directory"),
    Setting("num.partitions", int, 1, "partitions of an auto-created topic", at_least(1)),
    Setting("default.replication.factor", int, 1, "replicas of an auto-created topic", at_least(1)),
    Setting("min.insync.replicas", int, 1, "default for topics", at_least(1)),
    Setting("auto.create.topics.enable", bool, True, "create a topic on Metadata or Produce to it"),
    Setting("message.max.bytes", int, 1048588, "largest record batch a topic accepts", at_least(0)),
    Setting("socket.request.max.bytes", int, 104857600, "largest request frame", at_least(1)),
    Setting("log.retention.ms", int, 604800000, "default retention.ms (-1: forever)", at_least(-1),
            kafka_type=ConfigType.LONG),
    Setting("log.retention.bytes", int, -1, "default retention.bytes (-1: no limit)", at_least(-1),
            kafka_type=ConfigType.LONG),
    Setting("log.retention.check.interval.ms", int, 300000, "how often retention runs", at_least(1),
            kafka_type=ConfigType.LONG),
    Setting("log.cleanup.policy", str, "delete", "default cleanup.policy", _cleanup_policy,
            kafka_type=ConfigType.LIST),
    Setting("log.flush.interval.messages", int, 9223372036854775807,
            "1 makes every commit fsync (SQLite synchronous=FULL); durability otherwise "
            "comes from replication, as in Kafka", at_least(1), kafka_type=ConfigType.LONG),
    Setting("offsets.topic.num.partitions", int, 50, "partitions of __consumer_offsets", at_least(1)),
    Setting("offsets.topic.replication.factor", int, 3,
            "replicas of __consumer_offsets, at most the number of controller quorum voters",
            at_least(1), kafka_type=ConfigType.SHORT),
    Setting("offsets.retention.minutes", int, 10080,
            "how long a group's committed offsets outlive its last member (or, without "
            "members, their commit)", at_least(1)),
    Setting("offsets.retention.check.interval.ms", int, 600000,
            "how often expired committed offsets are removed", at_least(1),
            kafka_type=ConfigType.LONG),
    Setting("offsets.commit.timeout.ms", int, 5000,
            "how long an offset commit waits for every in-sync replica", at_least(1)),
    Setting("offset.metadata.max.bytes", int, 4096, "largest metadata string of a committed offset",
            at_least(0)),
    Setting("group.min.session.timeout.ms", int, 6000, "shortest session timeout a member may ask for",
            at_least(1)),
    Setting("group.max.session.timeout.ms", int, 1800000,
            "longest session timeout a member may ask for", at_least(1)),
    Setting("log.cleaner.backoff.ms", int, 15000, "how often compacted logs are checked for cleaning",
            at_least(1), kafka_type=ConfigType.LONG),
    Setting("log.cleaner.min.cleanable.ratio", float, 0.5, "default min.cleanable.dirty.ratio",
            between(0, 1)),
    Setting("log.cleaner.delete.retention.ms", int, 86400000, "default delete.retention.ms",
            at_least(0), kafka_type=ConfigType.LONG),
    Setting("broker.heartbeat.interval.ms", int, 2000, "how often a broker heartbeats to the controller",
            at_least(1)),
    Setting("broker.session.timeout.ms", int, 9000,
            "a broker silent this long is fenced and loses its leaderships", at_least(1)),
    Setting("replica.lag.time.max.ms", int, 30000,
            "a follower not caught up for this long leaves the ISR", at_least(1),
            kafka_type=ConfigType.LONG),
    Setting("replica.fetch.wait.max.ms", int, 500, "a follower fetch's max_wait_ms", at_least(0)),
    Setting("unclean.leader.election.enable", bool, False,
            "default for topics: elect an out-of-sync replica rather than none"),
    Setting("auto.leader.rebalance.enable", bool, True,
            "move leadership back to preferred replicas"),
    Setting("leader.imbalance.check.interval.seconds", int, 300,
            "how often leadership is rebalanced", at_least(1), kafka_type=ConfigType.LONG),
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

# Settings naming files; a relative path is relative to the config file.
PATH_KEYS = ("log.dirs", "ssl.keystore.location", "ssl.truststore.location")

# Topic settings a client can set per topic (CreateTopics, AlterConfigs).
TOPIC_SETTINGS = {s.name: s for s in [
    Setting("retention.ms", int, None, "delete batches older than this (-1: forever)", at_least(-1),
            kafka_type=ConfigType.LONG),
    Setting("retention.bytes", int, None, "delete the oldest batches past this size", at_least(-1),
            kafka_type=ConfigType.LONG),
    Setting("cleanup.policy", str, None, "delete, compact or both", _cleanup_policy,
            kafka_type=ConfigType.LIST),
    Setting("max.message.bytes", int, None, "largest record batch accepted", at_least(0)),
    Setting("min.insync.replicas", int, None, "replicas an acks=all write needs", at_least(1)),
    Setting("message.timestamp.type", str, "CreateTime", "CreateTime or LogAppendTime",
            one_of("CreateTime", "LogAppendTime")),
    Setting("segment.bytes", int, 1073741824, "accepted for compatibility", at_least(14)),
    Setting("segment.ms", int, 604800000, "accepted for compatibility", at_least(1),
            kafka_type=ConfigType.LONG),
    Setting("delete.retention.ms", int, None, "how long tombstones survive compaction",
            at_least(0), kafka_type=ConfigType.LONG),
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
        bits = INTEGER_BITS[setting.config_type]
        if not -(1 << bits - 1) <= result < 1 << bits - 1:  # Kafka parses it into a Java type
            raise ValueError(f"{result} is not a number of type {setting.config_type.name}")
    elif kind is float:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            result = float(str(value).strip())
        except ValueError:
            raise ValueError(f"must be a number, not {value!r}") from None
    elif kind is list:
        result = value if isinstance(value, list) else [p.strip() for p in str(value).split(",")]
    elif kind is dict:
        if not isinstance(value, dict):
            raise ValueError("must be a mapping")
        result = value
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
    def listeners(self) -> list[Endpoint]:
        return parse_listeners(self.values["listeners"])

    @property
    def advertised_listeners(self) -> dict[str, tuple[str, int]]:
        """Where clients reach each listener, by name (`advertised.listeners`, as in Kafka
        else `listeners`); a wildcard host is advertised as 127.0.0.1."""
        endpoints = parse_listeners(self.values["advertised.listeners"] or self.values["listeners"])
        return {e.name: ("127.0.0.1" if e.host in ("0.0.0.0", "") else e.host, e.port)
                for e in endpoints}

    @property
    def inter_broker_listener(self) -> str:
        return self.values["inter.broker.listener.name"]

    @property
    def listen_address(self) -> tuple[str, int]:
        """Where the inter-broker listener binds."""
        endpoint = next(e for e in self.listeners if e.name == self.inter_broker_listener)
        return endpoint.host, endpoint.port

    @property
    def advertised_address(self) -> tuple[str, int]:
        """Where peers reach this node: the inter-broker listener's advertised address."""
        return self.advertised_listeners[self.inter_broker_listener]

    @cached_property
    def tls_context(self) -> ssl.SSLContext | None:
        """The server side of the SSL and SASL_SSL listeners (None without any). A file
        that is missing, unreadable or not a matching key and certificate is refused
        with the key that names it."""
        if not any(e.uses_tls for e in self.listeners):
            return None
        source = self.path or "<config>"
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        password = self.values["ssl.key.password"]
        keystore = ("ssl.keystore.location", "a PEM private key and certificate chain (an "
                    "encrypted key needs ssl.key.password)",
                    lambda file: context.load_cert_chain(file, password=password))
        truststore = ("ssl.truststore.location", "PEM CA certificates",
                      context.load_verify_locations)
        for key, expected, load in (keystore, truststore):
            file = self.values[key]
            if file is None:
                continue
            try:
                Path(file).read_bytes()  # says "No such file" or "Permission denied" plainly
                load(file)
            except ssl.SSLError as exc:
                raise ConfigError(f"{source}: {key}: {file} is not {expected}: "
                                  f"{exc.reason or exc}") from None
            except OSError as exc:
                raise ConfigError(f"{source}: {key}: cannot read {file}: {exc.strerror}") from None
        context.verify_mode = CLIENT_AUTH[self.values["ssl.client.auth"]]
        return context

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
        config._check_listeners(source)
        return config

    def _check_listeners(self, source: str) -> None:
        names = [e.name for e in self.listeners]
        for name in self.advertised_listeners:
            if name not in names:
                raise ConfigError(f"{source}: advertised.listeners: {name} is not one of the "
                                  f"listeners ({', '.join(names)})")
        inter_broker = self.inter_broker_listener
        if inter_broker not in names:
            raise ConfigError(f"{source}: inter.broker.listener.name: no listener named "
                              f"{inter_broker} in listeners ({', '.join(names)})")
        if inter_broker != "PLAINTEXT":
            raise ConfigError(f"{source}: inter.broker.listener.name: {inter_broker} is not "
                              "supported; nodes talk to each other without TLS or SASL, on "
                              "a PLAINTEXT listener")
        if inter_broker not in self.advertised_listeners:
            raise ConfigError(f"{source}: advertised.listeners: must include the inter-broker "
                              f"listener {inter_broker}, which peers connect to")
        if any(e.uses_tls for e in self.listeners) and not self.values["ssl.keystore.location"]:
            raise ConfigError(f"{source}: ssl.keystore.location: is required by the SSL and "
                              "SASL_SSL listeners (a PEM file with the key and certificate chain)")
        if self.values["ssl.client.auth"] != "none" and not self.values["ssl.truststore.location"]:
            raise ConfigError(f"{source}: ssl.truststore.location: is required when "
                              "ssl.client.auth is requested or required")
        if any(e.uses_sasl for e in self.listeners) and not self.values["sasl.users"]:
            raise ConfigError(f"{source}: sasl.users: SASL listeners need at least one user "
                              "(user name: password)")

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
        # Relative paths are relative to the config file, so a cluster directory can move.
        for key in PATH_KEYS:
            value = config.values[key]
            if value is not None and not Path(value).is_absolute():
                config.values[key] = str((path.parent / value).resolve())
        config.tls_context  # noqa: B018  (refuses unusable TLS files now, not at the first client)
        return config
