#!/usr/bin/env bash
# What security costs on the hot path: produce and replay with sluice-bench against
#   plain     PLAINTEXT, no authorizer (the baseline);
#   acl       PLAINTEXT with Kafka's StandardAuthorizer and 1,306 ACLs;
#   tls       SSL (TLS 1.3, a P-256 certificate), no authorizer;
#   sasl-tls  SASL_SSL with SCRAM-SHA-512 (one login per connection), no authorizer;
# on a fresh broker per run, the modes interleaved (the order rotates every run), medians
# of --runs runs each, and per mode the median of its ratio to the plain run next to it.
#
#   scripts/bench-security.sh [--runs N] [--seconds S] [--modes "plain acl tls sasl-tls"]
#
# In "acl" the client connects over PLAINTEXT, so its principal is User:ANONYMOUS; it is
# allowed exactly what the benchmark does (Create, Write, Read, Describe on its topic, Read
# on its group, IdempotentWrite on the cluster), beside 1,000 literal and 300 prefixed
# ACLs of other users, so an uncached decision scans 300 prefixes. The ACLs are written
# into the data directory before the broker starts (<data>/security/acls.json, the file
# CreateAcls maintains). The TLS certificates are made with openssl for the run.
#
# Prints one line per run and a table; broker CPU is from /proc (seconds per GB of record
# payload). Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=5
seconds=4
modes="plain acl tls sasl-tls"
while (($#)); do
    case "$1" in
        --runs) runs="$2"; shift ;;
        --seconds) seconds="$2"; shift ;;
        --modes) modes="$2"; shift ;;
        -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
        *) echo "bench-security.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

cargo build --release --quiet --bin sluice-broker --bin sluice-bench
BROKER=target/release/sluice-broker
BENCH=target/release/sluice-bench
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
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

# The run's test CA and the broker's certificate for 127.0.0.1.
PKI="$WORK/pki"
mkdir -p "$PKI"
(
    cd "$PKI"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
        -out ca.pem -days 1 -subj /CN=bench-ca 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout broker.key \
        -out broker.csr -subj /CN=localhost 2>/dev/null
    echo "subjectAltName=DNS:localhost,IP:127.0.0.1" >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.pem \
        -days 1 -extfile broker.ext 2>/dev/null
    cat broker.key broker.pem >keystore.pem
)

# start MODE DIR: a broker for MODE; sets ADDR, PID and CLIENT (sluice-bench's -X flags).
start() {
    local mode="$1" dir="$2" listen="127.0.0.1:0"
    mkdir -p "$dir"
    : >"$dir/broker.toml"
    CLIENT=()
    case "$mode" in
        acl)
            echo '"authorizer.class.name" = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"' >"$dir/broker.toml"
            write_acls "$dir/data"
            ;;
        tls)
            echo "\"ssl.keystore.location\" = \"$PKI/keystore.pem\"" >"$dir/broker.toml"
            # The PLAINTEXT listener is the (idle) inter-broker one.
            listen="PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0"
            CLIENT=(-X security.protocol=SSL -X "ssl.ca.location=$PKI/ca.pem")
            ;;
        sasl-tls)
            {
                echo "\"ssl.keystore.location\" = \"$PKI/keystore.pem\""
                echo '"sasl.enabled.mechanisms" = "SCRAM-SHA-512"'
                echo '"sasl.bootstrap.users" = "bench:bench-secret"'
            } >"$dir/broker.toml"
            listen="PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0"
            CLIENT=(-X security.protocol=SASL_SSL -X "ssl.ca.location=$PKI/ca.pem"
                -X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=bench -X sasl.password=bench-secret)
            ;;
        plain) ;;
        *) echo "bench-security.sh: unknown mode $mode (plain, acl, tls, sasl-tls)" >&2; exit 2 ;;
    esac
    RUST_LOG=warn "$BROKER" --config "$dir/broker.toml" --listen "$listen" --data-dir "$dir/data" \
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
    case "$mode" in
        tls | sasl-tls)
            local name=SSL
            [[ "$mode" == sasl-tls ]] && name=SASL_SSL
            ADDR="$(sed -n "s/^listener $name ([A-Z_]*) on //p" "$dir/stdout" | head -n1)"
            ;;
    esac
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
read -r -a MODES <<<"$modes"
((${#MODES[@]} > 0)) || { echo "bench-security.sh: --modes is empty" >&2; exit 2; }
for ((run = 1; run <= runs; run++)); do
    # Rotate the order, so drift hits every mode alike.
    order=("${MODES[@]:run % ${#MODES[@]}}" "${MODES[@]:0:run % ${#MODES[@]}}")
    for mode in "${order[@]}"; do
        dir="$WORK/$mode-$run"
        start "$mode" "$dir"
        produce="$("$BENCH" produce --bootstrap "$ADDR" --broker-pid "$PID" --json --quiet \
            ${CLIENT[@]+"${CLIENT[@]}"} --record-size 100 --acks 1 --duration "${seconds}s")"
        # Reads everything just produced, from the earliest offset.
        consume="$("$BENCH" consume --bootstrap "$ADDR" --broker-pid "$PID" --json --quiet ${CLIENT[@]+"${CLIENT[@]}"})"
        kill -TERM "$PID"; wait "$PID" 2>/dev/null || true
        PIDS=()
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

python3 - "$RESULTS" "$modes" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
modes = sys.argv[2].split()
print("| stream | mode | records/s (median, min–max) | ÷ plain (median of runs) | broker CPU s/GB (median) | ÷ plain |")
print("|---|---|---|---|---|---|")
for stream in ("produce", "replay"):
    by = {m: {int(r[2]): (float(r[3]), float(r[4])) for r in rows if r[0] == stream and r[1] == m}
          for m in modes}
    for m in modes:
        rates = [v[0] for v in by[m].values()]
        cpu = [v[1] for v in by[m].values()]
        if m != "plain" and "plain" in by:
            ratios = [by[m][k][0] / by["plain"][k][0] for k in by[m] if k in by["plain"]]
            cpu_ratios = [by[m][k][1] / by["plain"][k][1] for k in by[m] if k in by["plain"] and by["plain"][k][1]]
            ratio = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
            cpu_ratio = f"{statistics.median(cpu_ratios):.2f}" if cpu_ratios else ""
        else:
            ratio = cpu_ratio = ""
        print(f"| {stream} | {m} | {statistics.median(rates)/1e6:.2f} M ({min(rates)/1e6:.2f}–{max(rates)/1e6:.2f}) "
              f"| {ratio} | {statistics.median(cpu):.2f} | {cpu_ratio} |")
PY
