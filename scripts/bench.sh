#!/usr/bin/env bash
# Sluice against Apache Kafka on this machine, in one run, with the machine's own limits.
#
#   scripts/bench.sh            full comparison (~20 min): 3 runs of every scenario, writes
#                               docs/benchmarks.md (the results block) and docs/bench/*.json
#   scripts/bench.sh --quick    fewer records, 1 run each (~6 min); writes to target/bench-quick/
#   options: --runs N   --out DIR (raw JSON)   --report FILE (markdown)
#            --fill-memory / --no-fill-memory  (default: on in full mode, off in --quick)
#
# What one run does, in order:
#   1. machine limits: iperf3 loopback (one stream), fio sequential write (1 MiB blocks,
#      2 GiB, one fsync at the end) and fio write + fdatasync per 16 KiB block, both on the
#      file system the brokers write to;
#   2. starts the release Sluice broker and Apache Kafka 4.4 (scripts/peers/kafka.sh, the
#      same JVM settings every run) side by side, each with its own temp data dir, and
#      samples their idle RSS; one unrecorded warm-up per broker (JIT, page cache);
#   3. runs every scenario with the same client, sluice-bench, alternating the brokers (and
#      which goes first) so that background noise hits both alike; every figure is the
#      median of --runs runs. Before each run that writes, free memory is filled with page
#      cache (see fill_free_memory) so that both brokers write into memory the VM holds;
#   4. cross-checks the headline produce and replay figures with clients nobody here wrote:
#      kcat (librdkafka) and Kafka's ProducerPerformance / ConsumerPerformance;
#   5. writes the report between the markers in the report file (the hand-written analysis
#      around them is kept) and every raw result as JSON.
#
# Needs: fio, iperf3, kcat (scripts/deps.sh --bench), Java + Kafka's jars
# (scripts/deps.sh --kafka), python3. Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

quick=0
fill=""
runs=""
out=""
report=""
while (($#)); do
    case "$1" in
        --quick) quick=1 ;;
        --fill-memory) fill=1 ;;
        --no-fill-memory) fill=0 ;;
        --runs) runs="$2"; shift ;;
        --runs=*) runs="${1#*=}" ;;
        --out) out="$2"; shift ;;
        --out=*) out="${1#*=}" ;;
        --report) report="$2"; shift ;;
        --report=*) report="${1#*=}" ;;
        -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
        *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if ((quick)); then
    MODE=quick
    RUNS="${runs:-1}"
    OUT="${out:-target/bench-quick}"
    REPORT="${report:-target/bench-quick/benchmarks.md}"
    DUR=3               # seconds per produce scenario
    P1000_DUR=6         # the 1,000-partition scenario (first-touch costs, see the report)
    E2E_DUR=3
    REPLAY_100=1000000  # records of 100 B replayed
    REPLAY_1K=200000    # records of 1 KiB replayed
    XC_RECORDS=500000   # records per cross-check run (produce, and consume of the replay topic)
    WARMUP=2
    IPERF_S=3
    FIO_SEQ_SIZE=512M
    FIO_SYNC_SIZE=32M
    FILL_MEMORY="${fill:-0}"
else
    MODE=full
    RUNS="${runs:-3}"
    OUT="${out:-docs/bench}"
    REPORT="${report:-docs/benchmarks.md}"
    DUR=10
    P1000_DUR=15
    E2E_DUR=10
    REPLAY_100=10000000
    REPLAY_1K=1000000
    XC_RECORDS=2000000
    WARMUP=10
    IPERF_S=5
    FIO_SEQ_SIZE=2G
    FIO_SYNC_SIZE=128M
    FILL_MEMORY="${fill:-1}"
fi
# The same JVM settings every run (scripts/peers/kafka.sh reads these).
export SLUICE_KAFKA_HEAP="${SLUICE_KAFKA_HEAP:-1g}"
export SLUICE_KAFKA_TOOL_HEAP="${SLUICE_KAFKA_TOOL_HEAP:-512m}"

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- dependencies and builds ---------------------------------------------------------------
for tool in fio iperf3 kcat; do
    command -v "$tool" >/dev/null || scripts/deps.sh --bench
done
command -v java >/dev/null && scripts/peers/kafka.sh classpath >/dev/null 2>&1 || scripts/deps.sh --kafka
command -v python3 >/dev/null || die "python3 is needed for the report"
log "building the release binaries"
cargo build --release -q   # every binary, as README and test.sh build them (no rebuild)
BROKER_BIN="$ROOT/target/release/sluice-broker"
BENCH="$ROOT/target/release/sluice-bench"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")"
mkdir -p "$OUT"
rm -rf "$OUT"/sluice "$OUT"/sluice-fsync "$OUT"/kafka "$OUT"/machine
mkdir -p "$OUT"/machine
STARTED=$SECONDS

declare -A ADDR PID
SLUICE_BROKERS=()
KAFKA_UP=0

cleanup() {
    local name
    for name in "${SLUICE_BROKERS[@]}"; do stop_sluice "$name"; done
    if ((KAFKA_UP)); then scripts/peers/kafka.sh stop "$WORK/kafka" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- brokers -------------------------------------------------------------------------------
# start_sluice NAME [VAR=VALUE...]: a release broker on 127.0.0.1:0 with its own data dir.
start_sluice() {
    local name="$1"
    shift
    local dir="$WORK/$name"
    mkdir -p "$dir"
    # Like the Kafka peer (scripts/peers/kafka.sh): no delay before a new group's first
    # rebalance, so the group-based cross-checks measure reading, not a 3 s wait.
    env SLUICE_GROUP_INITIAL_REBALANCE_DELAY_MS=0 "$@" RUST_LOG=warn "$BROKER_BIN" --listen 127.0.0.1:0 --data-dir "$dir/data" \
        >"$dir/stdout" 2>"$dir/stderr" </dev/null &
    local pid=$!
    local deadline=$((SECONDS + 30))
    until grep -q '^listening on ' "$dir/stdout" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { cat "$dir/stderr" >&2; die "sluice-broker $name exited"; }
        ((SECONDS < deadline)) || { kill "$pid"; die "sluice-broker $name did not start in 30 s"; }
        sleep 0.1
    done
    PID[$name]=$pid
    ADDR[$name]="$(sed -n 's/^listening on //p' "$dir/stdout" | head -n1)"
    SLUICE_BROKERS+=("$name")
    log "sluice broker $name: pid $pid on ${ADDR[$name]} ($*)"
}

stop_sluice() {
    local name="$1" pid="${PID[$1]:-}"
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PID[$name]"
    local kept=()
    for n in "${SLUICE_BROKERS[@]}"; do [[ "$n" == "$name" ]] || kept+=("$n"); done
    SLUICE_BROKERS=("${kept[@]}")
}

start_kafka() {
    local line
    line="$(scripts/peers/kafka.sh start "$WORK/kafka" 0 | tail -n1)"
    KAFKA_UP=1
    ADDR[kafka]="${line##* }"
    PID[kafka]="$(cat "$WORK/kafka/kafka.pid")"
    log "kafka: pid ${PID[kafka]} on ${ADDR[kafka]}"
}

# rss NAME: "rss_kib anon_kib" of a broker now.
rss() {
    awk '/^VmRSS:/ {r=$2} /^RssAnon:/ {a=$2} END {print r, a}' "/proc/${PID[$1]}/status"
}

# --- one measurement -----------------------------------------------------------------------
# fill_free_memory: reads holes of a sparse file until free memory is down to a reserve, so
# that the page cache takes it. On these VMs the virtio-balloon reports freed memory to the
# host (free page reporting), and the first touch of a reported page costs a host fault
# (~10 µs, against <1 µs for memory the guest holds): a broker writing new page cache into
# such memory pays most of a core for it, and the faster writer loses more (see "What
# limits each number" in docs/benchmarks.md). A full run frees gigabytes (fio's files,
# every deleted topic, DAMON reclaim of idle pages), so before each measured run the
# memory freed since the last one is touched here, outside the measurement. The brokers'
# writes then take memory by reclaiming this clean cache, as on any long-running server
# whose page cache is full. The file is sparse: it takes no disk space.
fill_free_memory() {
    ((FILL_MEMORY)) || return 0
    python3 - "$WORK/ballast" <<'PY' >&2
import os, sys, time
path = sys.argv[1]
reserve = 512 << 20  # stays free: several times the kernel's high watermarks here
if not os.path.exists(path):
    with open(path, "wb") as f:
        f.truncate(1 << 40)  # sparse: holes read as zeros, each read page is new page cache
def free_bytes():
    meminfo = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    return int(meminfo["MemFree"].split()[0]) * 1024
cursor_file = path + ".at"
at = int(open(cursor_file).read()) if os.path.exists(cursor_file) else 0
fd = os.open(path, os.O_RDONLY)
started, done = time.monotonic(), 0
# A few passes: the kernel reclaims some cache of its own while a large fill runs.
for _ in range(4):
    want = free_bytes() - reserve
    if want < 256 << 20:
        break
    while want > 0:
        chunk = os.pread(fd, 1 << 20, at)
        at = (at + len(chunk)) % (1 << 40)
        done += len(chunk)
        want -= len(chunk)
os.close(fd)
open(cursor_file, "w").write(str(at))
if done:
    print(f"  filled {done >> 20:,} MiB of free memory with page cache in "
          f"{time.monotonic() - started:.1f} s ({free_bytes() >> 20:,} MiB left free)")
PY
}

# bench BROKER SCENARIO RUN SUBCOMMAND ARGS...: runs sluice-bench, keeps its JSON as
# $OUT/BROKER/SCENARIO.rRUN.json (a failed run leaves {"failed": ...} instead).
bench() {
    local broker="$1" scenario="$2" run="$3"
    shift 3
    local file="$OUT/$broker/$scenario.r$run.json"
    mkdir -p "$OUT/$broker"
    # Replays write nothing; filling memory before them could only evict what they read.
    [[ "$1" == consume ]] || fill_free_memory
    if "$BENCH" "$@" --bootstrap "${ADDR[$broker]}" --broker-pid "${PID[$broker]}" \
        --label "$broker" --json --quiet >"$file.tmp" 2>"$WORK/bench.err"; then
        mv "$file.tmp" "$file"
        python3 - "$file" "$broker" "$scenario" "$run" <<'PY' >&2
import json, sys
r = json.load(open(sys.argv[1]))
parts = []
for s in r["streams"]:
    l = s["latency"]
    parts.append(f'{s["name"]} {s["records_per_s"]:,.0f} rec/s {s["mib_per_s"]:.1f} MiB/s'
                 + (f' p99 {l["p99_us"]/1000:.2f} ms' if l["count"] else ''))
print(f'  {sys.argv[2]:<12} {sys.argv[3]:<26} r{sys.argv[4]}: ' + '; '.join(parts)
      + f'  errors {r["errors"]}')
PY
    else
        local error
        error="$(tail -n 3 "$WORK/bench.err" | tr '\n' ' ')"
        python3 -c 'import json,sys; print(json.dumps({"failed": sys.argv[1]}))' "$error" >"$file"
        rm -f "$file.tmp"
        log "  $broker $scenario r$run FAILED: $error"
    fi
}

# order RUN: the brokers in the order of this run (alternating who goes first).
order() { if (($1 % 2)); then echo "sluice kafka"; else echo "kafka sluice"; fi; }

# Records to send for an exact-count run, with a topic created first.
create_topic() { # BROKER TOPIC PARTITIONS
    "$BENCH" produce --bootstrap "${ADDR[$1]}" --topic "$2" --partitions "$3" --records 0 \
        --acks 1 --quiet >/dev/null
}

# --- 1. machine ------------------------------------------------------------------------------
log "mode $MODE, $RUNS run(s) per figure, raw results in $OUT, report $REPORT"
python3 - "$OUT/machine/machine.json" "$MODE" "$RUNS" "$FILL_MEMORY" <<'PY'
import json, os, platform, subprocess, sys
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""
mem_kib = int(open("/proc/meminfo").read().split("MemTotal:")[1].split()[0])
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
json.dump({
    "mode": sys.argv[2], "runs": int(sys.argv[3]), "fill_memory": sys.argv[4] == "1",
    "date": sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
    "commit": sh("git rev-parse --short HEAD 2>/dev/null"),
    "cores": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kib / 2**20, 1),
    "kernel": platform.release(),
    "filesystem": sh("findmnt -no FSTYPE,SOURCE -T \"${TMPDIR:-/tmp}\""),
    "read_ahead_kb": sh("cat /sys/block/$(basename $(findmnt -no SOURCE -T \"${TMPDIR:-/tmp}\"))/queue/read_ahead_kb 2>/dev/null"),
    "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    "rustc": sh("rustc --version"), "java": sh("java -version 2>&1 | head -n1"),
    "kcat": sh("kcat -V 2>&1 | head -n1"), "fio": sh("fio --version"), "iperf3": sh("iperf3 --version | head -n1"),
}, open(sys.argv[1], "w"), indent=2)
PY

for r in $(seq 1 "$RUNS"); do
    port=$((20000 + RANDOM % 20000))
    iperf3 -s -1 -B 127.0.0.1 -p "$port" >/dev/null 2>&1 &
    iperf_pid=$!
    sleep 0.5
    iperf3 -c 127.0.0.1 -p "$port" -P 1 -t "$IPERF_S" -J >"$OUT/machine/iperf3.r$r.json" ||
        log "iperf3 failed"
    wait "$iperf_pid" 2>/dev/null || true
    fio --name=seqwrite --directory="$WORK" --rw=write --bs=1M --size="$FIO_SEQ_SIZE" \
        --end_fsync=1 --output-format=json >"$OUT/machine/fio-seq.r$r.json"
    rm -f "$WORK"/seqwrite*
    fio --name=syncwrite --directory="$WORK" --rw=write --bs=16k --size="$FIO_SYNC_SIZE" \
        --fdatasync=1 --output-format=json >"$OUT/machine/fio-sync.r$r.json"
    rm -f "$WORK"/syncwrite*
    python3 - "$OUT/machine" "$r" <<'PY' >&2
import json, sys
d, r = sys.argv[1], sys.argv[2]
ip = json.load(open(f"{d}/iperf3.r{r}.json"))["end"]["sum_received"]["bits_per_second"]
seq = json.load(open(f"{d}/fio-seq.r{r}.json"))["jobs"][0]["write"]["bw_bytes"]
syn = json.load(open(f"{d}/fio-sync.r{r}.json"))["jobs"][0]["write"]["bw_bytes"]
print(f"  machine r{r}: iperf3 {ip/8/2**20:,.0f} MiB/s, fio seq {seq/2**20:,.0f} MiB/s, fio fdatasync/16k {syn/2**20:,.1f} MiB/s")
PY
done

# --- 2. brokers ------------------------------------------------------------------------------
start_sluice sluice
start_kafka
sleep 5
python3 - "$OUT/machine/brokers.json" "$(rss sluice)" "$(rss kafka)" \
    "$(tr '\0' ' ' </proc/"${PID[kafka]}"/cmdline | sed 's/-cp [^ ]* /-cp <kafka libs> /')" \
    "$(grep -v '^#' "$WORK/kafka/server.properties" | tr '\n' ';')" <<'PY'
import json, sys
s, k = (list(map(int, x.split())) for x in sys.argv[2:4])
json.dump({
    "sluice": {"idle_rss_kib": s[0], "idle_anon_kib": s[1], "settings": "defaults (log.flush.policy=os), group.initial.rebalance.delay.ms=0"},
    "kafka": {"idle_rss_kib": k[0], "idle_anon_kib": k[1], "cmdline": sys.argv[4], "server_properties": sys.argv[5]},
}, open(sys.argv[1], "w"), indent=2)
PY
log "idle RSS: sluice $(rss sluice) KiB, kafka $(rss kafka) KiB (rss anon)"

log "warm-up (not recorded)"
for b in sluice kafka; do
    "$BENCH" produce --bootstrap "${ADDR[$b]}" --topic warmup --duration "${WARMUP}s" --acks 1 \
        --quiet --json >/dev/null
    "$BENCH" consume --bootstrap "${ADDR[$b]}" --topic warmup --quiet --json --delete-topic >/dev/null
done

# --- 3. scenarios ----------------------------------------------------------------------------
# Produce: 100 B and 1 KiB, 1 and 12 partitions, acks=1 and acks=all; one producer.
PRODUCE_MATRIX=()
for size in 100 1024; do
    for parts in 1 12; do
        for acks in 1 all; do PRODUCE_MATRIX+=("$size:$parts:$acks"); done
    done
done
for r in $(seq 1 "$RUNS"); do
    log "produce scenarios, run $r/$RUNS"
    for m in "${PRODUCE_MATRIX[@]}"; do
        IFS=: read -r size parts acks <<<"$m"
        for b in $(order "$r"); do
            bench "$b" "produce-${size}b-p${parts}-acks${acks}" "$r" produce \
                --topic "p$size-$parts-$acks-r$r" --partitions "$parts" --record-size "$size" \
                --acks "$acks" --duration "${DUR}s" --delete-topic
        done
    done
    log "many producers: 100 producers on 1 and on 1,000 partitions, run $r/$RUNS"
    for b in $(order "$r"); do
        bench "$b" "produce-100b-p1-x100" "$r" produce --topic "x100-1-r$r" --partitions 1 \
            --producers 100 --acks 1 --duration "${DUR}s" --delete-topic
        bench "$b" "produce-100b-p1000-x100" "$r" produce --topic "x100-1000-r$r" \
            --partitions 1000 --producers 100 --acks 1 --duration "${P1000_DUR}s" --delete-topic
    done
    # The fsync scenario below without the fsync: what this client and broker reach anyway.
    bench sluice produce-1k-p12-acksall-x16 "$r" produce --topic "nofsync-r$r" --partitions 12 \
        --producers 16 --record-size 1024 --acks all --duration "${DUR}s" --delete-topic
done

# Replay: load once per broker (not a figure), then read it back from the page cache.
log "loading $REPLAY_100 x 100 B and $REPLAY_1K x 1 KiB records for the replays"
for b in sluice kafka; do
    bench "$b" load-100b 1 produce --topic replay-100 --partitions 1 --record-size 100 \
        --records "$REPLAY_100" --acks 1 --producers 2 --batch-size 262144 --linger-ms 10
    bench "$b" load-1k 1 produce --topic replay-1k --partitions 1 --record-size 1024 \
        --records "$REPLAY_1K" --acks 1 --producers 2 --batch-size 262144 --linger-ms 10
done
# One unrecorded read of each log first: the figure is a replay from the page cache, and
# with memory kept full (fill_free_memory) the other broker's load can evict part of the
# first one's before it is read. It also maps Sluice's segments once, as any earlier
# reader would have.
log "warming the replay topics (not recorded)"
for b in sluice kafka; do
    for t in replay-100 replay-1k; do
        "$BENCH" consume --bootstrap "${ADDR[$b]}" --topic "$t" --quiet --json >/dev/null
    done
done
for r in $(seq 1 "$RUNS"); do
    log "replay, run $r/$RUNS"
    for b in $(order "$r"); do
        bench "$b" replay-100b "$r" consume --topic replay-100
        bench "$b" replay-1k "$r" consume --topic replay-1k
    done
done

# e2e at half of each broker's own maximum (median produce 100 B, 1 partition, acks=1).
for b in sluice kafka; do
    rate=$(python3 - "$OUT/$b" "$RUNS" <<'PY'
import json, statistics, sys
vals = []
for r in range(1, int(sys.argv[2]) + 1):
    try:
        vals.append(json.load(open(f"{sys.argv[1]}/produce-100b-p1-acks1.r{r}.json"))["streams"][0]["records_per_s"])
    except (OSError, KeyError):
        pass
print(int(statistics.median(vals) / 2) if vals else 0)
PY
    )
    declare "E2E_RATE_$b=$rate"
done
for r in $(seq 1 "$RUNS"); do
    log "e2e at 50% of each broker's maximum, run $r/$RUNS"
    for b in $(order "$r"); do
        var="E2E_RATE_$b"
        if ((${!var} > 0)); then
            bench "$b" e2e-100b-p1-half "$r" e2e --topic "e2e-r$r" --partitions 1 --record-size 100 \
                --acks 1 --rate "${!var}" --duration "${E2E_DUR}s" --delete-topic
        fi
    done
    # Sluice at Kafka's rate too: the same load on the client for both brokers.
    if ((E2E_RATE_kafka > 0)); then
        bench sluice e2e-100b-p1-kafkarate "$r" e2e --topic "e2e-k-r$r" --partitions 1 \
            --record-size 100 --acks 1 --rate "$E2E_RATE_kafka" --duration "${E2E_DUR}s" --delete-topic
    fi
done

# --- 4. cross-checks with other clients ------------------------------------------------------
# xc BROKER NAME RUN COMMAND...: times a command; RECORDS and BYTES say what it moved.
xc() {
    local broker="$1" name="$2" run="$3"
    shift 3
    local file="$OUT/$broker/xc-$name.r$run.json"
    local t0 t1 rc=0
    [[ "$name" != *produce* ]] || fill_free_memory
    t0=$(date +%s.%N)
    "$@" >"$WORK/xc.out" 2>"$WORK/xc.err" || rc=$?
    t1=$(date +%s.%N)
    python3 - "$file" "$name" "$t0" "$t1" "$rc" "$RECORDS" "$BYTES" "$WORK/xc.out" "$WORK/xc.err" <<'PY' >&2
import json, re, sys
file, name, t0, t1, rc, records, nbytes, out, err = sys.argv[1:]
seconds = float(t1) - float(t0)
text = open(out, errors="replace").read()
res = {"tool": name, "exit_code": int(rc), "wall_s": round(seconds, 3)}
records, nbytes = int(records), int(nbytes)
if name.startswith("kcat"):
    if name == "kcat-consume":
        got = int(text.split()[0]) if text.split() else 0
        res["records_seen"] = got
        ok = got == records
    else:
        ok = "ERROR" not in open(err, errors="replace").read()
    res.update(records=records, records_per_s=round(records / seconds, 1),
               mib_per_s=round(nbytes / seconds / 2**20, 3), timing="wall clock of the kcat process")
    if not ok or int(rc):
        res["failed"] = open(err, errors="replace").read()[-500:] or "count mismatch"
elif name == "producer-performance":
    m = re.findall(r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
                   r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th", text)
    if m:
        n, rps, mbs, avg, mx, p50, p95, p99 = m[-1]
        res.update(records=int(n), records_per_s=float(rps), mib_per_s=float(mbs),
                   latency_ms={"avg": float(avg), "p50": int(p50), "p99": int(p99), "max": float(mx)},
                   timing="ProducerPerformance's own summary")
    else:
        res["failed"] = (text + open(err, errors="replace").read())[-500:]
elif name == "consumer-performance":
    rows = [l for l in text.splitlines() if re.match(r"\d{4}-", l)]
    if rows:
        f = [x.strip() for x in rows[-1].split(",")]
        res.update(records=int(f[4]), records_per_s=float(f[5]), mib_per_s=float(f[3]),
                   fetch_records_per_s=float(f[9]), fetch_mib_per_s=float(f[8]),
                   timing="ConsumerPerformance's own summary (nMsg.sec, including the group join)")
    else:
        res["failed"] = (text + open(err, errors="replace").read())[-500:]
json.dump(res, open(file, "w"), indent=2)
print(f"  {file.split('/')[-2]:<12} xc-{name:<23} : " + (
    f"{res['records_per_s']:,.0f} rec/s {res['mib_per_s']:.1f} MiB/s" if "failed" not in res
    else "FAILED " + res["failed"][-200:].replace("\n", " ")))
PY
}

log "cross-check inputs: $XC_RECORDS lines of 100 bytes for kcat"
python3 - "$WORK/lines-100" "$XC_RECORDS" <<'PY'
import random, string, sys
rng = random.Random(1)
line = "".join(rng.choice(string.ascii_uppercase) for _ in range(100)) + "\n"
with open(sys.argv[1], "w") as f:
    f.write(line * int(sys.argv[2]))
PY
for r in $(seq 1 "$RUNS"); do
    log "cross-checks, run $r/$RUNS"
    for b in $(order "$r"); do
        create_topic "$b" "xc-kcat-r$r" 1
        RECORDS=$XC_RECORDS BYTES=$((XC_RECORDS * 100)) xc "$b" kcat-produce "$r" \
            kcat -P -b "${ADDR[$b]}" -t "xc-kcat-r$r" -X acks=1 -X linger.ms=5 \
            -X batch.size=16384 -X compression.codec=none -l "$WORK/lines-100"
        create_topic "$b" "xc-pp-r$r" 1
        RECORDS=$XC_RECORDS BYTES=$((XC_RECORDS * 100)) xc "$b" producer-performance "$r" \
            scripts/peers/kafka.sh run org.apache.kafka.tools.ProducerPerformance \
            --topic "xc-pp-r$r" --num-records "$XC_RECORDS" --record-size 100 --throughput -1 \
            --command-property "bootstrap.servers=${ADDR[$b]}" acks=1 linger.ms=5 batch.size=16384
        RECORDS=$XC_RECORDS BYTES=$((XC_RECORDS * 100)) xc "$b" kcat-consume "$r" \
            sh -c "kcat -C -b '${ADDR[$b]}' -t replay-100 -o beginning -c $XC_RECORDS -e -q -f '\n' | wc -l"
        RECORDS=$XC_RECORDS BYTES=$((XC_RECORDS * 100)) xc "$b" consumer-performance "$r" \
            scripts/peers/kafka.sh run org.apache.kafka.tools.ConsumerPerformance \
            --bootstrap-server "${ADDR[$b]}" --topic replay-100 --num-records "$XC_RECORDS" \
            --timeout 60000
    done
done

# acks=all with fsync before the ack (group commit), many producers: Sluice only; the
# baseline is fio on the same file system.
stop_sluice sluice
start_sluice sluice-fsync SLUICE_LOG_FLUSH_POLICY=always
for r in $(seq 1 "$RUNS"); do
    log "fsync before ack, run $r/$RUNS"
    bench sluice-fsync produce-1k-p12-acksall-x16-fsync "$r" produce --topic "fsync-r$r" \
        --partitions 12 --producers 16 --record-size 1024 --acks all --duration "${DUR}s" \
        --delete-topic
done
stop_sluice sluice-fsync

log "all measurements done in $(((SECONDS - STARTED) / 60)) min; writing $REPORT"

# --- 5. the report -------------------------------------------------------------------------
python3 - "$OUT" "$REPORT" "$((SECONDS - STARTED))" <<'PY'
import glob, json, os, statistics, sys

out, report_path, took = sys.argv[1], sys.argv[2], int(sys.argv[3])
machine = json.load(open(f"{out}/machine/machine.json"))
brokers = json.load(open(f"{out}/machine/brokers.json"))
RUNS = machine["runs"]

def load(path):
    try:
        d = json.load(open(path))
    except (OSError, ValueError):
        return None
    return None if "failed" in d else d

def runs(broker, scenario):
    return [d for r in range(1, RUNS + 1) if (d := load(f"{out}/{broker}/{scenario}.r{r}.json"))]

def stream(d, name):
    return next(s for s in d["streams"] if s["name"] == name)

class Fig:
    """min / median / max of one figure over the runs."""
    def __init__(self, values):
        self.values = [v for v in values if v is not None]
    def ok(self):
        return len(self.values) > 0
    @property
    def med(self):
        return statistics.median(self.values)
    def fmt(self, f):
        if not self.ok():
            return "failed"
        v = sorted(self.values)
        if len(v) == 1:
            return f(v[0])
        return f"{f(self.med)} ({f(v[0])}–{f(v[-1])})"

def fig(broker, scenario, get):
    vals = []
    for d in runs(broker, scenario):
        try:
            vals.append(get(d))
        except (KeyError, StopIteration, TypeError, ZeroDivisionError):
            pass
    return Fig(vals)

def ratio(a, b):
    if not (a.ok() and b.ok()) or b.med == 0:
        return None
    return a.med / b.med

def rfmt(x):
    return "n/a (baseline missing)" if x is None else f"{x:.2f}×"

n0 = lambda x: f"{x:,.0f}"
n1 = lambda x: f"{x:,.1f}"
n2 = lambda x: f"{x:,.2f}"
ms = lambda us: f"{us/1000:,.2f} ms"
mib = lambda kib: f"{kib/1024:,.0f} MiB"

rps = lambda name: (lambda d: stream(d, name)["records_per_s"])
mbs = lambda name: (lambda d: stream(d, name)["mib_per_s"])
lat = lambda name, q: (lambda d: stream(d, name)["latency"][q] if stream(d, name)["latency"]["count"] else None)

def machine_fig(kind):
    vals = []
    for r in range(1, RUNS + 1):
        try:
            if kind == "iperf3":
                j = json.load(open(f"{out}/machine/iperf3.r{r}.json"))
                vals.append(j["end"]["sum_received"]["bits_per_second"] / 8 / 2**20)
            else:
                j = json.load(open(f"{out}/machine/fio-{kind}.r{r}.json"))
                vals.append(j["jobs"][0]["write"]["bw_bytes"] / 2**20)
        except (OSError, ValueError, KeyError):
            pass
    return Fig(vals)

iperf, fio_seq, fio_sync = machine_fig("iperf3"), machine_fig("seq"), machine_fig("sync")
L = []
w = L.append
w(f"_Generated by `scripts/bench.sh` ({machine['mode']} mode, {RUNS} run(s) per figure) on "
  f"{machine['date']}, commit `{machine['commit'] or '?'}`; the whole run took {took // 60} min. "
  f"Figures are median (min–max) over the runs; ratios are of medians. Raw JSON: `{out}/`._")
w("")
w("### Conditions")
w("")
w(f"- Machine: {machine['cores']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB memory, "
  f"kernel {machine['kernel']}, file system {machine['filesystem']} (read_ahead_kb {machine['read_ahead_kb'] or '?'}); "
  f"load average at start {' '.join(machine['loadavg_at_start'])}.")
w(f"- Brokers side by side on 127.0.0.1, each with its own temp data dir: Sluice release build, defaults "
  f"(`log.flush.policy=os`) but `group.initial.rebalance.delay.ms=0` as the Kafka peer has it; Apache Kafka 4.4.0 single-node KRaft from `scripts/peers/kafka.sh`, "
  f"{machine['java']}, JVM `{' '.join(a for a in brokers['kafka']['cmdline'].split() if a.startswith('-X'))}`, "
  f"defaults otherwise. One unrecorded warm-up per broker first."
  + (" Before every measured run that writes, free memory is filled with clean page cache (so that both brokers "
     "write into memory the VM holds, not memory handed back to the host: see below)."
     if machine.get("fill_memory") else ""))
w(f"- Client: `sluice-bench` (release) for both, on the same 2 cores as the broker under test; "
  f"the idle broker waits beside. Produce settings unless said: 1 producer, linger.ms=5, batch.size=16384, "
  f"no compression, no keys. Cross-checks: {machine['kcat']}; Kafka's ProducerPerformance / "
  f"ConsumerPerformance 4.4.0 (tool JVM -Xmx{os.environ.get('SLUICE_KAFKA_TOOL_HEAP', '512m')}).")
w("")
w("### Machine limits (same run)")
w("")
w("| limit | value |")
w("|---|---|")
w(f"| iperf3 loopback, one stream | {iperf.fmt(n0)} MiB/s |")
w(f"| fio sequential write, 1 MiB blocks, fsync at end | {fio_seq.fmt(n0)} MiB/s |")
w(f"| fio write + fdatasync per 16 KiB block | {fio_sync.fmt(n1)} MiB/s |")
w("")

targets = []
def target(name, value, goal, met, why=""):
    targets.append((name, value, goal, met))

w("### Produce (one producer, 10 s per run unless said)" if machine["mode"] == "full" else "### Produce (one producer)")
w("")
w("| records | partitions | acks | Sluice records/s | Kafka records/s | ratio | Sluice MiB/s | Kafka MiB/s | Sluice p99 | Kafka p99 |")
w("|---|---|---|---|---|---|---|---|---|---|")
for size in (100, 1024):
    for parts in (1, 12):
        for acks in ("1", "all"):
            sc = f"produce-{size}b-p{parts}-acks{acks}"
            s, k = fig("sluice", sc, rps("produce")), fig("kafka", sc, rps("produce"))
            sm, km = fig("sluice", sc, mbs("produce")), fig("kafka", sc, mbs("produce"))
            sl, kl = fig("sluice", sc, lat("produce", "p99_us")), fig("kafka", sc, lat("produce", "p99_us"))
            w(f"| {size} B | {parts} | {acks} | {s.fmt(n0)} | {k.fmt(n0)} | {rfmt(ratio(s, k))} | "
              f"{sm.fmt(n1)} | {km.fmt(n1)} | {sl.fmt(ms)} | {kl.fmt(ms)} |")
            if sc == "produce-100b-p1-acks1":
                x = ratio(s, k)
                target("produce 100 B, 1 partition, acks=1: Sluice / Kafka records/s", rfmt(x), "≥ 2×",
                       x is not None and x >= 2)
w("")
w("Latency here is send-to-acknowledgement of a closed loop (the producer sends as fast as its "
  "buffer allows), so it mostly measures queueing inside the client, not the broker.")
w("")

w("### Many producers, many partitions (100 producers, 100 B, acks=1)")
w("")
w("| scenario | Sluice records/s | Kafka records/s | ratio | Sluice 2nd half records/s | Kafka 2nd half records/s |")
w("|---|---|---|---|---|---|")
def second_half(name):
    def get(d):
        s = stream(d, name)
        iv = s["intervals"]
        half = s["elapsed_s"] / 2
        late = [i for i in iv if i["at_s"] > half]
        span = late[-1]["at_s"] - max([i["at_s"] for i in iv if i["at_s"] <= half] or [0])
        return sum(i["records"] for i in late) / span
    return get
for sc, label in (("produce-100b-p1-x100", "1 partition"), ("produce-100b-p1000-x100", "1,000 partitions")):
    s, k = fig("sluice", sc, rps("produce")), fig("kafka", sc, rps("produce"))
    s2, k2 = fig("sluice", sc, second_half("produce")), fig("kafka", sc, second_half("produce"))
    w(f"| {label} | {s.fmt(n0)} | {k.fmt(n0)} | {rfmt(ratio(s, k))} | {s2.fmt(n0)} | {k2.fmt(n0)} |")
for b, name in (("sluice", "Sluice"), ("kafka", "Kafka")):
    p1000 = fig(b, "produce-100b-p1000-x100", rps("produce"))
    p1x = fig(b, "produce-100b-p1-x100", rps("produce"))
    p1 = fig(b, "produce-100b-p1-acks1", rps("produce"))
    p1000h = fig(b, "produce-100b-p1000-x100", second_half("produce"))
    w("")
    w(f"- {name}: 1,000 partitions / 1 partition with the same 100 producers: {rfmt(ratio(p1000, p1x))} "
      f"(whole run), {rfmt(ratio(p1000h, p1x))} (second half of the run); / one producer on 1 partition: {rfmt(ratio(p1000, p1))}.")
    if b == "sluice":
        x = ratio(p1000, p1x)
        target("1,000 partitions / 1 partition throughput (Sluice, 100 producers, whole run)", rfmt(x), "≥ 0.70×",
               x is not None and x >= 0.7)
w("")

w("### Replay from the page cache (1 consumer, 1 partition, from the earliest offset)")
w("")
w("| records | Sluice records/s | Kafka records/s | ratio | Sluice MiB/s | Kafka MiB/s | Sluice / iperf3 |")
w("|---|---|---|---|---|---|---|")
for sc, label in (("replay-100b", "100 B"), ("replay-1k", "1 KiB")):
    s, k = fig("sluice", sc, rps("consume")), fig("kafka", sc, rps("consume"))
    sm, km = fig("sluice", sc, mbs("consume")), fig("kafka", sc, mbs("consume"))
    count = (runs("sluice", sc) or runs("kafka", sc) or [{"checks": {"expected": 0}}])[0]["checks"]["expected"]
    w(f"| {count:,} × {label} | {s.fmt(n0)} | {k.fmt(n0)} | {rfmt(ratio(s, k))} | {sm.fmt(n1)} | {km.fmt(n1)} | {rfmt(ratio(sm, iperf))} |")
    if sc == "replay-100b":
        x = ratio(s, k)
        target("replay 100 B from page cache: Sluice / Kafka records/s", rfmt(x), "≥ 2×", x is not None and x >= 2)
    else:
        x = ratio(s, k)
        target("replay 1 KiB: Sluice / Kafka records/s", rfmt(x), "≥ 2×", x is not None and x >= 2)
        x = ratio(sm, iperf)
        target("replay 1 KiB: Sluice MiB/s / iperf3 loopback", rfmt(x), "≥ 0.50×", x is not None and x >= 0.5)
w("")

w("### End-to-end latency at 50% of each broker's own maximum (100 B, 1 partition, acks=1, open loop)")
w("")
w("| broker | rate (records/s) | p50 | p99 | p99.9 | max | missing |")
w("|---|---|---|---|---|---|---|")
e2e = {}
for b, name in (("sluice", "Sluice"), ("kafka", "Kafka")):
    sc = "e2e-100b-p1-half"
    rs = runs(b, sc)
    rate = rs[0]["settings"]["rate"] if rs else 0
    f = {q: fig(b, sc, lat("consume", q)) for q in ("p50_us", "p99_us", "p999_us", "max_us")}
    miss = fig(b, sc, lambda d: d["checks"]["missing"])
    e2e[b] = f
    w(f"| {name} | {rate:,.0f} | {f['p50_us'].fmt(ms)} | {f['p99_us'].fmt(ms)} | {f['p999_us'].fmt(ms)} | "
      f"{f['max_us'].fmt(ms)} | {miss.fmt(n0)} |")
rs = runs("sluice", "e2e-100b-p1-kafkarate")
if rs:
    f = {q: fig("sluice", "e2e-100b-p1-kafkarate", lat("consume", q)) for q in ("p50_us", "p99_us", "p999_us", "max_us")}
    miss = fig("sluice", "e2e-100b-p1-kafkarate", lambda d: d["checks"]["missing"])
    w(f"| Sluice at Kafka's rate | {rs[0]['settings']['rate']:,.0f} | {f['p50_us'].fmt(ms)} | {f['p99_us'].fmt(ms)} | "
      f"{f['p999_us'].fmt(ms)} | {f['max_us'].fmt(ms)} | {miss.fmt(n0)} |")
    same = ratio(f["p99_us"], e2e["kafka"]["p99_us"])
x = ratio(e2e["sluice"]["p99_us"], e2e["kafka"]["p99_us"])
target("e2e p99 at 50% of each broker's own maximum: Sluice / Kafka", rfmt(x), "≤ 0.50×", x is not None and x <= 0.5)
if rs:
    target("(extra) e2e p99, both at Kafka's 50% rate: Sluice / Kafka", rfmt(same), "≤ 0.50×", same is not None and same <= 0.5)
w("")
w("Latency runs from each record's intended send time on the open-loop schedule to its receipt "
  "by the consumer (coordinated-omission corrected); both rates include the client's batching "
  "(linger.ms=5, batch.size=16384).")
w("")

w("### Durable acks: acks=all with fsync before the ack (Sluice `log.flush.policy=always`)")
w("")
f = fig("sluice-fsync", "produce-1k-p12-acksall-x16-fsync", mbs("produce"))
fr = fig("sluice-fsync", "produce-1k-p12-acksall-x16-fsync", rps("produce"))
fl = fig("sluice-fsync", "produce-1k-p12-acksall-x16-fsync", lat("produce", "p99_us"))
w("| scenario | records/s | MiB/s | p99 | / fio sequential | / fio fdatasync per 16 KiB |")
w("|---|---|---|---|---|---|")
w(f"| 16 producers, 12 partitions, 1 KiB | {fr.fmt(n0)} | {f.fmt(n1)} | {fl.fmt(ms)} | {rfmt(ratio(f, fio_seq))} | {rfmt(ratio(f, fio_sync))} |")
nf = fig("sluice", "produce-1k-p12-acksall-x16", mbs("produce"))
nfr = fig("sluice", "produce-1k-p12-acksall-x16", rps("produce"))
nfl = fig("sluice", "produce-1k-p12-acksall-x16", lat("produce", "p99_us"))
w(f"| the same without fsync (`log.flush.policy=os`) | {nfr.fmt(n0)} | {nf.fmt(n1)} | {nfl.fmt(ms)} | {rfmt(ratio(nf, fio_seq))} | {rfmt(ratio(nf, fio_sync))} |")
w("")
w(f"With fsync before every ack, Sluice keeps {rfmt(ratio(f, nf))} of its own throughput without fsync "
  f"(the client's and broker's ceiling for this scenario on this machine).")
x = ratio(f, fio_seq)
target("acks=all + fsync, 16 producers: MiB/s / fio sequential", rfmt(x), "≥ 0.60×", x is not None and x >= 0.6)
w("")

w("### Broker resources")
w("")
w("| | Sluice | Kafka | ratio |")
w("|---|---|---|---|")
si, ki = Fig([brokers["sluice"]["idle_rss_kib"]]), Fig([brokers["kafka"]["idle_rss_kib"]])
w(f"| RSS idle (after start) | {si.fmt(mib)} | {ki.fmt(mib)} | {rfmt(ratio(si, ki))} |")
sa, ka = Fig([brokers["sluice"]["idle_anon_kib"]]), Fig([brokers["kafka"]["idle_anon_kib"]])
w(f"| anonymous RSS idle | {sa.fmt(mib)} | {ka.fmt(mib)} | {rfmt(ratio(sa, ka))} |")
for sc, label in (("produce-100b-p1000-x100", "1,000 partitions, 100 producers"),
                  ("produce-100b-p1-acks1", "produce 100 B, 1 partition")):
    s, k = fig("sluice", sc, lambda d: d["broker"]["rss_end_kib"]), fig("kafka", sc, lambda d: d["broker"]["rss_end_kib"])
    w(f"| RSS at the end of: {label} | {s.fmt(mib)} | {k.fmt(mib)} | {rfmt(ratio(s, k))} |")
    sa, ka = fig("sluice", sc, lambda d: d["broker"]["anon_end_kib"]), fig("kafka", sc, lambda d: d["broker"]["anon_end_kib"])
    w(f"| anonymous RSS at the end of: {label} | {sa.fmt(mib)} | {ka.fmt(mib)} | {rfmt(ratio(sa, ka))} |")
    if sc == "produce-100b-p1000-x100":
        x = ratio(s, k)
        target("broker RSS under load (end of 1,000 partitions × 100 producers): Sluice / Kafka", rfmt(x), "≤ 0.25×",
               x is not None and x <= 0.25)
for sc, label in (("produce-100b-p1-acks1", "produce 100 B, 1 partition, acks=1"),
                  ("produce-1024b-p12-acks1", "produce 1 KiB, 12 partitions, acks=1"),
                  ("replay-100b", "replay 100 B"), ("replay-1k", "replay 1 KiB")):
    s, k = fig("sluice", sc, lambda d: d["broker_cpu_s_per_gb"]), fig("kafka", sc, lambda d: d["broker_cpu_s_per_gb"])
    w(f"| broker CPU s per GB: {label} | {s.fmt(n2)} | {k.fmt(n2)} | {rfmt(ratio(s, k))} |")
w("")
w("RSS counts mapped file pages: Sluice maps its segments and indexes, so pages it has read or written "
  "show up in its RSS although they belong to the page cache; the anonymous part is the process's own memory. "
  "Kafka's RSS is mostly its heap (`-Xms` = `-Xmx`, touched as it is used). CPU seconds come from "
  "`/proc/PID/stat` (utime + stime) over the run, per 10^9 payload bytes.")
w("")

w("### Cross-check with other clients (100 B, 1 partition, acks=1, linger.ms=5, batch.size=16384)")
w("")
w("| client | Sluice records/s | Kafka records/s | ratio |")
w("|---|---|---|---|")
xc_fetch = lambda d: d["fetch_records_per_s"]
for name, label in (("kcat-produce", "kcat produce (wall clock incl. start)"),
                    ("producer-performance", "Kafka ProducerPerformance"),
                    ("kcat-consume", "kcat consume from the start of the 100 B replay topic (wall clock)"),
                    ("consumer-performance", "Kafka ConsumerPerformance, same records")):
    s, k = fig("sluice", f"xc-{name}", lambda d: d["records_per_s"]), fig("kafka", f"xc-{name}", lambda d: d["records_per_s"])
    w(f"| {label} | {s.fmt(n0)} | {k.fmt(n0)} | {rfmt(ratio(s, k))} |")
    if name == "consumer-performance":
        s, k = fig("sluice", f"xc-{name}", xc_fetch), fig("kafka", f"xc-{name}", xc_fetch)
        w(f"| Kafka ConsumerPerformance, fetch only (fetch.nMsg.sec: without the group join) | {s.fmt(n0)} | {k.fmt(n0)} | {rfmt(ratio(s, k))} |")
s = fig("sluice", "produce-100b-p1-acks1", rps("produce")); k = fig("kafka", "produce-100b-p1-acks1", rps("produce"))
w(f"| sluice-bench produce (from above) | {s.fmt(n0)} | {k.fmt(n0)} | {rfmt(ratio(s, k))} |")
s = fig("sluice", "replay-100b", rps("consume")); k = fig("kafka", "replay-100b", rps("consume"))
w(f"| sluice-bench consume (from above) | {s.fmt(n0)} | {k.fmt(n0)} | {rfmt(ratio(s, k))} |")
w("")

w("### Targets")
w("")
w("| target | measured | goal | met |")
w("|---|---|---|---|")
for name, value, goal, met in targets:
    w(f"| {name} | {value} | {goal} | {'yes' if met else '**no**'} |")

block = "\n".join(L) + "\n"
begin, end = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
try:
    text = open(report_path).read()
except OSError:
    text = ""
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    text = head + begin + "\n" + block + end + rest.split(end, 1)[1]
else:
    text = (text or "# Benchmarks\n\n") + f"\n{begin}\n{block}{end}\n"
os.makedirs(os.path.dirname(report_path) or ".", exist_ok=True)
open(report_path, "w").write(text)
print(block)
PY
log "done: $REPORT"
