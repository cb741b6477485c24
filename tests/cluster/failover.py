"""Failover time of a replicated cluster: kill -9 of a partition leader, then how long until
the first write to each of its partitions is acknowledged again (issue 17's "failover time").

One run (``scripts/cluster.sh failover --kind sluice|kafka --kills 20``):

1. start a 3-node cluster in a fresh directory (launcher.py), create a topic with PARTITIONS
   partitions, replication factor 3, ``min.insync.replicas=2``, unclean election off;
2. an idempotent acks=all producer (confluent-kafka) writes to every partition without pause,
   one record in flight per partition at a time, so that an acknowledgement time is the time a
   partition took writes again and not a queue draining;
3. each round: pick the leader of partition ``round % PARTITIONS``, note which partitions it
   leads, SIGKILL it (t0), and wait (bounded) until a record sent at or after t0 to each of
   those partitions is acknowledged: the failover time of the round is the latest of those
   first acknowledgements minus t0. (With one record in flight per partition, the first
   record sent after t0 follows the one in flight at the kill, so it is acknowledged only
   once the partition takes writes again; an answer sent by the leader just before the kill
   does not count, however late its callback runs.) Then restart the node and wait until
   every partition's ISR is whole again before the next round;
4. print the median, max and every round's time as one JSON line, and the same as a table
   row (docs/cluster-testing.md keeps the results).

Both kinds run with the same broker session timeout (9 s, Kafka's default
``broker.session.timeout.ms``): a killed broker is declared dead by the controller only once
its session expired, so that is the floor of both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from launcher import Cluster, start_cluster  # noqa: E402
from workload import create_topic  # noqa: E402

TOPIC = "failover"
PARTITIONS = 3
# No failover takes less than the controller's session timeout (seconds): a round that saw
# writes sooner killed a node that no longer led the partitions (their leadership had moved,
# e.g. back to the preferred replica, after the metadata was read). Such a round is not a
# failover: it is reported apart and another is run.
NOT_A_FAILOVER_S = 1.0
# A round gives up after this long without an acknowledgement on a victim's partition.
ROUND_TIMEOUT_S = 60.0
IN_SYNC_TIMEOUT_S = 120.0


class Writer:
    """Keeps one acks=all record in flight per partition and records acknowledgement times."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Producer

        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 0,
                "message.timeout.ms": 120000,
                "request.timeout.ms": 5000,
                "retry.backoff.ms": 50,
                "retry.backoff.max.ms": 200,
                "topic.metadata.refresh.interval.ms": 1000,
                "log_level": 2,
            }
        )
        self.lock = threading.Lock()
        # partition -> (send time, acknowledgement time) of every acknowledged record, in
        # monotonic seconds
        self.acks: dict[int, list[tuple[float, float]]] = {p: [] for p in range(PARTITIONS)}
        # record number -> when it was handed to the producer
        self.sent: dict[int, float] = {}
        self.in_flight: set[int] = set()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="failover-writer", daemon=True)

    def _delivered(self, err, msg) -> None:
        now = time.monotonic()
        with self.lock:
            self.in_flight.discard(msg.partition())
            sent = self.sent.pop(int(msg.value()), now)
            if err is None:
                self.acks[msg.partition()].append((sent, now))

    def _run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            for p in range(PARTITIONS):
                with self.lock:
                    busy = p in self.in_flight
                    if not busy:
                        self.in_flight.add(p)
                if not busy:
                    n += 1
                    with self.lock:
                        self.sent[n] = time.monotonic()
                    self.producer.produce(TOPIC, value=f"{n}".encode(), partition=p, on_delivery=self._delivered)
            self.producer.poll(0.005)
        self.producer.flush(30)

    def first_ack_after(self, partition: int, t0: float) -> Optional[float]:
        """When the first record sent at or after ``t0`` was acknowledged: an answer the
        killed leader sent just before ``t0`` but that reached the callback after it must
        not count as the partition writing again."""
        with self.lock:
            return next((acked for sent, acked in self.acks[partition] if sent >= t0), None)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=60)


def _metadata(admin) -> Optional[dict[int, tuple[int, list[int], list[int]]]]:
    """partition -> (leader, replicas, isr), or None when metadata cannot be had."""
    from confluent_kafka import KafkaException

    try:
        topic = admin.list_topics(TOPIC, timeout=5).topics.get(TOPIC)
    except KafkaException:
        return None
    if topic is None or topic.error is not None or len(topic.partitions) != PARTITIONS:
        return None
    return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in topic.partitions.values()}


def _wait_in_sync(admin, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        meta = _metadata(admin)
        if meta and all(leader >= 0 and set(isr) == set(replicas) for leader, replicas, isr in meta.values()):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"partitions not in sync after {deadline_s:.0f}s: {meta}")
        time.sleep(0.5)


def run(kind: str, kills: int, base: Path) -> dict:
    from confluent_kafka.admin import AdminClient

    cluster: Cluster = start_cluster(kind, base, 3)
    writer: Optional[Writer] = None
    rounds: list[float] = []
    not_led: list[float] = []
    try:
        config = {"min.insync.replicas": "2", "unclean.leader.election.enable": "false"}
        create_topic(cluster.bootstrap, TOPIC, PARTITIONS, 3, config)
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap, "log_level": 2})
        _wait_in_sync(admin, IN_SYNC_TIMEOUT_S)
        writer = Writer(cluster.bootstrap)
        writer.start()
        i = -1
        while len(rounds) < kills and i < 2 * kills:
            i += 1
            meta = _metadata(admin)
            if meta is None:
                raise RuntimeError("no metadata before a round")
            victim_id = meta[i % PARTITIONS][0]
            led = [p for p, (leader, _, _) in meta.items() if leader == victim_id]
            victim = cluster.node(victim_id)
            t0 = time.monotonic()
            victim.kill()
            deadline = t0 + ROUND_TIMEOUT_S
            firsts: dict[int, float] = {}
            while len(firsts) < len(led):
                for p in led:
                    if p not in firsts:
                        t = writer.first_ack_after(p, t0)
                        if t is not None:
                            firsts[p] = t
                if time.monotonic() > deadline:
                    raise RuntimeError(f"round {i}: partitions {led} took no write within {ROUND_TIMEOUT_S:.0f}s")
                time.sleep(0.01)
            took = max(firsts.values()) - t0
            if took < NOT_A_FAILOVER_S:
                not_led.append(took)
                print(f"round {i + 1}: killed node {victim_id} (led {led} by the metadata): writes after {took:.3f}s, so it did not lead them; not counted", flush=True)
            else:
                rounds.append(took)
                print(f"round {i + 1} ({len(rounds)}/{kills}): killed node {victim_id} (led {led}): writes again after {took:.2f}s", flush=True)
            cluster.restart(victim, wait=True)
            _wait_in_sync(admin, IN_SYNC_TIMEOUT_S)
    finally:
        if writer is not None:
            writer.stop()
        cluster.stop()
    return {
        "kind": kind,
        "kills": kills,
        "median_s": round(statistics.median(rounds), 3),
        "max_s": round(max(rounds), 3),
        "rounds_s": [round(r, 3) for r in rounds],
        "not_counted_s": [round(r, 3) for r in not_led],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/cluster.sh failover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["sluice", "kafka"], default="sluice")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None, help="cluster directory (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.kills > 200:
        parser.error("--kills must be 1..200")
    if args.dir is None:
        with tempfile.TemporaryDirectory(prefix=f"failover-{args.kind}-") as tmp:
            result = run(args.kind, args.kills, Path(tmp) / "cluster")
    else:
        result = run(args.kind, args.kills, args.dir)
    print(json.dumps(result))
    print(f"| {result['kind']} | {result['kills']} | {result['median_s']:.2f} s | {result['max_s']:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
