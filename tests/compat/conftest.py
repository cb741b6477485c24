"""Fixtures for compat tests: run a real `sluice-broker` as a child process.

Fixtures
- ``broker``: one started broker with default arguments (``.bootstrap`` is "127.0.0.1:PORT").
- ``broker_factory``: ``broker_factory(*extra_args, env=None, data_dir=None,
  ready_timeout=30.0)`` starts another broker and returns a :class:`BrokerProcess`.
- ``wait_until``: :func:`wait_until`, polling a condition with a deadline.

The broker binary is ``target/release/sluice-broker`` (built by scripts/test.sh; the
target dir follows ``$CARGO_TARGET_DIR``), or ``$SLUICE_BROKER_BIN``. It is started as
``sluice-broker --listen 127.0.0.1:PORT --data-dir DIR [extra args]`` (PORT 0 = any free
port), and is ready once it prints a line containing ``listening on HOST:PORT`` on stdout.
Its stdout and stderr go to ``broker-N.stdout.log`` / ``broker-N.stderr.log`` beside the
data dir; the tail of both is printed when a test fails.

Every process started here is killed at teardown. A broker that exited by itself with a
non-zero code (a panic, say) fails the test at teardown even when the test body passed.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BROKER_BIN = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target")) / "release" / "sluice-broker"
LISTENING_RE = re.compile(r"listening on (\S+):(\d+)")

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Call ``condition`` until it returns a truthy value, and return that value.

    Exceptions raised by ``condition`` count as "not yet". Raises ``TimeoutError`` after
    ``timeout`` seconds, naming ``message`` and the last exception or value seen.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = condition()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = exc
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out after {timeout}s waiting for {message} (last: {last!r})")
        time.sleep(min(interval, remaining))


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class BrokerError(AssertionError):
    """The broker did not start, or did not stop the way the test expected."""


class BrokerProcess:
    """One broker child process and the data dir it keeps across restarts."""

    def __init__(
        self,
        binary: Path,
        data_dir: Path,
        log_dir: Path,
        name: str,
        extra_args: tuple[str, ...] = (),
        env: Optional[dict[str, str]] = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.extra_args = tuple(extra_args)
        self.env = dict(env or {})
        self.ready_timeout = ready_timeout
        self.name = name
        self.stdout_log = log_dir / f"{name}.stdout.log"
        self.stderr_log = log_dir / f"{name}.stderr.log"
        self.host: Optional[str] = None
        self.port: Optional[int] = None
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.starts = 0
        self._exit_expected = False
        self._reader: Optional[threading.Thread] = None

    # -- public API -------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``HOST:PORT`` as printed by the broker, e.g. ``127.0.0.1:40123``."""
        if self.host is None or self.port is None:
            raise BrokerError(f"{self.name} has not started")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BrokerError(f"{self.name} has not started")
        return self.proc.pid

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, port: int = 0) -> "BrokerProcess":
        """Start the broker on 127.0.0.1:``port`` and wait until it says it listens."""
        if self.is_running():
            raise BrokerError(f"{self.name} is already running (pid {self.proc.pid})")
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            raise BrokerError(
                f"broker binary not found: {self.binary}\n"
                "build it with `cargo build --release --bin sluice-broker`, "
                "or point SLUICE_BROKER_BIN at one"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        argv = [
            str(self.binary),
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        env = {**os.environ, **self.env}
        self._exit_expected = False
        with open(self.stderr_log, "ab") as stderr, open(self.stdout_log, "ab") as stdout_copy:
            banner = f"---- start #{self.starts}: {' '.join(argv)}\n".encode()
            stderr.write(banner)
            stdout_copy.write(banner)
        stderr = open(self.stderr_log, "ab")
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env
            )
        finally:
            stderr.close()
        lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._reader = threading.Thread(
            target=self._drain_stdout, args=(self.proc, lines), daemon=True, name=f"{self.name}-stdout"
        )
        self._reader.start()
        self._wait_listening(lines)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, wait up to ``timeout`` s, and require exit code 0."""
        proc = self._require_proc()
        self._exit_expected = True
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise BrokerError(
                    f"{self.name} did not exit within {timeout}s of SIGTERM (killed)\n{self.logs()}"
                ) from None
        self._join_reader()
        if proc.returncode != 0:
            raise BrokerError(f"{self.name} exited with code {proc.returncode} after SIGTERM\n{self.logs()}")

    def kill(self) -> None:
        """SIGKILL (a crash, as far as the data dir can tell) and reap the process."""
        proc = self._require_proc()
        self._exit_expected = True
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        self._join_reader()

    def restart(self, same_port: bool = False, timeout: float = 30.0) -> "BrokerProcess":
        """Start again on the same data dir; stops it first (SIGTERM) if still running.

        With ``same_port`` the broker is asked to listen on the port it had before.
        """
        if self.is_running():
            self.stop(timeout=timeout)
        return self.start(port=self.port if same_port and self.port else 0)

    def logs(self, lines: int = 40) -> str:
        """The last ``lines`` of the broker's stdout and stderr, for error messages."""
        return (
            f"--- {self.stdout_log.name} (tail) ---\n{_tail(self.stdout_log, lines)}\n"
            f"--- {self.stderr_log.name} (tail) ---\n{_tail(self.stderr_log, lines)}"
        )

    def cleanup(self) -> Optional[str]:
        """Kill the process if still running. Returns an error if it had died on its own."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.kill()
            return None
        self._join_reader()
        if not self._exit_expected and self.proc.returncode != 0:
            return f"{self.name} exited on its own with code {self.proc.returncode}\n{self.logs()}"
        return None

    # -- internals -----------------------------------------------------------------------

    def _require_proc(self) -> "subprocess.Popen[bytes]":
        if self.proc is None:
            raise BrokerError(f"{self.name} has not started")
        return self.proc

    def _drain_stdout(self, proc: "subprocess.Popen[bytes]", lines: "queue.Queue[Optional[str]]") -> None:
        # Keeps reading for the whole life of the process so that it never blocks on a full pipe.
        assert proc.stdout is not None
        with proc.stdout, open(self.stdout_log, "ab", buffering=0) as copy:
            for raw in proc.stdout:
                copy.write(raw)
                lines.put(raw.decode(errors="replace"))
        lines.put(None)  # EOF: the process closed stdout (usually: it exited)

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=10)

    def _wait_listening(self, lines: "queue.Queue[Optional[str]]") -> None:
        proc = self._require_proc()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                proc.kill()
                proc.wait()
                self._exit_expected = True
                raise BrokerError(
                    f"{self.name} printed no 'listening on HOST:PORT' line within "
                    f"{self.ready_timeout}s (killed)\n{self.logs()}"
                )
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = proc.wait(timeout=10)
                self._exit_expected = True
                raise BrokerError(
                    f"{self.name} exited with code {code} before it was listening\n{self.logs()}"
                )
            match = LISTENING_RE.search(line)
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                return


def _broker_binary() -> Path:
    return Path(os.environ.get("SLUICE_BROKER_BIN", str(DEFAULT_BROKER_BIN)))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    # Lets fixtures see at teardown whether the test failed (item.rep_setup / rep_call).
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def broker_factory(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Any:
    """``broker_factory(*extra_args, env=None, data_dir=None, ready_timeout=30.0, binary=None)``
    starts a broker and returns its :class:`BrokerProcess`; all are cleaned up at teardown."""
    brokers: list[BrokerProcess] = []

    def start(
        *extra_args: str,
        env: Optional[dict[str, str]] = None,
        data_dir: Optional[Path] = None,
        ready_timeout: float = 30.0,
        binary: Optional[Path] = None,
        port: int = 0,
    ) -> BrokerProcess:
        name = f"broker-{len(brokers)}"
        broker = BrokerProcess(
            binary=Path(binary) if binary else _broker_binary(),
            data_dir=Path(data_dir) if data_dir else tmp_path / f"{name}-data",
            log_dir=tmp_path,
            name=name,
            extra_args=extra_args,
            env=env,
            ready_timeout=ready_timeout,
        )
        brokers.append(broker)
        return broker.start(port=port)

    yield start

    failed = any(
        getattr(getattr(request.node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
    )
    errors = [err for err in (b.cleanup() for b in brokers) if err]
    if failed:
        for b in brokers:
            print(f"\n{b.name} ({b.binary}, data {b.data_dir}):\n{b.logs()}")
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def broker(broker_factory: Callable[..., BrokerProcess]) -> BrokerProcess:
    """One running broker with default arguments."""
    return broker_factory()


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Any]:
    """:func:`wait_until` as a fixture, so tests need not import conftest."""
    return wait_until
