"""Secured listeners: TLS and SASL with real clients, the console on them, and bad configs.

One node listens on PLAINTEXT, SASL_SSL, SSL and SASL_PLAINTEXT at once, with a test CA
made by trustme. Every client must see the broker at the address of the listener it
came in on, and a client that cannot authenticate must be refused without harm to the
node or to anyone else.
"""
from __future__ import annotations

import json
import re
import subprocess
import uuid

import pytest
import trustme
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, ConfigResource
from kafka.protocol.admin import DescribeConfigsRequest, DescribeConfigsResponse
from kafka.protocol.metadata import MetadataRequest, MetadataResponse
from kafka.protocol.sasl import (
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
)

from broker.messages import BrokerHeartbeatRequest
from broker.metadata import MetadataImage
from conftest import NodeProcess, QuorumCluster, free_port, kraftboard, wait_until
from test_bad_input import Raw
from test_tui import SIZE, rows, until
from tui.app import KraftboardApp
from tui.config import Settings, load_client_config
from tui.source import ClusterSource

USER, PASSWORD = "alice", "wonderland"
WAIT_S = 20
BROKER_RESOURCE = 4
PASSWORD_TYPE = 9  # Kafka's ConfigType of sensitive settings
SASL_AUTHENTICATION_FAILED = 58
UNSUPPORTED_SASL_MECHANISM = 33
ILLEGAL_SASL_STATE = 34
UNSUPPORTED_VERSION = 35


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA, the node's key and certificate chain, and a client certificate."""
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(directory / "ca.pem")
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        directory / "server.pem")
    client = ca.issue_cert("client@example.com")
    client.private_key_pem.write_to_path(directory / "client.key")
    client.cert_chain_pems[0].write_to_path(directory / "client.pem")
    return directory


class SecuredNode(NodeProcess):
    """A node with a PLAINTEXT listener (peers and `port`) and one of each secured kind."""

    def __init__(self, directory, pki, **settings):
        self.ports = {"SASL_SSL": free_port(), "SSL": free_port(), "SASL_PLAINTEXT": free_port()}
        super().__init__(directory, **settings)
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        listeners += [f"{name}://127.0.0.1:{port}" for name, port in self.ports.items()]
        self.settings.update({"listeners": ",".join(listeners),
                              "ssl.keystore.location": str(pki / "server.pem"),
                              "sasl.users": {USER: PASSWORD, "bob": "builder"}, **settings})
        self.ca = str(pki / "ca.pem")

    def address(self, listener: str) -> str:
        return f"127.0.0.1:{self.ports[listener]}"

    def librdkafka(self, listener: str, mechanism: str = "PLAIN", password: str = PASSWORD,
                   **extra) -> dict:
        """A librdkafka config for one of the secured listeners."""
        config = {"bootstrap.servers": self.address(listener),
                  "security.protocol": listener, **extra}
        if "SSL" in listener:
            config["ssl.ca.location"] = self.ca
        if "SASL" in listener:
            config.update({"sasl.mechanism": mechanism, "sasl.username": USER,
                           "sasl.password": password})
        return config

    def aiokafka(self, mechanism: str, password: str = PASSWORD) -> dict:
        """aiokafka's options for the SASL_SSL listener, as the console builds them."""
        return {"bootstrap_servers": self.address("SASL_SSL"),
                **load_client_config(self.client_config(mechanism, password))}

    def client_config(self, mechanism: str = "PLAIN", password: str = PASSWORD) -> str:
        """A console --client-config file for the SASL_SSL listener."""
        path = self.directory / f"client-{mechanism}-{password}.yaml"
        path.write_text(yaml.safe_dump({
            "security.protocol": "SASL_SSL", "sasl.mechanism": mechanism,
            "sasl.username": USER, "sasl.password": password, "ssl.ca.location": self.ca}))
        return path


@pytest.fixture(scope="module")
def node(tmp_path_factory, pki):
    node = SecuredNode(tmp_path_factory.mktemp("secured"), pki).start()
    yield node
    node.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def kcat(node: SecuredNode, listener: str, *args: str, mechanism: str = "PLAIN",
         password: str = PASSWORD, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    options = [arg for key, value in node.librdkafka(listener, mechanism, password).items()
               if key != "bootstrap.servers" for arg in ("-X", f"{key}={value}")]
    return subprocess.run(["kcat", "-b", node.address(listener), *options, *args], input=stdin,
                          capture_output=True, timeout=WAIT_S)


# -- real clients over the secured listeners ---------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_confluent_round_trip_over_sasl_ssl(node, mechanism):
    topic = unique("confluent-sasl")
    producer = Producer(node.librdkafka("SASL_SSL", mechanism, **{"enable.idempotence": True}))
    values = [b"secret %d" % i for i in range(10)]
    for value in values:
        producer.produce(topic, value, key=b"k")
    assert producer.flush(WAIT_S) == 0

    # In a group, so the coordinator's address (FindCoordinator) must be the SASL_SSL one.
    consumer = Consumer(node.librdkafka("SASL_SSL", mechanism, **{
        "group.id": unique("group"), "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    received = []
    try:
        for _ in range(WAIT_S * 2):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                received.append(message.value())
            if len(received) == len(values):
                break
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert received == values

    admin = AdminClient(node.librdkafka("SASL_SSL", mechanism))
    brokers = admin.list_topics(timeout=WAIT_S).brokers
    assert [(b.id, b.host, b.port) for b in brokers.values()] == \
        [(1, "127.0.0.1", node.ports["SASL_SSL"])]


async def test_aiokafka_round_trip_over_sasl_ssl(node):
    topic = unique("aiokafka-sasl")
    options = node.aiokafka("SCRAM-SHA-256")
    producer = AIOKafkaProducer(acks="all", **options)
    await producer.start()
    try:
        sent = [await producer.send_and_wait(topic, b"value %d" % i) for i in range(5)]
    finally:
        await producer.stop()
    assert [m.offset for m in sent] == list(range(5))
    consumer = AIOKafkaConsumer(topic, group_id=unique("group"), auto_offset_reset="earliest",
                                **options)
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=WAIT_S * 1000, max_records=5)
        assert [m.value for batch in batches.values() for m in batch] == \
            [b"value %d" % i for i in range(5)]
        assert [(b.nodeId, b.port) for b in consumer._client.cluster.brokers()] == \
            [(1, node.ports["SASL_SSL"])]
    finally:
        await consumer.stop()


@pytest.mark.parametrize("listener, mechanism", [
    ("SASL_SSL", "PLAIN"), ("SSL", None), ("SASL_PLAINTEXT", "SCRAM-SHA-256")])
def test_kcat_round_trip_on_each_listener(node, listener, mechanism):
    topic = unique("kcat")
    lines = [b"k1:first", b"k2:second"]
    produced = kcat(node, listener, "-P", "-t", topic, "-K:", mechanism=mechanism,
                    stdin=b"\n".join(lines) + b"\n")
    assert produced.returncode == 0, produced.stderr.decode()
    consumed = kcat(node, listener, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
                    "-f", "%k:%s\n", mechanism=mechanism)
    assert consumed.stdout.splitlines() == lines, consumed.stderr.decode()
    listing = json.loads(kcat(node, listener, "-L", "-J", mechanism=mechanism).stdout)
    assert listing["brokers"] == [{"id": 1, "name": node.address(listener)}]


def test_plaintext_listener_still_advertises_itself(node):
    with Raw(node) as raw:
        metadata = raw.call(MetadataRequest(version=1, topics=None), MetadataResponse)
    assert [(b.node_id, b.port) for b in metadata.brokers] == [(1, node.port)]


def test_a_brokers_configs_are_described_with_kafkas_types_and_no_passwords(node):
    """DescribeConfigs of the broker resource, as `kafka-configs --describe --broker 1
    --all` asks it: every setting, typed as Kafka types it, and the sensitive ones (the
    SASL users' passwords) marked so and without their value."""
    with Raw(node) as raw:
        answer = raw.call(DescribeConfigsRequest(version=4, include_synonyms=True,
                                                 include_documentation=True, resources=[
            DescribeConfigsRequest.DescribeConfigsResource(
                resource_type=BROKER_RESOURCE, resource_name="1", configuration_keys=None)]),
            DescribeConfigsResponse).results[0]
    assert answer.error_code == 0
    configs = {c.name: c for c in answer.configs}
    users = configs["sasl.users"]
    assert (users.value, users.is_sensitive, users.config_type) == (None, True, PASSWORD_TYPE)
    assert PASSWORD not in repr(answer)
    types = {name: configs[name].config_type for name in (
        "log.retention.ms", "message.max.bytes", "offsets.topic.replication.factor",
        "auto.create.topics.enable", "log.cleanup.policy", "listeners")}
    assert types == {"log.retention.ms": 5, "message.max.bytes": 3,  # LONG, INT
                     "offsets.topic.replication.factor": 4, "auto.create.topics.enable": 1,
                     "log.cleanup.policy": 7, "listeners": 2}  # SHORT, BOOLEAN, LIST, STRING
    assert configs["listeners"].value.startswith("PLAINTEXT://")

    admin = AdminClient({"bootstrap.servers": node.bootstrap})
    resource = ConfigResource(ConfigResource.Type.BROKER, "1")
    described = admin.describe_configs([resource])[resource].result(WAIT_S)
    assert (described["sasl.users"].value, described["sasl.users"].is_sensitive) == (None, True)


def test_every_broker_is_advertised_on_the_listener_the_client_used(tmp_path):
    """Registrations carry every listener, so any node names all brokers on any listener."""
    cluster = QuorumCluster(tmp_path, 3)
    sasl_ports = {}
    for node_id, member in cluster.nodes.items():
        sasl_ports[node_id] = free_port()
        member.settings.update({
            "listeners": f"{member.settings['listeners']},"
                         f"SASL_PLAINTEXT://127.0.0.1:{sasl_ports[node_id]}",
            "sasl.users": {USER: PASSWORD}})
    cluster.start()
    try:
        def brokers(port: int, *security: str) -> list:
            result = subprocess.run(["kcat", "-b", f"127.0.0.1:{port}", *security, "-L", "-J"],
                                    capture_output=True, timeout=WAIT_S)
            listed = json.loads(result.stdout)["brokers"] if result.returncode == 0 else []
            return sorted(listed, key=lambda broker: broker["id"])

        sasl = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
                "-X", f"sasl.username={USER}", "-X", f"sasl.password={PASSWORD}"]
        expected = [{"id": i, "name": f"127.0.0.1:{port}"} for i, port in sasl_ports.items()]
        assert wait_until(lambda: brokers(sasl_ports[2], *sasl) == expected, timeout=WAIT_S), \
            brokers(sasl_ports[2], *sasl)
        assert brokers(cluster.nodes[3].port) == \
            [{"id": i, "name": f"127.0.0.1:{n.port}"} for i, n in cluster.nodes.items()]
    finally:
        cluster.stop()


def test_a_registration_from_before_listeners_is_read_as_plaintext():
    """Metadata logs written before brokers had several listeners still replay."""
    image = MetadataImage()
    image.apply(0, b'{"type":"register_broker","id":1,"host":"h","port":9092,"incarnation":"x"}')
    assert image.brokers[1].endpoints == {"PLAINTEXT": ("h", 9092)}


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_wrong_password_is_refused_and_the_node_keeps_serving(node, mechanism):
    errors = []
    producer = Producer(node.librdkafka("SASL_SSL", mechanism, password="guess", **{
        "error_cb": errors.append, "message.timeout.ms": 3000}))
    producer.produce(unique("refused"), b"never")
    producer.flush(5)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    assert "Authentication failed" in str(errors[0])

    result = kcat(node, "SASL_SSL", "-L", "-m", "3", mechanism=mechanism, password="guess")
    assert result.returncode != 0 and b"Authentication failed" in result.stderr
    # The right password, and plain clients, are still served.
    assert kcat(node, "SASL_SSL", "-L", mechanism=mechanism).returncode == 0
    assert node.alive()


async def test_aiokafka_with_a_wrong_password_fails_with_an_authentication_error(node):
    options = node.aiokafka("SCRAM-SHA-512", password="guess")
    producer = AIOKafkaProducer(**options)
    with pytest.raises(KafkaConnectionError):  # aiokafka's bootstrap hides the cause...
        await producer.start()
    await producer.stop()
    del options["bootstrap_servers"]
    with pytest.raises(SaslAuthenticationFailed, match="Authentication failed"):  # ...one
        await create_conn("127.0.0.1", node.ports["SASL_SSL"], **options)  # connection shows it


def sasl_connection(node: SecuredNode) -> Raw:
    return Raw(node, port=node.ports["SASL_PLAINTEXT"])


def handshake(raw: Raw, mechanism: str):
    return raw.call(SaslHandshakeRequest(version=1, mechanism=mechanism), SaslHandshakeResponse)


def authenticate(raw: Raw, user: str, password: str):
    return raw.call(SaslAuthenticateRequest(version=2, auth_bytes=f"\0{user}\0{password}".encode()),
                    SaslAuthenticateResponse)


def test_failed_authentication_answers_58_with_a_message_then_closes(node):
    with sasl_connection(node) as raw:
        answer = handshake(raw, "PLAIN")
        assert answer.error_code == 0
        assert set(answer.mechanisms) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
        answer = authenticate(raw, USER, "guess")
        assert answer.error_code == SASL_AUTHENTICATION_FAILED
        assert "Invalid username or password" in answer.error_message
        raw.assert_closed()
    with sasl_connection(node) as raw:  # the right password on a new connection
        handshake(raw, "PLAIN")
        assert authenticate(raw, USER, PASSWORD).error_code == 0
        metadata = raw.call(MetadataRequest(version=1, topics=None), MetadataResponse)
        assert [b.port for b in metadata.brokers] == [node.ports["SASL_PLAINTEXT"]]
        assert handshake(raw, "PLAIN").error_code == ILLEGAL_SASL_STATE  # and it stays open
        # Inter-node APIs are served on the inter-broker listener only.
        raw.send(BrokerHeartbeatRequest(version=0, broker_id=1, incarnation_id="x",
                                        current_metadata_offset=0, want_shut_down=True))
        raw.assert_closed()


def test_requests_before_authentication_close_the_connection(node):
    with sasl_connection(node) as raw:
        raw.send(MetadataRequest(version=1, topics=None))
        raw.assert_closed()
    with sasl_connection(node) as raw:  # authenticating before the handshake
        assert authenticate(raw, USER, PASSWORD).error_code == ILLEGAL_SASL_STATE
        raw.assert_closed()
    with sasl_connection(node) as raw:
        assert handshake(raw, "GSSAPI").error_code == UNSUPPORTED_SASL_MECHANISM
        raw.assert_closed()
    with sasl_connection(node) as raw:  # v0 is advertised for librdkafka, never served
        answer = raw.call(SaslHandshakeRequest(version=0, mechanism="PLAIN"), SaslHandshakeResponse)
        assert answer.error_code == UNSUPPORTED_VERSION
        raw.assert_closed()
    assert node.alive()


def test_plaintext_clients_on_secured_ports_are_refused_and_the_node_lives(node):
    for listener in ("SASL_SSL", "SSL", "SASL_PLAINTEXT"):
        result = subprocess.run(["kcat", "-b", node.address(listener), "-L", "-m", "3"],
                                capture_output=True, timeout=WAIT_S)
        assert result.returncode != 0, listener
    assert node.alive()
    assert kcat(node, "SASL_SSL", "-L").returncode == 0


def test_mutual_tls_requires_a_client_certificate(tmp_path, pki):
    port = free_port()
    node = NodeProcess(tmp_path / "mtls")
    node.settings.update({"listeners": f"{node.settings['listeners']},SSL://127.0.0.1:{port}",
                          "ssl.keystore.location": str(pki / "server.pem"),
                          "ssl.truststore.location": str(pki / "ca.pem"),
                          "ssl.client.auth": "required"})
    node.start()
    try:
        common = ["kcat", "-b", f"127.0.0.1:{port}", "-X", "security.protocol=SSL",
                  "-X", f"ssl.ca.location={pki / 'ca.pem'}", "-L", "-m", "5"]
        without = subprocess.run(common, capture_output=True, timeout=WAIT_S)
        assert without.returncode != 0
        with_cert = subprocess.run([*common, "-X", f"ssl.certificate.location={pki / 'client.pem'}",
                                    "-X", f"ssl.key.location={pki / 'client.key'}"],
                                   capture_output=True, timeout=WAIT_S)
        assert with_cert.returncode == 0, with_cert.stderr.decode()
        assert f"broker 1 at 127.0.0.1:{port}" in with_cert.stdout.decode()
        assert node.alive()
    finally:
        node.stop()


# -- config refusals ----------------------------------------------------------------------


@pytest.mark.parametrize("settings, key, reason", [
    ({"listeners": "PLAINTEXT://127.0.0.1:9092,SASL_SCRAM://127.0.0.1:9093"},
     "listeners", "SASL_SCRAM in 'SASL_SCRAM://127.0.0.1:9093' is not a security protocol"),
    ({"listeners": "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093",
      "ssl.keystore.location": "missing.pem"},
     "ssl.keystore.location", "cannot read .*missing.pem: No such file or directory"),
    ({"listeners": "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093"},
     "ssl.keystore.location", "is required by the SSL and SASL_SSL listeners"),
    ({"listeners": "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9093",
      "ssl.keystore.location": "{pki}/server.pem", "sasl.users": {"a": "b"},
      "inter.broker.listener.name": "SASL_SSL"},
     "inter.broker.listener.name", "SASL_SSL is not supported; nodes talk to each other"),
    ({"listeners": "SSL://127.0.0.1:9093", "ssl.keystore.location": "{pki}/server.pem"},
     "inter.broker.listener.name", "no listener named PLAINTEXT"),
    ({"listeners": "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093",
      "ssl.keystore.location": "{pki}/ca.pem"},
     "ssl.keystore.location", "is not a PEM private key and certificate chain"),
    ({"listeners": "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9093"},
     "sasl.users", "SASL listeners need at least one user"),
    ({"sasl.enabled.mechanisms": ["PLAIN", "GSSAPI"]},
     "sasl.enabled.mechanisms", "GSSAPI is not supported"),
])
def test_bad_security_config_is_refused_with_file_key_and_reason(tmp_path, pki, settings,
                                                                   key, reason):
    config = tmp_path / "node.yaml"
    settings = {k: v.format(pki=pki) if isinstance(v, str) else v for k, v in settings.items()}
    config.write_text(yaml.safe_dump({"node.id": 1, "log.dirs": "data", **settings}))
    result = kraftboard("broker", "--config", str(config))
    assert result.returncode == 2
    assert f"refused config: {config}: {key}: " in result.stderr
    assert re.search(reason, result.stderr), result.stderr


# -- the console on a secured listener ------------------------------------------------------


def console(node: SecuredNode, tmp_path, password: str = PASSWORD) -> KraftboardApp:
    client_config = load_client_config(node.client_config("SCRAM-SHA-256", password))
    bootstrap = node.address("SASL_SSL")
    return KraftboardApp(ClusterSource(bootstrap, client_config), bootstrap,
                         Settings(path=tmp_path / "config.yaml"), refresh_interval=0.3)


async def test_console_on_sasl_ssl_shows_brokers_and_topics(node, tmp_path):
    topic = unique("console")
    assert kcat(node, "SASL_SSL", "-P", "-t", topic, stdin=b"one\n").returncode == 0
    app = console(node, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "1" in rows(app, "brokers"), what="broker 1")
        assert app.snapshot.brokers[1].port == node.ports["SASL_SSL"]
        await pilot.press("2")
        await until(pilot, lambda: topic in rows(app, "topics"), what="the topic")


async def test_console_with_a_wrong_password_shows_the_authentication_error(node, tmp_path):
    app = console(node, tmp_path, password="guess")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.problem is not None, what="the problem")
        assert "Authentication failed" in app.problem
        assert node.address("SASL_SSL") in app.problem
        assert app.snapshot is None
    assert node.alive()
