"""ACLs with real clients: the authorizer decides what each SASL user may do.

One broker per test with the authorizer on (``authorizer.class.name`` = Kafka's
StandardAuthorizer), ``super.users=User:admin``, and a SASL_PLAINTEXT listener with
SCRAM-SHA-256 users admin, alice and bob. The admin manages ACLs with the AdminClient
(CreateAcls / DescribeAcls / DeleteAcls) and with Apache Kafka's own ``kafka-acls`` tool.

What is checked, each with the error Kafka gives and nothing stored or changed by a
refused request: alice produces and consumes where allowed; she cannot produce to a topic
without Write (nothing is appended), read one without Read, join a group without Read,
delete a topic without Delete, create topics without Create, or manage ACLs; Metadata
lists only the topics she may describe; a DENY wins over an ALLOW and takes effect on open
connections; prefixed and wildcard patterns apply; the ACLs survive a restart; without
the authorizer the ACL APIs answer SECURITY_DISABLED.

Sluice only: the reference Kafka would need its own JAAS set-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)

from kafka import KafkaAdminClient
from kafka.admin import (
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePatternFilter,
)
from kafka.admin import ResourceType as PythonResourceType
from kafka.errors import ClusterAuthorizationFailedError

from conftest import COMPAT_TARGET
from test_security import kafka_tool, pki  # noqa: F401 (pki: a fixture)

pytestmark = pytest.mark.skipif(
    COMPAT_TARGET == "kafka", reason="SASL set-up of the reference broker is not scripted"
)

LISTENERS = "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0"
USERS = {
    "admin": "admin-secret",
    "alice": "alice-secret",
    "bob": "bob-secret",
    "carol": "carol-secret",
}
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


def start(broker_factory, tmp_path: Path, authorizer: bool = True, data_dir: Path | None = None):
    config = tmp_path / "acl.toml"
    config.write_text(
        '"sasl.enabled.mechanisms" = "SCRAM-SHA-256"\n'
        '"sasl.bootstrap.users" = "'
        + ",".join(f"{u}:{p}" for u, p in USERS.items())
        + '"\n"connection.failed.authentication.delay.ms" = 1\n'
        + ('"super.users" = "User:admin"\n' if authorizer else "")
        + (f'"authorizer.class.name" = "{AUTHORIZER}"\n' if authorizer else "")
    )
    return broker_factory("--config", str(config), listen=LISTENERS, data_dir=data_dir)


def config_for(broker, user: str) -> dict:
    return {
        "bootstrap.servers": broker.listeners["SASL_PLAINTEXT"],
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": USERS[user],
    }


def admin_for(broker, user: str) -> AdminClient:
    return AdminClient(config_for(broker, user))


def acl(
    principal: str,
    operation: AclOperation,
    name: str,
    resource: ResourceType = ResourceType.TOPIC,
    pattern: ResourcePatternType = ResourcePatternType.LITERAL,
    permission: AclPermissionType = AclPermissionType.ALLOW,
) -> AclBinding:
    return AclBinding(resource, name, pattern, principal, "*", operation, permission)


def create_acls(admin: AdminClient, bindings: list[AclBinding]) -> None:
    for future in admin.create_acls(bindings, request_timeout=15).values():
        future.result()


def produce(config: dict, topic: str, count: int = 3, idempotent: bool = False) -> list:
    """Produces ``count`` records; the delivery errors (None for a record delivered)."""
    errors: list = []
    settings = {"linger.ms": 5, "message.timeout.ms": 10000}
    if idempotent:
        settings["enable.idempotence"] = True
    else:
        settings["retries"] = 0
    producer = Producer({**config, **settings})
    for i in range(count):
        producer.produce(topic, value=f"v{i}".encode(), on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(20) == 0
    return errors


def end_offset(broker, topic: str) -> int:
    consumer = Consumer({**config_for(broker, "admin"), "group.id": "probe"})
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return high
    finally:
        consumer.close()


def consume_error(config: dict, topic: str, group: str, timeout: float = 20.0):
    """The first error a consumer of ``topic`` in ``group`` gets (None if it reads a record)."""
    consumer = Consumer(
        {**config, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}
    )
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                return msg.error()
            return None
        raise AssertionError(f"no record and no error from {topic} in {timeout} s")
    finally:
        consumer.close()


@pytest.fixture
def secured(broker_factory, tmp_path):
    broker = start(broker_factory, tmp_path)
    admin = admin_for(broker, "admin")
    topics = ["orders", "secret", "payments-eu"]
    for future in admin.create_topics([NewTopic(t, 1, 1) for t in topics]).values():
        future.result(timeout=15)
    create_acls(
        admin,
        [
            acl("User:alice", AclOperation.WRITE, "orders"),
            acl("User:alice", AclOperation.READ, "orders"),
            acl("User:alice", AclOperation.READ, "alice-", ResourceType.GROUP, ResourcePatternType.PREFIXED),
            acl("User:bob", AclOperation.WRITE, "payments-", pattern=ResourcePatternType.PREFIXED),
        ],
    )
    return broker


def test_principals_do_only_what_their_acls_allow(secured):
    alice = config_for(secured, "alice")
    assert produce(alice, "orders") == [None] * 3
    assert consume_error(alice, "orders", "alice-group") is None

    # An idempotent producer needs IdempotentWrite on the cluster or Write on some topic
    # (KIP-679): alice has Write on orders; carol has no ACL at all.
    assert produce(alice, "orders", idempotent=True) == [None] * 3
    carol_errors = produce(config_for(secured, "carol"), "orders", 1, idempotent=True)
    assert carol_errors[0] is not None, "carol got a producer id"

    # Without Write: refused, and nothing is appended.
    errors = produce(alice, "secret")
    assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED] * 3
    assert end_offset(secured, "secret") == 0

    # A prefixed ACL: bob writes every payments-* topic, and nothing else.
    bob = config_for(secured, "bob")
    assert produce(bob, "payments-eu") == [None] * 3
    assert [e.code() for e in produce(bob, "orders", 1)] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]

    # Without Read on the topic, or on the group.
    error = consume_error(alice, "secret", "alice-secret-readers")
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error
    error = consume_error(alice, "orders", "someone-elses-group")
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, error

    # Metadata lists only what alice may describe (Read and Write imply Describe).
    alice_admin = admin_for(secured, "alice")
    assert set(alice_admin.list_topics(timeout=10).topics) == {"orders"}
    admin = admin_for(secured, "admin")
    assert {"orders", "secret", "payments-eu"} <= set(admin.list_topics(timeout=10).topics)

    # Without Delete and Create: nothing deleted, nothing created.
    with pytest.raises(KafkaException) as refused:
        alice_admin.delete_topics(["orders"])["orders"].result(timeout=15)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as refused:
        alice_admin.create_topics([NewTopic("alice-new", 1, 1)])["alice-new"].result(timeout=15)
    assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert "alice-new" not in admin.list_topics(timeout=10).topics
    assert "orders" in admin.list_topics(timeout=10).topics

    # Managing ACLs needs Alter / Describe on the cluster.
    with pytest.raises(KafkaException) as refused:
        create_acls(alice_admin, [acl("User:alice", AclOperation.ALL, "*")])
    assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # (librdkafka does not surface DescribeAcls' top-level error; kafka-python does.)
    python_admin = KafkaAdminClient(
        bootstrap_servers=secured.listeners["SASL_PLAINTEXT"],
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username="alice",
        sasl_plain_password=USERS["alice"],
    )
    try:
        with pytest.raises(ClusterAuthorizationFailedError):
            python_admin.describe_acls(
                ACLFilter(
                    principal=None,
                    host="*",
                    operation=ACLOperation.ANY,
                    permission_type=ACLPermissionType.ANY,
                    resource_pattern=ResourcePatternFilter(
                        PythonResourceType.ANY, None, ACLResourcePatternType.ANY
                    ),
                )
            )
    finally:
        python_admin.close()


def test_a_deny_wins_and_changes_reach_open_connections(secured):
    alice = config_for(secured, "alice")
    admin = admin_for(secured, "admin")
    producer = Producer(
        {
            **alice,
            "linger.ms": 0,
            "retries": 0,
            "message.timeout.ms": 10000,
            "topic.metadata.refresh.interval.ms": 500,
        }
    )
    errors: list = []

    def send() -> KafkaError | None:
        errors.clear()
        try:
            producer.produce("orders", value=b"x", on_delivery=lambda err, _msg: errors.append(err))
        except KafkaException as refused:
            # librdkafka remembers a refusal from its last metadata refresh.
            return refused.args[0]
        assert producer.flush(20) == 0
        return errors[0]

    assert send() is None
    deny = acl("User:*", AclOperation.ALL, "ord", pattern=ResourcePatternType.PREFIXED,
               permission=AclPermissionType.DENY)
    create_acls(admin, [deny])
    # The same connection: its cached decision is dropped when the ACLs change.
    assert send().code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    deny_filter = AclBindingFilter(
        ResourceType.TOPIC, "ord", ResourcePatternType.PREFIXED, "User:*", "*",
        AclOperation.ALL, AclPermissionType.DENY,
    )
    deleted = admin.delete_acls([deny_filter], request_timeout=15)
    assert [len(f.result()) for f in deleted.values()] == [1]
    # Allowed again, on the same connections (once the client's metadata says so too).
    deadline = time.monotonic() + 20
    while (error := send()) is not None:
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, error
        assert time.monotonic() < deadline, "still refused after the DENY was deleted"
        time.sleep(0.2)


def test_kafka_acls_tool_and_acls_survive_a_restart(broker_factory, tmp_path):
    data = tmp_path / "data"
    broker = start(broker_factory, tmp_path, data_dir=data)
    properties = tmp_path / "admin.properties"
    properties.write_text(
        "security.protocol=SASL_PLAINTEXT\n"
        "sasl.mechanism=SCRAM-SHA-256\n"
        "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="admin" password="admin-secret";\n'
    )
    bootstrap = broker.listeners["SASL_PLAINTEXT"]
    tool = ["org.apache.kafka.tools.AclCommand", "--bootstrap-server", bootstrap,
            "--command-config", str(properties)]
    kafka_tool(*tool, "--add", "--allow-principal", "User:alice", "--operation", "Read",
               "--operation", "Describe", "--topic", "logs", "--group", "loggers")
    kafka_tool(*tool, "--add", "--deny-principal", "User:bob", "--deny-host", "127.0.0.1",
               "--operation", "Write", "--topic", "logs-", "--resource-pattern-type", "prefixed")
    listed = kafka_tool(*tool, "--list")
    assert "User:alice" in listed and "User:bob" in listed and "loggers" in listed, listed

    broker.stop()
    broker = start(broker_factory, tmp_path, data_dir=data)
    admin = admin_for(broker, "admin")
    everything = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
        AclOperation.ANY, AclPermissionType.ANY,
    )
    found = admin.describe_acls(everything, request_timeout=15).result()
    # kafka-acls gives every operation named to every resource named.
    assert sorted((b.principal, b.name, b.operation.name) for b in found) == [
        ("User:alice", "loggers", "DESCRIBE"),
        ("User:alice", "loggers", "READ"),
        ("User:alice", "logs", "DESCRIBE"),
        ("User:alice", "logs", "READ"),
        ("User:bob", "logs-", "WRITE"),
    ]

    kafka_tool(*["org.apache.kafka.tools.AclCommand", "--bootstrap-server",
                 broker.listeners["SASL_PLAINTEXT"], "--command-config", str(properties)],
               "--remove", "--force", "--allow-principal", "User:alice", "--operation", "Read",
               "--topic", "logs")
    left = admin.describe_acls(everything, request_timeout=15).result()
    assert len(left) == 4 and ("User:alice", "logs", "READ") not in [
        (b.principal, b.name, b.operation.name) for b in left
    ]


def test_without_an_authorizer_the_acl_apis_are_disabled(broker_factory, tmp_path):
    broker = start(broker_factory, tmp_path, authorizer=False)
    admin = admin_for(broker, "alice")
    with pytest.raises(KafkaException) as refused:
        create_acls(admin, [acl("User:bob", AclOperation.READ, "t")])
    assert refused.value.args[0].code() == KafkaError.SECURITY_DISABLED
    # And nothing is checked: alice may create topics and produce.
    assert produce(config_for(broker, "alice"), f"free-{uuid.uuid4().hex[:6]}") == [None] * 3


# -- the sluice CLI and sluice-bench over SASL_SSL ------------------------------------------

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path(__file__).resolve().parents[2] / "target"))
SLUICE = TARGET / "release" / "sluice"
SLUICE_BENCH = TARGET / "release" / "sluice-bench"


def sluice(broker, user: str | None, *args: str, password: str | None = None, stdin: bytes | None = None,
           pki: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the ``sluice`` CLI against the broker's SASL_SSL listener as ``user``."""
    assert SLUICE.is_file(), f"build the CLI first (cargo build --release): {SLUICE}"
    argv = [str(SLUICE), "--bootstrap", broker.listeners["SASL_SSL"],
            "--security-protocol", "SASL_SSL", "--ca-file", str(pki / "ca.pem")]
    env = {**os.environ}
    env.pop("SLUICE_BOOTSTRAP", None)
    if user is not None:
        argv += ["--user", user]
        env["SLUICE_PASSWORD"] = password if password is not None else USERS.get(user, "")
    done = subprocess.run(argv + list(args), input=stdin, capture_output=True, env=env, timeout=60,
                          stdin=None if stdin is not None else subprocess.DEVNULL)
    if check:
        assert done.returncode == 0, (
            f"sluice {' '.join(args)} as {user} exited {done.returncode}: {done.stderr.decode()}"
        )
    return done


def test_the_sluice_cli_manages_users_and_acls_over_sasl_ssl(broker_factory, tmp_path, pki):
    config = tmp_path / "cli.toml"
    config.write_text(
        f'"ssl.keystore.location" = "{pki / "broker-keystore.pem"}"\n'
        '"sasl.enabled.mechanisms" = "SCRAM-SHA-256,SCRAM-SHA-512"\n'
        '"sasl.bootstrap.users" = "admin:admin-secret"\n'
        '"connection.failed.authentication.delay.ms" = 1\n'
        '"super.users" = "User:admin"\n'
        f'"authorizer.class.name" = "{AUTHORIZER}"\n'
    )
    broker = broker_factory("--config", str(config), listen="PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0")
    run = lambda user, *args, **kw: sluice(broker, user, *args, pki=pki, **kw)  # noqa: E731

    run("admin", "user", "create", "dave", "--new-password-stdin", stdin=b"dave-secret\n")
    assert "dave" in run("admin", "user", "list").stdout.decode()
    run("admin", "topic", "create", "ledger")
    run("admin", "topic", "create", "vault")
    run("admin", "acl", "add", "--principal", "User:dave", "--operation", "read",
        "--operation", "write", "--topic", "ledger")
    run("admin", "acl", "add", "--principal", "User:dave", "--operation", "read",
        "--group", "dave-", "--prefixed")
    listed = run("admin", "acl", "list", "--principal", "User:dave").stdout.decode()
    assert listed.count("User:dave") == 3, listed

    dave = lambda *args, **kw: run("dave", "--sasl-mechanism", "SCRAM-SHA-256", *args,  # noqa: E731
                                   password="dave-secret", **kw)
    dave("produce", "ledger", stdin=b"one\ntwo\n")
    consumed = dave("consume", "ledger", "--group", "dave-readers").stdout.decode().split()
    assert consumed == ["one", "two"], consumed

    refused = dave("produce", "vault", stdin=b"no\n", check=False)
    assert refused.returncode != 0 and b"TOPIC_AUTHORIZATION_FAILED" in refused.stderr, refused.stderr
    refused = dave("acl", "list", check=False)
    assert refused.returncode != 0 and b"CLUSTER_AUTHORIZATION_FAILED" in refused.stderr, refused.stderr
    wrong = run("dave", "topic", "list", password="not-dave", check=False)
    assert wrong.returncode != 0 and b"SASL login" in wrong.stderr, wrong.stderr
    assert b"not-dave" not in wrong.stderr, "the password is never printed"
    typo = run("dave", "-X", "sasl.pasword=not-dave", "topic", "list", check=False)
    assert typo.returncode == 2 and b"not-dave" not in typo.stderr, typo.stderr
    untrusted = subprocess.run(
        [str(SLUICE), "--bootstrap", broker.listeners["SASL_SSL"], "--security-protocol", "SASL_SSL",
         "--user", "admin", "--password", "admin-secret", "--ca-file", str(pki / "other-ca.pem"),
         "topic", "list"], capture_output=True, timeout=60)
    assert untrusted.returncode != 0 and b"TLS" in untrusted.stderr, untrusted.stderr

    run("admin", "acl", "remove", "--principal", "User:dave", "--operation", "write", "--topic", "ledger")
    refused = dave("produce", "ledger", stdin=b"three\n", check=False)
    # With no Write left anywhere, the CLI's idempotent producer gets no producer id
    # (KIP-679), before any Produce is refused.
    assert refused.returncode != 0 and b"CLUSTER_AUTHORIZATION_FAILED" in refused.stderr, refused.stderr

    # sluice-bench over the same listener, as the admin.
    bench = subprocess.run(
        [str(SLUICE_BENCH), "produce", "--bootstrap", broker.listeners["SASL_SSL"], "--topic", "bench",
         "--records", "2000", "--json", "--quiet",
         "-X", "security.protocol=SASL_SSL", "-X", "sasl.username=admin",
         "-X", "sasl.password=admin-secret", "-X", f"ssl.ca.location={pki / 'ca.pem'}"],
        capture_output=True, timeout=120)
    assert bench.returncode == 0, bench.stderr.decode()
    report = json.loads(bench.stdout)
    assert report["errors"] == 0 and report["streams"][0]["records"] == 2000
    assert "admin-secret" not in bench.stdout.decode(), "the password is not in the report"

    run("admin", "user", "delete", "dave")
    gone = run("dave", "topic", "list", password="dave-secret", check=False)
    assert gone.returncode != 0 and b"SASL login" in gone.stderr, gone.stderr


def test_rust_client_logs_in_again_when_sessions_expire(broker_factory, tmp_path):
    """KIP-368 from the client side: with 1.5 s sessions, a 5 s sluice-bench run over
    SASL_PLAINTEXT with PLAIN keeps going on fresh, logged-in connections (the broker closes
    a connection used after its session ends)."""
    config = tmp_path / "reauth.toml"
    config.write_text(
        '"sasl.enabled.mechanisms" = "PLAIN,SCRAM-SHA-512"\n'
        '"sasl.bootstrap.users" = "admin:admin-secret"\n'
        '"connections.max.reauth.ms" = 1500\n'
    )
    broker = broker_factory("--config", str(config), listen=LISTENERS)
    bench = subprocess.run(
        [str(SLUICE_BENCH), "produce", "--bootstrap", broker.listeners["SASL_PLAINTEXT"],
         "--topic", "reauth", "--duration", "5s", "--rate", "2000", "--json", "--quiet",
         "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=PLAIN",
         "-X", "sasl.username=admin", "-X", "sasl.password=admin-secret"],
        capture_output=True, timeout=120)
    assert bench.returncode == 0, bench.stderr.decode()
    report = json.loads(bench.stdout)
    assert report["errors"] == 0, report
    assert report["streams"][0]["records"] >= 5000, report["streams"][0]
    assert "session expired" not in broker.logs(), "no request reached an expired session"


def test_the_cli_presents_a_client_certificate(broker_factory, tmp_path, pki):
    """An SSL listener that requires client certificates: the CLI's --cert-file/--key-file
    log it in as the certificate's subject, which ACLs then name."""
    config = tmp_path / "mtls.toml"
    config.write_text(
        f'"ssl.keystore.location" = "{pki / "broker-keystore.pem"}"\n'
        f'"ssl.truststore.location" = "{pki / "ca.pem"}"\n'
        # Only on the SSL listener: the admin logs in over SASL_SSL without a certificate.
        '"listener.name.ssl.ssl.client.auth" = "required"\n'
        '"sasl.enabled.mechanisms" = "SCRAM-SHA-512"\n'
        '"sasl.bootstrap.users" = "admin:admin-secret"\n'
        '"super.users" = "User:admin"\n'
        f'"authorizer.class.name" = "{AUTHORIZER}"\n'
    )
    broker = broker_factory("--config", str(config),
                            listen="PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0")
    alice_cert = "User:CN=alice,O=Sluice Tests"
    sluice(broker, "admin", "topic", "create", "certified", pki=pki)
    sluice(broker, "admin", "acl", "add", "--principal", alice_cert, "--operation", "write",
           "--operation", "read", "--topic", "certified", pki=pki)

    def as_alice(*args: str, cert: bool = True, stdin: bytes | None = None):
        argv = [str(SLUICE), "--bootstrap", broker.listeners["SSL"], "--security-protocol", "SSL",
                "--ca-file", str(pki / "ca.pem")]
        if cert:
            argv += ["--cert-file", str(pki / "alice.pem"), "--key-file", str(pki / "alice.key")]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
        return subprocess.run(argv + list(args), input=stdin, capture_output=True, env=env,
                              timeout=60, stdin=None if stdin is not None else subprocess.DEVNULL)

    done = as_alice("produce", "certified", stdin=b"signed\n")
    assert done.returncode == 0, done.stderr.decode()
    done = as_alice("consume", "certified")
    assert done.returncode == 0 and done.stdout.split() == [b"signed"], done
    refused = as_alice("topic", "create", "uncertified")
    assert refused.returncode != 0 and b"TOPIC_AUTHORIZATION_FAILED" in refused.stderr, refused.stderr
    no_cert = as_alice("topic", "list", cert=False)
    assert no_cert.returncode != 0, no_cert
