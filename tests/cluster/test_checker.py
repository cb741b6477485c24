"""Unit tests of checker.py on small hand-made histories (issue 15).

Each anomaly kind has a history that contains exactly a known number of it and nothing else,
and the test asserts that exact count AND that every other violation is 0, so a checker that
flagged everything (or nothing) fails. The clean baseline is not empty (acks, polls, commits,
a rebalance, a final read), so "no violation" on it means something. Command-line tests run
checker.py with sys.executable from a foreign cwd, as the bench does.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checker  # noqa: E402
from checker import VIOLATIONS, HistoryError, check  # noqa: E402

CHECKER = Path(__file__).resolve().parent / "checker.py"
PY = "confluent-kafka"


class History:
    """Builds a history in code. Each op gets the next monotonic time (steps of 10) unless
    ``mono`` is given, so tests that are about timing say so explicitly."""

    def __init__(self) -> None:
        self.ops: list[dict] = []
        self.mono = 0

    def op(self, process: str, type_: str, f: str, client: str = PY, mono: int | None = None, **fields: Any) -> dict:
        if mono is None:
            self.mono += 10
            mono = self.mono
        op = {"time": 1e9 + mono / 1e9, "mono": mono, "process": process, "client": client,
              "type": type_, "f": f, **fields}
        self.ops.append(op)
        return op

    def send(self, process: str, value: str, outcome: str | None = "ok", partition: int = 0,
             offset: int | None = None, client: str = PY) -> None:
        """An invoke and its completion (none when outcome is None: the process died)."""
        self.op(process, "invoke", "send", client, topic="jepsen", key=None, value=value)
        if outcome == "ok":
            self.op(process, "ok", "send", client, value=value, partition=partition, offset=offset)
        elif outcome is not None:
            self.op(process, outcome, "send", client, value=value, error="timed out")

    def poll(self, process: str, *records: tuple[int, int, str]) -> None:
        self.op(process, "ok", "poll", records=[list(r) for r in records])

    def assign(self, process: str, partitions: list[int], positions: dict[int, int] | None = None,
               group: str | None = "g") -> None:
        fields: dict[str, Any] = {"partitions": partitions, "group": group}
        if positions is not None:
            fields["positions"] = {str(p): o for p, o in positions.items()}
        self.op(process, "ok", "assign", **fields)

    def commit(self, process: str, offsets: dict[int, int], group: str = "g", outcome: str = "ok",
               invoke_mono: int | None = None, done_mono: int | None = None) -> None:
        fields = {"group": group, "offsets": {str(p): o for p, o in offsets.items()}}
        self.op(process, "invoke", "commit", mono=invoke_mono, **fields)
        if outcome == "ok":
            self.op(process, "ok", "commit", mono=done_mono, **fields)
        else:
            self.op(process, outcome, "commit", mono=done_mono, error="coordinator moved", **fields)

    def final(self, *records: tuple[int, int, str], complete: bool = True) -> None:
        ends: dict[str, int] = {}
        for p, o, _ in records:
            ends[str(p)] = max(ends.get(str(p), 0), o + 1)
        self.op("final-reader", "ok", "final-read", records=[list(r) for r in records],
                end_offsets=ends, complete=complete)

    def write(self, path: Path) -> Path:
        path.write_text("".join(json.dumps(op) + "\n" for op in self.ops), encoding="utf-8")
        return path


def produce(h: History, values: list[tuple[str, int, int]], process: str = "py-producer-0", client: str = PY) -> None:
    """Acked sends of (value, partition, offset)."""
    for value, partition, offset in values:
        h.send(process, value, "ok", partition, offset, client)


def five_acked(h: History) -> list[tuple[int, int, str]]:
    """Acks a..e at partition 0 offsets 0..4; returns them as records."""
    records = [(0, i, v) for i, v in enumerate("abcde")]
    produce(h, [(v, p, o) for p, o, v in records])
    return records


def clean_history() -> History:
    """Two producers on two partitions, an assigned consumer reading from the beginning, a
    group consumer that rebalances and commits, and a complete final read."""
    h = History()
    p0 = [(0, i, f"py-producer-0-{i}") for i in range(4)]
    p1 = [(1, i, f"java-producer-0-{i}") for i in range(3)]
    produce(h, [(v, p, o) for p, o, v in p0], "py-producer-0", PY)
    produce(h, [(v, p, o) for p, o, v in p1], "java-producer-0", "java")
    h.assign("assigned-0", [0, 1], positions={0: 0, 1: 0}, group=None)
    h.poll("assigned-0", p0[0], p1[0], p0[1])
    h.poll("assigned-0", p1[1], p0[2], p1[2], p0[3])
    h.assign("group-0", [0, 1])
    h.poll("group-0", *p0[:2])
    h.commit("group-0", {0: 2})
    h.assign("group-0", [0])  # rebalance: re-reads from the committed offset
    h.poll("group-0", p0[2], p0[3])
    h.commit("group-0", {0: 4})
    h.final(*p0, *p1)
    return h


def zero_except(result: checker.Result, **expected: int) -> None:
    """Every violation is 0 except those given, which have exactly the given counts."""
    actual = {kind: getattr(result, kind) for kind in VIOLATIONS}
    assert actual == {kind: expected.get(kind, 0) for kind in VIOLATIONS}


# --- one history per anomaly, shared by the library and the command-line tests ----------------


def lost_history() -> History:
    h = History()
    records = five_acked(h)
    # d and e were acked at offsets 3 and 4, but the partition ends at 3 (truncated away).
    h.final(*[r for r in records if r[2] not in ("d", "e")])
    return h


def duplicated_history() -> History:
    h = History()
    records = five_acked(h)
    # "b" acked at 0/1, then read at 0/1 and again at 0/5 (a retried batch written twice).
    h.final(*records, (0, 5, "b"))
    return h


def inconsistent_history() -> History:
    h = History()
    records = five_acked(h)
    h.send("py-producer-0", "x", "info")
    h.poll("c0", (0, 0, "x"))  # the consumer saw x where everybody else saw a
    h.final(*records)
    return h


def nonmonotonic_history() -> History:
    h = History()
    records = five_acked(h)
    h.poll("c0", *records[:3])      # 0 1 2
    h.poll("c0", *records[1:4])     # 1 (<= 2: one), 2 3
    h.poll("c0", records[3])        # 3 again (<= 3: two)
    h.poll("c0", records[4])
    h.final(*records)
    return h


def skipped_history() -> History:
    h = History()
    records = five_acked(h)
    produce(h, [("f", 0, 5), ("g", 0, 6)])
    records += [(0, 5, "f"), (0, 6, "g")]
    h.poll("c0", records[0], records[3])  # 0 then 3: skips 1 and 2
    h.poll("c0", records[4], records[5])  # 4 then 5: no skip
    h.final(*records)
    return h


def commits_backwards_history() -> History:
    h = History()
    records = five_acked(h)
    h.commit("c0", {0: 4, 1: 4})
    h.commit("c1", {0: 2, 1: 3})  # backwards on both partitions: one commit
    h.commit("c0", {0: 5})
    h.commit("c0", {1: 4}, group="other")  # another group is not compared
    h.commit("c1", {1: 1}, group="other")  # ...but within it this goes backwards: two
    h.final(*records)
    return h


def failed_seen_history() -> History:
    h = History()
    records = five_acked(h)
    h.send("py-producer-0", "x", "fail")
    h.send("py-producer-0", "y", "fail")  # failed and never seen: fine
    h.poll("c0", (0, 5, "x"))
    h.final(*records, (0, 5, "x"))
    return h


def unknown_seen_history() -> History:
    h = History()
    records = five_acked(h)
    h.poll("c0", (1, 0, "stranger"))
    h.final(*records, (1, 0, "stranger"), (1, 1, "other-stranger"))
    return h


def final_incomplete_history() -> History:
    h = History()
    records = five_acked(h)
    h.final(*records, complete=False)
    return h


def test_a_group_consumer_starting_past_the_committed_offset_skips() -> None:
    """The new owner of a partition must start at the group's committed offset: c1 commits
    3, then c2's assignment starts at 5 (records 3 and 4 were never consumed by the group)."""
    h = History()
    records = five_acked(h)
    produce(h, [("f", 0, 5)])
    records.append((0, 5, "f"))
    h.assign("c1", [0], positions={0: 0})
    h.poll("c1", *records[:3])
    h.commit("c1", {0: 3})
    h.assign("c1", [])
    h.assign("c2", [0], positions={0: 5})
    h.poll("c2", records[5])
    h.final(*records)
    result = check(h.ops)
    zero_except(result, skipped=2)
    assert result.examples["skipped"][0]["committed_at_most"] == 3
    # Starting at the committed offset (or before it: re-reading is allowed) is fine.
    for start in (3, 1):
        ok = History()
        records = five_acked(ok)
        ok.assign("c1", [0], positions={0: 0})
        ok.poll("c1", *records[:3])
        ok.commit("c1", {0: 3})
        ok.assign("c2", [0], positions={0: start})
        ok.poll("c2", *records[start:])
        ok.final(*records)
        zero_except(check(ok.ops))


def final_gaps_history() -> History:
    h = History()
    produce(h, [("a", 0, 0)])
    h.send("py-producer-0", "x", "info")  # outcomes unknown, but a consumer read them
    h.send("py-producer-0", "y", "info")
    produce(h, [("d", 0, 3), ("e", 0, 4)])
    h.poll("c0", (0, 0, "a"), (0, 1, "x"), (0, 2, "y"), (0, 3, "d"), (0, 4, "e"))
    # The final read ends at 5 but lacks offsets 1 and 2: nothing acked is lost, yet the
    # log is no longer contiguous.
    h.final((0, 0, "a"), (0, 3, "d"), (0, 4, "e"))
    return h


def send_reordered_history() -> History:
    h = History()
    # One producer's sends a, b, c to partition 0 acked at 0, 2, 1: c got an offset below b's.
    produce(h, [("a", 0, 0), ("b", 0, 2), ("c", 0, 1)])
    produce(h, [("d", 0, 3)], process="py-producer-1")  # another producer is not compared
    h.final((0, 0, "a"), (0, 1, "c"), (0, 2, "b"), (0, 3, "d"))
    return h


ANOMALIES: dict[str, tuple[Callable[[], History], int]] = {
    "lost": (lost_history, 2),
    "duplicated": (duplicated_history, 1),
    "inconsistent": (inconsistent_history, 1),
    "nonmonotonic": (nonmonotonic_history, 2),
    "skipped": (skipped_history, 2),
    "commits_backwards": (commits_backwards_history, 2),
    "failed_seen": (failed_seen_history, 1),
    "unknown_seen": (unknown_seen_history, 2),
    "final_incomplete": (final_incomplete_history, 1),
    "final_gaps": (final_gaps_history, 2),
    "send_reordered": (send_reordered_history, 1),
}


def test_every_violation_kind_has_a_history():
    assert set(ANOMALIES) == set(VIOLATIONS)


# --- library ----------------------------------------------------------------------------------


def test_clean_history_has_no_violation():
    result = check(clean_history().ops)
    zero_except(result)
    assert result.ok
    assert result.acked == 7 and result.read == 7
    assert result.unacked_seen == 0 and result.indeterminate == 0
    assert result.examples == {}


@pytest.mark.parametrize("kind", list(ANOMALIES))
def test_anomaly_is_detected_with_its_exact_count(kind):
    build, count = ANOMALIES[kind]
    result = check(build().ops)
    zero_except(result, **{kind: count})
    assert not result.ok
    assert result.violations == {kind: count}
    assert 1 <= len(result.examples[kind]) <= count


def test_lost_examples_name_the_values():
    result = check(lost_history().ops)
    assert sorted(e["value"] for e in result.examples["lost"]) == ["d", "e"]
    assert result.examples["lost"][0]["process"] == "py-producer-0"


def test_duplicated_and_inconsistent_examples():
    dup = check(duplicated_history().ops).examples["duplicated"]
    assert dup == [{"value": "b", "positions": [(0, 1), (0, 5)]}]
    inc = check(inconsistent_history().ops)
    assert inc.examples["inconsistent"] == [{"partition": 0, "offset": 0, "values": ["a", "x"]}]
    assert inc.unacked_seen == 1  # x was sent with an unknown outcome: that part is allowed


def test_skipped_example_lists_the_offsets():
    (example,) = check(skipped_history().ops).examples["skipped"]
    assert example["offsets"] == [1, 2] and example["from"] == 1 and example["to"] == 3


def test_skip_from_assign_positions():
    def history(positions: dict[int, int] | None) -> History:
        h = History()
        records = five_acked(h)
        produce(h, [("p1-0", 1, 0), ("p1-1", 1, 1)])
        h.assign("c0", [0, 1], positions=positions, group=None)
        h.poll("c0", records[3], (1, 0, "p1-0"), records[4], (1, 1, "p1-1"))
        h.final(*records, (1, 0, "p1-0"), (1, 1, "p1-1"))
        return h

    # Position 1 on partition 0: offset 1 is the next to read, so 1 and 2 are skipped when the
    # first record polled is 3. Partition 1 starts where its position says: nothing skipped.
    result = check(history({0: 1, 1: 0}).ops)
    zero_except(result, skipped=2)
    assert result.examples["skipped"][0]["offsets"] == [1, 2]
    # The same polls after an assign without positions (a group consumer) skip nothing.
    zero_except(check(history(None).ops))


def test_commits_backwards_examples():
    examples = check(commits_backwards_history().ops).examples["commits_backwards"]
    assert [(e["group"], e["offset"], e["earlier_offset"]) for e in examples] == [("g", 2, 4), ("other", 1, 4)]


def test_concurrent_commits_are_not_compared():
    def history(second_invoke: int) -> History:
        h = History()
        records = five_acked(h)
        base = h.mono
        # Commit of 5: invoke at +10, ok at +30. Commit of 3 by another consumer: invoke at
        # second_invoke, ok at +40.
        h.commit("c0", {0: 5}, invoke_mono=base + 10, done_mono=base + 30)
        h.commit("c1", {0: 3}, invoke_mono=base + second_invoke, done_mono=base + 40)
        h.mono = base + 100
        h.final(*records)
        return h

    assert check(history(20).ops).commits_backwards == 0  # overlapping in time
    assert check(history(30).ops).commits_backwards == 0  # invoke at the very ok time: overlap
    assert check(history(35).ops).commits_backwards == 1  # strictly after the ok: compared


def test_failed_or_unknown_commits_do_not_count():
    h = History()
    records = five_acked(h)
    h.commit("c0", {0: 5}, outcome="info")
    h.commit("c0", {0: 9}, outcome="fail")
    h.commit("c1", {0: 3})
    h.commit("c1", {0: 3})  # committing the same offset again is not backwards
    h.final(*records)
    zero_except(check(h.ops))


def test_commits_backwards_is_fast_on_many_commits():
    # 20 000 commits, every 1000th one goes back: quadratic code would take minutes here.
    h = History()
    records = five_acked(h)
    for i in range(20_000):
        offset = i - 500 if i % 1000 == 999 else i
        h.commit(f"c{i % 3}", {i % 2: offset})
    h.final(*records)
    started = time.monotonic()
    assert check(h.ops).commits_backwards == 20
    # Quadratic code needs minutes; a generous bound keeps a loaded machine from flaking it.
    assert time.monotonic() - started < 10.0


def test_unacked_value_that_appears_is_allowed_but_counted():
    h = History()
    records = five_acked(h)
    h.send("py-producer-0", "timed-out", "info")      # seen in the final read
    h.send("py-producer-0", "died", None)             # never completed, seen in a poll
    h.send("java-producer-0", "vanished", "info", client="java")  # never seen: also fine
    h.poll("c0", *records, (0, 5, "timed-out"), (0, 6, "died"))
    h.final(*records, (0, 5, "timed-out"), (0, 6, "died"))
    result = check(h.ops)
    zero_except(result)
    assert result.ok
    assert (result.unacked_seen, result.indeterminate, result.read, result.acked) == (2, 3, 7, 5)
    assert sorted(e["value"] for e in result.examples["unacked_seen"]) == ["died", "timed-out"]


def test_assignment_epochs_reset_the_order_checks():
    def history(rebalance: bool, by: str = "c0") -> History:
        h = History()
        records = five_acked(h)
        h.poll("c0", *records[:4])  # implicit epoch 0: 0 1 2 3
        if rebalance:
            h.assign(by, [0])
        h.poll("c0", *records[1:])  # from the committed offset 1 again: 1 2 3 4
        h.final(*records)
        return h

    zero_except(check(history(rebalance=True).ops))
    # Control: the same polls without the assign are one nonmonotonic step...
    zero_except(check(history(rebalance=False).ops), nonmonotonic=1)
    # ...and so they are when the assign is another process's: epochs are per process.
    zero_except(check(history(rebalance=True, by="c1").ops), nonmonotonic=1)


def test_epochs_and_partitions_are_tracked_separately():
    h = History()
    records = five_acked(h)
    produce(h, [("q0", 1, 0), ("q1", 1, 1)])
    # Interleaved partitions, each in order: nothing. Then a new epoch that starts at offset 3
    # without positions: nothing (a group consumer does not know where it starts).
    h.poll("c0", records[0], (1, 0, "q0"), records[1], (1, 1, "q1"), records[2])
    h.assign("c0", [0])
    h.poll("c0", records[3], records[4])
    # Epoch 2 starts over at offset 0 (no nonmonotonic against the 4 of epoch 1), but inside
    # it 0 then 2 skips 1: a reset epoch is still checked.
    h.assign("c0", [0])
    h.poll("c0", records[0], records[2])
    h.final(*records, (1, 0, "q0"), (1, 1, "q1"))
    result = check(h.ops)
    zero_except(result, skipped=1)
    assert result.examples["skipped"][0]["epoch"] == 2


def test_acked_counts_per_client_and_process():
    h = History()
    produce(h, [("py-producer-0-0", 0, 0), ("py-producer-0-1", 0, 1)], "py-producer-0", PY)
    produce(h, [("py-producer-1-0", 1, 0)], "py-producer-1", PY)
    produce(h, [("java-producer-0-0", 2, 0), ("java-producer-0-1", 2, 1)], "java-producer-0", "java")
    h.send("java-producer-0", "java-producer-0-2", "info", client="java")  # not acked
    h.final((0, 0, "py-producer-0-0"), (0, 1, "py-producer-0-1"), (1, 0, "py-producer-1-0"),
            (2, 0, "java-producer-0-0"), (2, 1, "java-producer-0-1"))
    result = check(h.ops)
    zero_except(result)
    assert result.acked == 5
    assert result.acked_by_client == {"confluent-kafka": 3, "java": 2}
    assert result.acked_by_process == {"java-producer-0": 2, "py-producer-0": 2, "py-producer-1": 1}
    assert result.summary().startswith("checker: OK acked=5 (confluent-kafka=3 java=2) lost=0 ")


def test_unknown_operations_are_ignored():
    h = clean_history()
    h.op("nemesis", "info", "kill", node=2)                # unknown f, no fields of ours
    h.op("c0", "invoke", "poll")                           # a poll invoke carries nothing
    zero_except(check(h.ops))


def test_an_unknown_type_of_a_known_operation_is_an_error():
    # Skipping it could turn an ack into an indeterminate send and hide its loss.
    h = clean_history()
    h.op("c0", "OK", "send", value="py-producer-0-0", partition=0, offset=0)
    with pytest.raises(HistoryError, match="unknown type 'OK'"):
        check(h.ops)


def test_history_is_checked_in_monotonic_order():
    # Lines out of order (here reversed: every completion before its invoke) are put back in
    # order by mono, as merge() would have.
    h = clean_history()
    zero_except(check(list(reversed(h.ops))))


def test_missing_field_raises_history_error_naming_the_op():
    h = clean_history()
    del h.ops[1]["offset"]  # the ok of the first send
    with pytest.raises(HistoryError) as error:
        check(h.ops)
    assert error.value.index == 1 and "'offset'" in str(error.value)


def test_no_final_read_raises_history_error():
    h = History()
    five_acked(h)
    with pytest.raises(HistoryError, match="no final-read"):
        check(h.ops)


# --- command line -------------------------------------------------------------------------------


def run_checker(history_path: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command as the bench runs it: a separate interpreter, from a foreign cwd."""
    return subprocess.run([sys.executable, str(CHECKER), str(history_path), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def run_main(history_path: Path, *args: str, capsys) -> subprocess.CompletedProcess:
    """The command's entry point in this process: the same code path as run_checker minus
    interpreter start-up (about 0.1 s each on this machine), for the many-case tests."""
    capsys.readouterr()
    code = checker.main([str(history_path), *args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["checker.py"], code, out.out, out.err)


def summary_counts(line: str) -> dict[str, int]:
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def test_cli_clean_history_exits_0(tmp_path):
    path = clean_history().write(tmp_path / "history.jsonl")
    details = tmp_path / "details.json"
    # From a cwd that is not the repository: checker.py must find history.py by itself.
    run = run_checker(path, "--json", str(details), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("checker: OK acked=7 (confluent-kafka=4 java=3) ")
    counts = summary_counts(lines[0])
    assert all(counts[kind] == 0 for kind in VIOLATIONS)
    assert (counts["unacked_seen"], counts["indeterminate"], counts["read"]) == (0, 0, 7)
    saved = json.loads(details.read_text())
    assert saved["ok"] is True and saved["acked_by_process"] == {"java-producer-0": 3, "py-producer-0": 4}


@pytest.mark.parametrize("kind", list(ANOMALIES))
def test_cli_violation_exits_1_and_names_it(kind, tmp_path, capsys):
    build, count = ANOMALIES[kind]
    path = build().write(tmp_path / "history.jsonl")
    details = tmp_path / "details.json"
    # One kind through a real interpreter, the others through main() to keep the file fast.
    if kind == "lost":
        run = run_checker(path, "--json", str(details), cwd=tmp_path)
    else:
        run = run_main(path, "--json", str(details), capsys=capsys)
    assert run.returncode == 1, run.stdout + run.stderr
    summary, *example_lines = run.stdout.splitlines()
    assert summary.startswith("checker: FAIL ")
    counts = summary_counts(summary)
    assert {k: counts[k] for k in VIOLATIONS} == {k: (count if k == kind else 0) for k in VIOLATIONS}
    assert len(example_lines) == 1 and example_lines[0].startswith(f"  {kind}={count}: {{")
    saved = json.loads(details.read_text())
    assert saved["violations"] == {kind: count} and saved["examples"][kind]


def test_cli_unacked_seen_is_not_a_failure(tmp_path):
    h = History()
    records = five_acked(h)
    h.send("py-producer-0", "timed-out", "info")
    h.final(*records, (0, 5, "timed-out"))
    run = run_checker(h.write(tmp_path / "h.jsonl"), cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("checker: OK ")
    assert "| allowed: unacked_seen=1 indeterminate=1 acked_without_offset=0 read=6" in run.stdout


def bad_input_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (history file, text stderr must contain)."""
    cases = {}
    missing = tmp_path / "missing.jsonl"
    cases["missing file"] = (missing, "cannot read")

    good = [json.dumps(op) for op in clean_history().ops]
    not_json = tmp_path / "not-json.jsonl"
    not_json.write_text("\n".join(good[:2] + ["{not json"] + good[2:]) + "\n")
    cases["bad JSON"] = (not_json, "not-json.jsonl:3: not JSON")

    no_final = tmp_path / "no-final.jsonl"
    no_final.write_text("".join(line + "\n" for line in good if '"final-read"' not in line))
    cases["no final read"] = (no_final, "no final-read")

    ops = clean_history().ops
    del ops[1]["offset"]  # the first send's ok
    missing_field = tmp_path / "missing-field.jsonl"
    # A blank line first: the line number reported must still be the file's.
    missing_field.write_text("\n" + "".join(json.dumps(op) + "\n" for op in ops))
    cases["missing field"] = (missing_field, "missing-field.jsonl:3: ok send op lacks field 'offset'")

    ops = clean_history().ops
    ops[-1]["records"][0] = [0, "zero", "py-producer-0-0"]
    bad_type = tmp_path / "bad-type.jsonl"
    bad_type.write_text("".join(json.dumps(op) + "\n" for op in ops))
    cases["offset not an integer"] = (bad_type, f"bad-type.jsonl:{len(ops)}: field 'records[].offset'")

    ops = clean_history().ops
    del ops[0]  # the invoke of the first send
    orphan = tmp_path / "orphan.jsonl"
    orphan.write_text("".join(json.dumps(op) + "\n" for op in ops))
    cases["completion without invoke"] = (orphan, "orphan.jsonl:1: send ok of value 'py-producer-0-0' without its invoke")
    return cases


@pytest.mark.parametrize("case", ["missing file", "bad JSON", "no final read", "missing field",
                                  "offset not an integer", "completion without invoke"])
def test_cli_bad_input_exits_2(case, tmp_path, capsys):
    path, message = bad_input_cases(tmp_path)[case]
    if case in ("missing file", "missing field"):
        run = run_checker(path, cwd=tmp_path)
    else:
        run = run_main(path, capsys=capsys)
    assert run.returncode == 2, run.stdout + run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


def test_an_ack_without_offset_counts_as_acked_and_must_be_read() -> None:
    """librdkafka acknowledges a retried batch that the broker answered
    DUPLICATE_SEQUENCE_NUMBER with no offset (seen against Kafka after kill-all): it is acked,
    observes no position, and is lost if the final read lacks it."""
    h = History()
    records = five_acked(h)
    h.send("py-producer-0", "f", "ok", partition=0, offset=None)
    h.send("py-producer-0", "g", "ok", partition=1, offset=None)
    h.final(*records, (0, 5, "f"))
    result = check(h.ops)
    assert result.acked == 7
    assert result.acked_without_offset == 2
    assert result.lost == 1, result.examples
    assert result.examples["lost"][0]["value"] == "g"
    assert result.inconsistent == 0 and result.duplicated == 0
