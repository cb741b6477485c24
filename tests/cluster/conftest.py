"""Settings and the results table of the cluster fault bench (tests/cluster).

Run it through ``scripts/cluster.sh test`` (a private network and mount namespace, so that
network partitions and small disks touch nothing of the host); plain ``pytest tests/cluster``
runs the checker's unit tests and the faults that need neither, and skips the others with
the reason.

Environment:
- ``SLUICE_CLUSTER_TARGET``: ``sluice`` (default) or ``kafka`` (Apache Kafka 4.4, install
  with ``scripts/deps.sh --kafka``);
- ``SLUICE_CLUSTER_NODES``: cluster size (default 3 for kafka, 1 for sluice);
- ``SLUICE_CLUSTER_NEMESES``: comma-separated nemesis names to run (default: all);
- ``SLUICE_CLUSTER_HEALTHY_S`` / ``_FAULT_S`` / ``_RECOVER_S``: phase lengths in seconds
  (a fault on a Sluice cluster is held 12 s by default: past broker.session.timeout.ms);
- ``SLUICE_CLUSTER_RESULTS``: a file the results table is appended to (one line per run).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

TARGET = os.environ.get("SLUICE_CLUSTER_TARGET", "sluice").strip().lower() or "sluice"
if TARGET not in ("sluice", "kafka"):
    raise RuntimeError(f"SLUICE_CLUSTER_TARGET must be 'sluice' or 'kafka', not {TARGET!r}")


@dataclass(frozen=True)
class BenchSettings:
    target: str
    nodes: int
    healthy_s: float
    fault_s: float
    recover_s: float
    nemeses: tuple[str, ...] | None  # None: all
    results_file: Path | None


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def settings() -> BenchSettings:
    kafka = TARGET == "kafka"
    selected = os.environ.get("SLUICE_CLUSTER_NEMESES", "").strip()
    results = os.environ.get("SLUICE_CLUSTER_RESULTS")
    nodes = int(os.environ.get("SLUICE_CLUSTER_NODES", "3" if kafka else "1"))
    # A Sluice cluster holds a fault past broker.session.timeout.ms (9 s), so that the
    # controller fences the broker the fault silenced and the run sees what follows.
    sluice_cluster = not kafka and nodes > 1
    return BenchSettings(
        target=TARGET,
        nodes=nodes,
        # Kafka needs longer: leader elections take seconds, and a paused broker is only
        # fenced after broker.session.timeout.ms (9 s).
        healthy_s=_seconds("SLUICE_CLUSTER_HEALTHY_S", 8.0 if kafka else 4.0),
        fault_s=_seconds("SLUICE_CLUSTER_FAULT_S", 20.0 if kafka else 12.0 if sluice_cluster else 6.0),
        recover_s=_seconds("SLUICE_CLUSTER_RECOVER_S", 10.0 if kafka else 4.0),
        nemeses=tuple(n.strip() for n in selected.split(",") if n.strip()) or None,
        results_file=Path(results) if results else None,
    )


@pytest.fixture(scope="session")
def bench() -> BenchSettings:
    return settings()


_RESULTS: list[str] = []


@pytest.fixture(scope="session")
def results_table() -> list[str]:
    """Lines of the results table; each fault test adds one, printed at the end of the run."""
    return _RESULTS


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if not _RESULTS:
        return
    terminalreporter.section("cluster fault bench results")
    for line in _RESULTS:
        terminalreporter.write_line(line)
