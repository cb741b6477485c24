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

Reference mode: with ``SLUICE_COMPAT_TARGET=kafka`` in the environment, ``broker_factory``
(and so ``broker``) starts Apache Kafka 4.4 instead, through ``scripts/peers/kafka.sh
start DATA_DIR PORT`` (install it first: ``scripts/deps.sh --kafka``), and returns a
:class:`KafkaBrokerProcess` with the same interface: ``.bootstrap``, ``.data_dir``,
``.stop()`` (graceful, ``kafka.sh stop``), ``.kill()`` (SIGKILL by the pid in
``DATA_DIR/kafka.pid``), ``.restart()`` on the same data dir. A test that fails against
Kafka is a wrong test. Sluice-only flags are ignored there, except Kafka property names
(``--some.property VALUE``, ``--some.property=VALUE``, or ``SLUICE_SOME_PROPERTY`` in
``env=``), which are applied as dynamic broker configs (IncrementalAlterConfigs on broker
1) when Kafka accepts them; both kinds of leftovers are noted in the kafka.sh log. A
factory call with an explicit ``binary=`` (or with ``SLUICE_BROKER_BIN`` set by the test
itself; setting it in the outer environment together with the kafka target is an error)
always runs that binary: the harness self-test relies on this. Tests can ask which broker
they run against with the ``compat_target`` fixture ("sluice" or "kafka").
``create_topic`` creates a topic with the confluent-kafka AdminClient and waits until
every partition has a leader; ``wait_for_topic`` only waits (for instance after a
restart).
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
# Printed before it when the admin listener runs.
ADMIN_RE = re.compile(r"admin listener on (\S+):(\d+)")
# With several listeners (``listen=`` of the factory), one line each before "listening on".
LISTENER_RE = re.compile(r"^listener (\S+) \((\S+)\) on (\S+):(\d+)$")
KAFKA_SH = REPO_ROOT / "scripts" / "peers" / "kafka.sh"
COMPAT_TARGET = os.environ.get("SLUICE_COMPAT_TARGET", "sluice").strip().lower() or "sluice"
if COMPAT_TARGET not in ("sluice", "kafka"):
    raise RuntimeError(f"SLUICE_COMPAT_TARGET must be 'sluice' or 'kafka', not {COMPAT_TARGET!r}")
if COMPAT_TARGET == "kafka" and os.environ.get("SLUICE_BROKER_BIN"):
    # Which broker would that be? Refuse rather than silently test the wrong one.
    raise RuntimeError("SLUICE_COMPAT_TARGET=kafka and SLUICE_BROKER_BIN are both set: unset one")

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

    target = "sluice"

    def __init__(
        self,
        binary: Path,
        data_dir: Path,
        log_dir: Path,
        name: str,
        extra_args: tuple[str, ...] = (),
        env: Optional[dict[str, str]] = None,
        ready_timeout: float = 30.0,
        listen: Optional[str] = None,
    ) -> None:
        self.binary = Path(binary)
        # `listeners` (NAME://HOST:PORT,...) instead of one PLAINTEXT listener.
        self.listen = listen
        # With `listen`: "host:port" by listener name, as the broker printed them.
        self.listeners: dict[str, str] = {}
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
        # http://HOST:PORT of the admin listener (metrics, health, status), once started.
        self.admin_url: Optional[str] = None
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
            self.listen or f"127.0.0.1:{port}",
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        # The admin listener (metrics, health) on a free port, unless the test chose one.
        env = {"SLUICE_ADMIN_LISTENERS": "127.0.0.1:0", **os.environ, **self.env}
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
            admin = ADMIN_RE.search(line)
            if admin:
                self.admin_url = f"http://{admin.group(1)}:{admin.group(2)}"
                continue
            named = LISTENER_RE.match(line.strip())
            if named:
                self.listeners[named.group(1)] = f"{named.group(3)}:{named.group(4)}"
                continue
            match = LISTENING_RE.search(line)
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                return


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an exited, unreaped process is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (comm) STATE ...": comm may contain spaces and parentheses; STATE follows the last ')'.
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _sluice_args_as_kafka_properties(
    extra_args: tuple[str, ...], env: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Kafka property names found in sluice-broker flags / SLUICE_* env, and what was not one."""
    props: dict[str, str] = {}
    ignored: list[str] = []
    for key, value in env.items():
        if key.startswith("SLUICE_"):
            props[key[len("SLUICE_"):].lower().replace("_", ".")] = value
        else:
            ignored.append(f"env {key}")
    args = list(extra_args)
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name and "." in name:
            if not eq and i + 1 < len(args):
                value = args[i + 1]
                i += 1
            props[name] = value
        else:
            ignored.append(arg)
        i += 1
    return props, ignored


class KafkaBrokerProcess:
    """Apache Kafka (scripts/peers/kafka.sh) behind :class:`BrokerProcess`'s interface.

    The JVM is not a child of this process (kafka.sh starts it in the background), so exit
    codes are not available: ``stop`` counts as clean when ``kafka.sh stop`` did not have to
    fall back to SIGKILL, and ``cleanup`` reports a Kafka that vanished on its own.
    """

    target = "kafka"

    def __init__(
        self,
        data_dir: Path,
        log_dir: Path,
        name: str,
        extra_args: tuple[str, ...] = (),
        env: Optional[dict[str, str]] = None,
        ready_timeout: float = 30.0,
    ) -> None:
        self.binary = KAFKA_SH
        self.data_dir = Path(data_dir)
        self.extra_args = tuple(extra_args)
        self.env = dict(env or {})
        # Kafka needs seconds to start, more when it recovers logs after a SIGKILL.
        self.ready_timeout = max(ready_timeout, 120.0)
        self.name = name
        self.stdout_log = log_dir / f"{name}.stdout.log"  # kafka.sh output
        self.stderr_log = log_dir / f"{name}.stderr.log"  # kafka.sh diagnostics
        self.kafka_log = self.data_dir / "kafka.log"  # the broker's own log (kafka.sh writes it)
        self.host: Optional[str] = None
        self.port: Optional[int] = None
        self.starts = 0
        self._pid: Optional[int] = None
        self._exit_expected = False
        self.properties, self.ignored_args = _sluice_args_as_kafka_properties(self.extra_args, self.env)
        self.rejected_properties: dict[str, str] = {}

    @property
    def bootstrap(self) -> str:
        if self.host is None or self.port is None:
            raise BrokerError(f"{self.name} has not started")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self._pid is None:
            raise BrokerError(f"{self.name} has not started")
        return self._pid

    def is_running(self) -> bool:
        return self._pid is not None and _pid_alive(self._pid)

    def _kafka_sh(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        env = {**os.environ, "SLUICE_KAFKA_START_TIMEOUT": str(int(self.ready_timeout))}
        # Properties Kafka only reads at start (see `_apply_properties`).
        static = getattr(self, "static_properties", {})
        if static:
            env["SLUICE_KAFKA_EXTRA_PROPERTIES"] = "\n".join(f"{k}={v}" for k, v in static.items())
        with open(self.stdout_log, "ab") as out, open(self.stderr_log, "ab") as err:
            banner = f"---- {KAFKA_SH} {' '.join(args)}\n".encode()
            out.write(banner)
            err.write(banner)
            out.flush()
            err.flush()
            try:
                done = subprocess.run(
                    [str(KAFKA_SH), *args],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    env=env,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired as exc:
                raise BrokerError(f"kafka.sh {args[0]} took more than {timeout}s\n{self.logs()}") from exc
            out.write(done.stdout)
            err.write(done.stderr)
        return done

    def start(self, port: int = 0) -> "KafkaBrokerProcess":
        if self.is_running():
            raise BrokerError(f"{self.name} is already running (pid {self._pid})")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self._exit_expected = False
        for _attempt in range(5):
            done = self._kafka_sh("start", str(self.data_dir), str(port), timeout=self.ready_timeout + 60)
            # kafka.sh formats a new data dir with a random base64 cluster id; one that starts
            # with "-" is taken for an option by kafka-storage ("--cluster-id/-t: expected one
            # argument"), about 1 start in 64. Nothing was formatted or started then: retry.
            if not (done.returncode != 0 and b"--cluster-id/-t: expected one argument" in done.stderr):
                break
        pid_file = self.data_dir / "kafka.pid"
        if pid_file.exists():
            self._pid = int(pid_file.read_text().strip())
        match = LISTENING_RE.search(done.stdout.decode(errors="replace"))
        if done.returncode != 0 or not match:
            if self._pid is not None and _pid_alive(self._pid):
                os.kill(self._pid, signal.SIGKILL)
            self._exit_expected = True
            raise BrokerError(
                f"{self.name}: kafka.sh start failed (exit {done.returncode})\n"
                f"{done.stderr.decode(errors='replace')[-4000:]}\n{self.logs()}"
            )
        self.host, self.port = match.group(1), int(match.group(2))
        if self.ignored_args and self.starts == 1:
            with open(self.stderr_log, "a") as err:
                err.write(f"note: sluice-only arguments ignored against Kafka: {self.ignored_args}\n")
        self._apply_properties()
        return self

    def _apply_properties(self) -> None:
        """Sets the Kafka property names given as sluice flags as dynamic configs of broker 1."""
        if not self.properties:
            return
        from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        static = getattr(self, "static_properties", {})
        for name, value in self.properties.items():
            if name in static:
                continue
            resource = ConfigResource(
                ConfigResource.Type.BROKER,
                "1",  # kafka.sh runs node.id=1 (the client refuses "", the cluster-wide default)
                incremental_configs=[ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)],
            )
            try:
                for future in admin.incremental_alter_configs([resource]).values():
                    future.result(timeout=30)
            except Exception as exc:  # noqa: BLE001 - Kafka refuses static configs: record and go on
                if "Cannot update these configs dynamically" in str(exc) and not static:
                    self.static_properties = {**getattr(self, "static_properties", {}), name: value}
                else:
                    self.rejected_properties[name] = str(exc)
        if getattr(self, "static_properties", {}) and not static:
            # Kafka reads these only at start (quota.window.num, ...): start it again with
            # them in server.properties.
            self.stop()
            self.starts -= 1
            self.start(port=self.port)
            return
        if self.rejected_properties:
            with open(self.stderr_log, "a") as err:
                err.write(f"note: properties Kafka would not set dynamically (ignored): {self.rejected_properties}\n")

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful stop through ``kafka.sh stop`` (SIGTERM); fails if Kafka had to be SIGKILLed."""
        if self._pid is None:
            raise BrokerError(f"{self.name} has not started")
        self._exit_expected = True
        if not self.is_running():
            return
        done = self._kafka_sh("stop", str(self.data_dir), timeout=max(timeout, 30.0) + 60)
        stderr = done.stderr.decode(errors="replace")
        if done.returncode != 0 or "did not stop" in stderr:
            raise BrokerError(f"{self.name}: kafka.sh stop was not clean (exit {done.returncode})\n{stderr}\n{self.logs()}")
        self._wait_gone(timeout=30)

    def kill(self) -> None:
        """SIGKILL the JVM by its pid file and wait until it is gone."""
        if self._pid is None:
            raise BrokerError(f"{self.name} has not started")
        self._exit_expected = True
        if _pid_alive(self._pid):
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._wait_gone(timeout=30)
        (self.data_dir / "kafka.pid").unlink(missing_ok=True)

    def _wait_gone(self, timeout: float) -> None:
        pid = self._pid
        assert pid is not None
        wait_until(lambda: not _pid_alive(pid), timeout=timeout, message=f"kafka pid {pid} to exit")

    def restart(self, same_port: bool = False, timeout: float = 30.0) -> "KafkaBrokerProcess":
        if self.is_running():
            self.stop(timeout=timeout)
        return self.start(port=self.port if same_port and self.port else 0)

    def logs(self, lines: int = 40) -> str:
        return (
            f"--- {self.stderr_log.name} (kafka.sh, tail) ---\n{_tail(self.stderr_log, lines)}\n"
            f"--- {self.kafka_log} (tail) ---\n{_tail(self.kafka_log, lines)}"
        )

    def cleanup(self) -> Optional[str]:
        if self._pid is None:
            return None
        if self.is_running():
            self.kill()
            return None
        if not self._exit_expected:
            return f"{self.name} (Kafka, pid {self._pid}) exited on its own\n{self.logs()}"
        return None


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
    """``broker_factory(*extra_args, env=None, data_dir=None, ready_timeout=30.0, binary=None,
    listen=None)`` (``listen``: the broker's ``listeners``, e.g. several with their security
    protocols; their addresses are then in ``.listeners`` by name)
    starts a broker and returns its :class:`BrokerProcess` (a :class:`KafkaBrokerProcess` when
    ``SLUICE_COMPAT_TARGET=kafka`` and no ``binary`` is given); all are cleaned up at teardown."""
    brokers: list[Any] = []

    def start(
        *extra_args: str,
        env: Optional[dict[str, str]] = None,
        data_dir: Optional[Path] = None,
        ready_timeout: float = 30.0,
        binary: Optional[Path] = None,
        port: int = 0,
        listen: Optional[str] = None,
    ) -> BrokerProcess:
        name = f"broker-{len(brokers)}"
        broker: Any
        # In kafka mode a broker binary chosen by the test itself (binary=, or SLUICE_BROKER_BIN
        # set during the test: it cannot come from the outer environment, see above) still wins.
        if COMPAT_TARGET == "kafka" and binary is None and not os.environ.get("SLUICE_BROKER_BIN"):
            broker = KafkaBrokerProcess(
                data_dir=Path(data_dir) if data_dir else tmp_path / f"{name}-data",
                log_dir=tmp_path,
                name=name,
                extra_args=extra_args,
                env=env,
                ready_timeout=ready_timeout,
            )
        else:
            broker = BrokerProcess(
                binary=Path(binary) if binary else _broker_binary(),
                data_dir=Path(data_dir) if data_dir else tmp_path / f"{name}-data",
                log_dir=tmp_path,
                name=name,
                extra_args=extra_args,
                env=env,
                ready_timeout=ready_timeout,
                listen=listen,
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


@pytest.fixture
def compat_target() -> str:
    """Which broker ``broker``/``broker_factory`` run: "sluice" (default) or "kafka"."""
    return COMPAT_TARGET


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: Optional[dict[str, str]] = None,
                 timeout: float = 30.0) -> None:
    """Creates ``name`` with the confluent-kafka AdminClient (CreateTopics, replication factor
    1), then waits until Metadata shows ``partitions`` partitions, each with a leader."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=dict(config or {}))],
        operation_timeout=timeout,
    )
    futures[name].result(timeout=timeout)
    wait_for_topic(bootstrap, name, partitions, timeout=timeout)


def wait_for_topic(bootstrap: str, name: str, partitions: int, timeout: float = 30.0) -> None:
    """Waits until Metadata shows topic ``name`` with ``partitions`` partitions, each with a
    leader (e.g. after a broker restart, before asserting on the topic's contents)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})

    def ready() -> bool:
        meta = admin.list_topics(topic=name, timeout=5)
        topic = meta.topics.get(name)
        if topic is None or topic.error is not None or len(topic.partitions) != partitions:
            return False
        return all(p.leader >= 0 and p.error is None for p in topic.partitions.values())

    wait_until(ready, timeout=timeout, interval=0.1, message=f"topic {name} with {partitions} partitions and leaders")


@pytest.fixture(name="create_topic")
def create_topic_fixture() -> Callable[..., None]:
    """:func:`create_topic` as a fixture: ``create_topic(bootstrap, name, partitions=1, config=None)``."""
    return create_topic


@pytest.fixture(name="wait_for_topic")
def wait_for_topic_fixture() -> Callable[..., None]:
    """:func:`wait_for_topic` as a fixture: ``wait_for_topic(bootstrap, name, partitions)``."""
    return wait_for_topic
