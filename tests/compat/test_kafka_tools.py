"""Apache Kafka's own admin tools (the 4.4 jars, run by scripts/peers/kafka.sh) against the
broker, checked by their output. Each runs against Apache Kafka too with
SLUICE_COMPAT_TARGET=kafka.
"""

from __future__ import annotations

import json
import subprocess
import tempfile

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import COMPAT_TARGET, KAFKA_SH


def kafka_tool(*args: str) -> str:
    done = subprocess.run([str(KAFKA_SH), "run", *args], capture_output=True, timeout=120)
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, f"{args[0]} failed ({done.returncode}):\n{output}"
    return output


def test_kafka_topics_describe_pages_through_partitions(broker):
    """`kafka-topics --describe` (the Java admin's describeTopics: DescribeTopicPartitions,
    API 75) lists every partition even when each answer holds only two."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for future in admin.create_topics([NewTopic("paged", 5, 1), NewTopic("paged-too", 2, 1)]).values():
        future.result(30)
    out = kafka_tool("org.apache.kafka.tools.TopicCommand", "--bootstrap-server", broker.bootstrap,
                     "--describe", "--topic", "paged.*", "--partition-size-limit-per-response", "2")
    lines = [line.split() for line in out.splitlines()]
    summary = {line[1]: line for line in lines if line[:1] == ["Topic:"] and "PartitionCount:" in line}
    assert set(summary) == {"paged", "paged-too"}, out
    assert summary["paged"][summary["paged"].index("PartitionCount:") + 1] == "5", out
    partitions = sorted((line[1], int(line[3])) for line in lines
                        if line[:1] == ["Topic:"] and "Partition:" in line)
    assert partitions == [("paged", i) for i in range(5)] + [("paged-too", i) for i in range(2)], out
    for line in lines:
        if "Partition:" in line:
            assert line[line.index("Leader:") + 1] != "none", out
    if COMPAT_TARGET == "sluice":
        # It was the paginated API that answered, four times (2 + 2 + 2 + 1 partitions).
        import urllib.request
        with urllib.request.urlopen(f"{broker.admin_url}/metrics", timeout=10) as response:
            text = response.read().decode()
        served = [float(line.split()[-1]) for line in text.splitlines()
                  if line.startswith('sluice_requests_total{api="DescribeTopicPartitions"')]
        assert served and sum(served) >= 4, served


def test_kafka_log_dirs_groups_offsets_and_delete_records(broker, tmp_path):
    """kafka-log-dirs --describe (DescribeLogDirs), kafka-consumer-groups --describe
    --all-groups, kafka-get-offsets (ListOffsets) and kafka-delete-records (DeleteRecords)
    against the broker, each checked by what it prints."""
    import json

    from confluent_kafka import Consumer, Producer

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("tooled", 2, 1)])["tooled"].result(30)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        producer.produce("tooled", value=b"x" * 100, partition=i % 2)
    producer.flush(30)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "toolers",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["tooled"])
    got = 0
    import time
    deadline = time.monotonic() + 30
    while got < 20 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            got += 1
    consumer.commit(asynchronous=False)
    consumer.close()

    out = kafka_tool("org.apache.kafka.tools.LogDirsCommand", "--bootstrap-server", broker.bootstrap,
                     "--describe", "--topic-list", "tooled")
    report = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    sizes = {p["partition"]: p["size"] for b in report["brokers"] for d in b["logDirs"] for p in d["partitions"]}
    assert set(sizes) == {"tooled-0", "tooled-1"} and all(size > 1000 for size in sizes.values()), out

    out = kafka_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server",
                     broker.bootstrap, "--describe", "--all-groups")
    rows = [line.split() for line in out.splitlines() if line.startswith("toolers")]
    assert sorted((r[1], r[2], r[3], r[4], r[5]) for r in rows) == [
        ("tooled", "0", "10", "10", "0"), ("tooled", "1", "10", "10", "0")], out

    out = kafka_tool("org.apache.kafka.tools.GetOffsetShell", "--bootstrap-server", broker.bootstrap,
                     "--topic", "tooled")
    assert sorted(out.split()) == ["tooled:0:10", "tooled:1:10"], out

    plan = tmp_path / "delete.json"
    plan.write_text(json.dumps({"version": 1, "partitions": [{"topic": "tooled", "partition": 0, "offset": 4}]}))
    out = kafka_tool("org.apache.kafka.tools.DeleteRecordsCommand", "--bootstrap-server", broker.bootstrap,
                     "--offset-json-file", str(plan))
    assert "partition: tooled-0\tlow_watermark: 4" in out, out
    out = kafka_tool("org.apache.kafka.tools.GetOffsetShell", "--bootstrap-server", broker.bootstrap,
                     "--topic", "tooled", "--time", "-2")
    assert sorted(out.split()) == ["tooled:0:4", "tooled:1:0"], out


def test_kafka_configs_describes_and_alters_topic_configs(broker):
    """kafka-configs --alter --add-config / --delete-config and --describe on a topic
    (IncrementalAlterConfigs, DescribeConfigs), and --describe of the broker's configs."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("configured", 1, 1)])["configured"].result(30)
    tool = "org.apache.kafka.tools.ConfigCommand"
    common = ["--bootstrap-server", broker.bootstrap]
    out = kafka_tool(tool, *common, "--alter", "--entity-type", "topics", "--entity-name", "configured",
                     "--add-config", "retention.ms=86400000,cleanup.policy=delete")
    assert "Completed updating config for topic configured" in out, out
    out = kafka_tool(tool, *common, "--describe", "--entity-type", "topics", "--entity-name", "configured")
    assert "retention.ms=86400000" in out and "cleanup.policy=delete" in out, out
    kafka_tool(tool, *common, "--alter", "--entity-type", "topics", "--entity-name", "configured",
               "--delete-config", "retention.ms")
    out = kafka_tool(tool, *common, "--describe", "--entity-type", "topics", "--entity-name", "configured")
    assert "retention.ms=" not in out and "cleanup.policy=delete" in out, out
    out = kafka_tool(tool, *common, "--describe", "--entity-type", "brokers", "--entity-name", "1", "--all")
    assert "log.retention.hours=" in out or "log.retention.ms=" in out, out


def test_kafka_leader_election(broker):
    """kafka-leader-election (ElectLeaders, API 43): a partition already led by its
    preferred replica is reported as such, an election over every partition has nothing to
    do, and an unknown partition is named in the failure, as on Kafka 4.4."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("elected", 2, 1)])["elected"].result(30)
    tool = "org.apache.kafka.tools.LeaderElectionCommand"
    for election in ("preferred", "unclean"):
        out = kafka_tool(tool, "--bootstrap-server", broker.bootstrap, "--election-type", election,
                         "--topic", "elected", "--partition", "1")
        assert "Valid replica already elected for partitions elected-1" in out, out
        out = kafka_tool(tool, "--bootstrap-server", broker.bootstrap, "--election-type", election,
                         "--all-topic-partitions")
        assert "elected" not in out and "could not be elected" not in out, out
    done = subprocess.run([str(KAFKA_SH), "run", tool, "--bootstrap-server", broker.bootstrap,
                           "--election-type", "preferred", "--topic", "elected", "--partition", "7"],
                          capture_output=True, timeout=120)
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert "1 replica(s) could not be elected" in output, output
    assert "No such partition as elected-7" in output, output


def _configs_failure(*args: str) -> str:
    """The error kafka-configs prints for a refused change."""
    done = subprocess.run([str(KAFKA_SH), "run", "org.apache.kafka.tools.ConfigCommand", *args],
                          capture_output=True, timeout=120)
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode != 0, output
    return output


def test_kafka_configs_alters_dynamic_broker_configs(broker):
    """Dynamic broker configs (IncrementalAlterConfigs of BROKER resources): the cluster
    default and the broker's own level, which wins; applied at once to topics without an
    override (a lowered message.max.bytes refuses a larger record), described with their
    sources, refused in Kafka's words where Kafka refuses them, and removed again."""
    tool = "org.apache.kafka.tools.ConfigCommand"
    common = ["--bootstrap-server", broker.bootstrap]
    default = [*common, "--entity-type", "brokers", "--entity-default"]
    broker1 = [*common, "--entity-type", "brokers", "--entity-name", "1"]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("dynamic-defaults", 1, 1)])["dynamic-defaults"].result(30)
    topic = [*common, "--entity-type", "topics", "--entity-name", "dynamic-defaults"]
    try:
        out = kafka_tool(tool, *default, "--alter", "--add-config", "log.retention.ms=3600000,message.max.bytes=2000")
        assert "Completed updating default config for brokers in the cluster." in out, out
        out = kafka_tool(tool, *topic, "--describe", "--all")
        assert "retention.ms=3600000 sensitive=false synonyms={DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=3600000" in out, out
        producer = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 100000})
        failures: list = []
        producer.produce("dynamic-defaults", b"x" * 5000, on_delivery=lambda err, msg: failures.append(err))
        producer.flush(30)
        assert len(failures) == 1 and failures[0] is not None, failures
        assert failures[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, failures

        out = kafka_tool(tool, *broker1, "--alter", "--add-config",
                         "log.retention.ms=7200000,sasl.kerberos.min.time.before.relogin=58000")
        assert "Completed updating config for broker 1." in out, out
        out = kafka_tool(tool, *topic, "--describe", "--all")
        assert "retention.ms=7200000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:log.retention.ms=7200000, DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=3600000" in out, out
        out = kafka_tool(tool, *broker1, "--describe")
        assert "sasl.kerberos.min.time.before.relogin=58000" in out and "log.retention.ms=7200000" in out, out
        out = kafka_tool(tool, *default, "--describe")
        assert "log.retention.ms=3600000" in out and "log.retention.ms=7200000" not in out, out

        assert ("Cannot update these configs at default cluster level, broker id must be specified: "
                "[sasl.kerberos.min.time.before.relogin]") in _configs_failure(
                    *default, "--alter", "--add-config", "sasl.kerberos.min.time.before.relogin=1")
        assert "Cannot update these configs dynamically: [num.partitions]" in _configs_failure(
            *broker1, "--alter", "--add-config", "num.partitions=3")
        assert "Invalid value abc for configuration log.retention.ms" in _configs_failure(
            *broker1, "--alter", "--add-config", "log.retention.ms=abc")
    finally:
        kafka_tool(tool, *broker1, "--alter", "--delete-config",
                   "log.retention.ms,sasl.kerberos.min.time.before.relogin")
        kafka_tool(tool, *default, "--alter", "--delete-config", "log.retention.ms,message.max.bytes")
    out = kafka_tool(tool, *topic, "--describe", "--all")
    assert "retention.ms=604800000" in out and "BROKER_CONFIG:log.retention.ms" not in out, out
    delivered: list = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 100000})
    producer.produce("dynamic-defaults", b"x" * 5000, on_delivery=lambda err, msg: delivered.append(err))
    producer.flush(30)
    assert delivered == [None], delivered


def test_kafka_configs_sets_broker_log_levels(broker):
    """Broker loggers (BROKER_LOGGER, resource type 8): listed with their levels, a level
    set and removed again, and Kafka's refusals of an unknown level and of removing the
    root logger's."""
    tool = "org.apache.kafka.tools.ConfigCommand"
    loggers = ["--bootstrap-server", broker.bootstrap, "--entity-type", "broker-loggers", "--entity-name", "1"]
    out = kafka_tool(tool, *loggers, "--describe")
    levels = dict(line.split()[0].split("=", 1) for line in out.splitlines() if "sensitive=" in line)
    assert levels.get("root") in {"INFO", "WARN", "ERROR", "DEBUG", "TRACE"}, out
    # A logger below the broker's main one, so that nothing else changes level.
    logger = sorted(name for name in levels if name.count(".") >= 2 and levels[name] != "TRACE")[0]
    kafka_tool(tool, *loggers, "--alter", "--add-config", f"{logger}=TRACE")
    out = kafka_tool(tool, *loggers, "--describe")
    assert f"{logger}=TRACE " in out, out
    kafka_tool(tool, *loggers, "--alter", "--delete-config", logger)
    out = kafka_tool(tool, *loggers, "--describe")
    assert f"{logger}=TRACE " not in out, out
    assert ("Cannot set the log level of root to LOUD as it is not a supported log level. "
            "Valid log levels are DEBUG, ERROR, FATAL, INFO, TRACE, WARN") in _configs_failure(
                *loggers, "--alter", "--add-config", "root=LOUD")
    assert "Removing the log level of the root logger is not allowed" in _configs_failure(
        *loggers, "--alter", "--delete-config", "root")


# DescribeConfigs of a group on Apache Kafka 4.4: name -> default.
KAFKA_GROUP_CONFIGS = {
    "consumer.assignment.interval.ms": "1000", "consumer.heartbeat.interval.ms": "5000",
    "consumer.session.timeout.ms": "45000", "errors.deadletterqueue.copy.record.enable": "false",
    "errors.deadletterqueue.topic.name": "", "share.assignment.interval.ms": "1000",
    "share.auto.offset.reset": "latest", "share.delivery.count.limit": "5",
    "share.heartbeat.interval.ms": "5000", "share.isolation.level": "read_uncommitted",
    "share.partition.max.record.locks": "2000", "share.record.lock.duration.ms": "30000",
    "share.renew.acknowledge.enable": "true", "share.session.timeout.ms": "45000",
    "streams.assignment.interval.ms": "1000", "streams.assignor.name": "sticky",
    "streams.heartbeat.interval.ms": "5000", "streams.initial.rebalance.delay.ms": "3000",
    "streams.num.standby.replicas": "0", "streams.rack.aware.assignment.tags": "",
    "streams.session.timeout.ms": "45000",
}


def test_kafka_configs_describes_and_alters_group_configs(broker):
    """Group configs (GROUP, resource type 32): Kafka 4.4's 21 names and defaults, a value
    set, described with its source and removed, and Kafka's refusals."""
    tool = "org.apache.kafka.tools.ConfigCommand"
    group = ["--bootstrap-server", broker.bootstrap, "--entity-type", "groups", "--entity-name", "configured-group"]
    out = kafka_tool(tool, *group, "--describe", "--all")
    described = dict(line.split()[0].split("=", 1) for line in out.splitlines() if "sensitive=" in line)
    assert described == KAFKA_GROUP_CONFIGS, out
    out = kafka_tool(tool, *group, "--alter", "--add-config", "consumer.session.timeout.ms=50000")
    assert "Completed updating config for group configured-group." in out, out
    out = kafka_tool(tool, *group, "--describe")
    assert ("consumer.session.timeout.ms=50000 sensitive=false synonyms={DYNAMIC_GROUP_CONFIG:"
            "consumer.session.timeout.ms=50000, DEFAULT_CONFIG:group.consumer.session.timeout.ms=45000}") in out, out
    assert "consumer.session.timeout.ms must be in the range 45000 to 60000 inclusive." in _configs_failure(
        *group, "--alter", "--add-config", "consumer.session.timeout.ms=5")
    assert "Unknown group config name: foo" in _configs_failure(*group, "--alter", "--add-config", "foo=5")
    kafka_tool(tool, *group, "--alter", "--delete-config", "consumer.session.timeout.ms")
    out = kafka_tool(tool, *group, "--describe")
    assert "consumer.session.timeout.ms" not in out, out


def test_kafka_reassign_partitions_on_what_a_single_node_can_do(broker):
    """kafka-reassign-partitions (AlterPartitionReassignments 45, ListPartitionReassignments
    46): a plan that keeps the current replica is carried out at once and verified
    complete, nothing is listed in progress, cancelling finds nothing to cancel, and a
    plan naming an unknown broker is refused, as on Kafka 4.4."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("reassigned", 2, 1)])["reassigned"].result(30)
    tool = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
    common = ["--bootstrap-server", broker.bootstrap]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as same:
        json.dump({"version": 1, "partitions": [{"topic": "reassigned", "partition": 0, "replicas": [1]}]}, same)
        same.flush()
        out = kafka_tool(tool, *common, "--execute", "--reassignment-json-file", same.name)
        assert "Successfully started partition reassignment for reassigned-0" in out, out
        out = kafka_tool(tool, *common, "--list")
        assert "No partition reassignments found." in out, out
        out = kafka_tool(tool, *common, "--verify", "--reassignment-json-file", same.name)
        assert "Reassignment of partition reassigned-0 is completed." in out, out
        out = kafka_tool(tool, *common, "--cancel", "--reassignment-json-file", same.name)
        assert "None of the specified partition reassignments are active." in out, out
    with tempfile.NamedTemporaryFile("w", suffix=".json") as other:
        json.dump({"version": 1, "partitions": [{"topic": "reassigned", "partition": 0, "replicas": [2]}]}, other)
        other.flush()
        done = subprocess.run([str(KAFKA_SH), "run", tool, *common, "--execute", "--reassignment-json-file", other.name],
                              capture_output=True, timeout=120)
        output = (done.stdout + done.stderr).decode(errors="replace")
        assert done.returncode != 0 and "Unknown broker id 2" in output, output
