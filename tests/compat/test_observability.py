"""Observability (issue 19) with the real things: Apache-licensed Prometheus (Debian's
package) scrapes the broker's /metrics while sluice-bench produces and a confluent-kafka
group consumes, and the test asks Prometheus, through its HTTP API, whether the rates and
the lag are what the workload did; `promtool check metrics` lints the exposition; health
and readiness are followed through start and a shutdown held open by a client that stops
reading; the dashboard is loaded in headless Chromium (Playwright) while a producer runs.

Every process binds 127.0.0.1 on a free port and is stopped at teardown; every wait polls
with a deadline.
"""

from __future__ import annotations

import json
import re

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Optional

import pytest
from confluent_kafka import Consumer, Producer

from conftest import COMPAT_TARGET, REPO_ROOT, wait_until

pytestmark = pytest.mark.skipif(
    COMPAT_TARGET == "kafka", reason="Sluice's admin listener (Kafka has JMX instead)"
)

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
BENCH = TARGET / "release" / "sluice-bench"
SLUICE = TARGET / "release" / "sluice"
ARTIFACTS = TARGET / "test-artifacts"


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """(status, body) of a GET; an HTTP error status is an answer, not an exception."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """A real Prometheus server scraping `targets` every second."""

    def __init__(self, tmp_path: Path, targets: list[str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed: run scripts/deps.sh")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
            "scrape_configs:\n  - job_name: sluice\n    static_configs:\n"
            f"      - targets: [{', '.join(repr(t) for t in targets)}]\n"
        )
        self.log = open(tmp_path / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: http_get(f"{self.url}/-/ready", timeout=2)[0] == 200, timeout=60,
                   message="prometheus ready")

    def query(self, promql: str) -> list[dict[str, Any]]:
        status, body = http_get(f"{self.url}/api/v1/query?query={urllib.parse.quote(promql)}")
        assert status == 200, body
        return json.loads(body)["data"]["result"]

    def scalar(self, promql: str) -> Optional[float]:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def prometheus_factory(tmp_path: Path):
    started: list[Prometheus] = []

    def start(targets: list[str]) -> Prometheus:
        server = Prometheus(tmp_path, targets)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def grafana_queries() -> list[str]:
    dashboard = json.loads((REPO_ROOT / "docs" / "grafana" / "sluice.json").read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def bench_produce(broker, topic: str, rate: int, seconds: int) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BENCH), "produce", "--bootstrap", broker.bootstrap, "--topic", topic, "--partitions", "2",
         "--rate", str(rate), "--duration", str(seconds), "--record-size", "100", "-q", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def test_prometheus_sees_the_rates_and_the_lag_the_workload_made(broker_factory, prometheus_factory):
    broker = broker_factory()
    admin = broker.admin_url.removeprefix("http://")
    prometheus = prometheus_factory([admin])
    rate, topic, group = 2000, "watched", "watchers"
    producer = bench_produce(broker, topic, rate, 40)
    try:
        wait_until(lambda: http_get(f"{broker.admin_url}/metrics")[1].count(f'topic="{topic}"'.encode()),
                   timeout=30, message="the topic in /metrics")
        consumer = Consumer({
            "bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest",
            "enable.auto.commit": True, "auto.commit.interval.ms": 500,
        })
        consumer.subscribe([topic])
        consumed = 0

        def consume_for(seconds: float) -> None:
            nonlocal consumed
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is not None and message.error() is None:
                    consumed += 1

        def lag() -> Optional[float]:
            return prometheus.scalar(f'sluice_group_lag{{group="{group}"}}')

        try:
            consume_for(8)
            # Keeping up: the lag Prometheus saw last is small (under 2 s of produce).
            caught_up = wait_until(lambda: (lag() or 0) < rate * 2 and (lag() is not None),
                                   timeout=20, message="a small lag while consuming")
            assert caught_up
            # Produce rate as Prometheus computes it: about what sluice-bench was asked for.
            produced = prometheus.scalar(f'sum(rate(sluice_topic_records_in_total{{topic="{topic}"}}[5s]))')
            assert produced is not None and 0.5 * rate < produced < 1.5 * rate, produced
            consumed_rate = prometheus.scalar(f'sum(rate(sluice_topic_records_out_total{{topic="{topic}"}}[5s]))')
            assert consumed_rate is not None and consumed_rate > 0.5 * rate, consumed_rate

            # Paused (still a member: poll() keeps it in the group, nothing is fetched).
            consumer.pause(consumer.assignment())
            consume_for(8)
            grown = wait_until(lambda: (lag() or 0) > rate * 5 and lag(), timeout=20,
                               message="the lag to grow while paused")
            # Paused for 8 s with the records piling up: at least that long a delay.
            delay = prometheus.scalar(f'sluice_group_delay_seconds{{group="{group}"}}')
            assert delay is not None and delay >= 4, delay

            # Resumed: the lag drains.
            consumer.resume(consumer.assignment())
            consume_for(6)
            drained = wait_until(lambda: (lag() or float("inf")) < grown / 4, timeout=30,
                                 message="the lag to drain after resuming")
            assert drained is not None
            assert prometheus.scalar(f'max_over_time(sluice_group_lag{{group="{group}"}}[1m])') >= grown
        finally:
            consumer.close()
    finally:
        producer.kill()
        producer.wait()
    # The broker's own view of its connections and requests reached Prometheus too.
    assert prometheus.scalar('sum(sluice_requests_total{api="Produce"})') > 0
    assert prometheus.scalar('sum(sluice_connections_accepted_total)') > 0
    # Every query of the Grafana dashboard parses and, but for errors, has data.
    for expr in grafana_queries():
        result = prometheus.query(expr)
        if "errors" not in expr:
            assert result, expr


def test_promtool_accepts_the_exposition(broker_factory):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run scripts/deps.sh")
    broker = broker_factory()
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(100):
        producer.produce("linted", key=str(i % 3).encode(), value=b"v")
    producer.flush(30)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "linters",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe(["linted"])
    got = 0
    deadline = time.monotonic() + 30
    while got < 100 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            got += 1
    consumer.commit(asynchronous=False)
    consumer.close()
    status, body = http_get(f"{broker.admin_url}/metrics")
    assert status == 200
    text = body.decode()
    for name in ["sluice_topic_records_in_total", "sluice_request_duration_seconds_bucket",
                 "sluice_group_lag", "sluice_partition_size_bytes", "sluice_connections_open",
                 "process_open_fds", "sluice_log_segment_rolls_total"]:
        assert name in text, name
    lint = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert lint.returncode == 0, lint.stdout.decode() + lint.stderr.decode()
    # docs/grafana/sluice.json names only metrics the broker exports (errors appear once
    # one occurred).
    for expr in grafana_queries():
        for name in re.findall(r"\b(?:sluice|process)_[a-z_]+", expr):
            if name != "sluice_request_errors_total":
                assert name in text, f"{name} of the Grafana query {expr}"


def fetch_request(topic: str, correlation_id: int) -> bytes:
    """A Fetch v4 request (header v1) for partition 0 from offset 0, up to 64 MiB."""
    name = topic.encode()
    body = struct.pack(">iiiib", -1, 0, 0, 64 << 20, 0)
    body += struct.pack(">i", 1) + struct.pack(">h", len(name)) + name
    body += struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 64 << 20)
    client = b"stalled-reader"
    header = struct.pack(">hhih", 1, 4, correlation_id, len(client)) + client
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


def test_health_and_readiness_through_start_and_shutdown(broker_factory, tmp_path):
    # Start: a broker-only node whose controller is not up yet is alive, not ready, and
    # says why; it becomes ready once the controller runs and it caught up.
    controller_port = free_port()
    broker = broker_factory("--process-roles", "broker", "--node-id", "2",
                            "--controller-quorum-voters", f"1@127.0.0.1:{controller_port}")
    code, body = http_get(f"{broker.admin_url}/v1/ready")
    assert code == 503 and json.loads(body)["status"] == "catching_up", body
    assert json.loads(body)["reason"] == "catching up with the cluster's metadata"
    code, body = http_get(f"{broker.admin_url}/v1/health")
    assert code == 200 and json.loads(body)["alive"] is True, body
    controller = subprocess.Popen(
        [str(broker.binary), "--process-roles", "controller", "--node-id", "1",
         "--controller-quorum-voters", f"1@127.0.0.1:{controller_port}",
         "--listen", f"CONTROLLER://127.0.0.1:{controller_port}", "--data-dir", str(tmp_path / "controller")],
        env={**os.environ, "SLUICE_ADMIN_LISTENERS": "none"},
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "controller.log", "wb"),
    )
    try:
        wait_until(lambda: http_get(f"{broker.admin_url}/v1/ready")[0] == 200, timeout=60,
                   message="ready once the controller runs")
        assert json.loads(http_get(f"{broker.admin_url}/v1/status")[1])["status"] == "serving"
        shutdown_while_a_client_stalls(broker)
    finally:
        controller.terminate()
        try:
            controller.wait(timeout=30)
        except subprocess.TimeoutExpired:
            controller.kill()
            controller.wait()


def shutdown_while_a_client_stalls(broker) -> None:
    # A client that asks for a large answer and stops reading holds the shutdown open
    # (the broker waits for what it owes, up to its grace period): meanwhile it reports
    # itself alive no more and not ready.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 50})
    value = os.urandom(100_000)
    for _ in range(300):  # 30 MB in partition 0, far more than the socket buffers hold
        producer.produce("big", value=value, partition=0)
    producer.flush(60)
    stalled = socket.create_connection((broker.host, broker.port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(fetch_request("big", 1))
    # Nothing is ever read from `stalled`.
    try:
        def bytes_out() -> float:
            for line in http_get(f"{broker.admin_url}/metrics")[1].decode().splitlines():
                if line.startswith('sluice_topic_bytes_out_total{topic="big"}'):
                    return float(line.split()[-1])
            return 0.0

        # Counted once answered: the answer now sits in the socket, unread.
        wait_until(lambda: bytes_out() > 0, timeout=10, message="the fetch answered")
        broker.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: http_get(f"{broker.admin_url}/v1/ready")[0] == 503, timeout=10,
                   message="not ready once shutting down")
        code, body = http_get(f"{broker.admin_url}/v1/health")
        assert code == 503 and json.loads(body)["status"] == "shutting_down", body
        assert json.loads(http_get(f"{broker.admin_url}/v1/ready")[1])["reason"] == "shutting down"
    finally:
        stalled.close()
    broker.proc.wait(timeout=60)
    assert broker.proc.returncode == 0
    # Gone with the broker.
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        http_get(f"{broker.admin_url}/v1/health", timeout=2)


def test_the_dashboard_draws_throughput_in_a_real_browser(broker_factory):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: run scripts/deps.sh")
    broker = broker_factory()
    producer = bench_produce(broker, "drawn", 5000, 30)
    errors: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(broker.admin_url + "/", wait_until="load")
                page.wait_for_function(
                    "() => Number(document.getElementById('chart-throughput').dataset.max) > 0",
                    timeout=30_000,
                )
                # A few more refreshes, so the screenshot shows lines, not a dot.
                page.wait_for_function("() => Number(document.body.dataset.scrapes) >= 5", timeout=30_000)
                assert float(page.get_attribute("#chart-throughput", "data-max")) > 0
                assert int(page.get_attribute("#chart-throughput", "data-points")) >= 2
                assert "B/s" in page.inner_text("#in-bytes")
                # Every request counts (not one series of them), and internal topics are not listed.
                assert page.inner_text("#requests") not in ("0/s", "–/s"), page.inner_text("#requests")
                assert "__consumer_offsets" not in page.inner_text("#partitions-table")
                rows = page.locator("#partitions-table tbody tr")
                assert rows.count() >= 2
                assert "drawn-0" in page.inner_text("#partitions-table")
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            finally:
                browser.close()
    finally:
        producer.kill()
        producer.wait()
    assert errors == [], errors
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000


def sluice_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    return subprocess.run([str(SLUICE), *args], capture_output=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


def test_the_cli_shows_status_lag_and_delay(broker_factory):
    broker = broker_factory()
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(1000):
        producer.produce("ledger", value=f"{i}".encode(), partition=0)
    producer.flush(30)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "auditors",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["ledger"])
    got = 0
    deadline = time.monotonic() + 30
    while got < 1000 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            got += 1
    consumer.commit(asynchronous=False)
    consumer.close()
    for i in range(300):  # waiting records: a lag of 300 and a growing delay
        producer.produce("ledger", value=b"late", partition=0)
    producer.flush(30)
    common = ["--bootstrap", broker.bootstrap, "--admin-url", broker.admin_url]

    status = sluice_cli(*common, "broker", "status")
    assert status.returncode == 0, status.stderr.decode()
    out = status.stdout.decode()
    assert "Status:     serving" in out and f"PLAINTEXT on {broker.bootstrap}" in out, out
    as_json = json.loads(sluice_cli(*common, "broker", "status", "--json").stdout)
    assert as_json["node_id"] == 1 and as_json["topics"] >= 1

    def delay_row() -> Optional[list[str]]:
        described = sluice_cli(*common, "group", "describe", "auditors")
        assert described.returncode == 0, described.stderr.decode()
        lines = described.stdout.decode().splitlines()
        header = next(line for line in lines if line.startswith("TOPIC"))
        assert header.split()[:7] == ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "RATE", "DELAY"]
        row = next(line.split() for line in lines if line.startswith("ledger"))
        # Stalled (nothing consumed since the commit) with 300 waiting: the delay grows.
        return row if row[4] == "300" and row[6] != "-" and row[6].endswith("s") and row[6] != "0ms" else None

    row = wait_until(delay_row, timeout=20, message="a delay for the waiting records")
    assert row[2] == "1000" and row[3] == "1300", row

    watched = sluice_cli(*common, "group", "lag", "auditors", "--watch", "--count", "2", "--interval", "0.2")
    assert watched.returncode == 0, watched.stderr.decode()
    assert watched.stdout.decode().count("Group auditors") == 2

    # No admin API there (a closed loopback port): the Kafka-side columns still print.
    closed = free_port()
    blind = sluice_cli("--bootstrap", broker.bootstrap, "--admin-url", f"http://127.0.0.1:{closed}",
                       "group", "describe", "auditors")
    assert blind.returncode == 0, blind.stderr.decode()
    text = blind.stdout.decode()
    assert "Delay: not available" in text, text
    row = next(line.split() for line in text.splitlines() if line.startswith("ledger"))
    assert row[4] == "300" and row[5] == "-" and row[6] == "-", row


def test_json_logs_name_slow_requests(broker_factory, tmp_path):
    """log.format=json: every stderr line is one JSON object; slow.request.threshold.ms
    logs a request slower than it with its API, client id, peer and stages, but not a
    fetch long poll, whose wait is by design."""
    broker = broker_factory(env={"SLUICE_LOG_FORMAT": "json", "SLUICE_SLOW_REQUEST_THRESHOLD_MS": "5"})
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce("quiet", value=b"the only record")
    producer.flush(30)
    # Past the only record, each fetch long-polls 500 ms: slow in total, not logged.
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "sleepy",
                         "fetch.wait.max.ms": 500, "auto.offset.reset": "earliest"})
    consumer.subscribe(["quiet"])
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        consumer.poll(0.2)
    consumer.close()
    # Creating 200 partitions (files, the metadata quorum's commit) takes more than 5 ms.
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "client.id": "slow-creator"})
    admin.create_topics([NewTopic("wide", num_partitions=200, replication_factor=1)])["wide"].result(30)

    def entries() -> list[dict]:
        return [json.loads(line) for line in broker.stderr_log.read_text().splitlines()
                if not line.startswith("----")]  # the harness's start banner

    def slow(api: str) -> Optional[dict]:
        return next((e for e in entries() if e["fields"].get("message", "").startswith("slow request")
                     and e["fields"].get("api") == api), None)

    entry = wait_until(lambda: slow("CreateTopics"), timeout=30, message="a slow CreateTopics in the JSON log")
    fields = entry["fields"]
    assert entry["level"] == "WARN"
    assert fields["client_id"] == "slow-creator"
    assert fields["total_ms"] >= 5 and fields["local_ms"] > 0, fields
    assert fields["peer"].startswith("127.0.0.1:")
    assert fields["request_id"].startswith(fields["peer"] + "/")
    assert slow("Fetch") is None, slow("Fetch")
