"""The faults (nemeses) of the bench, each started, held for a while, then undone.

Every nemesis has ``start(ctx)`` and ``stop(ctx)``, which return a line saying what they did
(the test logs them with their times), and class attributes saying what it needs: a number of
nodes, the private network namespace (network.py), a small disk (:class:`SmallDisk`). The test
(test_faults.py) holds each fault for a bounded time and always calls ``stop``, so nothing is
left broken: killed nodes are restarted, paused ones continued, cuts healed, disks emptied.

The targets are chosen when the fault starts: "the leader" is the current leader of partition
0 of the workload's topic, "the controller" the current metadata quorum leader.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from launcher import Cluster, Node
from network import Network


class SmallDisk:
    """A small tmpfs mounted on one node's data dir before the node starts, so that the disk
    can be filled for that node alone. Needs a private mount namespace (scripts/cluster.sh
    test runs the bench in one) or root."""

    def __init__(self, node: Node, size_mb: int):
        self.node = node
        self.size_mb = size_mb
        self.mounted = False
        self.filler = node.data_dir / "nemesis-filler"

    def mount(self) -> None:
        self.node.data_dir.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_mb}m", "sluice-bench", str(self.node.data_dir)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if out.returncode != 0:
            raise PermissionError(f"cannot mount a tmpfs for the full-disk fault: {out.stderr.strip()}")
        self.mounted = True

    def fill(self) -> int:
        """Fills the disk to the last byte; returns how many bytes the filler took."""
        written = 0
        chunk = b"\0" * (1 << 20)
        # Bounded: the disk holds size_mb MiB, and each round writes at least one byte.
        with open(self.filler, "wb", buffering=0) as f:
            for size in [len(chunk)] * (self.size_mb + 1) + [4096, 512, 1] * 64:
                try:
                    written += f.write(chunk[:size])
                except OSError:
                    continue
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.node.data_dir)], capture_output=True, timeout=30)
            self.mounted = False


@dataclass
class FaultContext:
    """What a nemesis acts on."""

    cluster: Cluster
    topic: str
    leader_of: Callable[[int], Optional[int]]  # partition -> leader node id (None if unknown)
    network: Optional[Network] = None
    disk: Optional[SmallDisk] = None
    rng: random.Random = field(default_factory=lambda: random.Random(15))
    # Whether every partition of the topic has its whole replica set in sync (None: not
    # known right now); the rolling restart waits for it between two nodes.
    in_sync: Callable[[], Optional[bool]] = lambda: True

    def leader(self) -> Node:
        """The leader of partition 0 (a random node, said in the log, if no leader is known
        right now)."""
        leader = self.leader_of(0)
        if leader is None:
            node = self.rng.choice(self.cluster.nodes)
            print(f"nemesis: no leader of partition 0 known; acting on random node {node.node_id}", flush=True)
            return node
        return self.cluster.node(leader)


class Nemesis:
    name = "none"
    min_nodes = 1
    needs_network = False
    needs_disk = False

    def start(self, ctx: FaultContext) -> str:
        raise NotImplementedError

    def stop(self, ctx: FaultContext) -> str:
        raise NotImplementedError


def _restart_dead(ctx: FaultContext) -> list[int]:
    """Restarts every node that is not running (without waiting for it to be ready)."""
    restarted = []
    for node in ctx.cluster.nodes:
        if not node.alive():
            ctx.cluster.restart(node, wait=False)
            restarted.append(node.node_id)
    return restarted


class KillLeader(Nemesis):
    """kill -9 of the leader of partition 0; restarted when the fault ends."""

    name = "kill-leader"

    def start(self, ctx: FaultContext) -> str:
        node = ctx.leader()
        node.kill()
        return f"killed node {node.node_id} (leader of partition 0)"

    def stop(self, ctx: FaultContext) -> str:
        return f"restarted nodes {_restart_dead(ctx)}"


class KillController(Nemesis):
    """kill -9 of the active controller (the metadata quorum leader)."""

    name = "kill-controller"

    def start(self, ctx: FaultContext) -> str:
        node = ctx.cluster.controller() or ctx.rng.choice(ctx.cluster.nodes)
        node.kill()
        return f"killed node {node.node_id} (controller)"

    def stop(self, ctx: FaultContext) -> str:
        return f"restarted nodes {_restart_dead(ctx)}"


class KillAll(Nemesis):
    """kill -9 of every node at once; all restarted when the fault ends."""

    name = "kill-all"

    def start(self, ctx: FaultContext) -> str:
        ctx.cluster.kill_all()
        return f"killed all {len(ctx.cluster.nodes)} nodes"

    def stop(self, ctx: FaultContext) -> str:
        return f"restarted nodes {_restart_dead(ctx)}"


class PauseLeader(Nemesis):
    """SIGSTOP of the leader of partition 0, held longer than the session timeout (the test
    holds it at least 12 s; Kafka's broker.session.timeout.ms is 9 s), then SIGCONT: the
    zombie must be fenced and acknowledge nothing that is then lost."""

    name = "pause-leader"
    min_hold_s = 12.0

    def __init__(self) -> None:
        self.paused: Optional[Node] = None

    def start(self, ctx: FaultContext) -> str:
        node = ctx.leader()
        node.signal(signal.SIGSTOP)
        self.paused = node
        return f"paused node {node.node_id} (leader of partition 0)"

    def stop(self, ctx: FaultContext) -> str:
        if self.paused is None:
            return "nothing paused"
        self.paused.signal(signal.SIGCONT)
        return f"continued node {self.paused.node_id}"


class _Cut(Nemesis):
    min_nodes = 3
    needs_network = True

    def stop(self, ctx: FaultContext) -> str:
        assert ctx.network is not None
        dropped = ctx.network.dropped()
        ctx.network.heal()
        if dropped == 0:
            # Nodes that replicate and heartbeat exchange packets all the time: a cut held
            # for seconds that dropped none matched nothing, and the run would prove nothing.
            raise RuntimeError(f"{self.name}: the cut dropped no packet, so it cut nothing")
        return f"healed the network ({dropped} packets dropped by the cut)"


class PartitionLeader(_Cut):
    """The leader of partition 0 cut from the other nodes both ways (clients reach all)."""

    name = "partition-leader"

    def start(self, ctx: FaultContext) -> str:
        assert ctx.network is not None
        node = ctx.leader()
        ctx.network.isolate(node.node_id)
        return f"isolated node {node.node_id} (leader of partition 0): {ctx.network.describe()}"


class PartitionController(_Cut):
    """The active controller (the metadata quorum's leader) cut from the other nodes both
    ways (clients reach all): the rest must elect a controller and go on, and the isolated
    one must not keep fencing or electing on its own."""

    name = "partition-controller"

    def start(self, ctx: FaultContext) -> str:
        assert ctx.network is not None
        node = ctx.cluster.controller() or ctx.rng.choice(ctx.cluster.nodes)
        ctx.network.isolate(node.node_id)
        return f"isolated node {node.node_id} (controller): {ctx.network.describe()}"


class PartitionOneWay(_Cut):
    """The leader of partition 0 can receive from the other nodes but not send to them."""

    name = "partition-one-way"

    def start(self, ctx: FaultContext) -> str:
        assert ctx.network is not None
        leader = ctx.leader().node_id
        ctx.network.cut([(leader, n.node_id) for n in ctx.cluster.nodes if n.node_id != leader])
        return f"one-way cut from node {leader} (leader of partition 0): {ctx.network.describe()}"


class Bridge(_Cut):
    """Two nodes that cannot reach each other, both reaching a third (the bridge): two
    overlapping majorities. The leader of partition 0 is one of the two ends; on Sluice the
    active controller is the other, unless it is the leader (then any node)."""

    name = "bridge"

    def start(self, ctx: FaultContext) -> str:
        assert ctx.network is not None
        leader = ctx.leader().node_id
        others = [n.node_id for n in ctx.cluster.nodes if n.node_id != leader]
        if ctx.cluster.kind == "sluice":
            # Sluice does not replicate yet: its brokers exchange nothing but the metadata
            # quorum's traffic and their heartbeats, all to or from the active controller.
            # A bridge between two nodes that are not the controller would cut nothing, so
            # the controller is the far end whenever it is not the leader itself.
            controller = ctx.cluster.controller()
            if controller is not None and controller.node_id in others:
                others.remove(controller.node_id)
                others.insert(1, controller.node_id)
        bridge, far = others[0], others[1]
        # With more than 3 nodes, the rest stay on the far side.
        rest = others[2:]
        pairs = []
        for a in [leader]:
            for b in [far] + rest:
                pairs += [(a, b), (b, a)]
        ctx.network.cut(pairs)
        return f"bridge through node {bridge} between {leader} and {[far] + rest}: {ctx.network.describe()}"


class Flapping(_Cut):
    """A partition that comes and goes: every ~2 s a random node is isolated or the network
    healed, until the fault ends."""

    name = "partition-flapping"
    period_s = 2.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.flaps = 0
        self.error: Optional[BaseException] = None

    def start(self, ctx: FaultContext) -> str:
        assert ctx.network is not None
        network = ctx.network
        ids = [n.node_id for n in ctx.cluster.nodes]

        def flap() -> None:
            cut = False
            try:
                # Bounded by the stop event; the test holds a fault for seconds, not hours.
                while not self._stop.wait(self.period_s * (0.5 + ctx.rng.random())):
                    if cut:
                        network.heal()
                    else:
                        network.isolate(ctx.rng.choice(ids))
                    cut = not cut
                    self.flaps += 1
            except BaseException as e:  # reported by stop()
                self.error = e

        self._thread = threading.Thread(target=flap, name="nemesis-flapping", daemon=True)
        self._thread.start()
        return f"flapping partitions every ~{self.period_s:.0f}s"

    def stop(self, ctx: FaultContext) -> str:
        self._stop.set()
        if self._thread is not None:
            # Longer than one nft call's timeout, so a flip in progress lands before the heal.
            self._thread.join(timeout=45)
            if self._thread.is_alive():
                raise RuntimeError("flapping thread did not stop within 45 s")
        healed = super().stop(ctx)
        if self.error is not None:
            raise RuntimeError(f"flapping failed: {self.error}") from self.error
        return f"stopped flapping after {self.flaps} flips; {healed}"


class RollingRestart(Nemesis):
    """Every node in turn stopped with SIGTERM (a controlled shutdown: leadership moves away
    first), restarted, and waited for until it is ready and every partition is back in sync,
    as an operator rolls an upgrade. The whole roll happens in start(); clients may see
    retriable errors only, and nothing acknowledged may be lost."""

    name = "rolling-restart"
    min_nodes = 3
    # Bounds of one node's turn.
    stop_timeout_s = 60.0
    in_sync_timeout_s = 90.0

    def start(self, ctx: FaultContext) -> str:
        turns = []
        for node in ctx.cluster.nodes:
            began = time.monotonic()
            node.stop(timeout=self.stop_timeout_s)
            ctx.cluster.restart(node, wait=True)
            deadline = time.monotonic() + self.in_sync_timeout_s
            while ctx.in_sync() is not True:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"rolling-restart: partitions not back in sync {self.in_sync_timeout_s:.0f}s after node {node.node_id} restarted"
                    )
                time.sleep(0.5)
            turns.append(f"{node.node_id} ({time.monotonic() - began:.1f}s)")
        return f"restarted nodes in turn: {', '.join(turns)}"

    def stop(self, ctx: FaultContext) -> str:
        return f"restarted nodes {_restart_dead(ctx)}"


class DiskFull(Nemesis):
    """One node's disk (a small tmpfs on its data dir) filled to the last byte; emptied when
    the fault ends, and the node restarted if it stopped (Kafka halts on a failed log dir;
    Sluice must not stop at all)."""

    name = "disk-full"
    needs_disk = True

    def start(self, ctx: FaultContext) -> str:
        assert ctx.disk is not None
        filled = ctx.disk.fill()
        return f"filled node {ctx.disk.node.node_id}'s disk ({filled >> 20} MiB of filler)"

    def stop(self, ctx: FaultContext) -> str:
        assert ctx.disk is not None
        ctx.disk.free()
        died = not ctx.disk.node.alive()
        restarted = _restart_dead(ctx)
        return f"freed the disk; node {ctx.disk.node.node_id} {'had stopped' if died else 'kept running'}; restarted {restarted}"


NEMESES: dict[str, type[Nemesis]] = {
    cls.name: cls
    for cls in (
        KillLeader,
        KillController,
        KillAll,
        PauseLeader,
        PartitionLeader,
        PartitionController,
        PartitionOneWay,
        Bridge,
        Flapping,
        DiskFull,
        RollingRestart,
    )
}

