"""Minimal Kafka requests sent to ONE chosen broker: ApiVersions, Metadata and CreateTopics.

The client libraries pick the broker a request goes to themselves (Metadata to any broker,
CreateTopics to the controller they were told of), so they cannot answer "what does broker 2
say?" or "create this topic through broker 3". The launcher's readiness probe and the cluster
tests need exactly that, so this file speaks the few requests they need on a socket of their
own: non-flexible versions only (request header v1, response header v0), one request per
connection.

Every function returns None when the broker does not answer, closes the connection, or
answers with bytes that do not parse: a node that is starting, dead or confused is "no answer"
to its callers, never an exception.
"""

from __future__ import annotations

import itertools
import socket
import struct
from dataclasses import dataclass, field
from typing import Optional

API_VERSIONS = 18
METADATA = 3
CREATE_TOPICS = 19
CLIENT_ID = b"sluice-cluster-probe"
# Responses larger than this are refused (a confused peer must not make us allocate much).
MAX_RESPONSE = 64 << 20

_correlation = itertools.count(1)


class _Reader:
    """Reads big-endian Kafka fields from a response body; struct.error on short input."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def _take(self, fmt: str):
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def i8(self) -> int:
        return self._take(">b")

    def i16(self) -> int:
        return self._take(">h")

    def i32(self) -> int:
        return self._take(">i")

    def string(self) -> Optional[str]:
        length = self.i16()
        if length < 0:
            return None
        if self.pos + length > len(self.data):
            raise struct.error("string past the end of the response")
        text = self.data[self.pos : self.pos + length].decode("utf-8", errors="replace")
        self.pos += length
        return text

    def count(self) -> int:
        """An array length; -1 (null) reads as 0. A count larger than the bytes left could
        hold is refused before anything is allocated."""
        n = self.i32()
        if n > len(self.data) - self.pos:
            raise struct.error(f"array of {n} in {len(self.data) - self.pos} bytes")
        return max(n, 0)


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def _recv_exact(sock: socket.socket, n: int) -> Optional[bytes]:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def request(host: str, port: int, api_key: int, version: int, body: bytes, timeout: float = 2.0) -> Optional[bytes]:
    """Sends one request and returns the response body (after the correlation id), or None."""
    correlation = next(_correlation) & 0x7FFFFFFF
    header = struct.pack(">hhih", api_key, version, correlation, len(CLIENT_ID)) + CLIENT_ID
    frame = header + body
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(frame)) + frame)
            size_bytes = _recv_exact(s, 4)
            if size_bytes is None:
                return None
            (size,) = struct.unpack(">i", size_bytes)
            if not 4 <= size <= MAX_RESPONSE:
                return None
            response = _recv_exact(s, size)
    except OSError:
        return None
    if response is None or struct.unpack_from(">i", response)[0] != correlation:
        return None
    return response[4:]


def api_versions(host: str, port: int, timeout: float = 2.0) -> Optional[dict[int, tuple[int, int]]]:
    """ApiVersions v0: {api_key: (min, max)} when the broker answers without error."""
    body = request(host, port, API_VERSIONS, 0, b"", timeout)
    if body is None:
        return None
    try:
        r = _Reader(body)
        if r.i16() != 0:
            return None
        return {r.i16(): (r.i16(), r.i16()) for _ in range(r.count())}
    except struct.error:
        return None


@dataclass
class PartitionView:
    error_code: int
    leader: int
    replicas: list[int]
    isr: list[int]


@dataclass
class TopicView:
    error_code: int
    internal: bool
    partitions: dict[int, PartitionView] = field(default_factory=dict)


@dataclass
class MetadataView:
    """One broker's Metadata answer (v1)."""

    brokers: dict[int, tuple[str, int]]
    controller_id: int
    topics: dict[str, TopicView]

    @property
    def broker_ids(self) -> list[int]:
        return sorted(self.brokers)

    def leaders(self, topic: str) -> dict[int, int]:
        """{partition: leader id} of topic (leader -1: none); empty if the topic is unknown."""
        view = self.topics.get(topic)
        return {p: v.leader for p, v in view.partitions.items()} if view else {}


def metadata(host: str, port: int, all_topics: bool = True, timeout: float = 2.0) -> Optional[MetadataView]:
    """Metadata v1 for every topic (or for none). Never names a topic: a v1 request naming an
    unknown topic would auto-create it on a broker with auto.create.topics.enable."""
    body = request(host, port, METADATA, 1, struct.pack(">i", -1 if all_topics else 0), timeout)
    if body is None:
        return None
    try:
        r = _Reader(body)
        brokers = {}
        for _ in range(r.count()):
            node_id, host_name, node_port = r.i32(), r.string(), r.i32()
            r.string()  # rack
            brokers[node_id] = (host_name or "", node_port)
        controller_id = r.i32()
        topics = {}
        for _ in range(r.count()):
            error_code, name, internal = r.i16(), r.string(), r.i8() != 0
            view = TopicView(error_code, internal)
            for _ in range(r.count()):
                p_error, index, leader = r.i16(), r.i32(), r.i32()
                replicas = [r.i32() for _ in range(r.count())]
                isr = [r.i32() for _ in range(r.count())]
                view.partitions[index] = PartitionView(p_error, leader, replicas, isr)
            topics[name or ""] = view
    except struct.error:
        return None
    return MetadataView(brokers, controller_id, topics)


def create_topic(
    host: str, port: int, name: str, partitions: int, replication_factor: int = 1, timeout_ms: int = 30000
) -> Optional[tuple[int, Optional[str]]]:
    """CreateTopics v2 for one topic, sent to this broker: (error_code, error_message), or None
    without an answer. 0 is success; 36 TOPIC_ALREADY_EXISTS; 41 NOT_CONTROLLER (a broker
    that neither is the controller nor forwards)."""
    body = (
        struct.pack(">i", 1)
        + _string(name)
        + struct.pack(">ihii", partitions, replication_factor, 0, 0)  # no assignments, no configs
        + struct.pack(">ib", timeout_ms, 0)  # timeout, validate_only=false
    )
    answer = request(host, port, CREATE_TOPICS, 2, body, timeout=timeout_ms / 1000 + 5)
    if answer is None:
        return None
    try:
        r = _Reader(answer)
        r.i32()  # throttle_time_ms
        for _ in range(r.count()):
            topic, error_code, message = r.string(), r.i16(), r.string()
            if topic == name:
                return error_code, message
    except struct.error:
        return None
    return None
