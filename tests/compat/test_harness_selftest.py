"""Self-test of the broker fixtures in conftest.py, run against FAKE_BROKER below.

The fake only imitates sluice-broker's process interface (flags, the "listening on" line,
SIGTERM, exit codes); it speaks no Kafka. These tests check the harness, never the broker.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

FAKE_BROKER = r'''
import json, os, signal, socket, sys, threading, time

args = sys.argv[1:]
listen = args[args.index("--listen") + 1]
data_dir = args[args.index("--data-dir") + 1]
mode = os.environ.get("FAKE_BROKER_MODE", "normal")
os.makedirs(data_dir, exist_ok=True)
with open(os.path.join(data_dir, "fake-broker-runs.jsonl"), "a") as f:
    f.write(json.dumps({"argv": args, "env": os.environ.get("FAKE_BROKER_ENV")}) + "\n")

if mode == "exit_early":
    print("fatal: cannot open data dir", file=sys.stderr)
    sys.exit(3)

host, port = listen.rsplit(":", 1)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, int(port)))
srv.listen()

def serve():
    while True:
        conn, _ = srv.accept()
        conn.close()

threading.Thread(target=serve, daemon=True).start()
signal.signal(signal.SIGTERM, lambda *_: os._exit(7 if mode == "bad_exit" else 0))
print("some log line before the address", flush=True)
if mode == "silent":
    time.sleep(3600)
bound_host, bound_port = srv.getsockname()
print(f"INFO sluice: listening on {bound_host}:{bound_port}", flush=True)
if mode == "chatty":
    for i in range(20000):  # ~1.4 MB: more than a pipe buffer
        print(f"chatty log line {i:08d} " + "x" * 40)
    sys.stdout.flush()
if mode == "crash":
    time.sleep(0.2)
    os._exit(101)
while True:
    time.sleep(3600)
'''


@pytest.fixture
def fake_broker_bin(tmp_path: Path) -> Path:
    path = tmp_path / "fake-sluice-broker"
    path.write_text(f"#!{sys.executable}\n{FAKE_BROKER}")
    path.chmod(0o755)
    return path


def runs(data_dir: Path) -> list[dict]:
    lines = (data_dir / "fake-broker-runs.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def can_connect(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=1):
        return True


def test_harness_start_passes_flags_and_env(broker_factory, fake_broker_bin):
    b = broker_factory("--extra", "1", env={"FAKE_BROKER_ENV": "yes"}, binary=fake_broker_bin)
    assert b.bootstrap.startswith("127.0.0.1:") and b.port > 0
    assert can_connect(b.bootstrap)
    (run,) = runs(b.data_dir)
    assert run["argv"] == ["--listen", "127.0.0.1:0", "--data-dir", str(b.data_dir), "--extra", "1"]
    assert run["env"] == "yes"
    b.stop()
    assert not b.is_running()


def test_harness_restart_keeps_data_dir_and_can_reuse_port(broker_factory, fake_broker_bin, wait_until):
    b = broker_factory(binary=fake_broker_bin)
    first_port, first_pid = b.port, b.pid
    b.kill()
    assert b.proc.returncode == -9
    b.restart(same_port=True)
    assert b.port == first_port and b.pid != first_pid
    assert wait_until(lambda: can_connect(b.bootstrap), timeout=5, message="fake broker accepting")
    b.restart()  # stops it (SIGTERM, exit 0) first, then any free port
    assert [r["argv"][1] for r in runs(b.data_dir)] == [
        "127.0.0.1:0",
        f"127.0.0.1:{first_port}",
        "127.0.0.1:0",
    ]


def test_harness_drains_stdout_after_ready(broker_factory, fake_broker_bin, wait_until):
    b = broker_factory(env={"FAKE_BROKER_MODE": "chatty"}, binary=fake_broker_bin)
    wait_until(lambda: b.stdout_log.stat().st_size > 1_000_000, timeout=10, message="chatty output logged")
    b.stop()


def test_harness_reports_early_exit(broker_factory, fake_broker_bin):
    with pytest.raises(AssertionError, match=r"exited with code 3 before it was listening(.|\n)*cannot open data dir"):
        broker_factory(env={"FAKE_BROKER_MODE": "exit_early"}, binary=fake_broker_bin)


def test_harness_ready_deadline(broker_factory, fake_broker_bin):
    started = time.monotonic()
    with pytest.raises(AssertionError, match="printed no 'listening on HOST:PORT' line within 1.0s"):
        broker_factory(env={"FAKE_BROKER_MODE": "silent"}, binary=fake_broker_bin, ready_timeout=1.0)
    assert time.monotonic() - started < 5


def test_harness_stop_requires_exit_code_zero(broker_factory, fake_broker_bin):
    b = broker_factory(env={"FAKE_BROKER_MODE": "bad_exit"}, binary=fake_broker_bin)
    with pytest.raises(AssertionError, match="exited with code 7 after SIGTERM"):
        b.stop()


def test_harness_flags_a_broker_that_died_on_its_own(broker_factory, fake_broker_bin, wait_until):
    b = broker_factory(env={"FAKE_BROKER_MODE": "crash"}, binary=fake_broker_bin)
    wait_until(lambda: not b.is_running(), timeout=10, message="fake broker crash")
    error = b.cleanup()
    assert error is not None and "exited on its own with code 101" in error
    b._exit_expected = True  # seen and checked: keep the fixture's teardown from failing this test


def test_harness_missing_binary_fails_loudly(broker_factory, tmp_path):
    with pytest.raises(AssertionError, match="broker binary not found"):
        broker_factory(binary=tmp_path / "no-such-broker")


def test_harness_wait_until(wait_until):
    calls = []
    assert wait_until(lambda: calls.append(1) or len(calls) >= 3, timeout=5, interval=0.01)
    with pytest.raises(TimeoutError, match="nothing.*ZeroDivisionError"):
        wait_until(lambda: 1 / 0, timeout=0.1, interval=0.01, message="nothing")


def test_harness_default_binary_path_is_overridable(monkeypatch, broker_factory, fake_broker_bin):
    monkeypatch.setenv("SLUICE_BROKER_BIN", os.fspath(fake_broker_bin))
    b = broker_factory()
    assert b.binary == fake_broker_bin
