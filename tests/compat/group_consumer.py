"""A confluent-kafka group consumer run as a child process by the group compat tests.

    python group_consumer.py --bootstrap HOST:PORT --topic T --group G --out FILE
                             [--strategy range|roundrobin|cooperative-sticky]
                             [--session-timeout-ms 6000] [--client-id ID]

It subscribes to ``T`` in group ``G`` with manual commits and appends one line per event to
``FILE`` (line-buffered, so a SIGKILL loses at most a line in the making, which readers
ignore because it has no newline yet):

- ``A p,p,...``  partitions assigned (for cooperative-sticky: the partitions added)
- ``V p,p,...``  partitions revoked (or lost)
- ``R partition offset key value``  a record, written before its offset is committed
- ``C``          the records written so far are committed

Records are processed in batches: write every record of a batch, then commit synchronously
(at-least-once: a kill between the two replays those records to the next owner). It stops
on SIGTERM or SIGINT, closing the consumer (leaving the group), and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys

from confluent_kafka import Consumer, KafkaError, KafkaException


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--strategy", default="range")
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--client-id", default="group-consumer")
    args = parser.parse_args()

    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    out = open(args.out, "a", buffering=1, encoding="utf-8")

    def partitions(parts: list) -> str:
        return ",".join(str(p.partition) for p in sorted(parts, key=lambda p: p.partition))

    def on_assign(_consumer: Consumer, parts: list) -> None:
        # confluent-kafka assigns (eagerly or incrementally, by the protocol) after this returns.
        out.write(f"A {partitions(parts)}\n")

    def on_revoke(_consumer: Consumer, parts: list) -> None:
        out.write(f"V {partitions(parts)}\n")

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "client.id": args.client_id,
            "partition.assignment.strategy": args.strategy,
            "session.timeout.ms": args.session_timeout_ms,
            "heartbeat.interval.ms": 1000,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    try:
        while not stop:
            batch = consumer.consume(num_messages=500, timeout=0.2)
            wrote = False
            for msg in batch:
                if msg.error():
                    if msg.error().code() != KafkaError._PARTITION_EOF:
                        print(f"consumer error: {msg.error()}", file=sys.stderr, flush=True)
                    continue
                key = (msg.key() or b"").decode()
                value = (msg.value() or b"").decode()
                out.write(f"R {msg.partition()} {msg.offset()} {key} {value}\n")
                wrote = True
            if wrote:
                try:
                    consumer.commit(asynchronous=False)
                    out.write("C\n")
                except KafkaException as exc:
                    # A rebalance took partitions away meanwhile: their records are read
                    # again by the next owner from the last commit (at-least-once).
                    print(f"commit failed: {exc}", file=sys.stderr, flush=True)
    finally:
        consumer.close()
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
