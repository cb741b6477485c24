#!/usr/bin/env bash
# Captures record batches written by real Kafka clients, as Apache Kafka stored them, into
# storage/tests/fixtures/<client>-<codec>.batch, and writes storage/tests/fixtures/README.md
# describing each one (producer, command, header fields, records).
#
#   scripts/peers/capture-fixtures.sh [OUT_DIR]     (default storage/tests/fixtures)
#
# Steps: install kcat, the .venv and Kafka (scripts/deps.sh --kafka); start a throwaway
# single-node Kafka (scripts/peers/kafka.sh); create one 1-partition topic per fixture;
# produce 3 records (key1:value1----..., key2:value2----..., key3:value3----..., each value
# padded with 58 '-' to 64 bytes, header hk=hv) with kcat for each
# codec and with the Java client (zstd); take the first (and only) batch of each topic's
# first segment file; check it (one batch, 3 records, CRC-32C, records decoded independently
# with the .venv codecs equal what kcat consumes back); write the files and the README.
# kcat cannot set timestamps, so its records carry the capture time; the Java producer sets
# fixed timestamps. Re-running rewrites every fixture (kcat timestamps change).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo="$PWD"
out_dir="${1:-storage/tests/fixtures}"
kafka=scripts/peers/kafka.sh

scripts/deps.sh --kafka

work="$(mktemp -d /tmp/sluice-capture.XXXXXX)"
cleanup() {
    "$repo/$kafka" stop "$work/kafka" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

port="$("$kafka" start "$work/kafka" | sed -n 's/^kafka listening on 127.0.0.1:\([0-9]*\)$/\1/p')"
[[ -n "$port" ]] || { echo "kafka did not start" >&2; exit 1; }
bootstrap="127.0.0.1:$port"

kcat_codecs=(none gzip snappy lz4 zstd)
topics=()
for codec in "${kcat_codecs[@]}"; do topics+=("kcat-$codec"); done
topics+=(java-zstd)

for topic in "${topics[@]}"; do
    "$kafka" run org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
        --create --topic "$topic" --partitions 1 --replication-factor 1 >/dev/null
done

# --- kcat (librdkafka): one batch per codec -------------------------------------------------
# Values are padded with 58 '-' to 64 bytes: librdkafka sends a batch uncompressed when
# compression does not make it smaller, which happens with a few tiny records (lz4).
pad="$(printf -- '-%.0s' $(seq 58))"
records="key1:value1$pad"$'\n'"key2:value2$pad"$'\n'"key3:value3$pad"$'\n'
: >"$work/commands.tsv"
for codec in "${kcat_codecs[@]}"; do
    # linger.ms=100 makes librdkafka put all 3 lines into one batch.
    cmd=(kcat -b "$bootstrap" -P -t "kcat-$codec" -p 0 -K : -z "$codec" -H hk=hv -X linger.ms=100)
    printf '%s' "$records" | "${cmd[@]}"
    printf 'kcat-%s\tprintf '\''key1:value1%s\\nkey2:value2%s\\nkey3:value3%s\\n'\'' | %s\n' \
        "$codec" "$pad" "$pad" "$pad" "${cmd[*]/$bootstrap/127.0.0.1:PORT}" >>"$work/commands.tsv"
done

# --- Java client (kafka-clients, the same version as the broker): zstd -----------------------
cat >"$work/FixtureProducer.java" <<'EOF'
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.StringSerializer;

/** Sends key1:value1-...key3:value3-... (values padded with 58 '-') with header hk=hv
 *  and fixed timestamps as one batch. */
public class FixtureProducer {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("compression.type", args[2]);
        props.put("linger.ms", "1000"); // all three records in one batch; flush() sends it
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        long baseTimestamp = 1735689600000L; // 2025-01-01T00:00:00Z
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
            for (int i = 1; i <= 3; i++) {
                RecordHeaders headers = new RecordHeaders();
                headers.add("hk", "hv".getBytes(StandardCharsets.UTF_8));
                producer.send(new ProducerRecord<>(args[1], 0, baseTimestamp + (i - 1) * 100L,
                        "key" + i, "value" + i + "-".repeat(58), headers));
            }
            producer.flush();
        }
    }
}
EOF
java -Dlog4j2.configurationFile="$("$kafka" classpath | sed 's#/libs/\*$##')/log4j2-tools.properties" \
    -cp "$("$kafka" classpath)" "$work/FixtureProducer.java" "$bootstrap" java-zstd zstd
printf 'java-zstd\t%s\n' "java -cp 'libs/*' FixtureProducer.java 127.0.0.1:PORT java-zstd zstd  (source: scripts/peers/capture-fixtures.sh; defaults otherwise: acks=all, enable.idempotence=true)" \
    >>"$work/commands.tsv"

# --- what the clients read back (the reference for the decoded content) --------------------
for topic in "${topics[@]}"; do
    kcat -b "$bootstrap" -C -t "$topic" -p 0 -o beginning -e -q -J >"$work/$topic.consumed.jsonl"
done

kcat_version="$(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*librdkafka \([^ ]*\).*/kcat \1 (librdkafka \2)/p')"
java_version="$(java -version 2>&1 | head -n1)"
kafka_version="${SLUICE_KAFKA_VERSION:-4.4.0}"
mkdir -p "$out_dir"
.venv/bin/python - "$work" "$out_dir" "$kcat_version" "$java_version" "$kafka_version" "${topics[@]}" <<'EOF'
"""Extract, verify and describe the first batch of each topic's first segment."""
import datetime, gzip, hashlib, json, struct, sys
from pathlib import Path

import cramjam, lz4.frame, zstandard

work, out_dir, kcat_version, java_version, kafka_version = sys.argv[1:6]
topics = sys.argv[6:]
work, out_dir = Path(work), Path(out_dir)
commands = dict(line.rstrip("\n").split("\t", 1) for line in open(work / "commands.tsv"))

CRC32C_TABLE = []
for n in range(256):
    c = n
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    CRC32C_TABLE.append(c)

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
HEADER = struct.Struct(">qiibIhiqqqhii")  # 61 bytes, RecordBatch v2
FIELDS = ("baseOffset batchLength partitionLeaderEpoch magic crc attributes lastOffsetDelta "
          "baseTimestamp maxTimestamp producerId producerEpoch baseSequence recordCount").split()

def snappy_decompress(data):
    # Kafka's Java client frames snappy the xerial way; librdkafka may send raw snappy.
    if data.startswith(b"\x82SNAPPY\x00"):
        out, pos = b"", 16
        while pos < len(data):
            (n,) = struct.unpack_from(">i", data, pos)
            out += bytes(cramjam.snappy.decompress_raw(data[pos + 4:pos + 4 + n]))
            pos += 4 + n
        return out, "xerial-framed snappy"
    return bytes(cramjam.snappy.decompress_raw(data)), "raw snappy (no xerial framing)"

def decompress(codec, data):
    if codec == "none":
        return data, "uncompressed"
    if codec == "gzip":
        return gzip.decompress(data), "gzip"
    if codec == "snappy":
        return snappy_decompress(data)
    if codec == "lz4":
        return lz4.frame.decompress(data), "LZ4 frame format"
    if codec == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data), "zstd frame"
    raise ValueError(codec)

def varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]; pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos

def decode_records(buf, count):
    records, pos = [], 0
    for _ in range(count):
        length, pos = varint(buf, pos)
        end = pos + length
        attrs = buf[pos]; pos += 1
        ts_delta, pos = varint(buf, pos)
        off_delta, pos = varint(buf, pos)
        klen, pos = varint(buf, pos)
        key = None if klen < 0 else buf[pos:pos + klen]; pos += max(klen, 0)
        vlen, pos = varint(buf, pos)
        value = None if vlen < 0 else buf[pos:pos + vlen]; pos += max(vlen, 0)
        nh, pos = varint(buf, pos)
        headers = []
        for _ in range(nh):
            hk, pos = varint(buf, pos)
            hkey = buf[pos:pos + hk].decode(); pos += hk
            hv, pos = varint(buf, pos)
            hval = None if hv < 0 else buf[pos:pos + hv]; pos += max(hv, 0)
            headers.append((hkey, hval))
        assert pos == end, "record length mismatch"
        records.append(dict(attributes=attrs, timestampDelta=ts_delta, offsetDelta=off_delta,
                            key=key, value=value, headers=headers))
    assert pos == len(buf), "trailing bytes after the records"
    return records

def iso(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

sections = []
for topic in topics:
    client, codec = topic.split("-", 1)
    log = (work / "kafka" / "logs" / f"{topic}-0" / "00000000000000000000.log").read_bytes()
    base_offset, length = struct.unpack_from(">qi", log, 0)
    batch = log[:12 + length]
    assert len(log) == len(batch), f"{topic}: expected exactly one batch in the segment"
    h = dict(zip(FIELDS, HEADER.unpack_from(batch, 0)))
    assert h["magic"] == 2
    assert crc32c(batch[21:]) == h["crc"], f"{topic}: CRC-32C mismatch"
    attrs = h["attributes"]
    assert CODECS[attrs & 7] == codec, f"{topic}: codec bits say {CODECS[attrs & 7]}"
    assert h["recordCount"] == 3, f"{topic}: {h['recordCount']} records in the first batch"
    payload, framing = decompress(codec, batch[61:])
    records = decode_records(payload, h["recordCount"])
    consumed = [json.loads(l) for l in open(work / f"{topic}.consumed.jsonl") if l.strip()]
    assert len(consumed) == 3
    for i, r in enumerate(records, 1):
        assert (r["key"], r["value"], r["headers"]) == (
            f"key{i}".encode(), f"value{i}".encode() + b"-" * 58, [("hk", b"hv")]), f"{topic}: record {i}"
        assert r["attributes"] == 0 and r["offsetDelta"] == i - 1
    for r, c in zip(records, consumed):
        assert h["baseOffset"] + r["offsetDelta"] == c["offset"]
        assert h["baseTimestamp"] + r["timestampDelta"] == c["ts"]
        assert r["key"].decode() == c["key"] and r["value"].decode() == c["payload"]
        assert [x for hv in r["headers"] for x in (hv[0], hv[1].decode())] == c["headers"]
    (out_dir / f"{topic}.batch").write_bytes(batch)

    producer = kcat_version if client == "kcat" else f"Apache Kafka Java client (kafka-clients {kafka_version}) on {java_version}"
    lines = [f"### `{topic}.batch`", "",
             f"- producer: {producer}",
             f"- command: `{commands[topic]}`",
             f"- size: {len(batch)} bytes, sha256 `{hashlib.sha256(batch).hexdigest()}`",
             f"- records section (after the 61-byte header): {len(batch) - 61} bytes, {framing}"
             + ("" if codec == "none" else f", {len(payload)} bytes decompressed"), "",
             "| header field | value |", "| --- | --- |"]
    for name in FIELDS:
        value = h[name]
        if name == "crc":
            value = f"0x{value:08x}"
        elif name == "attributes":
            ts_type = "LogAppendTime" if attrs & 8 else "CreateTime"
            value = (f"0x{value:04x} (codec {codec}, {ts_type}, "
                     f"transactional={bool(attrs & 16)}, control={bool(attrs & 32)})")
        elif name.endswith("Timestamp"):
            value = f"{value} ({iso(value)})"
        lines.append(f"| {name} | {value} |")
    lines += ["", "| offset | timestamp (ms) | timestampDelta | key | value | headers |",
              "| --- | --- | --- | --- | --- | --- |"]
    for r in records:
        hdrs = ", ".join(f"{k}={v.decode()}" for k, v in r["headers"])
        lines.append(f"| {h['baseOffset'] + r['offsetDelta']} | {h['baseTimestamp'] + r['timestampDelta']} "
                     f"| {r['timestampDelta']} | `{r['key'].decode()}` | `{r['value'].decode()}` | {hdrs} |")
    sections.append("\n".join(lines))

readme = f"""# Record batches captured from real Kafka clients

Each `<client>-<codec>.batch` file is one Kafka RecordBatch (magic v2), byte for byte as
Apache Kafka {kafka_version} stored it in its segment file: the first (and only) batch of
`<topic>-0/00000000000000000000.log` after the client produced 3 records to a fresh
1-partition topic. The file starts with the 8-byte base offset and 4-byte batch length,
so its size is `12 + batchLength`.

Written by `scripts/peers/capture-fixtures.sh` (re-run it to redo them: kcat timestamps
will then change, and this README is regenerated with them). The script checks each batch
before writing it: exactly one batch in the segment, 3 records, the codec bits, the CRC-32C
(over attributes..end), and that the records decoded independently (Python gzip,
cramjam snappy, lz4.frame, zstandard) equal what kcat consumes back from Kafka.

Common to all fixtures:

- records, in this order at offsets 0, 1, 2 (UTF-8): key `key1` value `value1` + 58 × `-`,
  key `key2` value `value2` + 58 × `-`, key `key3` value `value3` + 58 × `-` (every value
  is 64 bytes; in Rust `format!("value{{i}}{{}}", "-".repeat(58))`), each record with one header
  `hk`=`hv`; record attributes are 0. (The padding is there because librdkafka sends a
  batch uncompressed when compression would not make it smaller, as with tiny records.)
- Kafka patched the fields a broker may rewrite: `baseOffset` is 0 (the first batch of
  the partition) and `partitionLeaderEpoch` is 0 (the partition's leader epoch, whatever
  the producer put there). The CRC does not cover those fields, so it is the producer's,
  unchanged. Everything from `attributes` on is byte for byte what the client sent.
- timestamps are CreateTime (topic default `message.timestamp.type`). kcat (librdkafka)
  stamps records with the wall clock at produce time; the Java producer sets fixed ones
  (2025-01-01T00:00:00Z + 0, 100, 200 ms).
- librdkafka {kcat_version.split()[-1].rstrip(')')} runs without idempotence by default: producerId/epoch/baseSequence
  are -1. The Java client is idempotent by default: a real producerId, epoch 0, baseSequence 0.

## Fixtures

""" + "\n\n".join(sections) + "\n"
(out_dir / "README.md").write_text(readme)
print(f"wrote {len(topics)} fixtures and README.md to {out_dir}")
EOF
