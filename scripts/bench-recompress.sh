#!/usr/bin/env bash
# What recompression to a topic's codec costs on produce (compression.type other than
# `producer`), on Sluice and on Apache Kafka 4.4 beside it, with sluice-bench:
#   producer  the topic stores batches as produced (Sluice: zero-copy; the baseline);
#   zstd      the topic's codec is zstd, so every batch is recompressed;
#   gzip      the same with gzip;
# the producer always compressing with lz4 (100 B records of random capital letters,
# acks=1, 1 partition). Each broker runs once for the whole bench; every run uses a
# fresh topic, the brokers alternate which goes first, and the table gives medians of
# --runs runs and, per codec, the median of its ratio to the `producer` run of the same
# broker and round.
#
#   scripts/bench-recompress.sh [--runs N] [--seconds S]
#
# Needs Kafka's jars (scripts/peers/kafka.sh install). Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=5
seconds=4
while (($#)); do
    case "$1" in
        --runs) runs="$2"; shift ;;
        --seconds) seconds="$2"; shift ;;
        -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
        *) echo "bench-recompress.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

cargo build --release --quiet --bin sluice-broker --bin sluice-bench
scripts/peers/kafka.sh install >/dev/null
BENCH=target/release/sluice-bench

WORK="$(mktemp -d)"
SLUICE_PID=""
cleanup() {
    [[ -n "$SLUICE_PID" ]] && kill -TERM "$SLUICE_PID" 2>/dev/null
    scripts/peers/kafka.sh stop "$WORK/kafka" >/dev/null 2>&1 || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$WORK/sluice"
SLUICE_ADMIN_LISTENERS=none RUST_LOG=warn target/release/sluice-broker --listen 127.0.0.1:0 \
    --data-dir "$WORK/sluice/data" >"$WORK/sluice/stdout" 2>"$WORK/sluice/stderr" </dev/null &
SLUICE_PID=$!
deadline=$((SECONDS + 30))
until grep -q '^listening on ' "$WORK/sluice/stdout" 2>/dev/null; do
    kill -0 "$SLUICE_PID" 2>/dev/null || { cat "$WORK/sluice/stderr" >&2; exit 1; }
    ((SECONDS < deadline)) || { echo "sluice did not start" >&2; exit 1; }
    sleep 0.1
done
declare -A ADDR PID
ADDR[sluice]="$(sed -n 's/^listening on //p' "$WORK/sluice/stdout" | head -n1)"
PID[sluice]=$SLUICE_PID
ADDR[kafka]="$(scripts/peers/kafka.sh start "$WORK/kafka" 0 | sed -n 's/^kafka listening on //p')"
PID[kafka]="$(cat "$WORK/kafka/kafka.pid")"

# Warm-up (JIT, page cache), unrecorded.
for broker in sluice kafka; do
    "$BENCH" produce --bootstrap "${ADDR[$broker]}" --topic warmup --delete-topic --quiet --json \
        --record-size 100 --acks 1 --compression lz4 --duration 5s >/dev/null
done

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
for ((run = 1; run <= runs; run++)); do
    order=(sluice kafka)
    ((run % 2)) || order=(kafka sluice)
    for broker in "${order[@]}"; do
        for codec in producer zstd gzip; do
            out="$("$BENCH" produce --bootstrap "${ADDR[$broker]}" --broker-pid "${PID[$broker]}" \
                --topic "recompress-$codec-$run" --delete-topic --topic-config "compression.type=$codec" \
                --json --quiet --record-size 100 --acks 1 --compression lz4 --duration "${seconds}s")"
            python3 - "$broker" "$codec" "$run" "$out" >>"$RESULTS" <<'PY'
import json, sys
broker, codec, run, r = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
if r["errors"]:
    sys.exit(f"{broker} {codec} run {run}: {r['errors']} errors")
s = r["streams"][0]
print(f"{broker}\t{codec}\t{run}\t{s['records_per_s']:.0f}\t{r.get('broker_cpu_s_per_gb') or 0:.3f}\t{s['latency']['p99_us']}")
PY
            tail -n 1 "$RESULTS" | sed 's/^/  /' >&2
        done
    done
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
data = {(r[0], r[1], int(r[2])): (float(r[3]), float(r[4]), float(r[5])) for r in rows}
med = statistics.median
print("| broker | topic codec | records/s (median, min–max) | ÷ producer | broker CPU s/GB | ÷ producer | p99 ms | ÷ producer |")
print("|---|---|---|---|---|---|---|---|")
for broker in ("sluice", "kafka"):
    for codec in ("producer", "zstd", "gzip"):
        runs = {k[2]: v for k, v in data.items() if k[:2] == (broker, codec)}
        base = {k[2]: v for k, v in data.items() if k[:2] == (broker, "producer")}
        rate = [v[0] for v in runs.values()]
        cells = [f"{med(rate)/1e6:.2f} M ({min(rate)/1e6:.2f}–{max(rate)/1e6:.2f})"]
        for i, fmt in ((0, None), (1, "{:.2f}"), (2, "{:.1f}")):
            ratio = [runs[k][i] / base[k][i] for k in runs if k in base and base[k][i]]
            if i:
                cells.append(fmt.format(med([v[i] for v in runs.values()]) / (1000 if i == 2 else 1)))
            cells.append("" if codec == "producer" or not ratio else f"{med(ratio):.2f}")
        print(f"| {broker} | {codec} | " + " | ".join(cells) + " |")
PY
