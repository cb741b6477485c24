"""The workload of the cluster fault bench: the client processes that write the history.

This file owns starting, stopping and collecting the clients of one run (the processes
themselves are clients.py for confluent-kafka and java/HistoryProducer.java for Kafka's Java
client, through javaclient.py):

- idempotent producers (Python and Java) writing unique values,
- consumers in a group committing offsets, and consumers assigned every partition,
- one final read of every partition once the writers are stopped,

each process with its own history file ``OUT_DIR/NAME.jsonl`` and log ``OUT_DIR/NAME.log``,
merged at the end into ``OUT_DIR/history.jsonl`` for checker.py. Typical use::

    with Workload(bootstrap, "jepsen", out_dir) as workload:
        workload.start()
        ...                       # nemeses
        workload.stop()
        workload.final_read()
        history_path = workload.merge()
        print(workload.report())

Leaving the ``with`` block kills (SIGKILL, whole process group) whatever is still running,
also when the test failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Optional

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import history  # noqa: E402
import javaclient  # noqa: E402

CLIENTS_PY = HERE / "clients.py"
# After the producers' own drain deadline: time for close() and process exit.
PRODUCER_STOP_MARGIN_S = 20.0
# Consumers exit within a poll (0.5 s) plus a bounded close (10 s) after SIGTERM; their own
# watchdog ends them at 25 s, so SIGKILL is the last resort.
CONSUMER_STOP_TIMEOUT_S = 30.0
FINAL_READ_MARGIN_S = 30.0


@dataclass
class ClientProcess:
    """One client process of the run."""

    name: str
    client: str  # "confluent-kafka" | "java"
    role: str  # "producer" | "group-consumer" | "assigned-consumer"
    argv: list[str]
    history: Path
    log: Path
    proc: Optional[subprocess.Popen[bytes]] = None
    exit_code: Optional[int] = None
    _log_file: Optional[IO[bytes]] = field(default=None, repr=False)

    def start(self) -> None:
        self._log_file = open(self.log, "ab")
        self._log_file.write(f"---- {' '.join(self.argv)}\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Its own session and process group: signals reach it (and anything it starts)
            # and not the test runner.
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.running():
            assert self.proc is not None
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float) -> Optional[int]:
        """Waits up to ``timeout`` s; SIGKILLs the process group if it is still running."""
        if self.proc is None:
            return None
        try:
            self.exit_code = self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_log()
        return self.exit_code

    def kill(self) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGKILL)
        try:
            self.exit_code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass  # unkillable (D state): nothing more we can do
        self._close_log()

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Workload:
    """The client processes of one run against ``bootstrap``'s ``topic``."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        out_dir: Path,
        *,
        py_producers: int = 2,
        java_producers: int = 1,
        group_consumers: int = 2,
        assigned_consumers: int = 1,
        group: str = "jepsen-group",
        rate: float = 50,
        producer_props: Optional[dict[str, Any]] = None,
        consumer_props: Optional[dict[str, Any]] = None,
        drain_timeout: float = 60.0,
        unsafe_acks_1: bool = False,
    ):
        """``rate`` is per producer, records per second. ``producer_props`` are extra client
        properties given to every producer, Python (librdkafka names, as -X) and Java alike:
        use names both clients know (e.g. delivery.timeout.ms, which librdkafka accepts as an
        alias of message.timeout.ms; request.timeout.ms; retry.backoff.ms). ``drain_timeout``
        is how long producers wait for outstanding records after SIGTERM. ``unsafe_acks_1``
        makes the Python producers use acks=1 without idempotence: only for the negative
        control, which shows that the checker sees the records such settings lose."""
        if unsafe_acks_1 and java_producers:
            raise ValueError("unsafe_acks_1 is for the Python producers only: set java_producers=0")
        self.unsafe_acks_1 = unsafe_acks_1
        self.bootstrap = bootstrap
        self.topic = topic
        self.out_dir = Path(out_dir)
        self.group = group
        self.rate = rate
        self.producer_props = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (producer_props or {}).items()}
        self.consumer_props = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (consumer_props or {}).items()}
        self.drain_timeout = drain_timeout
        self.counts = {
            "py-producer": py_producers,
            "java-producer": java_producers,
            "group-consumer": group_consumers,
            "assigned-consumer": assigned_consumers,
        }
        self.processes: list[ClientProcess] = []
        self.final_read_history = self.out_dir / "final-read.jsonl"
        self.final_read_code: Optional[int] = None
        self.history_path = self.out_dir / "history.jsonl"

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> "Workload":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()

    def _python(self, subcommand: str, name: str, *extra: str) -> list[str]:
        return [
            sys.executable,
            str(CLIENTS_PY),
            subcommand,
            "--bootstrap",
            self.bootstrap,
            "--topic",
            self.topic,
            "--process",
            name,
            "--history",
            str(self.out_dir / f"{name}.jsonl"),
            *extra,
        ]

    def _props(self, props: dict[str, str]) -> list[str]:
        return [arg for key, value in props.items() for arg in ("-X", f"{key}={value}")]

    def _plan(self) -> list[ClientProcess]:
        producer_opts = ["--rate", str(self.rate), "--drain-timeout", str(self.drain_timeout)]
        py_producer_opts = producer_opts + (["--unsafe-acks-1"] if self.unsafe_acks_1 else [])
        plan: list[ClientProcess] = []

        def add(name: str, client: str, role: str, argv: list[str]) -> None:
            plan.append(ClientProcess(name, client, role, argv, self.out_dir / f"{name}.jsonl", self.out_dir / f"{name}.log"))

        for i in range(self.counts["py-producer"]):
            name = f"py-producer-{i}"
            add(name, "confluent-kafka", "producer", self._python("producer", name, *py_producer_opts, *self._props(self.producer_props)))
        for i in range(self.counts["java-producer"]):
            name = f"java-producer-{i}"
            args = [
                "--bootstrap", self.bootstrap, "--topic", self.topic, "--process", name,
                "--history", str(self.out_dir / f"{name}.jsonl"), *producer_opts, *self._props(self.producer_props),
            ]  # fmt: skip
            add(name, "java", "producer", javaclient.producer_command(args))
        for i in range(self.counts["group-consumer"]):
            name = f"group-consumer-{i}"
            argv = self._python("group-consumer", name, "--group", self.group, *self._props(self.consumer_props))
            add(name, "confluent-kafka", "group-consumer", argv)
        for i in range(self.counts["assigned-consumer"]):
            name = f"assigned-consumer-{i}"
            add(name, "confluent-kafka", "assigned-consumer", self._python("assigned-consumer", name, *self._props(self.consumer_props)))
        return plan

    def start(self) -> None:
        """Starts every client process. The Java producer is compiled first if needed (a few
        seconds, once per version of its source)."""
        if self.processes:
            raise RuntimeError("workload already started")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        plan = self._plan()  # compiles the Java producer before anything runs
        for process in plan:
            self.processes.append(process)
            process.start()

    def stop(self, drain_timeout: Optional[float] = None) -> dict[str, Optional[int]]:
        """SIGTERMs the producers and waits for them (they drain their outstanding records
        for up to their own drain timeout; SIGKILL after ``drain_timeout`` plus a margin),
        then the consumers. Returns ``{process: exit code}`` (None if it never started;
        negative: killed by that signal)."""
        drain_timeout = self.drain_timeout if drain_timeout is None else drain_timeout
        producers = [p for p in self.processes if p.role == "producer"]
        consumers = [p for p in self.processes if p.role != "producer"]
        for group, timeout in ((producers, drain_timeout + PRODUCER_STOP_MARGIN_S), (consumers, CONSUMER_STOP_TIMEOUT_S)):
            for process in group:
                process.signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for process in group:
                process.wait(deadline - time.monotonic())
        return {p.name: p.exit_code for p in self.processes}

    def kill(self) -> None:
        """SIGKILLs every process still running (teardown; safe to call repeatedly)."""
        for process in self.processes:
            if process.running():
                process.kill()
            else:
                process.wait(0)

    def not_ready(self) -> list[str]:
        """The processes that are not working yet: producers without an acknowledged send,
        consumers without an assignment of at least one partition."""
        waiting = []
        for process in self.processes:
            try:
                ops = list(history.read(process.history)) if process.history.exists() else []
            except ValueError:
                ops = []  # a line being written right now: not ready yet
            if process.role == "producer":
                ready = any(op.get("f") == "send" and op.get("type") == "ok" for op in ops)
            else:
                ready = any(op.get("f") == "assign" and op.get("partitions") for op in ops)
            if not ready:
                waiting.append(process.name)
        return waiting

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Waits until every producer has had a send acknowledged and every consumer owns
        partitions (JVM start-up, group joins and, on a new Kafka, the creation of
        __consumer_offsets take seconds). Raises TimeoutError naming the laggards, or
        RuntimeError if a client exited."""
        deadline = time.monotonic() + timeout
        while True:
            dead = self.dead()
            if dead:
                raise RuntimeError(f"clients exited: {dead}")
            waiting = self.not_ready()
            if not waiting:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not ready within {timeout}s: {waiting}")
            time.sleep(0.2)

    def dead(self) -> dict[str, str]:
        """The processes that exited by themselves so far: {name: tail of its log}. Useful to
        fail a test early with the reason instead of at the end."""
        return {p.name: p.log_tail() for p in self.processes if p.proc is not None and p.proc.poll() is not None}

    # -- after the run ----------------------------------------------------------------------

    def final_read(self, timeout: float = 60) -> None:
        """Reads every partition from its earliest offset to its end offset (taken at the
        start) and records it in the history. An incomplete read (timeout) is recorded as
        such (``complete: false``) for the checker; ``final_read_code`` is 0 if complete."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable, str(CLIENTS_PY), "final-read", "--bootstrap", self.bootstrap, "--topic", self.topic,
            "--history", str(self.final_read_history), "--timeout", str(timeout), *self._props(self.consumer_props),
        ]  # fmt: skip
        with open(self.out_dir / "final-read.log", "ab") as log:
            log.write(f"---- {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                self.final_read_code = proc.wait(timeout=timeout + FINAL_READ_MARGIN_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                self.final_read_code = proc.wait(timeout=10)

    def history_files(self) -> list[Path]:
        files = [p.history for p in self.processes] + [self.final_read_history]
        return [f for f in files if f.exists()]

    def merge(self) -> Path:
        """Merges every process's history into ``OUT_DIR/history.jsonl`` and returns it."""
        history.merge(self.history_files(), self.history_path)
        return self.history_path

    def _ops(self) -> list[dict]:
        if self.history_path.exists():
            return list(history.read(self.history_path))
        return [op for f in self.history_files() for op in history.read(f)]

    def acked_by_process(self) -> dict[str, int]:
        """Acknowledged sends per producer process, e.g. {"py-producer-0": 250, ...} (every
        producer is listed, with 0 if it acknowledged nothing)."""
        counts: Counter[str] = Counter({p.name: 0 for p in self.processes if p.role == "producer"})
        for op in self._ops():
            if op.get("f") == "send" and op.get("type") == "ok":
                counts[op["process"]] += 1
        return dict(counts)

    def acked_by_client(self) -> dict[str, int]:
        """Acknowledged sends per client library: {"confluent-kafka": N, "java": M}."""
        counts: Counter[str] = Counter({p.client: 0 for p in self.processes if p.role == "producer"})
        for op in self._ops():
            if op.get("f") == "send" and op.get("type") == "ok":
                counts[op["client"]] += 1
        return dict(counts)

    def report(self) -> str:
        """One line per producer: how many records it acknowledged, and the totals."""
        by_process = self.acked_by_process()
        clients = {p.name: p.client for p in self.processes}
        lines = [f"{name} ({clients.get(name, '?')}): acked={count}" for name, count in sorted(by_process.items())]
        lines.append("acked by client: " + ", ".join(f"{c}={n}" for c, n in sorted(self.acked_by_client().items())))
        return "\n".join(lines)


def create_topic(
    bootstrap: str,
    topic: str,
    partitions: int = 3,
    replication_factor: int = 1,
    config: Optional[dict[str, str]] = None,
    timeout: float = 60.0,
) -> None:
    """Creates ``topic`` with the confluent-kafka AdminClient (an existing topic is fine) and
    waits until every partition has a leader."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    futures = admin.create_topics(
        [NewTopic(topic, partitions, replication_factor, config=dict(config or {}))], operation_timeout=timeout
    )
    try:
        futures[topic].result(timeout=timeout)
    except KafkaException as e:
        if e.args[0].code() != e.args[0].TOPIC_ALREADY_EXISTS:
            raise
    last = "no metadata yet"
    while time.monotonic() < deadline:
        try:
            metadata = admin.list_topics(topic, timeout=5).topics.get(topic)
            if metadata is not None and metadata.error is None and len(metadata.partitions) == partitions:
                if all(p.leader >= 0 and p.error is None for p in metadata.partitions.values()):
                    return
            last = repr(metadata.error) if metadata is not None and metadata.error else "partitions without a leader"
        except KafkaException as e:
            last = str(e)
        time.sleep(0.2)
    raise TimeoutError(f"topic {topic} not ready within {timeout}s: {last}")
