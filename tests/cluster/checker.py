"""The checker of a cluster test run: a Jepsen-style analysis of one history (issue 15).

It owns the verdict on a run: it reads the merged ``history.jsonl`` (format in history.py and
docs/cluster-testing.md) and says whether the brokers kept the promises of a replicated,
acks=all log. It is modelled on Jepsen's Kafka/queue workload.

Library use: ``check(ops) -> Result`` (``ops`` an iterable of history dicts). Command use::

    python tests/cluster/checker.py HISTORY.jsonl [--json DETAILS.json]

prints ONE summary line on stdout (``checker: OK ...`` or ``checker: FAIL ...``), then, only
when there are violations, one line of examples per violated kind. ``--json`` writes every
count and every kept example. Exit code: 0 no violation, 1 violations, 2 unusable input
(missing file, bad JSON, a known operation with a missing or malformed field, no final-read).

Definitions. A *position* is (partition, offset); the topic is not part of it (a run uses one
topic). An *observation* of a value at a position comes from a poll record, a final-read
record, or a send ack (ok). A value is *read* when a poll or the final read returned it.
Operations whose ``f`` or ``type`` is unknown are ignored. Operations are taken in ``mono``
order (a stable sort, so the order of one process's lines is kept for ties).

Violations (each makes the run FAIL):

- lost: acked values (send ok) absent from the final read's records. Counted per value.
- duplicated: a value observed at two or more distinct positions (polls, final read and
  send acks together). Counted per value.
- inconsistent: a position observed with two or more distinct values (same sources).
  Counted per position.
- nonmonotonic: within one process's assignment epoch and one partition, a polled offset
  <= the previous polled offset of that partition in that epoch. Epochs start at each
  ``assign`` ok op of the process (numbered 1, 2, ...); before any, the process is in an
  implicit epoch 0. "Previous" is the offset polled just before, so a consumer that rewinds
  once and then reads forward again counts 1, not once per re-read record. Counted per
  occurrence.
- skipped: within an epoch and partition, two consecutive polled offsets o1 < o2 such that
  some offset strictly between them is observed anywhere (any position observation above):
  the consumer jumped over a record it should have returned. If the epoch's assign op gave
  ``positions`` for the partition (P = the next offset to read), the first polled offset o
  of that epoch is checked the same way against the range [P, o): P itself must be read.
  Offsets that were never observed (transaction markers, compacted or deleted records) are
  not skips. At a group rebalance, an assign op with ``positions`` and a group is also
  checked against the group's commits: a partition started past every offset any commit
  invoke before the assign tried to commit (or past the partition's first observed offset
  when none did) skips the observed offsets in between. Counted per skipped offset, summed over every gap (two consumers skipping the
  same offset count 2).
- commits_backwards: per (group, partition), a successful commit (ok) of offset c2 whose
  invoke happened (mono) strictly after the ok of another successful commit of a larger
  offset c1 in that group and partition. Commits that overlap in time are not compared.
  Counted per commit op (a commit that goes backwards on several partitions counts 1).
- failed_seen: a value whose send completed with type fail, yet read. Counted per value.
- final_gaps: offsets missing from a complete final read between the partition's start
  (``start_offsets``, else the first offset read) and its end offset. Without transactions
  or compaction a partition's offsets are contiguous. Counted per offset.
- send_reordered: per producer process and partition, acked offsets taken in the order the
  sends were invoked must increase (an idempotent producer keeps its order). Counted per
  ack that is not above every offset acked before it.
- unknown_seen: a read value that no send invoke of the history sent. Counted per value.
- final_incomplete: each final-read op with ``complete`` false counts 1. A history with no
  final-read ok op is unusable (exit 2): without it nothing can be said about lost writes.
  Several final-read ok ops are allowed: their records are joined.

Allowed, but counted:

- unacked_seen: values whose send completed with info or never completed, yet read.
- indeterminate: sends completed with info, or never completed (their process died).
- acked_without_offset: sends acknowledged (ok) without an offset (``"offset": null``):
  librdkafka reports a retried batch that the broker answered DUPLICATE_SEQUENCE_NUMBER as
  persisted with its offset unknown. They count as acked (the lost check applies) but
  observe no position.
- read: distinct values read (polls and final read).

Acked counts (send ok ops) are also given per ``client`` and per ``process`` field, so a run
shows that both the Python and the Java producers took part.

Malformed input is rejected, never guessed at: besides missing fields, a completion without
its invoke, a value sent twice, or two completions of one send make the history unusable,
because the outcome of the values involved could not be decided.
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

# The command is run as a script from any cwd: history.py sits beside this file.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import history  # noqa: E402

# Violation kinds, in the order of the summary line.
VIOLATIONS = (
    "lost",
    "duplicated",
    "inconsistent",
    "nonmonotonic",
    "skipped",
    "commits_backwards",
    "failed_seen",
    "unknown_seen",
    "final_incomplete",
    "final_gaps",
    "send_reordered",
)
# Allowed anomalies, counted only.
ALLOWED = ("unacked_seen", "indeterminate", "acked_without_offset", "read")
MAX_EXAMPLES = 20
KNOWN_F = frozenset({"send", "poll", "assign", "commit", "final-read"})
KNOWN_TYPES = frozenset({"invoke", "ok", "fail", "info"})

Position = tuple[int, int]


class HistoryError(ValueError):
    """The history cannot be checked. ``index`` is the 0-based position of the offending op
    in the input (None when no single op is to blame, e.g. no final read)."""

    def __init__(self, index: int | None, message: str):
        super().__init__(message if index is None else f"op {index + 1}: {message}")
        self.index = index
        self.reason = message


@dataclass
class Result:
    acked: int = 0
    acked_by_client: dict[str, int] = field(default_factory=dict)
    acked_by_process: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicated: int = 0
    inconsistent: int = 0
    nonmonotonic: int = 0
    skipped: int = 0
    commits_backwards: int = 0
    failed_seen: int = 0
    unknown_seen: int = 0
    final_incomplete: int = 0
    final_gaps: int = 0
    send_reordered: int = 0
    unacked_seen: int = 0
    indeterminate: int = 0
    acked_without_offset: int = 0
    read: int = 0
    # Up to MAX_EXAMPLES JSON-able examples per anomaly kind (violations and unacked_seen).
    examples: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def violations(self) -> dict[str, int]:
        return {kind: getattr(self, kind) for kind in VIOLATIONS if getattr(self, kind)}

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        clients = " ".join(f"{c}={n}" for c, n in sorted(self.acked_by_client.items()))
        acked = f"acked={self.acked}" + (f" ({clients})" if clients else "")
        counts = " ".join(f"{kind}={getattr(self, kind)}" for kind in VIOLATIONS)
        allowed = " ".join(f"{kind}={getattr(self, kind)}" for kind in ALLOWED)
        verdict = "OK" if self.ok else "FAIL"
        return f"checker: {verdict} {acked} {counts} | allowed: {allowed}"

    def example_lines(self, per_kind: int = 3) -> list[str]:
        """One line per violated kind with its first few examples (all are in to_json)."""
        lines = []
        for kind, count in self.violations.items():
            shown = self.examples.get(kind, [])[:per_kind]
            text = "; ".join(json.dumps(e, separators=(",", ":")) for e in shown)
            lines.append(f"  {kind}={count}: {text}")
        return lines

    def to_json(self) -> dict[str, Any]:
        details = asdict(self)
        details["ok"] = self.ok
        details["violations"] = self.violations
        return details


def _example(result: Result, kind: str, example: dict) -> None:
    kept = result.examples.setdefault(kind, [])
    if len(kept) < MAX_EXAMPLES:
        kept.append(example)


# --- validation: each accessor names the field and the op it failed on ----------------------


def _get(op: dict, index: int, name: str) -> Any:
    if name not in op:
        raise HistoryError(index, f"{op.get('type')} {op.get('f')} op lacks field {name!r}")
    return op[name]


def _int(op: dict, index: int, name: str, value: Any) -> int:
    # bool is an int subclass in Python, but true/false is never an offset.
    if isinstance(value, bool) or not isinstance(value, int):
        raise HistoryError(index, f"field {name!r} must be an integer, got {value!r}")
    return value


def _get_int(op: dict, index: int, name: str) -> int:
    return _int(op, index, name, _get(op, index, name))


def _get_str(op: dict, index: int, name: str) -> str:
    value = _get(op, index, name)
    if not isinstance(value, str):
        raise HistoryError(index, f"field {name!r} must be a string, got {value!r}")
    return value


def _value(op: dict, index: int, value: Any) -> Any:
    # Values are strings in practice; any JSON scalar is accepted so a foreign record (say a
    # null value written by something else) is reported as unknown_seen, not as bad input.
    if isinstance(value, (list, dict)):
        raise HistoryError(index, f"a record value must be a scalar, got {value!r}")
    return value


def _records(op: dict, index: int) -> list[tuple[int, int, Any]]:
    raw = _get(op, index, "records")
    if not isinstance(raw, list):
        raise HistoryError(index, "field 'records' must be a list")
    records = []
    for record in raw:
        if not isinstance(record, list) or len(record) != 3:
            raise HistoryError(index, f"a record must be [partition, offset, value], got {record!r}")
        partition = _int(op, index, "records[].partition", record[0])
        offset = _int(op, index, "records[].offset", record[1])
        records.append((partition, offset, _value(op, index, record[2])))
    return records


def _offset_map(op: dict, index: int, name: str, raw: Any) -> dict[int, int]:
    """A {"partition": offset} object, keys as strings (JSON) or ints (built in code)."""
    if not isinstance(raw, dict):
        raise HistoryError(index, f"field {name!r} must be an object {{partition: offset}}")
    result = {}
    for key, offset in raw.items():
        try:
            partition = int(key)
        except (TypeError, ValueError):
            raise HistoryError(index, f"field {name!r} has a partition key {key!r} that is not an integer") from None
        result[partition] = _int(op, index, name, offset)
    return result


# --- the analysis ------------------------------------------------------------------------------


@dataclass
class _Send:
    invoke_index: int
    process: str
    order: int  # position among all send invokes, in mono order
    outcome: str | None = None  # None: never completed; else "ok", "info" or "fail"
    error: Any = None


@dataclass
class _Commit:
    invoke_mono: int
    ok_mono: int
    offset: int
    process: str
    index: int  # of the ok op, to group a multi-partition commit and to report it


def check(ops: Iterable[dict]) -> Result:
    """Analyses a history; raises HistoryError when it cannot be checked."""
    # Keep the input index of each op for error messages, then order by the monotonic clock.
    indexed: list[tuple[int, dict]] = []
    for index, op in enumerate(ops):
        if not isinstance(op, dict):
            raise HistoryError(index, "not a JSON object")
        type_ = _get(op, index, "type")
        f = _get(op, index, "f")
        if f not in KNOWN_F:
            continue
        if type_ not in KNOWN_TYPES:
            # Never skip it: an ack written with another type would silently turn an
            # acknowledged write into an indeterminate one and hide its loss.
            raise HistoryError(index, f"unknown type {type_!r} of a {f!r} op")
        mono = _get(op, index, "mono")
        if isinstance(mono, bool) or not isinstance(mono, (int, float)):
            raise HistoryError(index, f"field 'mono' must be a number, got {mono!r}")
        _get_str(op, index, "process")
        indexed.append((index, op))
    indexed.sort(key=lambda item: item[1]["mono"])

    result = Result()
    acked_by_client: dict[str, int] = defaultdict(int)
    acked_by_process: dict[str, int] = defaultdict(int)

    sends: dict[Any, _Send] = {}  # value -> its send
    acks: dict[Any, tuple[int, int | None, str]] = {}  # acked value -> (partition, offset, process)
    # Every observation: value -> positions, position -> values, partition -> offsets.
    positions_of: dict[Any, set[Position]] = defaultdict(set)
    values_at: dict[Position, set[Any]] = defaultdict(set)
    read_values: dict[Any, Position] = {}  # read value -> first position it was read at
    final_values: set[Any] = set()
    final_reads = 0
    # Poll order analysis is done after every observation is known (skips need them all):
    # per process, its assign and poll ops in order.
    consumer_ops: dict[str, list[tuple[int, dict]]] = defaultdict(list)
    pending_commits: dict[str, deque[tuple[int, int, dict]]] = defaultdict(deque)
    commits: dict[tuple[Any, int], list[_Commit]] = defaultdict(list)
    # Every commit invoke, whatever its outcome: (group, partition) -> [(invoke mono, offset)].
    commit_attempts: dict[tuple[Any, int], list[tuple[int, int]]] = defaultdict(list)

    def observe(partition: int, offset: int, value: Any) -> None:
        positions_of[value].add((partition, offset))
        values_at[(partition, offset)].add(value)

    for index, op in indexed:
        type_, f, process = op["type"], op["f"], op["process"]
        if f == "send":
            value = _value(op, index, _get(op, index, "value"))
            if type_ == "invoke":
                if value in sends:
                    raise HistoryError(index, f"value {value!r} is sent twice (values must be unique)")
                sends[value] = _Send(invoke_index=index, process=process, order=len(sends))
                continue
            send = sends.get(value)
            if send is None:
                raise HistoryError(index, f"send {type_} of value {value!r} without its invoke")
            if send.outcome is not None:
                raise HistoryError(index, f"second completion of the send of value {value!r}")
            send.outcome = type_
            send.error = op.get("error")
            if type_ == "ok":
                partition = _get_int(op, index, "partition")
                # An ack may come without an offset: librdkafka reports a retried batch that
                # the broker answered DUPLICATE_SEQUENCE_NUMBER as persisted, offset unknown.
                # It still counts as acknowledged (it must be in the final read), but it
                # observes no position.
                raw_offset = _get(op, index, "offset")
                offset = None if raw_offset is None else _int(op, index, "offset", raw_offset)
                client = _get_str(op, index, "client")
                acks[value] = (partition, offset, process)
                acked_by_client[client] += 1
                acked_by_process[process] += 1
                if offset is None:
                    result.acked_without_offset += 1
                else:
                    observe(partition, offset, value)
        elif f == "poll":
            if type_ == "ok":
                for partition, offset, value in _records(op, index):
                    observe(partition, offset, value)
                    read_values.setdefault(value, (partition, offset))
                consumer_ops[process].append((index, op))
        elif f == "assign":
            if type_ == "ok":
                if "positions" in op and op["positions"] is not None:
                    _offset_map(op, index, "positions", op["positions"])
                consumer_ops[process].append((index, op))
        elif f == "commit":
            if type_ == "invoke":
                group = _get(op, index, "group")
                offsets = _offset_map(op, index, "offsets", _get(op, index, "offsets"))
                pending_commits[process].append((index, op["mono"], {"group": group, "offsets": offsets}))
                for partition, offset in offsets.items():
                    commit_attempts[(group, partition)].append((op["mono"], offset))
                continue
            # Commits are synchronous: a completion ends the oldest pending invoke of its process.
            if not pending_commits[process]:
                raise HistoryError(index, f"commit {type_} of process {process!r} without its invoke")
            _, invoke_mono, invoked = pending_commits[process].popleft()
            if type_ != "ok":
                continue
            # The ok repeats the invoke's fields; the invoke's are used where it does not.
            group = op.get("group", invoked["group"])
            offsets = _offset_map(op, index, "offsets", op["offsets"]) if "offsets" in op else invoked["offsets"]
            for partition, offset in offsets.items():
                commits[(group, partition)].append(_Commit(invoke_mono, op["mono"], offset, process, index))
        elif f == "final-read":
            if type_ == "ok":
                final_reads += 1
                records = _records(op, index)
                complete = _get(op, index, "complete")
                if not isinstance(complete, bool):
                    raise HistoryError(index, f"field 'complete' must be true or false, got {complete!r}")
                for partition, offset, value in records:
                    observe(partition, offset, value)
                    read_values.setdefault(value, (partition, offset))
                    final_values.add(value)
                if complete:
                    _check_final_gaps(result, op, index, records)
                if not complete:
                    result.final_incomplete += 1
                    _example(result, "final_incomplete", {
                        "process": process, "records": len(records), "end_offsets": op.get("end_offsets"),
                    })

    if final_reads == 0:
        raise HistoryError(None, "no final-read ok op: lost writes cannot be judged")

    result.acked = sum(acked_by_client.values())
    result.acked_by_client = dict(sorted(acked_by_client.items()))
    result.acked_by_process = dict(sorted(acked_by_process.items()))

    _check_values(result, sends, acks, positions_of, values_at, read_values, final_values)
    offsets_by_partition: dict[int, list[int]] = defaultdict(list)
    for partition, offset in values_at:
        offsets_by_partition[partition].append(offset)
    for offsets in offsets_by_partition.values():
        offsets.sort()
    for process, process_ops in consumer_ops.items():
        _check_poll_order(result, process, process_ops, offsets_by_partition)
        _check_group_starts(result, process, process_ops, commit_attempts, offsets_by_partition)
    _check_commits(result, commits)
    _check_send_order(result, sends, acks)
    return result


def _check_final_gaps(result: Result, op: dict, index: int, records: list[tuple[int, int, Any]]) -> None:
    """final_gaps: offsets the final read should have returned but did not. Without
    transactions or compaction a partition's offsets are contiguous, so every offset from the
    partition's start (``start_offsets``, else the first offset read) up to its end offset
    must be there."""
    ends = _offset_map(op, index, "end_offsets", _get(op, index, "end_offsets"))
    starts = _offset_map(op, index, "start_offsets", op["start_offsets"]) if "start_offsets" in op else {}
    read: dict[int, set[int]] = defaultdict(set)
    for partition, offset, _value in records:
        read[partition].add(offset)
    for partition, end in ends.items():
        offsets = read.get(partition, set())
        start = starts.get(partition, min(offsets) if offsets else end)
        missing = [o for o in range(start, end) if o not in offsets]
        if missing:
            result.final_gaps += len(missing)
            _example(result, "final_gaps", {"partition": partition, "missing": missing[:20], "count": len(missing)})


def _check_send_order(result: Result, sends: dict[Any, _Send], acks: dict[Any, tuple[int, int | None, str]]) -> None:
    """send_reordered: an idempotent producer's acknowledged records of one partition must
    get offsets in the order it sent them (Jepsen's per-producer order check). Counts each
    ack whose offset is not above every offset acked for an earlier send of that producer
    and partition."""
    by_stream: dict[tuple[str, int], list[tuple[int, int, Any]]] = defaultdict(list)
    for value, (partition, offset, process) in acks.items():
        if offset is not None:
            by_stream[(process, partition)].append((sends[value].order, offset, value))
    for (process, partition), stream in by_stream.items():
        stream.sort()
        highest: tuple[int, Any] | None = None
        for _order, offset, value in stream:
            if highest is not None and offset <= highest[0]:
                result.send_reordered += 1
                _example(result, "send_reordered", {
                    "process": process, "partition": partition, "value": value, "offset": offset,
                    "after": {"value": highest[1], "offset": highest[0]},
                })
            if highest is None or offset > highest[0]:
                highest = (offset, value)


def _check_values(
    result: Result,
    sends: dict[Any, _Send],
    acks: dict[Any, tuple[int, int | None, str]],
    positions_of: dict[Any, set[Position]],
    values_at: dict[Position, set[Any]],
    read_values: dict[Any, Position],
    final_values: set[Any],
) -> None:
    """lost, duplicated, inconsistent, failed_seen, unknown_seen, unacked_seen, indeterminate."""
    for value, (partition, offset, process) in acks.items():
        if value not in final_values:
            result.lost += 1
            _example(result, "lost", {"value": value, "partition": partition, "offset": offset, "process": process})
    for value, positions in positions_of.items():
        if len(positions) > 1:
            result.duplicated += 1
            _example(result, "duplicated", {"value": value, "positions": sorted(positions)})
    for (partition, offset), values in values_at.items():
        if len(values) > 1:
            result.inconsistent += 1
            _example(result, "inconsistent", {
                "partition": partition, "offset": offset, "values": sorted(values, key=repr),
            })
    for send in sends.values():
        if send.outcome in (None, "info"):
            result.indeterminate += 1
    result.read = len(read_values)
    for value, (partition, offset) in read_values.items():
        send = sends.get(value)
        where = {"value": value, "partition": partition, "offset": offset}
        if send is None:
            result.unknown_seen += 1
            _example(result, "unknown_seen", where)
        elif send.outcome == "fail":
            result.failed_seen += 1
            _example(result, "failed_seen", {**where, "process": send.process, "error": send.error})
        elif send.outcome in (None, "info"):
            result.unacked_seen += 1
            _example(result, "unacked_seen", {**where, "process": send.process, "outcome": send.outcome})


def _count_between(sorted_offsets: list[int], low: int, high: int) -> tuple[int, list[int]]:
    """How many observed offsets lie in [low, high), and the first few of them."""
    start = bisect.bisect_left(sorted_offsets, low)
    end = bisect.bisect_left(sorted_offsets, high)
    return max(0, end - start), sorted_offsets[start:min(end, start + 10)]


def _check_poll_order(
    result: Result,
    process: str,
    process_ops: list[tuple[int, dict]],
    offsets_by_partition: dict[int, list[int]],
) -> None:
    """nonmonotonic and skipped, for one consumer process (its assign and poll ok ops)."""
    epoch = 0
    last_offset: dict[int, int] = {}  # partition -> offset polled last in this epoch
    start_positions: dict[int, int] = {}  # given by the epoch's assign, until first polled

    for index, op in process_ops:
        if op["f"] == "assign":
            epoch += 1
            last_offset = {}
            raw = op.get("positions")
            start_positions = _offset_map(op, index, "positions", raw) if raw is not None else {}
            continue
        for partition, offset, _value in _records(op, index):
            where = {"process": process, "epoch": epoch, "partition": partition}
            previous = last_offset.get(partition)
            last_offset[partition] = offset
            if previous is None:
                position = start_positions.pop(partition, None)
                if position is None or offset <= position:
                    continue
                low = position  # the position itself is the next record to read
            elif offset <= previous:
                result.nonmonotonic += 1
                _example(result, "nonmonotonic", {**where, "previous": previous, "offset": offset})
                continue
            else:
                low = previous + 1
            count, some = _count_between(offsets_by_partition.get(partition, []), low, offset)
            if count:
                result.skipped += count
                _example(result, "skipped", {**where, "from": low, "to": offset, "count": count, "offsets": some})


def _check_group_starts(
    result: Result,
    process: str,
    process_ops: list[tuple[int, dict]],
    commit_attempts: dict[tuple[Any, int], list[tuple[int, int]]],
    offsets_by_partition: dict[int, list[int]],
) -> None:
    """skipped, at a group rebalance: a group consumer's assignment that starts a partition
    past every offset anyone had tried to commit for it (or past the partition's first offset
    when nothing was) skips the records in between, which the group never consumed."""
    for index, op in process_ops:
        group = op.get("group")
        raw = op.get("positions")
        if op["f"] != "assign" or group is None or raw is None:
            continue
        for partition, position in _offset_map(op, index, "positions", raw).items():
            attempted = [offset for mono, offset in commit_attempts.get((group, partition), []) if mono < op["mono"]]
            existing = offsets_by_partition.get(partition, [])
            allowed = max(attempted) if attempted else (existing[0] if existing else position)
            if position <= allowed:
                continue
            count, some = _count_between(existing, allowed, position)
            if count:
                result.skipped += count
                _example(result, "skipped", {
                    "process": process, "group": group, "partition": partition,
                    "start": position, "committed_at_most": allowed, "count": count, "offsets": some,
                })


def _check_commits(result: Result, commits: dict[tuple[Any, int], list[_Commit]]) -> None:
    """commits_backwards: per (group, partition), a sweep over the commits sorted by invoke
    time, keeping the largest offset among those whose ok came strictly earlier: O(n log n)."""
    backwards: dict[int, dict] = {}  # ok op index -> first example, so a commit counts once
    for (group, partition), group_commits in commits.items():
        by_ok = sorted(group_commits, key=lambda c: c.ok_mono)
        by_invoke = sorted(group_commits, key=lambda c: c.invoke_mono)
        highest: _Commit | None = None
        next_ok = 0
        for commit in by_invoke:
            while next_ok < len(by_ok) and by_ok[next_ok].ok_mono < commit.invoke_mono:
                done = by_ok[next_ok]
                if highest is None or done.offset > highest.offset:
                    highest = done
                next_ok += 1
            if highest is not None and highest.offset > commit.offset and commit.index not in backwards:
                backwards[commit.index] = {
                    "group": group, "partition": partition, "offset": commit.offset,
                    "process": commit.process, "earlier_offset": highest.offset,
                    "earlier_process": highest.process,
                }
    result.commits_backwards = len(backwards)
    for index in sorted(backwards):
        _example(result, "commits_backwards", backwards[index])


# --- the command ------------------------------------------------------------------------------


def _line_numbers(path: Path) -> list[int]:
    """The file line of each op history.read yields: it yields every non-blank line in order
    (only a torn last line is dropped, and it is last, so earlier numbers still match)."""
    text = path.read_text(encoding="utf-8")
    return [number for number, line in enumerate(text.split("\n"), 1) if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a cluster test history (JSON lines).")
    parser.add_argument("history", type=Path, help="the merged history.jsonl")
    parser.add_argument("--json", type=Path, metavar="DETAILS.json", help="write every count and example here")
    args = parser.parse_args(argv)

    try:
        ops = list(history.read(args.history))
        result = check(ops)
    except (OSError, UnicodeDecodeError) as e:
        print(f"checker: ERROR cannot read {args.history}: {e}", file=sys.stderr)
        return 2
    except HistoryError as e:
        where = str(args.history)
        if e.index is not None:
            where += f":{_line_numbers(args.history)[e.index]}"
        print(f"checker: ERROR {where}: {e.reason}", file=sys.stderr)
        return 2
    except ValueError as e:  # history.read: a line that is not a JSON object
        print(f"checker: ERROR {e}", file=sys.stderr)
        return 2

    if args.json:
        # Written before the verdict is printed, so a verdict line always means details exist.
        try:
            args.json.write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
        except OSError as e:
            print(f"checker: ERROR cannot write {args.json}: {e}", file=sys.stderr)
            return 2
    print(result.summary())
    for line in result.example_lines():
        print(line)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
