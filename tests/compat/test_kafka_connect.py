"""Kafka Connect against the broker: a distributed worker (connect-runtime 4.4 from
`scripts/peers/kafka.sh install-connect`) keeps its connector configs, source offsets
and statuses in three topics it requires to be compacted. A source connector written
here (tests/compat/java/LineSource.java) sends a file's lines to a topic; the worker is
killed with SIGKILL once it stored its offsets, more lines are appended, and the
restarted worker finds its connector in the config topic and resumes from its stored
offset: every line arrives exactly once. Runs against Apache Kafka 4.4 too with
SLUICE_COMPAT_TARGET=kafka.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from conftest import KAFKA_SH, create_topic, wait_until

JAVA_SOURCE = Path(__file__).resolve().parent / "java" / "LineSource.java"


@pytest.fixture(scope="module")
def connect_classpath(tmp_path_factory) -> str:
    done = subprocess.run([str(KAFKA_SH), "connect-classpath"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"Kafka Connect is not installed (scripts/peers/kafka.sh install-connect): {done.stderr}")
    libs = done.stdout.strip()
    classes = tmp_path_factory.mktemp("linesource")
    subprocess.run(["javac", "-d", str(classes), "-cp", libs, str(JAVA_SOURCE)], check=True, timeout=120)
    return f"{libs}:{classes}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    def __init__(self, classpath: str, properties: Path, log: Path, rest: str):
        self.rest = rest
        self.log = log
        self.proc = subprocess.Popen(["java", "-Xmx384m", "-cp", classpath,
                                      "org.apache.kafka.connect.cli.ConnectDistributed", str(properties)],
                                     stdout=log.open("ab"), stderr=subprocess.STDOUT)

    def call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.rest}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            return json.loads(text) if text else None

    def wait_ready(self) -> None:
        def ready():
            assert self.proc.poll() is None, self.log.read_text(errors="replace")[-4000:]
            return self.call("GET", "/connectors") is not None
        wait_until(ready, timeout=120, interval=0.5, message="the Connect worker's REST API")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def _lines(bootstrap: str, topic: str) -> list[str]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        values = []
        while True:
            msg = consumer.poll(5.0)
            if msg is None:
                return values
            if msg.error():
                if msg.error().name() == "_PARTITION_EOF":
                    return values
                raise AssertionError(msg.error())
            values.append(msg.value().decode())
    finally:
        consumer.close()


def test_a_connect_worker_resumes_from_its_stored_offsets(broker, connect_classpath, tmp_path):
    suffix = uuid.uuid4().hex[:6]
    topics = {"config": f"connect-configs-{suffix}", "offset": f"connect-offsets-{suffix}",
              "status": f"connect-status-{suffix}"}
    create_topic(broker.bootstrap, "lines", 1)
    rest = f"http://127.0.0.1:{_free_port()}"
    properties = tmp_path / "worker.properties"
    properties.write_text("\n".join([
        f"bootstrap.servers={broker.bootstrap}",
        f"group.id=connect-{suffix}",
        "key.converter=org.apache.kafka.connect.storage.StringConverter",
        "value.converter=org.apache.kafka.connect.storage.StringConverter",
        f"config.storage.topic={topics['config']}",
        f"offset.storage.topic={topics['offset']}",
        f"status.storage.topic={topics['status']}",
        "config.storage.replication.factor=1",
        "offset.storage.replication.factor=1",
        "status.storage.replication.factor=1",
        "offset.storage.partitions=1",
        "status.storage.partitions=1",
        "offset.flush.interval.ms=200",
        f"listeners={rest}",
        f"rest.advertised.host.name=127.0.0.1",
    ]) + "\n")
    source = tmp_path / "source.txt"
    source.write_text("".join(f"line {i}\n" for i in range(100)))
    log = tmp_path / "worker.log"

    worker = Worker(connect_classpath, properties, log, rest)
    try:
        worker.wait_ready()
        worker.call("POST", "/connectors", {"name": "lines", "config": {
            "connector.class": "LineSource", "tasks.max": "1", "file": str(source), "topic": "lines"}})
        wait_until(lambda: len(_lines(broker.bootstrap, "lines")) == 100, timeout=120, interval=1.0,
                   message="the first 100 lines")

        def stored():
            offsets = worker.call("GET", "/connectors/lines/offsets")["offsets"]
            return offsets and offsets[0]["offset"]["line"] == 100
        wait_until(stored, timeout=60, interval=0.5, message="the worker stored its offset")
    finally:
        worker.kill()

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    for topic in topics.values():
        [configs] = [f.result(30) for f in admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()]
        assert configs["cleanup.policy"].value == "compact", topic

    with source.open("a") as f:
        f.write("".join(f"line {i}\n" for i in range(100, 150)))
    worker = Worker(connect_classpath, properties, log, rest)
    try:
        worker.wait_ready()
        wait_until(lambda: len(_lines(broker.bootstrap, "lines")) >= 150, timeout=120, interval=1.0,
                   message="the 50 appended lines")
        assert _lines(broker.bootstrap, "lines") == [f"line {i}" for i in range(150)]
    finally:
        worker.stop()
