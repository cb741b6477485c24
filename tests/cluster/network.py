"""Network partitions between local nodes, with nftables, inside a private network namespace.

All nodes of a test cluster share one loopback interface, each listening on its own address
(127.0.0.N for node N). Dropping packets "from node A to node B" needs both ends to be
recognisable by address, but on loopback the kernel gives an outgoing connection the source
address of the route (127.0.0.1, or the destination itself), whoever opens it. So each node
runs with a group id of its own (launcher.GID_BASE + N), and a NAT rule rewrites the source of
every connection a node opens to its own address (``meta skgid G snat to 127.0.0.N``); every
other process of the namespace (the test clients) appears as 127.0.0.100. A cut "A -> B" is
then two rules on conntrack's view of each connection (see :func:`_cut_rules`): packets of
connections A opened to B's address in the original direction, and packets of connections B
opened to A's address in the reply direction. Plain ``ip saddr``/``ip daddr`` rules do not
work: conntrack translates a reply to a NATed client back to the client's original source
address on the way out, which may be any node's address, so client traffic would be cut too.
Every cut rule counts what it drops; :meth:`Network.dropped` tells whether a cut really cut.

Nothing here touches the host's network: :func:`private_namespace_reason` refuses unless the
process runs in a network namespace of its own (scripts/cluster.sh test creates one with
``unshare --net --mount`` and records the host's namespace in ``SLUICE_HOST_NETNS``), and the
rules live in one table that :meth:`Network.teardown` deletes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from typing import Iterable, Optional

from launcher import GID_BASE, node_host

TABLE = "sluice_bench"
CLIENT_ADDRESS = "127.0.0.100"


def private_namespace_reason() -> Optional[str]:
    """None when this process may change its network (a private namespace holding nothing
    but loopback, as root, with nft); otherwise why not, in words for a skip message."""
    host_ns = os.environ.get("SLUICE_HOST_NETNS")
    if not host_ns:
        return "network faults run only in a private network namespace: use scripts/cluster.sh test"
    try:
        own_ns = os.readlink("/proc/self/ns/net")
    except OSError as e:
        return f"cannot read /proc/self/ns/net: {e}"
    if own_ns == host_ns:
        return "SLUICE_HOST_NETNS names this very namespace: refusing to touch the host's network"
    # A second, positive check: a namespace the bench created has loopback and nothing else.
    interfaces = sorted(name for _index, name in socket.if_nameindex())
    if interfaces != ["lo"]:
        return f"this network namespace has interfaces {interfaces}, not only lo: refusing to change it"
    if shutil.which("nft") is None:
        return "nft not found (Debian package nftables; scripts/deps.sh --cluster installs it)"
    if os.geteuid() != 0:
        return "network faults need root inside the namespace"
    if not _can_use_gids():
        return (
            f"node processes need group ids {GID_BASE + 1}.. of their own, and this user "
            "namespace maps only its own group (run as root)"
        )
    return None


def _can_use_gids() -> bool:
    """True when group ids above GID_BASE are mapped in this user namespace."""
    try:
        for line in open("/proc/self/gid_map"):
            inside, _outside, count = (int(x) for x in line.split())
            if inside <= GID_BASE + 1 and GID_BASE + 250 < inside + count:
                return True
    except (OSError, ValueError):
        return False
    return False


def _nft(script: str) -> None:
    out = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"nft failed: {out.stderr.strip()}\nscript:\n{script}")


def _cut_rules(a: int, b: int) -> list[str]:
    """nftables rules that drop node a's packets to node b, on connections either opened.

    A connection's originator is known by its NATed source (``ct reply ip daddr``, its own
    address after the source rules) and its responder by the address it listens on (``ct
    original ip daddr``); whether a packet goes from originator to responder is ``ct
    direction``. Plain ``ip saddr``/``ip daddr`` would not do: conntrack gives a reply to a
    NATed client back the client's original source address on the way out, which can be any
    node's address."""
    host_a, host_b = node_host(a), node_host(b)
    return [
        f'iifname "lo" ct direction original ct reply ip daddr {host_a} ct original ip daddr {host_b} counter drop',
        f'iifname "lo" ct direction reply ct reply ip daddr {host_b} ct original ip daddr {host_a} counter drop',
    ]


class Network:
    """The nftables table of one test: source addresses per node and the current cuts."""

    def __init__(self, node_ids: Iterable[int]):
        self.node_ids = sorted(node_ids)
        self.cuts: set[tuple[int, int]] = set()
        # Packets dropped by cuts already replaced (a flush resets the rules' counters).
        self._dropped_before = 0

    def setup(self) -> None:
        """Installs the source-address rules; must run before the nodes start (NAT is decided
        on a connection's first packet)."""
        reason = private_namespace_reason()
        if reason:
            raise RuntimeError(reason)
        # Only loopback traffic between 127/8 addresses is touched, even though the namespace
        # holds nothing else.
        loopback = 'oifname "lo" ip daddr 127.0.0.0/8'
        snat = "\n".join(
            f"        {loopback} meta skgid {GID_BASE + n} snat ip to {node_host(n)}" for n in self.node_ids
        )
        # The table is deleted first so that a setup after a crashed test starts clean.
        subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True, timeout=30)
        _nft(
            f"""table ip {TABLE} {{
    chain sources {{
        type nat hook postrouting priority srcnat; policy accept;
{snat}
        {loopback} snat ip to {CLIENT_ADDRESS}
    }}
    chain cuts {{
        type filter hook input priority filter; policy accept;
    }}
}}
"""
        )

    def cut(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Replaces the current cuts: for each (a, b), node a's packets no longer reach node b
        (a one-way cut; give both (a, b) and (b, a) for a full one)."""
        pairs = set(pairs)
        for a, b in pairs:
            if a not in self.node_ids or b not in self.node_ids or a == b:
                raise ValueError(f"bad cut {a}->{b} for nodes {self.node_ids}")
        rules = "\n".join(
            f"add rule ip {TABLE} cuts {rule}" for a, b in sorted(pairs) for rule in _cut_rules(a, b)
        )
        self._dropped_before += self._counted()
        _nft(f"flush chain ip {TABLE} cuts\n{rules}\n")
        self.cuts = pairs

    def _counted(self) -> int:
        """Packets dropped by the cut rules now in place."""
        out = subprocess.run(
            ["nft", "-j", "list", "chain", "ip", TABLE, "cuts"], capture_output=True, text=True, timeout=30
        )
        if out.returncode != 0:
            raise RuntimeError(f"nft list failed: {out.stderr.strip()}")
        total = 0
        for item in json.loads(out.stdout).get("nftables", []):
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    total += int(expr["counter"].get("packets", 0))
        return total

    def dropped(self) -> int:
        """Packets dropped by every cut since setup: a cut that drops nothing cut nothing."""
        return self._dropped_before + self._counted()

    def isolate(self, node_id: int) -> None:
        """Cuts node_id from every other node, both ways."""
        others = [n for n in self.node_ids if n != node_id]
        self.cut([(node_id, o) for o in others] + [(o, node_id) for o in others])

    def heal(self) -> None:
        self.cut([])

    def teardown(self) -> None:
        subprocess.run(["nft", "delete", "table", "ip", TABLE], capture_output=True, timeout=30)
        self.cuts = set()

    def describe(self) -> str:
        if not self.cuts:
            return "no cuts"
        return ", ".join(f"{a}->{b}" for a, b in sorted(self.cuts))
