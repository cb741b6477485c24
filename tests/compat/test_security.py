"""TLS and SASL with real clients: confluent-kafka (librdkafka), kafka-python and kcat.

One broker per test serves four listeners at once (PLAINTEXT, SSL with required client
certificates, SASL_PLAINTEXT and SASL_SSL with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512).
The certificates are made at test time with openssl (a test CA, the broker's certificate
for 127.0.0.1 / localhost, a client certificate for alice, and a second CA the broker does
not trust); no key is committed.

Apache Kafka's own tools run against it too (the jars of ``scripts/peers/kafka.sh
install``, which scripts/test.sh runs first): ``kafka-configs`` creates a SCRAM user, and
the console producer and consumer (the Java client) use SASL_SSL with SCRAM-SHA-512.

What is checked: every protocol and mechanism round-trips records through a consumer
group (so FindCoordinator and Metadata name the listener the client came in on); SCRAM
users are created, described and deleted with the AdminClient (AlterUserScram-
Credentials); and the refusals: a wrong password, an unknown user, a client that trusts
another CA, no client certificate where one is required, plaintext bytes to a TLS port, a
TLS client to a plaintext port, and requests before authentication (nothing is created).
The broker re-reads its certificate when the file changes.

Sluice only: the reference Kafka would need its own JAAS and key store set-up.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from conftest import COMPAT_TARGET, KAFKA_SH

pytestmark = pytest.mark.skipif(
    COMPAT_TARGET == "kafka", reason="TLS/SASL set-up of the reference broker is not scripted"
)

LISTENERS = (
    "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,"
    "SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0"
)
MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(dir: Path, name: str) -> None:
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
        cwd=dir,
    )


def make_cert(dir: Path, name: str, subject: str, ca: str, server: bool) -> None:
    """``name``.pem (certificate), ``name``.key, and ``name``-keystore.pem (key + chain)."""
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
        cwd=dir,
    )
    ext = dir / f"{name}.ext"
    ext.write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n" if server else "extendedKeyUsage=clientAuth\n"
    )
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext.name,
        cwd=dir,
    )
    (dir / f"{name}-keystore.pem").write_text(
        (dir / f"{name}.key").read_text() + (dir / f"{name}.pem").read_text()
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dir = tmp_path_factory.mktemp("pki")
    make_ca(dir, "ca")
    make_ca(dir, "other-ca")
    make_cert(dir, "broker", "/CN=localhost", "ca", server=True)
    make_cert(dir, "alice", "/O=Sluice Tests/CN=alice", "ca", server=False)
    make_cert(dir, "broker2", "/CN=localhost", "other-ca", server=True)
    return dir


def start_secure(broker_factory, pki: Path, tmp_path: Path, extra: str = "", env=None):
    config = tmp_path / "security.toml"
    config.write_text(
        f'"ssl.keystore.location" = "{pki / "broker-keystore.pem"}"\n'
        f'"listener.name.ssl.ssl.client.auth" = "required"\n'
        f'"listener.name.ssl.ssl.truststore.location" = "{pki / "ca.pem"}"\n'
        '"sasl.enabled.mechanisms" = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"\n'
        '"sasl.bootstrap.users" = "admin:admin-secret,alice:alice-secret"\n'
        '"connection.failed.authentication.delay.ms" = 1\n' + extra
    )
    broker = broker_factory("--config", str(config), listen=LISTENERS, env=env)
    assert set(broker.listeners) == {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
    return broker


@pytest.fixture
def secure(broker_factory, pki: Path, tmp_path: Path):
    return start_secure(broker_factory, pki, tmp_path)


def client_config(broker, pki: Path, protocol: str, mechanism: str | None = None,
                  user: str = "admin", password: str = "admin-secret") -> dict:
    config = {
        "bootstrap.servers": broker.listeners[protocol],
        "security.protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        config["ssl.ca.location"] = str(pki / "ca.pem")
    if protocol == "SSL":
        config["ssl.certificate.location"] = str(pki / "alice.pem")
        config["ssl.key.location"] = str(pki / "alice.key")
    if mechanism:
        config.update({"sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password})
    return config


def roundtrip(config: dict, topic: str, count: int = 5) -> list[bytes]:
    producer = Producer({**config, "linger.ms": 5})
    for i in range(count):
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
    assert producer.flush(30) == 0, "every record delivered"
    consumer = Consumer({
        **config,
        "group.id": f"g-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while len(values) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            values.append(message.value())
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return values


@pytest.mark.parametrize(
    "protocol,mechanism",
    [("SSL", None)] + [(p, m) for p in ("SASL_PLAINTEXT", "SASL_SSL") for m in MECHANISMS],
)
def test_confluent_kafka_round_trips_over_every_protocol(secure, pki, protocol, mechanism):
    config = client_config(secure, pki, protocol, mechanism)
    topic = f"sec-{protocol.lower()}-{(mechanism or 'cert').lower()}"
    assert roundtrip(config, topic) == [f"v{i}".encode() for i in range(5)]
    # Every broker address the client was given is on the listener it came in on.
    metadata = AdminClient(config).list_topics(timeout=10)
    assert [f"{b.host}:{b.port}" for b in metadata.brokers.values()] == [secure.listeners[protocol]]


def test_kafka_python_over_sasl_ssl_with_scram_sha_512(secure, pki):
    from kafka import KafkaConsumer, KafkaProducer

    common = dict(
        bootstrap_servers=secure.listeners["SASL_SSL"],
        security_protocol="SASL_SSL",
        ssl_cafile=str(pki / "ca.pem"),
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="alice",
        sasl_plain_password="alice-secret",
    )
    producer = KafkaProducer(**common)
    for i in range(3):
        producer.send("sec-kafka-python", value=f"p{i}".encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        "sec-kafka-python", auto_offset_reset="earliest", consumer_timeout_ms=10000, **common
    )
    values = []
    for message in consumer:
        values.append(message.value)
        if len(values) == 3:
            break
    consumer.close()
    assert values == [b"p0", b"p1", b"p2"]


def test_kcat_over_sasl_ssl_with_scram_sha_256(secure, pki):
    auth = [
        "-b", secure.listeners["SASL_SSL"],
        "-X", "security.protocol=SASL_SSL",
        "-X", "sasl.mechanisms=SCRAM-SHA-256",
        "-X", "sasl.username=alice",
        "-X", "sasl.password=alice-secret",
        "-X", f"ssl.ca.location={pki / 'ca.pem'}",
    ]
    subprocess.run(
        ["kcat", *auth, "-t", "sec-kcat", "-P"], input=b"one\ntwo\n", check=True, timeout=60
    )
    out = subprocess.run(
        ["kcat", *auth, "-t", "sec-kcat", "-C", "-e", "-o", "beginning", "-q"],
        capture_output=True, check=True, timeout=60,
    )
    assert out.stdout.split() == [b"one", b"two"]


def refused(config: dict, expected: str) -> None:
    """A client with ``config`` reports an error containing ``expected`` (librdkafka's
    error callback, which fires at once) and gets no metadata."""
    errors: list[str] = []
    admin = AdminClient({
        **config,
        # One attempt: librdkafka's reconnects would each count as another failed login
        # from this address and be slowed down more (that is the broker's job).
        "reconnect.backoff.ms": 10000,
        "reconnect.backoff.max.ms": 10000,
        "error_cb": lambda e: errors.append(str(e)),
    })
    deadline = time.monotonic() + 15
    while not any(expected in e for e in errors) and time.monotonic() < deadline:
        admin.poll(0.2)
    assert any(expected in e for e in errors), f"no error with {expected!r}: {errors}"
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=1)


def test_wrong_credentials_and_untrusted_certificates_are_refused(secure, pki):
    for mechanism in MECHANISMS:
        refused(
            client_config(secure, pki, "SASL_SSL", mechanism, password="wrong"),
            "Authentication failed",
        )
        refused(
            client_config(secure, pki, "SASL_PLAINTEXT", mechanism, user="mallory"),
            "Authentication failed",
        )
    log = secure.stderr_log.read_text()
    assert "SASL authentication failed" in log and 'user="mallory"' in log
    assert "wrong" not in log.split("SASL authentication failed", 1)[1], "passwords are never logged"
    # A client that trusts another CA does not accept the broker's certificate.
    other = client_config(secure, pki, "SASL_SSL", "SCRAM-SHA-256")
    other["ssl.ca.location"] = str(pki / "other-ca.pem")
    refused(other, "certificate verify failed")
    # The SSL listener requires a client certificate.
    no_cert = client_config(secure, pki, "SSL")
    del no_cert["ssl.certificate.location"], no_cert["ssl.key.location"]
    refused(no_cert, "SSL")
    # A TLS client at the plaintext port.
    tls_to_plain = client_config(secure, pki, "SSL")
    tls_to_plain["bootstrap.servers"] = secure.listeners["PLAINTEXT"]
    refused(tls_to_plain, "SSL")


def kafka_request(api_key: int, version: int, body: bytes) -> bytes:
    client = b"raw"
    header = struct.pack(">hhih", api_key, version, 7, len(client)) + client
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def closed_without_answer(address: str, request: bytes) -> bool:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        s.settimeout(10)
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            return True
        # A TLS port answers plaintext with nothing Kafka-shaped (at most a TLS alert).
        return data == b"" or not data.startswith(b"\x00\x00")


def test_requests_before_authentication_close_the_connection(secure, pki):
    # Metadata v1 naming a topic: with auto-creation on, it would create it.
    metadata = kafka_request(3, 1, struct.pack(">ih", 1, 6) + b"sneaky")
    assert closed_without_answer(secure.listeners["SASL_PLAINTEXT"], metadata)
    assert closed_without_answer(secure.listeners["SASL_SSL"], metadata)
    assert closed_without_answer(secure.listeners["SSL"], metadata)
    # Before the login, a request may be at most 512 KiB: announcing 1 MB closes at once.
    huge = struct.pack(">i", 1 << 20) + kafka_request(18, 0, b"")[4:]
    assert closed_without_answer(secure.listeners["SASL_PLAINTEXT"], huge)
    topics = AdminClient(client_config(secure, pki, "SASL_PLAINTEXT", "PLAIN")).list_topics(timeout=10).topics
    assert "sneaky" not in topics
    assert "request before SASL authentication" in secure.stderr_log.read_text()


def test_scram_users_are_managed_with_the_admin_client(secure, pki):
    admin = AdminClient(client_config(secure, pki, "SASL_PLAINTEXT", "SCRAM-SHA-512"))
    futures = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), b"bob-secret"),
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"bob-secret"),
    ])
    for future in futures.values():
        future.result(timeout=10)
    described = admin.describe_user_scram_credentials(["bob"])["bob"].result(timeout=10)
    assert sorted((i.mechanism, i.iterations) for i in described.scram_credential_infos) == [
        (ScramMechanism.SCRAM_SHA_256, 8192), (ScramMechanism.SCRAM_SHA_512, 4096)
    ]
    bob = client_config(secure, pki, "SASL_SSL", "SCRAM-SHA-256", user="bob", password="bob-secret")
    assert roundtrip(bob, "sec-bob", count=2) == [b"v0", b"v1"]
    # Too few iterations is refused, and changes nothing.
    weak = admin.alter_user_scram_credentials([
        UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"x")
    ])
    with pytest.raises(KafkaException, match="iterations"):
        weak["bob"].result(timeout=10)
    for future in admin.alter_user_scram_credentials([
        UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256),
        UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_512),
    ]).values():
        future.result(timeout=10)
    refused(bob, "Authentication failed")
    with pytest.raises(KafkaException):
        admin.describe_user_scram_credentials(["bob"])["bob"].result(timeout=10)
    # A PLAINTEXT client (User:ANONYMOUS) may not manage users.
    anonymous = AdminClient({"bootstrap.servers": secure.listeners["PLAINTEXT"]})
    refused_change = anonymous.alter_user_scram_credentials([
        UserScramCredentialUpsertion("eve", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), b"x")
    ])
    with pytest.raises(KafkaException, match="(?i)authorization"):
        refused_change["eve"].result(timeout=10)
    # The store survives a restart and holds no password.
    secure.stop()
    secure.start()
    store = (secure.data_dir / "security" / "scram-credentials.json").read_text()
    assert "alice-secret" not in store and "admin-secret" not in store
    again = client_config(secure, pki, "SASL_SSL", "SCRAM-SHA-512", user="alice", password="alice-secret")
    AdminClient(again).list_topics(timeout=10)


def test_a_changed_certificate_is_served_without_a_restart(secure, pki, wait_until):
    old = client_config(secure, pki, "SASL_SSL", "PLAIN")
    AdminClient(old).list_topics(timeout=10)
    keystore = pki / "broker-keystore.pem"
    original = keystore.read_text()
    try:
        keystore.write_text((pki / "broker2-keystore.pem").read_text())
        new = {**old, "ssl.ca.location": str(pki / "other-ca.pem")}
        wait_until(lambda: AdminClient(new).list_topics(timeout=3) is not None, timeout=30,
                   message="the new certificate is served")
        refused(old, "certificate verify failed")
    finally:
        keystore.write_text(original)


def kafka_tool(*args: str, input: bytes | None = None) -> str:
    """Runs one of Apache Kafka's tool classes with its jars; its output."""
    done = subprocess.run(
        [str(KAFKA_SH), "run", *args], input=input, capture_output=True, timeout=120
    )
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, f"{args[0]} failed ({done.returncode}):\n{output}"
    return output


def test_kafka_configs_and_the_java_client_over_sasl_ssl(secure, pki, tmp_path):
    properties = tmp_path / "client.properties"
    properties.write_text(
        "security.protocol=SASL_SSL\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="admin" password="admin-secret";\n'
        "ssl.truststore.type=PEM\n"
        f"ssl.truststore.location={pki / 'ca.pem'}\n"
    )
    bootstrap = secure.listeners["SASL_SSL"]
    out = kafka_tool(
        "org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", bootstrap,
        "--command-config", str(properties), "--alter", "--entity-type", "users",
        "--entity-name", "carol",
        "--add-config", "SCRAM-SHA-512=[password=carol-secret],SCRAM-SHA-256=[iterations=8192,password=carol-secret]",
    )
    assert "Completed updating config for user carol" in out
    carol = client_config(secure, pki, "SASL_PLAINTEXT", "SCRAM-SHA-256", user="carol", password="carol-secret")
    AdminClient(carol).list_topics(timeout=10)
    kafka_tool(
        "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bootstrap,
        "--command-config", str(properties), "--topic", "sec-java",
        input=b"j1\nj2\n",
    )
    out = kafka_tool(
        "org.apache.kafka.tools.consumer.ConsoleConsumer", "--bootstrap-server", bootstrap,
        "--command-config", str(properties), "--topic", "sec-java", "--from-beginning",
        "--max-messages", "2", "--timeout-ms", "30000",
    )
    assert out.splitlines()[:2] == ["j1", "j2"], out


def test_sessions_are_re_authenticated_on_the_same_connection(broker_factory, pki, tmp_path):
    """KIP-368: with connections.max.reauth.ms the client logs in again before its
    session ends; nothing is refused meanwhile."""
    broker = start_secure(
        broker_factory, pki, tmp_path, extra='"connections.max.reauth.ms" = 1500\n',
        env={"RUST_LOG": "sluice_broker::security=debug"},
    )
    config = client_config(broker, pki, "SASL_SSL", "SCRAM-SHA-256")
    producer = Producer(config)
    failures: list[str] = []
    deadline = time.monotonic() + 5
    sent = 0
    while time.monotonic() < deadline:
        producer.produce("sec-reauth", value=b"x", on_delivery=lambda e, m: e and failures.append(str(e)))
        sent += 1
        producer.poll(0.2)
    assert producer.flush(30) == 0 and failures == []
    log = broker.stderr_log.read_text()
    assert "SASL re-authenticated (KIP-368)" in log
    assert "SASL session expired" not in log


def test_large_fetches_over_tls_to_a_slow_reader_arrive_whole(secure, pki):
    """Replies larger than the socket buffers over TLS: a consumer with a tiny receive
    buffer makes the broker's TLS writes wait, and every record still arrives whole.
    (The broker flushes the TLS stream after each write; without that, the end of a reply
    can sit in the TLS buffer until the next request on the connection pushes it out,
    which this test does not detect: librdkafka's heartbeats on the same connection do.)"""
    config = client_config(secure, pki, "SASL_SSL", "SCRAM-SHA-512")
    producer = Producer({**config, "linger.ms": 20})
    value = bytes(range(256)) * 400  # 100 KiB
    for i in range(40):
        producer.produce("sec-large", key=str(i).encode(), value=value)
    assert producer.flush(60) == 0
    consumer = Consumer({
        **config,
        "group.id": "large",
        "auto.offset.reset": "earliest",
        "socket.receive.buffer.bytes": 4096,
        "fetch.max.bytes": 4 * 1024 * 1024,
    })
    consumer.subscribe(["sec-large"])
    got = 0
    deadline = time.monotonic() + 60
    try:
        while got < 40 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            assert message.value() == value
            got += 1
    finally:
        consumer.close()
    assert got == 40
