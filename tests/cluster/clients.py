#!/usr/bin/env python3
"""The confluent-kafka (librdkafka) client processes of the cluster fault bench.

This file owns the Python side of the workload: each subcommand is one client process that
records everything it does into its own history file (format: history.py and
docs/cluster-testing.md, "The history"):

- ``producer``: idempotent (enable.idempotence=true, acks=all) producer of unique values
  "<process>-<seq>" with keys "k<seq % 8>"; an ``invoke`` before each produce(), then ``ok``
  (partition, offset) or ``info`` (any error: the outcome is unknown) from its delivery report;
- ``group-consumer``: subscribes in a consumer group (classic protocol, eager ``range``
  assignor), records each assignment change and each non-empty poll, and commits the
  offsets it has consumed synchronously about once a second;
- ``assigned-consumer``: assigns every partition manually from offset 0 and records polls;
- ``final-read``: once the faults are healed and the writers stopped, reads every partition
  from its earliest offset up to the high watermark taken at the start, as one op.

Run it as a script from any directory, e.g.
``.venv/bin/python tests/cluster/clients.py producer --bootstrap 127.0.0.1:9092 --topic jepsen
--process py-producer-0 --history /tmp/py-producer-0.jsonl``. Every process runs until SIGTERM
(or SIGINT) and then exits within a bounded time: errors from librdkafka are recorded in the
history (or printed to stderr) and never end the process.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

# history.py lives beside this file; the script is run from any cwd.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition  # noqa: E402

from history import HistoryWriter  # noqa: E402

CLIENT = "confluent-kafka"
KEY_COUNT = 8
# How long a consumer's poll blocks: also the worst-case delay before SIGTERM is noticed.
POLL_TIMEOUT_S = 0.5
MAX_POLL_RECORDS = 500
COMMIT_INTERVAL_S = 1.0
# How long an assignment waits for the committed offsets (and earliest offsets) it starts at.
COMMITTED_TIMEOUT_S = 10.0
# Time given to Consumer.close() (leave the group) before the process exits anyway.
CLOSE_TIMEOUT_S = 10.0
# Extra time after the drain (or close) deadline before the watchdog ends the process.
WATCHDOG_MARGIN_S = 15.0


# -- shared plumbing --------------------------------------------------------------------------


class StopSignal:
    """Turns SIGTERM/SIGINT into an event the main loop checks, and arms a watchdog so the
    process exits even if a librdkafka call hangs during shutdown."""

    def __init__(self, name: str, grace_s: float):
        self.name = name
        self.grace_s = grace_s
        self.event = threading.Event()
        self._watchdog: Optional[threading.Timer] = None
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.event.is_set():
            return
        self.event.set()
        self.arm_watchdog()

    def arm_watchdog(self) -> None:
        if self._watchdog is not None:
            return
        self._watchdog = threading.Timer(self.grace_s, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self) -> None:
        print(f"{self.name}: shutdown took longer than {self.grace_s:.0f}s, exiting", file=sys.stderr, flush=True)
        os._exit(3)

    def is_set(self) -> bool:
        return self.event.is_set()


def describe(err: Any) -> str:
    """A KafkaError (or exception) as "NAME: text", e.g. "_MSG_TIMED_OUT: Local: Message timed out"."""
    if isinstance(err, KafkaException) and err.args and isinstance(err.args[0], KafkaError):
        err = err.args[0]
    if isinstance(err, KafkaError):
        text = f"{err.name()}: {err.str()}"
        if err.fatal():
            text += " (fatal)"
        return text
    return f"{type(err).__name__}: {err}"


class ErrorThrottle:
    """Lets the same client error through at most once per interval: while a broker is down
    librdkafka reports every failed reconnect, dozens per second across its threads, which
    would bury the history in identical info ops. The number suppressed is appended to the
    next one let through."""

    def __init__(self, interval_s: float = 1.0):
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, err: KafkaError) -> Optional[str]:
        """The text to record for ``err``, or None to drop it."""
        key = err.name()
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e9) < self.interval_s and not err.fatal():
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        text = describe(err)
        return f"{text} (+{suppressed} like it suppressed)" if suppressed else text


def parse_props(pairs: Optional[list[str]]) -> dict[str, str]:
    props: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"-X expects key=value, got {pair!r}")
        props[key.strip()] = value
    return props


def parse_rate(text: str) -> float:
    """"50", "50/s" -> 50.0 records per second."""
    number = text.strip().removesuffix("/s")
    rate = float(number)
    if rate <= 0:
        raise argparse.ArgumentTypeError("rate must be positive")
    return rate


def run_bounded(fn: Callable[[], Any], timeout: float) -> bool:
    """Runs ``fn`` in a daemon thread and waits at most ``timeout`` s: used for librdkafka
    calls (Consumer.close) that can block for long against an unreachable cluster."""
    worker = threading.Thread(target=fn, daemon=True)
    worker.start()
    worker.join(timeout)
    return not worker.is_alive()


def finish(code: int = 0) -> None:
    """Exits without running librdkafka's destructors: a client handle destroyed while
    brokers are unreachable can block for long, and everything worth keeping is already in
    the history file (flushed line by line)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def log(name: str, text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {name}: {text}", file=sys.stderr, flush=True)


# -- producer ---------------------------------------------------------------------------------


class HistoryProducer:
    """Produces unique values at a fixed rate and records every send and its outcome."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.name: str = args.process
        self.topic: str = args.topic
        self.history = HistoryWriter(args.history, self.name, CLIENT)
        self.config = self._config(args)
        self.stop = StopSignal(self.name, args.drain_timeout + WATCHDOG_MARGIN_S)
        self.pending: set[str] = set()  # values invoked and not yet completed
        self.acked = 0
        self.infos = 0
        self.fatal = threading.Event()
        self.throttle = ErrorThrottle()
        self.producer = Producer(self.config)

    def _config(self, args: argparse.Namespace) -> dict[str, Any]:
        config: dict[str, Any] = {"bootstrap.servers": args.bootstrap, "client.id": args.process}
        config.update(parse_props(args.X))
        if args.unsafe_acks_1:
            # The bench's negative control only: a leader acknowledges alone, so records it
            # loses in a failover were acknowledged (test_faults.py's control test).
            config.update({"enable.idempotence": "false", "acks": "1"})
            config["error_cb"] = self._on_error
            return config
        for key, required in (("enable.idempotence", "true"), ("acks", "all")):
            if key in config and str(config[key]).lower() not in (required, "-1"):
                log(self.name, f"ignoring -X {key}={config[key]}: the workload always uses {key}={required}")
            config[key] = required
        config["error_cb"] = self._on_error
        return config

    def _on_error(self, err: KafkaError) -> None:
        # Client-level errors (broker down, all brokers down, fatal idempotence errors) are
        # not tied to one record: they go to stderr. Records they affect get their own
        # delivery report.
        text = self.throttle.admit(err)
        if text is not None:
            log(self.name, f"client error {text}")
        if err.fatal():
            self.fatal.set()

    def _on_delivery(self, err: Optional[KafkaError], msg: Message) -> None:
        raw = msg.value()
        value = raw.decode("utf-8", "replace") if raw is not None else ""
        self.pending.discard(value)
        if err is None:
            self.acked += 1
            # offset() is None when librdkafka knows the record persisted but not where (a
            # retried batch answered DUPLICATE_SEQUENCE_NUMBER): recorded as null.
            self.history.op("ok", "send", value=value, partition=msg.partition(), offset=msg.offset())
        else:
            # With idempotent retries a record reported as failed may still have been
            # written (e.g. a timeout after the broker appended it): never "fail".
            self.infos += 1
            self.history.op("info", "send", value=value, error=describe(err))

    def _complete_unsent(self, value: str, error: str) -> None:
        self.pending.discard(value)
        self.infos += 1
        self.history.op("info", "send", value=value, error=error)

    def _replace_after_fatal(self) -> None:
        """A fatal error (the idempotent producer cannot guarantee order any more) makes
        the handle refuse every produce: report what it still holds and start a new one."""
        log(self.name, "fatal error: purging the producer and creating a new one")
        self._purge_and_collect(self.producer, 5.0)
        self.producer = Producer(self.config)
        self.fatal.clear()

    def _purge_and_collect(self, producer: Producer, timeout: float) -> None:
        try:
            producer.purge(in_queue=True, in_flight=True, blocking=False)
        except KafkaException as e:
            log(self.name, f"purge failed: {describe(e)}")
        deadline = time.monotonic() + timeout
        while len(producer) > 0 and time.monotonic() < deadline:
            producer.poll(0.1)

    def _send(self, seq: int) -> None:
        value = f"{self.name}-{seq}"
        key = f"k{seq % KEY_COUNT}"
        self.history.op("invoke", "send", topic=self.topic, key=key, value=value)
        self.pending.add(value)
        while True:
            try:
                self.producer.produce(self.topic, value=value.encode(), key=key.encode(), on_delivery=self._on_delivery)
                return
            except BufferError:
                # The local queue is full (brokers unreachable for long): wait for room,
                # unless we are stopping.
                if self.stop.is_set():
                    self._complete_unsent(value, "BufferError: local queue full at shutdown")
                    return
                self.producer.poll(0.1)
            except KafkaException as e:
                self._complete_unsent(value, describe(e))
                return

    def run(self) -> int:
        interval = 1.0 / self.args.rate
        started = time.monotonic()
        end = started + self.args.duration if self.args.duration else None
        next_send = started
        seq = 0
        while not self.stop.is_set() and (end is None or time.monotonic() < end):
            if self.fatal.is_set():
                self._replace_after_fatal()
            self._send(seq)
            seq += 1
            next_send += interval
            now = time.monotonic()
            if next_send < now - 1.0:
                # Fell far behind (a blocked poll, a stopped process): don't burst to catch up.
                next_send = now
            # Serve delivery reports while waiting for the next slot.
            while not self.stop.is_set() and (now := time.monotonic()) < next_send:
                self.producer.poll(min(next_send - now, POLL_TIMEOUT_S))
        self.stop.arm_watchdog()
        return self._drain()

    def _drain(self) -> int:
        """Stops sending and waits (bounded) for the outcome of every record sent."""
        deadline = time.monotonic() + self.args.drain_timeout
        while len(self.producer) > 0 and time.monotonic() < deadline:
            self.producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        self.producer.poll(0)
        pending = len(self.pending)
        infos = self.infos
        if len(self.producer) > 0:
            # Still unresolved at the deadline: librdkafka reports them as purged, which we
            # record as info (they may have been written).
            self._purge_and_collect(self.producer, 2.0)
        print(f"{self.name}: acked={self.acked} info={infos} pending={pending}", file=sys.stderr, flush=True)
        self.history.close()
        return 0


def cmd_producer(args: argparse.Namespace) -> int:
    return HistoryProducer(args).run()


# -- consumers --------------------------------------------------------------------------------


def consumer_config(args: argparse.Namespace, group: str, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap,
        "group.id": group,
        "client.id": getattr(args, "process", "final-read"),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        # No transactions in this workload, so read_committed would change nothing.
        "isolation.level": "read_uncommitted",
    }
    config.update(extra)
    config.update(parse_props(getattr(args, "X", None)))
    return config


class PollingConsumer:
    """What group and assigned consumers share: the poll loop and its recording."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.name: str = args.process
        self.topic: str = args.topic
        self.history = HistoryWriter(args.history, self.name, CLIENT)
        self.stop = StopSignal(self.name, CLOSE_TIMEOUT_S + WATCHDOG_MARGIN_S)
        self.throttle = ErrorThrottle()
        self.consumer: Optional[Consumer] = None
        self.polled = 0
        # Next offset to read per partition, for the partitions consumed in the current
        # assignment epoch (what a commit sends).
        self.next_offsets: dict[int, int] = {}

    def _on_error(self, err: KafkaError) -> None:
        # Client-level errors (connection refused, all brokers down, ...) surface while
        # polling: recorded as poll info ops, throttled.
        text = self.throttle.admit(err)
        if text is not None:
            self.history.op("info", "poll", error=text)

    def poll_once(self) -> None:
        assert self.consumer is not None
        try:
            messages = self.consumer.consume(num_messages=MAX_POLL_RECORDS, timeout=POLL_TIMEOUT_S)
        except KafkaException as e:
            self.history.op("info", "poll", error=describe(e))
            time.sleep(0.1)
            return
        records: list[list[Any]] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self.history.op("info", "poll", error=describe(err))
                continue
            raw = msg.value()
            value = raw.decode("utf-8", "replace") if raw is not None else None
            records.append([msg.partition(), msg.offset(), value])
            self.next_offsets[msg.partition()] = msg.offset() + 1
        if records:
            self.polled += len(records)
            self.history.op("ok", "poll", records=records)

    def close(self) -> None:
        if self.consumer is not None:
            consumer = self.consumer
            if not run_bounded(consumer.close, CLOSE_TIMEOUT_S):
                # close() may still be in on_revoke, committing: leave the history open so
                # that commit's outcome is still written (the process exits right after).
                log(self.name, f"close did not finish within {CLOSE_TIMEOUT_S:.0f}s")
                return
        self.history.close()


class GroupConsumer(PollingConsumer):
    """Subscribes in ``--group``, records assignment epochs and polls, commits what it
    consumed synchronously every ~1 s (only partitions whose offset moved)."""

    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        self.group: str = args.group
        self.committed: dict[int, int] = {}
        self.commits_ok = 0
        config = consumer_config(
            args,
            self.group,
            # The classic protocol with the eager range assignor: each rebalance revokes
            # everything and hands out a complete new assignment, so an assignment epoch
            # is simply "from on_assign to on_revoke".
            **{
                "group.protocol": "classic",
                "partition.assignment.strategy": "range",
                "session.timeout.ms": 10000,
                "heartbeat.interval.ms": 1000,
                "error_cb": self._on_error,
            },
        )
        self.consumer = Consumer(config)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Starts each partition where the group committed (the earliest offset where
        nothing is committed, as auto.offset.reset=earliest) and records those positions,
        so the checker can tell a consumer that starts past the committed offset."""
        self.next_offsets = {}
        positions: dict[int, int] = {}
        try:
            committed = consumer.committed(partitions, timeout=COMMITTED_TIMEOUT_S)
        except KafkaException as e:
            log(self.name, f"committed offsets unknown at assignment: {describe(e)}")
            committed = []
        for tp in committed:
            if tp.error is not None:
                continue
            if tp.offset >= 0:
                positions[tp.partition] = tp.offset
                continue
            try:
                low, _high = consumer.get_watermark_offsets(tp, timeout=COMMITTED_TIMEOUT_S, cached=False)
                positions[tp.partition] = low
            except KafkaException as e:
                log(self.name, f"earliest offset of partition {tp.partition} unknown: {describe(e)}")
        # Start exactly at the recorded positions; partitions whose position could not be
        # had start where the client decides (the stored offset) and carry no position.
        consumer.assign(
            [TopicPartition(self.topic, tp.partition, positions[tp.partition]) if tp.partition in positions else tp for tp in partitions]
        )
        self.history.op(
            "ok",
            "assign",
            partitions=sorted(tp.partition for tp in partitions),
            group=self.group,
            positions={str(p): o for p, o in sorted(positions.items())},
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Commit what we consumed before giving the partitions away, so the next owner
        # starts where we stopped (fewer re-deliveries; correctness does not depend on it).
        self.commit()
        self.next_offsets = {}
        self.history.op("ok", "assign", partitions=[], group=self.group)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Membership lost (session timed out): the partitions may already be someone
        # else's, so committing would be wrong.
        self.next_offsets = {}
        self.history.op("ok", "assign", partitions=[], group=self.group)

    def commit(self) -> None:
        assert self.consumer is not None
        offsets = {p: o for p, o in self.next_offsets.items() if self.committed.get(p) != o}
        if not offsets:
            return
        fields = {"group": self.group, "offsets": {str(p): o for p, o in sorted(offsets.items())}}
        self.history.op("invoke", "commit", **fields)
        try:
            result = self.consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in sorted(offsets.items())], asynchronous=False
            )
        except KafkaException as e:
            self.history.op("info", "commit", error=describe(e), **fields)
            return
        except RuntimeError as e:  # consumer closed underneath us
            self.history.op("info", "commit", error=f"RuntimeError: {e}", **fields)
            return
        errors = [f"partition {tp.partition}: {describe(tp.error)}" for tp in result or [] if tp.error is not None]
        if errors:
            self.history.op("info", "commit", error="; ".join(errors), **fields)
            return
        self.committed.update(offsets)
        self.commits_ok += 1
        self.history.op("ok", "commit", **fields)

    def run(self) -> int:
        assert self.consumer is not None
        self.consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        next_commit = time.monotonic() + COMMIT_INTERVAL_S
        while not self.stop.is_set():
            self.poll_once()
            if time.monotonic() >= next_commit:
                self.commit()
                next_commit = time.monotonic() + COMMIT_INTERVAL_S
        self.commit()
        self.close()
        print(f"{self.name}: polled={self.polled} commits={self.commits_ok}", file=sys.stderr, flush=True)
        return 0


class AssignedConsumer(PollingConsumer):
    """Assigns itself every partition of the topic from offset 0 and records its polls."""

    def __init__(self, args: argparse.Namespace):
        super().__init__(args)
        # librdkafka wants a group.id even for assign(); nothing is ever committed to it.
        config = consumer_config(args, f"{self.name}-unused", error_cb=self._on_error)
        self.consumer = Consumer(config)

    def _partitions(self) -> Optional[list[int]]:
        """The topic's partitions, retried until known or until asked to stop."""
        assert self.consumer is not None
        while not self.stop.is_set():
            try:
                metadata = self.consumer.list_topics(self.topic, timeout=5)
                topic = metadata.topics.get(self.topic)
                if topic is not None and topic.error is None and topic.partitions:
                    return sorted(topic.partitions)
                error = describe(topic.error) if topic is not None and topic.error else "no partitions"
            except KafkaException as e:
                error = describe(e)
            self.history.op("info", "poll", error=f"metadata: {error}")
            self.stop.event.wait(1.0)
        return None

    def run(self) -> int:
        assert self.consumer is not None
        partitions = self._partitions()
        if partitions is not None:
            self.consumer.assign([TopicPartition(self.topic, p, 0) for p in partitions])
            self.history.op("ok", "assign", partitions=partitions, group=None, positions={str(p): 0 for p in partitions})
            while not self.stop.is_set():
                self.poll_once()
        self.close()
        print(f"{self.name}: polled={self.polled}", file=sys.stderr, flush=True)
        return 0


def cmd_group_consumer(args: argparse.Namespace) -> int:
    return GroupConsumer(args).run()


def cmd_assigned_consumer(args: argparse.Namespace) -> int:
    return AssignedConsumer(args).run()


# -- final read -------------------------------------------------------------------------------


def cmd_final_read(args: argparse.Namespace) -> int:
    """Reads every partition from its earliest offset to the high watermark taken first,
    retrying through transient errors until the timeout, and records one op."""
    name = args.process
    history = HistoryWriter(args.history, name, CLIENT)
    stop = StopSignal(name, args.timeout + WATCHDOG_MARGIN_S)
    stop.arm_watchdog()  # the whole command is bounded by --timeout
    deadline = time.monotonic() + args.timeout

    def remaining() -> float:
        return max(0.0, deadline - time.monotonic())

    throttle = ErrorThrottle()

    def on_error(err: KafkaError) -> None:
        text = throttle.admit(err)
        if text is not None:
            log(name, f"client error {text}")

    consumer = Consumer(consumer_config(args, f"{name}-{os.getpid()}-unused", error_cb=on_error))

    partitions: list[int] = []
    while not partitions and remaining() > 0 and not stop.is_set():
        try:
            topic = consumer.list_topics(args.topic, timeout=min(5.0, remaining())).topics.get(args.topic)
            if topic is not None and topic.error is None and topic.partitions:
                partitions = sorted(topic.partitions)
                break
            log(name, f"metadata for {args.topic}: {describe(topic.error) if topic and topic.error else 'no partitions'}")
        except KafkaException as e:
            log(name, f"metadata: {describe(e)}")
        stop.event.wait(min(0.5, remaining()))

    # Watermarks first, for every partition, before reading anything: the end offsets are
    # those at the start of the final read.
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    for p in partitions:
        while remaining() > 0 and not stop.is_set():
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(args.topic, p), timeout=min(5.0, max(0.1, remaining())), cached=False
                )
                starts[p], ends[p] = low, high
                break
            except KafkaException as e:
                # e.g. NOT_LEADER_OR_FOLLOWER during an election: retry.
                log(name, f"watermarks of partition {p}: {describe(e)}")
                stop.event.wait(min(0.5, remaining()))

    records: list[list[Any]] = []
    positions = dict(starts)  # next offset to read per partition
    to_read = {p for p in ends if positions[p] < ends[p]}
    if to_read:
        consumer.assign([TopicPartition(args.topic, p, positions[p]) for p in sorted(to_read)])
    while to_read and remaining() > 0 and not stop.is_set():
        try:
            messages = consumer.consume(num_messages=MAX_POLL_RECORDS, timeout=min(POLL_TIMEOUT_S, remaining()))
        except KafkaException as e:
            log(name, f"consume: {describe(e)}")
            continue
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log(name, f"consume: {describe(err)}")
                continue
            p, offset = msg.partition(), msg.offset()
            if p not in to_read or offset >= ends[p]:
                continue  # beyond the end offset taken at the start
            raw = msg.value()
            records.append([p, offset, raw.decode("utf-8", "replace") if raw is not None else None])
            positions[p] = offset + 1
            if positions[p] >= ends[p]:
                to_read.discard(p)
        # A partition may end with offsets that carry no record for us (e.g. control
        # records): the consumer's position tells us we are past them.
        if to_read:
            try:
                for tp in consumer.position([TopicPartition(args.topic, p) for p in sorted(to_read)]):
                    if tp.offset >= ends[tp.partition]:
                        to_read.discard(tp.partition)
            except KafkaException:
                pass

    complete = bool(partitions) and len(ends) == len(partitions) and not to_read
    history.op(
        "ok",
        "final-read",
        records=records,
        start_offsets={str(p): o for p, o in sorted(starts.items()) if p in ends},
        end_offsets={str(p): o for p, o in sorted(ends.items())},
        complete=complete,
    )
    history.close()
    missing = {p: (positions.get(p), ends.get(p)) for p in partitions if p in to_read or p not in ends}
    print(
        f"{name}: records={len(records)} partitions={len(partitions)} complete={complete}"
        + (f" unfinished={missing}" if missing else ""),
        file=sys.stderr,
        flush=True,
    )
    run_bounded(consumer.close, 5.0)
    return 0 if complete else 1


# -- command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, process_default: Optional[str] = None) -> None:
        p.add_argument("--bootstrap", required=True, help="HOST:PORT[,HOST:PORT...]")
        p.add_argument("--topic", default="jepsen")
        if process_default is None:
            p.add_argument("--process", required=True, help="unique process name in the history")
        else:
            p.add_argument("--process", default=process_default)
        p.add_argument("--history", required=True, type=Path, help="history file to append to")
        p.add_argument("-X", action="append", metavar="KEY=VALUE", help="extra librdkafka property")

    producer = sub.add_parser("producer", help="idempotent producer of unique values")
    common(producer)
    producer.add_argument("--rate", type=parse_rate, default=50.0, help="records per second (N or N/s)")
    producer.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    producer.add_argument("--drain-timeout", type=float, default=60.0, help="max wait for outstanding records at stop")
    producer.add_argument(
        "--unsafe-acks-1",
        action="store_true",
        help="acks=1 without idempotence, for the bench's negative control (records can be lost)",
    )
    producer.set_defaults(run=cmd_producer)

    group = sub.add_parser("group-consumer", help="consumer in a group, committing synchronously")
    common(group)
    group.add_argument("--group", default="jepsen-group")
    group.set_defaults(run=cmd_group_consumer)

    assigned = sub.add_parser("assigned-consumer", help="consumer of every partition, assigned manually from 0")
    common(assigned)
    assigned.set_defaults(run=cmd_assigned_consumer)

    final = sub.add_parser("final-read", help="read every partition from its start to its end offset")
    common(final, process_default="final-read")
    final.add_argument("--timeout", type=float, default=60.0)
    final.set_defaults(run=cmd_final_read)
    return parser


def main(argv: Optional[list[str]] = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
    except Exception as e:  # noqa: BLE001 - report and exit non-zero, never hang
        print(f"{getattr(args, 'process', args.command)}: crashed: {describe(e)}", file=sys.stderr, flush=True)
        import traceback

        traceback.print_exc()
        finish(2)
    finish(code)


if __name__ == "__main__":
    main()
