"""Local clusters for the fault bench: N brokers on one machine, each on its own loopback
address (127.0.0.1, .2, .3, ...), with its own data dir, log file, ports and pid file.

Two kinds, with one interface (:class:`Cluster`):

- ``kafka``: Apache Kafka 4.4 in KRaft mode, every node a combined broker + controller, a
  static quorum of all nodes (``controller.quorum.voters``), run from the jars that
  scripts/peers/kafka.sh installs, each JVM with a small heap (``SLUICE_CLUSTER_KAFKA_HEAP``,
  default 384m) so three fit beside the tests;
- ``sluice``: ``sluice-broker`` processes. N=1 is today's zero-config single node (flags
  only: its client port and data dir). N>1 (at most 9) are combined broker + controller
  nodes with the same static quorum of all N (``controller.quorum.voters``), each with a
  ``PLAINTEXT`` client listener and a ``CONTROLLER`` listener on 127.0.0.N, configured by a
  ``sluice.toml`` of its own. With ``broker_only=K`` (``--broker-only K``) the last K of
  the N nodes are broker-only nodes instead (``process.roles=broker``, not voters, no
  controller port): they follow the metadata of the N-K voters by fetching it (at least 2
  voters, since a single combined voter runs no quorum, or a controller-only one). With
  ``controller_only=C`` (``--controller-only C``) the first C nodes are controller-only
  voters (``process.roles=controller``, no client port: ``port`` 0, left out of the
  bootstrap servers; ready once their controller port accepts connections). A node whose configuration this
  build refuses stops at start with "cluster mode is not wired yet", which
  :class:`ClusterNotWired` reports with the node's log tail.

A cluster lives in one directory, which is all the state there is: ``cluster.json`` (kind,
nodes, addresses, ports) and one ``nodeN/`` per node with ``data/``, ``node.log`` and
``node.pid`` (and its config: ``server.properties`` for Kafka, ``sluice.toml`` for a
multi-node Sluice). So the same cluster can be started by a test and inspected, stopped or
restarted by hand, or the other way round (``scripts/cluster.sh start|stop|status N``).

A node is ready when its client port answers ApiVersions and its Metadata lists every node of
the cluster with a controller (kafka_wire.py sends both to that node).

Nodes are started in their own session (a kill of the test runner does not kill them; the
tests stop them in teardown) and, when the bench runs network partitions, with a group id
of their own (:attr:`Node.gid`): that is how network.py's nftables rules give each node's
outgoing connections its own source address (see network.py).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import kafka_wire

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SH = REPO_ROOT / "scripts" / "peers" / "kafka.sh"
KAFKA_VERSION = os.environ.get("SLUICE_KAFKA_VERSION", "4.4.0")
KAFKA_HOME = Path(
    os.environ.get("SLUICE_KAFKA_HOME", Path.home() / ".cache" / "sluice" / f"kafka-{KAFKA_VERSION}")
)
KAFKA_HEAP = os.environ.get("SLUICE_CLUSTER_KAFKA_HEAP", "384m")
SLUICE_BROKER_BIN = Path(
    os.environ.get(
        "SLUICE_BROKER_BIN",
        Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target")) / "release" / "sluice-broker",
    )
)
# Group ids given to node processes so that nftables can tell their sockets apart
# (network.py); node N runs with GID_BASE + N.
GID_BASE = 4200
KINDS = ("kafka", "sluice")
# Node N listens on 127.0.0.N, and scripts/cluster.sh test adds 127.0.0.2-9 in its namespace.
MAX_NODES = 9
# What sluice-broker says when it refuses a cluster configuration it cannot run yet
# (broker/src/config.rs, ConfigError::ClusterNotWired).
NOT_WIRED = "cluster mode is not wired yet"
# Opens each start's output in node.log.
START_MARKER = "===== start"


class ClusterError(Exception):
    """A cluster could not be started, found or stopped; the message says why."""


class ClusterNotWired(ClusterError):
    """A multi-node Sluice node refused to start because this sluice-broker does not run as a
    cluster yet (its log says "cluster mode is not wired yet"); the message has the log tail."""


def node_host(node_id: int) -> str:
    """Node N listens on 127.0.0.N: a distinct address per node, so that a network partition
    can separate them."""
    if not 1 <= node_id <= 250:
        raise ClusterError(f"node id {node_id} out of range 1..250")
    return f"127.0.0.{node_id}"


# Node ports come from below the kernel's ephemeral range (32768-60999 by default), so that
# the clients' outgoing connections, which reconnect for seconds after a node is killed,
# cannot take a node's port before it restarts.
NODE_PORTS = range(20000, 32000)


def free_port(host: str) -> int:
    """A port free on host now, from NODE_PORTS (random, bounded tries; the kernel's choice
    if none is free)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.choice(NODE_PORTS)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def metadata_brokers(host: str, port: int, timeout: float = 2.0) -> Optional[list[int]]:
    """The node ids of the brokers that the node at host:port lists in its Metadata answer, or
    None if it does not answer (yet) or names no controller."""
    view = kafka_wire.metadata(host, port, all_topics=False, timeout=timeout)
    if view is None or view.controller_id < 0:
        return None
    return view.broker_ids


def _accepts(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether host:port accepts a TCP connection now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _process_alive(pid: int, marker: str) -> bool:
    """True while pid runs and is the node it should be: its command line mentions marker
    (the node's directory), so that a pid reused by another process after the node died is
    never signalled. A zombie (killed, not yet reaped) counts as dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # The state is the first field after the command, which is in parentheses.
    return stat[stat.rindex(")") + 2] not in "ZX" and marker in cmdline


@dataclass
class Node:
    """One broker of a cluster: its addresses, files and process."""

    node_id: int
    kind: str
    dir: Path
    port: int
    controller_port: int
    gid: Optional[int] = None
    _proc: Optional[subprocess.Popen] = field(default=None, repr=False, compare=False)

    @property
    def host(self) -> str:
        return node_host(self.node_id)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        return self.dir / "node.log"

    @property
    def pid_path(self) -> Path:
        return self.dir / "node.pid"

    def pid(self) -> Optional[int]:
        try:
            return int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        pid = self.pid()
        # With a trailing slash: node1's dir must not match node10's command line.
        return pid is not None and _process_alive(pid, f"{self.dir}/")

    def signal(self, sig: int) -> bool:
        """Sends sig to the node's process; False when it is not running."""
        pid = self.pid()
        if pid is None or not self.alive():
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def spawn(self, argv: list[str], env: Optional[dict] = None) -> None:
        if self.alive():
            raise ClusterError(f"node {self.node_id} is already running (pid {self.pid()})")
        self.dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n{START_MARKER} {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        kwargs = {}
        if self.gid is not None:
            kwargs = {"group": self.gid, "extra_groups": []}
        self._proc = subprocess.Popen(
            argv,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            **kwargs,
        )
        log.close()
        self.pid_path.write_text(f"{self._proc.pid}\n")

    def wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                self._reap()
                return True
            time.sleep(0.05)
        return False

    def _reap(self) -> None:
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def kill(self) -> None:
        """kill -9, then wait until the process is gone."""
        if self.signal(signal.SIGCONT):  # a stopped process dies on SIGKILL too, but be explicit
            self.signal(signal.SIGKILL)
            if not self.wait_exit(30):
                raise ClusterError(f"node {self.node_id} did not die after SIGKILL")
        self._reap()

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL after timeout."""
        self.signal(signal.SIGCONT)
        if self.signal(signal.SIGTERM) and not self.wait_exit(timeout):
            self.kill()
        self._reap()

    def log_of_last_start(self) -> str:
        """What the node logged since its last start (node.log keeps every start's output)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text[text.rfind(START_MARKER) :] if START_MARKER in text else text

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class Cluster:
    """N local brokers of one kind in one directory. See the module docstring."""

    def __init__(
        self,
        kind: str,
        base: Path,
        nodes: list[Node],
        cluster_id: str,
        broker_only: int = 0,
        controller_only: int = 0,
    ):
        self.kind = kind
        self.base = base
        self.nodes = nodes
        self.cluster_id = cluster_id
        # The last `broker_only` nodes are broker-only (Sluice): not voters.
        self.broker_only = broker_only
        # The first `controller_only` nodes are controller-only (Sluice): no client port.
        self.controller_only = controller_only

    @property
    def brokers(self) -> list[Node]:
        """The nodes with the broker role (a client port)."""
        return [n for n in self.nodes if n.port]

    @property
    def voters(self) -> list[Node]:
        """The nodes in controller.quorum.voters."""
        return self.nodes[: len(self.nodes) - self.broker_only]

    def is_voter(self, node: Node) -> bool:
        return any(v.node_id == node.node_id for v in self.voters)

    # --- creating and finding clusters ---------------------------------------------------

    @classmethod
    def create(
        cls, kind: str, base: Path, n: int, gids: bool = False, broker_only: int = 0, controller_only: int = 0
    ) -> "Cluster":
        if kind not in KINDS:
            raise ClusterError(f"unknown kind {kind!r} (use {' or '.join(KINDS)})")
        if not 1 <= n <= MAX_NODES:
            raise ClusterError(f"a cluster has 1 to {MAX_NODES} nodes, not {n}")
        voters = n - broker_only
        if broker_only < 0 or controller_only < 0 or controller_only > voters or controller_only == n:
            raise ClusterError(f"{controller_only} controller-only and {broker_only} broker-only of {n} nodes")
        if (broker_only or controller_only) and kind != "sluice":
            raise ClusterError("--broker-only and --controller-only start Sluice nodes only")
        if broker_only and voters < 2 and not controller_only:
            raise ClusterError(
                f"--broker-only {broker_only} of {n} nodes: at least 2 voters must remain, or a "
                "controller-only one (a single combined voter runs no quorum to follow)"
            )
        base = base.resolve()
        if (base / "cluster.json").exists():
            raise ClusterError(f"{base} already holds a cluster (cluster.json); stop it or use another dir")
        base.mkdir(parents=True, exist_ok=True)
        nodes = []
        for node_id in range(1, n + 1):
            host = node_host(node_id)
            # A controller-only node has no client port.
            port = free_port(host) if node_id > controller_only else 0
            controller_port = 0
            # A single Sluice node is the sole voter of its quorum and binds no controller port;
            # a broker-only node binds none either (it dials the voters).
            voter = node_id <= n - broker_only
            while voter and (kind == "kafka" or n > 1 or controller_only) and controller_port in (0, port):
                controller_port = free_port(host)
            nodes.append(
                Node(
                    node_id,
                    kind,
                    base / f"node{node_id}",
                    port,
                    controller_port,
                    gid=GID_BASE + node_id if gids else None,
                )
            )
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        cluster = cls(kind, base, nodes, cluster_id, broker_only, controller_only)
        cluster.save()
        return cluster

    @classmethod
    def load(cls, base: Path) -> "Cluster":
        base = base.resolve()
        try:
            meta = json.loads((base / "cluster.json").read_text())
        except FileNotFoundError:
            raise ClusterError(f"no cluster in {base} (no cluster.json)") from None
        nodes = [
            Node(
                n["node_id"],
                meta["kind"],
                base / f"node{n['node_id']}",
                n["port"],
                n["controller_port"],
                gid=n.get("gid"),
            )
            for n in meta["nodes"]
        ]
        return cls(
            meta["kind"], base, nodes, meta["cluster_id"], meta.get("broker_only", 0), meta.get("controller_only", 0)
        )

    def save(self) -> None:
        meta = {
            "kind": self.kind,
            "cluster_id": self.cluster_id,
            "broker_only": self.broker_only,
            "controller_only": self.controller_only,
            "nodes": [
                {
                    "node_id": n.node_id,
                    "host": n.host,
                    "port": n.port,
                    "controller_port": n.controller_port,
                    "gid": n.gid,
                }
                for n in self.nodes
            ],
        }
        (self.base / "cluster.json").write_text(json.dumps(meta, indent=2) + "\n")

    # --- addresses -------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.brokers)

    def node(self, node_id: int) -> Node:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise ClusterError(f"no node {node_id} in {self.base}")

    # --- processes -------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> None:
        """Starts every node that is not running and waits until the cluster is ready."""
        for node in self.nodes:
            if not node.alive():
                self._start_node(node)
        self.wait_ready(timeout)

    def restart(self, node: Node, wait: bool = True, timeout: float = 120) -> None:
        """Starts a node that was stopped or killed, on the same data dir and ports."""
        if node.alive():
            return
        node._reap()
        self._start_node(node)
        if wait:
            self.wait_node_ready(node, timeout)

    def _start_node(self, node: Node) -> None:
        node.data_dir.mkdir(parents=True, exist_ok=True)
        env = None
        if self.kind == "kafka":
            self._write_kafka_config(node)
            if not (node.data_dir / "meta.properties").exists():
                self._format_kafka(node)
            argv = [
                "java",
                f"-Xmx{KAFKA_HEAP}",
                f"-Xms{KAFKA_HEAP}",
                "-XX:+UseSerialGC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={node.dir / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={node.dir}",
                "-cp",
                str(KAFKA_HOME / "libs" / "*"),
                "kafka.Kafka",
                str(node.dir / "server.properties"),
            ]
        else:
            if not SLUICE_BROKER_BIN.exists():
                raise ClusterError(
                    f"{SLUICE_BROKER_BIN} not found: cargo build --release --bin sluice-broker"
                )
            if len(self.nodes) == 1:
                # Today's single node, as before clusters: the defaults plus its port and dir.
                argv = [
                    str(SLUICE_BROKER_BIN),
                    "--listen",
                    node.address,
                    "--data-dir",
                    str(node.data_dir),
                    "--node-id",
                    str(node.node_id),
                ]
            else:
                argv = [str(SLUICE_BROKER_BIN), "--config", str(self._write_sluice_config(node))]
            # As the Kafka nodes: a new group's first rebalance does not wait for more members.
            # Each node's admin listener (metrics, health) on a free port, printed at start.
            env = {"SLUICE_ADMIN_LISTENERS": "127.0.0.1:0", **os.environ,
                   "SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS": "0"}
        node.spawn(argv, env)

    def wait_node_ready(self, node: Node, timeout: float) -> None:
        """Polls until the node is ready (see _wait_ready)."""
        self._wait_ready([node], timeout)

    def wait_ready(self, timeout: float = 120) -> None:
        """Polls until every node is ready (see _wait_ready)."""
        self._wait_ready(list(self.nodes), timeout)

    def _wait_ready(self, nodes: list[Node], timeout: float) -> None:
        """Polls the nodes until each answers ApiVersions, and Metadata listing every node of
        the cluster and a controller. A node that exits first is an error with its log tail
        (ClusterNotWired when a Sluice node refused a cluster configuration), whichever node
        it is; so is the deadline, with the log of the first node not ready. A controller-only
        node (no client port) is ready once its controller port accepts a connection."""
        want = sorted(n.node_id for n in self.brokers)
        deadline = time.monotonic() + timeout
        pending = list(nodes)
        last = {}
        while True:
            for node in list(pending):
                if not node.alive():
                    tail = node.log_tail()
                    # Only this start's words count: node.log also holds earlier starts'.
                    if self.kind == "sluice" and NOT_WIRED in node.log_of_last_start():
                        raise ClusterNotWired(
                            f"node {node.node_id} refused its {len(self.nodes)}-node configuration: "
                            f"{SLUICE_BROKER_BIN} runs only a single node ({NOT_WIRED}); its log ends:\n{tail}"
                        )
                    raise ClusterError(f"node {node.node_id} exited during start; its log ends:\n{tail}")
                if not node.port:
                    if _accepts(node.host, node.controller_port):
                        pending.remove(node)
                    else:
                        last[node.node_id] = "its controller port accepts no connection"
                    continue
                if kafka_wire.api_versions(node.host, node.port) is None:
                    last[node.node_id] = "no ApiVersions answer"
                    continue
                listed = metadata_brokers(node.host, node.port)
                if listed == want:
                    pending.remove(node)
                else:
                    last[node.node_id] = f"Metadata lists brokers {listed}, not {want}" if listed else "no Metadata answer"
            if not pending:
                return
            if time.monotonic() > deadline:
                node = pending[0]
                raise ClusterError(
                    f"node {node.node_id} not ready within {timeout:.0f}s ({last.get(node.node_id)}); "
                    f"its log ends:\n{node.log_tail()}"
                )
            time.sleep(0.2)

    def kill_all(self) -> None:
        for node in self.nodes:
            node.signal(signal.SIGCONT)
            node.signal(signal.SIGKILL)
        for node in self.nodes:
            node.kill()

    def stop(self) -> None:
        """Stops every node (SIGTERM, SIGKILL after 30 s), also paused ones."""
        for node in self.nodes:
            node.signal(signal.SIGCONT)
            node.signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop()

    def status(self) -> list[dict]:
        want = sorted(n.node_id for n in self.brokers)
        rows = []
        for node in self.nodes:
            alive = node.alive()
            if not node.port:
                # Controller-only: no client port to ask.
                ready = alive and _accepts(node.host, node.controller_port)
                rows.append(
                    {
                        "node": node.node_id,
                        "address": f"{node.host}:{node.controller_port}",
                        "pid": node.pid() if alive else None,
                        "state": "down" if not alive else ("ready" if ready else "starting"),
                        "sees": None,
                        "dir": str(node.dir),
                    }
                )
                continue
            listed = metadata_brokers(node.host, node.port, timeout=1.0) if alive else None
            rows.append(
                {
                    "node": node.node_id,
                    "address": node.address,
                    "pid": node.pid() if alive else None,
                    "state": "down" if not alive else ("ready" if listed == want else "starting"),
                    "sees": listed,
                    "dir": str(node.dir),
                }
            )
        return rows

    # --- roles -----------------------------------------------------------------------------

    def controller(self) -> Optional[Node]:
        """The active controller (the metadata quorum's leader), or None if unknown.

        Kafka's Metadata answer names a random broker as the controller in KRaft mode, so it
        cannot tell; each node's quorum-state file records the leader it knows of and its
        epoch, and the newest epoch wins."""
        if self.kind == "sluice":
            if len(self.nodes) == 1:
                return self.nodes[0]
            if self.controller_only:
                # Metadata names a live broker, never a controller-only node: unknown here
                # (DescribeQuorum, e.g. `sluice cluster describe`, names it).
                return None
            controller_id = self.controller_id()
            return self.node(controller_id) if controller_id is not None else None
        best: tuple[int, int] | None = None
        for node in self.nodes:
            try:
                state = json.loads(
                    (node.data_dir / "__cluster_metadata-0" / "quorum-state").read_text()
                )
            except (FileNotFoundError, ValueError):
                continue
            leader, epoch = state.get("leaderId", -1), state.get("leaderEpoch", -1)
            if leader is not None and leader >= 0 and (best is None or epoch > best[1]):
                best = (leader, epoch)
        return self.node(best[0]) if best else None

    def controller_id(self, exclude: tuple[int, ...] = ()) -> Optional[int]:
        """The controller id that the live nodes (but those in exclude) name in Metadata, when
        every one that answers names the same, known one; None otherwise. For Sluice this is
        the active controller (the metadata quorum's leader); Kafka's KRaft brokers name a
        random broker here instead (see controller())."""
        seen = set()
        for node in self.nodes:
            if node.node_id in exclude or not node.alive() or not node.port:
                continue
            view = kafka_wire.metadata(node.host, node.port, all_topics=False, timeout=1.0)
            if view is not None:
                seen.add(view.controller_id)
        if len(seen) != 1:
            return None
        (controller_id,) = seen
        return controller_id if any(n.node_id == controller_id for n in self.nodes) else None

    # --- Sluice configuration ------------------------------------------------------------

    def _write_sluice_config(self, node: Node) -> Path:
        """node.dir/sluice.toml: a combined broker + controller of the static quorum of the
        voters, or a broker-only node following them, with Kafka's property names
        (broker/src/config.rs)."""
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self.voters)
        voter = self.is_voter(node)
        listeners = [f"PLAINTEXT://{node.host}:{node.port}"] if node.port else []
        if voter:
            listeners.append(f"CONTROLLER://{node.host}:{node.controller_port}")
        roles = ["broker"] if node.port else []
        roles += ["controller"] if voter else []
        properties = {
            "process.roles": ",".join(roles),
            "controller.quorum.voters": voters,
            "listeners": ",".join(listeners),
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(node.data_dir),
        }
        if node.port:
            properties["advertised.listeners"] = f"PLAINTEXT://{node.host}:{node.port}"
            properties["inter.broker.listener.name"] = "PLAINTEXT"
        # JSON's string escapes are valid in TOML's basic strings (a path may hold a quote).
        lines = [f'"node.id" = {node.node_id}'] + [f'"{k}" = {json.dumps(v)}' for k, v in properties.items()]
        path = node.dir / "sluice.toml"
        path.write_text(
            f"# sluice-broker node {node.node_id} of a {len(self.nodes)}-node cluster\n"
            "# written by sluice tests/cluster/launcher.py\n" + "\n".join(lines) + "\n"
        )
        return path

    # --- Kafka configuration -------------------------------------------------------------

    def _write_kafka_config(self, node: Node) -> None:
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self.nodes)
        replication = min(3, len(self.nodes))
        (node.dir / "server.properties").write_text(
            f"""# Apache Kafka {KAFKA_VERSION}, node {node.node_id} of a {len(self.nodes)}-node KRaft cluster
# written by sluice tests/cluster/launcher.py
process.roles=broker,controller
node.id={node.node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}
advertised.listeners=PLAINTEXT://{node.host}:{node.port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={node.data_dir}
num.partitions=3
default.replication.factor={replication}
min.insync.replicas={min(2, replication)}
unclean.leader.election.enable=false
auto.create.topics.enable=false
offsets.topic.replication.factor={replication}
transaction.state.log.replication.factor={replication}
transaction.state.log.min.isr={min(2, replication)}
share.coordinator.state.topic.replication.factor={replication}
share.coordinator.state.topic.min.isr={min(2, replication)}
group.initial.rebalance.delay.ms=0
# Fewer threads than the defaults: three brokers share two cores with the workload.
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
log.cleaner.threads=1
"""
        )
        (node.dir / "log4j2.properties").write_text(
            """rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.state.name = state.change.logger
logger.state.level = INFO
"""
        )

    def _format_kafka(self, node: Node) -> None:
        if not (KAFKA_HOME / "libs" / ".pom.sha256").exists():
            raise ClusterError(f"Apache Kafka {KAFKA_VERSION} not installed: scripts/deps.sh --kafka")
        out = subprocess.run(
            [
                "java",
                "-Xmx256m",
                "-cp",
                str(KAFKA_HOME / "libs" / "*"),
                f"-Dlog4j2.configurationFile={node.dir / 'log4j2.properties'}",
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={self.cluster_id}",
                "-c",
                str(node.dir / "server.properties"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        (node.dir / "format.log").write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            raise ClusterError(f"kafka storage format failed for node {node.node_id}:\n{out.stdout}{out.stderr}")


def start_cluster(
    kind: str,
    base: Path,
    n: int,
    gids: bool = False,
    timeout: float = 120,
    broker_only: int = 0,
    controller_only: int = 0,
) -> Cluster:
    """Creates (or reuses, if base already holds one of the same kind and shape) and starts a
    cluster; on a failed start every node started so far is stopped again."""
    if (base / "cluster.json").exists():
        cluster = Cluster.load(base)
        shape = (cluster.kind, len(cluster.nodes), cluster.broker_only, cluster.controller_only)
        if shape != (kind, n, broker_only, controller_only):
            raise ClusterError(
                f"{base} holds a {len(cluster.nodes)}-node {cluster.kind} cluster with {cluster.broker_only} "
                f"broker-only and {cluster.controller_only} controller-only nodes, not {n}-node {kind} "
                f"with {broker_only} and {controller_only}"
            )
    else:
        cluster = Cluster.create(kind, base, n, gids=gids, broker_only=broker_only, controller_only=controller_only)
    try:
        cluster.start(timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/cluster.sh",
        description="Start, stop or show N local brokers on 127.0.0.1..N (see tests/cluster/launcher.py).",
    )
    parser.add_argument("command", choices=["start", "stop", "kill", "status"])
    parser.add_argument("n", nargs="?", type=int, help=f"number of nodes, 1-{MAX_NODES} (start only; default 3 for kafka, 1 for sluice)")
    parser.add_argument("--kind", choices=KINDS, default=os.environ.get("SLUICE_CLUSTER_KIND", "sluice"))
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("SLUICE_CLUSTER_DIR", "sluice-cluster")))
    parser.add_argument(
        "--broker-only",
        type=int,
        default=0,
        metavar="K",
        help="start only: the last K nodes are broker-only (not voters); sluice only, at least 2 voters",
    )
    parser.add_argument(
        "--controller-only",
        type=int,
        default=0,
        metavar="C",
        help="start only: the first C nodes are controller-only voters (no client port); sluice only",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            n = args.n or (3 if args.kind == "kafka" else 1)
            started = time.monotonic()
            cluster = start_cluster(
                args.kind, args.dir, n, broker_only=args.broker_only, controller_only=args.controller_only
            )
            roles = [f"{args.controller_only} controller-only"] if args.controller_only else []
            roles += [f"{args.broker_only} broker-only"] if args.broker_only else []
            shape = f" ({', '.join(roles)})" if roles else ""
            print(
                f"{cluster.kind} cluster of {n}{shape} ready in {time.monotonic() - started:.1f}s "
                f"in {cluster.base}; bootstrap servers: {cluster.bootstrap}"
            )
            return 0
        cluster = Cluster.load(args.dir)
        if args.n is not None and args.n != len(cluster.nodes):
            raise ClusterError(f"{args.dir} holds {len(cluster.nodes)} nodes, not {args.n}")
        if args.command == "stop":
            cluster.stop()
            print(f"stopped {len(cluster.nodes)} {cluster.kind} nodes in {cluster.base}")
        elif args.command == "kill":
            cluster.kill_all()
            print(f"killed {len(cluster.nodes)} {cluster.kind} nodes in {cluster.base}")
        else:
            # With every node down, the quorum-state files would name a stale controller.
            controller = cluster.controller() if any(n.alive() for n in cluster.nodes) else None
            print(
                f"{cluster.kind} cluster in {cluster.base}; bootstrap servers: {cluster.bootstrap}; "
                f"controller: {controller.node_id if controller else 'unknown'}"
            )
            rows = cluster.status()
            for row in rows:
                print(
                    f"  node {row['node']}  {row['address']:<21} {row['state']:<8} "
                    f"pid {row['pid'] or '-':<8} sees {row['sees'] or '-'}  {row['dir']}"
                )
            return 0 if all(r["state"] == "ready" for r in rows) else 1
        return 0
    except ClusterError as e:
        print(f"cluster: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
