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
from test_security import kafka_tool

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
