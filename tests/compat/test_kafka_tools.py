"""Apache Kafka's own admin tools (the 4.4 jars, run by scripts/peers/kafka.sh) against the
broker, checked by their output. Each runs against Apache Kafka too with
SLUICE_COMPAT_TARGET=kafka.
"""

from __future__ import annotations

import subprocess

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
