#!/usr/bin/env bash
# What the authorizer costs on the hot path: produce and replay with sluice-bench against a
# broker without an authorizer and one with Kafka's StandardAuthorizer and 1,300 ACLs,
# interleaved (off, on, on, off, ...) on fresh brokers, medians of --runs runs each.
#
#   scripts/bench-authorizer.sh [--runs N] [--seconds S]
#
# The client connects over PLAINTEXT, so its principal is User:ANONYMOUS; with the
# authorizer on it is allowed exactly what the benchmark does (Create, Write, Read,
# Describe on its topic, Read on its group, IdempotentWrite on the cluster), beside 1,000
# literal and 300 prefixed ACLs of other users, so an uncached decision scans 300 prefixes.
# The ACLs are written into the data directory before the broker starts
# (<data>/security/acls.json, the file CreateAcls maintains).
#
# Prints one line per run and a table of medians; broker CPU is from /proc (seconds per GB
# of record payload). Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=5
seconds=4
while (($#)); do
    case "$1" in
        --runs) runs="$2"; shift ;;
        --seconds) seconds="$2"; shift ;;
        -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
        *) echo "bench-authorizer.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

cargo build --release --quiet --bin sluice-broker --bin sluice-bench
BROKER=target/release/sluice-broker
BENCH=target/release/sluice-bench
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# write_acls DATA_DIR: the ACLs of the "on" broker.
write_acls() {
    mkdir -p "$1/security"
    python3 - "$1/security/acls.json" <<'PY'
import json, sys
def acl(rtype, name, principal, op, pattern="LITERAL"):
    return {"resource_type": rtype, "resource_name": name, "pattern_type": pattern,
            "principal": principal, "host": "*", "operation": op, "permission": "ALLOW"}
acls = [acl("TOPIC", "sluice-bench", "User:ANONYMOUS", op)
        for op in ("CREATE", "WRITE", "READ", "DESCRIBE")]
acls.append(acl("GROUP", "sluice-bench", "User:ANONYMOUS", "READ", "PREFIXED"))
acls.append(acl("CLUSTER", "kafka-cluster", "User:ANONYMOUS", "IDEMPOTENT_WRITE"))
acls += [acl("TOPIC", f"topic-{i}", f"User:user-{i}", "READ") for i in range(1000)]
acls += [acl("TOPIC", f"team-{i}-", f"User:team-{i}", "WRITE", "PREFIXED") for i in range(300)]
json.dump({"acls": acls}, open(sys.argv[1], "w"))
PY
}

# start MODE DIR: a broker with the authorizer off or on; sets ADDR and PID.
start() {
    local mode="$1" dir="$2"
    mkdir -p "$dir"
    : >"$dir/broker.toml"
    if [[ "$mode" == on ]]; then
        echo '"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"' >"$dir/broker.toml"
        write_acls "$dir/data"
    fi
    RUST_LOG=warn "$BROKER" --config "$dir/broker.toml" --listen 127.0.0.1:0 --data-dir "$dir/data" \
        >"$dir/stdout" 2>"$dir/stderr" </dev/null &
    PID=$!
    PIDS+=("$PID")
    local deadline=$((SECONDS + 30))
    until grep -q '^listening on ' "$dir/stdout" 2>/dev/null; do
        kill -0 "$PID" 2>/dev/null || { cat "$dir/stderr" >&2; exit 1; }
        ((SECONDS < deadline)) || { echo "broker did not start" >&2; exit 1; }
        sleep 0.1
    done
    ADDR="$(sed -n 's/^listening on //p' "$dir/stdout" | head -n1)"
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
for ((run = 1; run <= runs; run++)); do
    # Alternate which mode goes first, so drift hits both alike.
    if ((run % 2)); then order=(off on); else order=(on off); fi
    for mode in "${order[@]}"; do
        dir="$WORK/$mode-$run"
        start "$mode" "$dir"
        produce="$("$BENCH" produce --bootstrap "$ADDR" --broker-pid "$PID" --json --quiet \
            --record-size 100 --acks 1 --duration "${seconds}s")"
        # Reads everything just produced, from the earliest offset.
        consume="$("$BENCH" consume --bootstrap "$ADDR" --broker-pid "$PID" --json --quiet)"
        kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
        python3 - "$mode" "$run" "$produce" "$consume" >>"$RESULTS" <<'PY'
import json, sys
mode, run, p, c = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
for name, r in (("produce", p), ("replay", c)):
    if r["errors"]:
        sys.exit(f"{name} {mode} run {run}: {r['errors']} errors")
    s = r["streams"][0]
    print(f"{name}\t{mode}\t{run}\t{s['records_per_s']:.0f}\t{r.get('broker_cpu_s_per_gb') or 0:.3f}")
PY
        tail -n 2 "$RESULTS" | sed 's/^/  /' >&2
    done
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
print("| stream | authorizer | records/s (median, min–max) | broker CPU s/GB (median) | on ÷ off, median of run pairs |")
print("|---|---|---|---|---|")
for stream in ("produce", "replay"):
    by = {m: {int(r[2]): (float(r[3]), float(r[4])) for r in rows if r[0] == stream and r[1] == m}
          for m in ("off", "on")}
    ratios = [by["on"][k][0] / by["off"][k][0] for k in by["off"] if k in by["on"]]
    for m in ("off", "on"):
        rates = [v[0] for v in by[m].values()]
        cpu = [v[1] for v in by[m].values()]
        ratio = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if m == "on" else ""
        print(f"| {stream} | {m} | {statistics.median(rates)/1e6:.2f} M ({min(rates)/1e6:.2f}–{max(rates)/1e6:.2f}) "
              f"| {statistics.median(cpu):.2f} | {ratio} |")
PY
