"""Self-test of conftest.py's reference mode (``SLUICE_COMPAT_TARGET=kafka``).

The helpers are checked always; the lifecycle test runs only against Kafka (it checks the
harness's ``KafkaBrokerProcess``, not any broker's behaviour).
"""

from __future__ import annotations

import subprocess

import pytest

import conftest


def test_sluice_flags_and_env_map_to_kafka_property_names():
    props, ignored = conftest._sluice_args_as_kafka_properties(
        ("--num.partitions", "6", "--log.retention.ms=1000", "--node-id", "3", "--verbose"),
        {"SLUICE_LOG_SEGMENT_BYTES": "1048576", "RUST_LOG": "debug"},
    )
    assert props == {"num.partitions": "6", "log.retention.ms": "1000", "log.segment.bytes": "1048576"}
    assert ignored == ["env RUST_LOG", "--node-id", "3", "--verbose"]


def test_pid_alive_counts_a_zombie_as_dead(wait_until):
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert conftest._pid_alive(child.pid)
        child.kill()
        # Not reaped yet: a zombie, which kill -0 would still find.
        wait_until(lambda: not conftest._pid_alive(child.pid), timeout=5, message="child to become a zombie")
    finally:
        child.kill()
        child.wait()
    assert not conftest._pid_alive(child.pid)


@pytest.mark.skipif(conftest.COMPAT_TARGET != "kafka", reason="only with SLUICE_COMPAT_TARGET=kafka")
def test_kafka_mode_stop_kill_restart(broker, compat_target, create_topic, wait_for_topic):
    assert compat_target == "kafka" and broker.target == "kafka"
    assert broker.is_running() and (broker.data_dir / "kafka.pid").is_file()
    create_topic(broker.bootstrap, "harness", partitions=2)
    port = broker.port
    broker.stop()
    assert not broker.is_running() and not (broker.data_dir / "kafka.pid").exists()
    broker.restart(same_port=True)
    assert broker.port == port and broker.is_running()
    pid = broker.pid
    broker.kill()
    assert not conftest._pid_alive(pid)
    broker.restart()
    assert broker.pid != pid
    # The topic survived both, in the same data dir.
    wait_for_topic(broker.bootstrap, "harness", 2)
    assert (broker.data_dir / "logs" / "harness-1").is_dir()
