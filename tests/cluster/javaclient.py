"""Builds and runs the Java clients of the cluster tests: the fault bench's producer
(java/HistoryProducer.java) and the round trip of test_sluice_cluster.py (java/RoundTrip.java).

This file owns compiling them against Kafka 4.4's client jars (the classpath
printed by ``scripts/peers/kafka.sh classpath``) and the command line that runs it. The classes
of each go to ``~/.cache/sluice/cluster-java/<sha256 of its source>/`` and are reused for as long
as the source is unchanged; a log4j2 config there keeps the client quiet (WARN and above, to stderr).

    from javaclient import producer_command
    argv = producer_command(["--bootstrap", "127.0.0.1:9092", "--process", "java-producer-0",
                             "--history", "java-producer-0.jsonl"])

or by hand: ``.venv/bin/python tests/cluster/javaclient.py [ARGS...]`` prints the command line
(compiling first if needed) for the given producer arguments.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
SOURCE = HERE / "java" / "HistoryProducer.java"
MAIN_CLASS = "HistoryProducer"
KAFKA_SH = REPO_ROOT / "scripts" / "peers" / "kafka.sh"
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sluice" / "cluster-java"
# The producer holds at most a few thousand small records: a small heap lets several JVMs
# run beside a 3-broker Kafka cluster on this machine.
HEAP = "-Xmx128m"

LOG4J2_CONFIG = """\
# The Java producer of tests/cluster logs warnings and errors only, to stderr.
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
"""


class JavaClientError(RuntimeError):
    """Java, javac or Kafka's jars are missing, or the source does not compile."""


def kafka_classpath() -> str:
    """Kafka's client classpath, e.g. ``/root/.cache/sluice/kafka-4.4.0/libs/*``."""
    try:
        result = subprocess.run(
            ["bash", str(KAFKA_SH), "classpath"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise JavaClientError(f"{KAFKA_SH} classpath: {e}") from None
    if result.returncode != 0 or not result.stdout.strip():
        raise JavaClientError(
            f"{KAFKA_SH} classpath failed ({result.stderr.strip()}); install Kafka's jars with "
            f"`{KAFKA_SH} install` (or scripts/deps.sh --kafka)"
        )
    return result.stdout.strip()


def class_dir(source_path: Path = SOURCE) -> Path:
    """Compiles one Java source (the producer by default) if this version of it has not been
    compiled yet, and returns the directory holding its classes (and log4j2.properties)."""
    main_class = source_path.stem
    source = source_path.read_bytes()
    digest = hashlib.sha256(source).hexdigest()
    target = CACHE_ROOT / digest
    if (target / f"{main_class}.class").is_file() and (target / "log4j2.properties").is_file():
        return target
    javac = shutil.which("javac")
    if javac is None:
        raise JavaClientError("javac not found: a JDK (17+) is needed for the Java producer")
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    # Compile into a fresh directory and rename it into place, so that concurrent test runs
    # never see half-written classes.
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=CACHE_ROOT))
    try:
        result = subprocess.run(
            [javac, "-nowarn", "-d", str(staging), "-cp", kafka_classpath(), str(source_path)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if result.returncode != 0:
            raise JavaClientError(f"javac {source_path} failed:\n{result.stdout}{result.stderr}")
        (staging / "log4j2.properties").write_text(LOG4J2_CONFIG)
        try:
            staging.rename(target)
        except OSError:
            # Another process won the race (the target now exists): use theirs.
            if not (target / f"{main_class}.class").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def producer_command(args: Sequence[str]) -> list[str]:
    """The argv that runs the Java producer with ``args`` (its options: --bootstrap, --topic,
    --process, --history, --rate, --duration, --drain-timeout, -X key=value)."""
    return java_command(MAIN_CLASS, args)


def java_command(main_class: str, args: Sequence[str]) -> list[str]:
    """The argv that runs java/<main_class>.java (compiled if needed) with ``args``."""
    java = shutil.which("java")
    if java is None:
        raise JavaClientError(f"java not found: Java 17+ is needed for the Java client {main_class}")
    classes = class_dir(HERE / "java" / f"{main_class}.java")
    return [
        java,
        HEAP,
        "-XX:+UseSerialGC",  # one GC thread is plenty, and the machine has 2 cores
        "-XX:TieredStopAtLevel=1",  # start fast: C1 only
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={classes / 'log4j2.properties'}",
        "-cp",
        f"{classes}{os.pathsep}{kafka_classpath()}",
        main_class,
        *args,
    ]


if __name__ == "__main__":
    print(shlex.join(producer_command(sys.argv[1:])))
