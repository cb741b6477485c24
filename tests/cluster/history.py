"""The history of a cluster test run: every client operation, one JSON object per line.

Every client of a run (Python producers and consumers, the Java producer, the final reader)
appends to its own file; :func:`merge` joins them into one ``history.jsonl`` ordered by the
monotonic clock, which is what ``checker.py`` reads. The format is documented in
docs/cluster-testing.md ("The history"); in short, each line has

- ``time``: wall clock, seconds since the epoch (float), for people reading the file;
- ``mono``: CLOCK_MONOTONIC in nanoseconds (int), the order the checker trusts. Python's
  ``time.monotonic_ns()`` and Java's ``System.nanoTime()`` both read CLOCK_MONOTONIC on Linux,
  so times from different processes of one machine compare;
- ``process``: the client process that did it (unique per run, e.g. ``py-producer-0``);
- ``client``: ``confluent-kafka`` or ``java``;
- ``type``: ``invoke`` (about to start), ``ok`` (succeeded), ``fail`` (definitely did not
  happen), ``info`` (outcome unknown);
- ``f``: ``send``, ``poll``, ``commit``, ``assign`` or ``final-read``, plus fields of its own.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator


class HistoryWriter:
    """Appends operations of one client process to a JSON-lines file, thread-safely.

    Each line is flushed as it is written so that the history survives the process being
    stopped by a signal at any point (a torn last line is skipped by :func:`read`)."""

    def __init__(self, path: Path | str, process: str, client: str = "confluent-kafka"):
        self.path = Path(path)
        self.process = process
        self.client = client
        self._lock = threading.Lock()
        self._file = open(self.path, "a", encoding="utf-8")

    def op(self, type_: str, f: str, **fields: Any) -> None:
        record = {
            "time": round(time.time(), 6),
            "mono": time.monotonic_ns(),
            "process": self.process,
            "client": self.client,
            "type": type_,
            "f": f,
        }
        record.update(fields)
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read(path: Path | str) -> Iterator[dict]:
    """Yields the operations of one history file. A last line cut short (its writer was killed
    mid-write) is skipped; any other line that is not a JSON object raises ValueError."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            op = json.loads(line)
        except json.JSONDecodeError as e:
            # Only the very last line, with no newline after it, can be torn by a kill.
            if number == len(lines) and not text.endswith("\n"):
                continue
            raise ValueError(f"{path}:{number}: not JSON: {e}") from None
        if not isinstance(op, dict):
            raise ValueError(f"{path}:{number}: not a JSON object")
        yield op


def merge(sources: Iterable[Path | str], dest: Path | str) -> int:
    """Merges several history files into ``dest`` ordered by ``mono`` (stable for ties, so
    the order of one process's lines is kept). Returns the number of operations."""
    ops: list[dict] = []
    for source in sources:
        ops.extend(read(source))
    ops.sort(key=lambda op: op.get("mono", 0))
    with open(dest, "w", encoding="utf-8") as out:
        for op in ops:
            out.write(json.dumps(op, separators=(",", ":")) + "\n")
    return len(ops)
