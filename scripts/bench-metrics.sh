#!/usr/bin/env bash
# What the metrics cost on the hot path: produce and replay with sluice-bench against
#   baseline  the broker built from --baseline REV (default 52a3851^, the last commit
#             before the metrics existed: no counters, no stage timing, no admin listener);
#   metrics   this tree's broker, scraped once a second (GET /metrics, as Prometheus would);
# on a fresh broker per run, interleaved (the order alternates every run), medians of
# --runs runs, and per mode the median of its ratio to the baseline run next to it.
#
#   scripts/bench-metrics.sh [--runs N] [--seconds S] [--baseline REV]
#
# The baseline is built once into target/bench-baseline (a git worktree of REV with its
# own target directory). Everything runs on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

runs=5
seconds=4
baseline=52a3851^
while (($#)); do
    case "$1" in
        --runs) runs="$2"; shift ;;
        --seconds) seconds="$2"; shift ;;
        --baseline) baseline="$2"; shift ;;
        -h | --help) awk 'NR > 1 && !/^#/ {exit} NR > 1' "$0"; exit 0 ;;
        *) echo "bench-metrics.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

cargo build --release --quiet --bin sluice-broker --bin sluice-bench
BENCH=target/release/sluice-bench
BASE_DIR=target/bench-baseline
base_rev="$(git rev-parse --verify "$baseline^{commit}")"
if [[ "$(cat "$BASE_DIR/rev" 2>/dev/null)" != "$base_rev" ]]; then
    rm -rf "$BASE_DIR"
    git worktree prune
    git worktree add --detach --quiet "$BASE_DIR/src" "$base_rev"
    echo "building the baseline broker ($base_rev)..." >&2
    (cd "$BASE_DIR/src" && CARGO_TARGET_DIR="$PWD/../target" cargo build --release --quiet --bin sluice-broker)
    echo "$base_rev" >"$BASE_DIR/rev"
fi
declare -A BROKER=([baseline]="$BASE_DIR/target/release/sluice-broker" [metrics]=target/release/sluice-broker)

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# start MODE DIR: sets ADDR, PID and (metrics) ADMIN.
start() {
    local mode="$1" dir="$2"
    mkdir -p "$dir"
    SLUICE_ADMIN_LISTENERS=127.0.0.1:0 RUST_LOG=warn "${BROKER[$mode]}" --listen 127.0.0.1:0 \
        --data-dir "$dir/data" >"$dir/stdout" 2>"$dir/stderr" </dev/null &
    PID=$!
    PIDS+=("$PID")
    local deadline=$((SECONDS + 30))
    until grep -q '^listening on ' "$dir/stdout" 2>/dev/null; do
        kill -0 "$PID" 2>/dev/null || { cat "$dir/stderr" >&2; exit 1; }
        ((SECONDS < deadline)) || { echo "broker did not start" >&2; exit 1; }
        sleep 0.1
    done
    ADDR="$(sed -n 's/^listening on //p' "$dir/stdout" | head -n1)"
    ADMIN="$(sed -n 's/^admin listener on //p' "$dir/stdout" | head -n1)"
}

# scrape ADMIN: GET /metrics every second until killed.
scrape() {
    while sleep 1; do curl -sf -o /dev/null "http://$1/metrics" || true; done
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
for ((run = 1; run <= runs; run++)); do
    order=(baseline metrics)
    ((run % 2)) || order=(metrics baseline)
    for mode in "${order[@]}"; do
        dir="$WORK/$mode-$run"
        start "$mode" "$dir"
        scraper=""
        if [[ "$mode" == metrics ]]; then
            scrape "$ADMIN" &
            scraper=$!
        fi
        produce="$("$BENCH" produce --bootstrap "$ADDR" --broker-pid "$PID" --json --quiet \
            --record-size 100 --acks 1 --duration "${seconds}s")"
        consume="$("$BENCH" consume --bootstrap "$ADDR" --broker-pid "$PID" --json --quiet)"
        if [[ -n "$scraper" ]]; then
            kill "$scraper" 2>/dev/null || true
            wait "$scraper" 2>/dev/null || true
        fi
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

python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
print("| stream | mode | records/s (median, min–max) | ÷ baseline (median of runs) | broker CPU s/GB (median) | ÷ baseline |")
print("|---|---|---|---|---|---|")
for stream in ("produce", "replay"):
    by = {m: {int(r[2]): (float(r[3]), float(r[4])) for r in rows if r[0] == stream and r[1] == m}
          for m in ("baseline", "metrics")}
    for m, runs in by.items():
        rates = [v[0] for v in runs.values()]
        cpu = [v[1] for v in runs.values()]
        ratio = cpu_ratio = ""
        if m == "metrics":
            ratios = [runs[k][0] / by["baseline"][k][0] for k in runs if k in by["baseline"]]
            cpus = [runs[k][1] / by["baseline"][k][1] for k in runs if k in by["baseline"] and by["baseline"][k][1]]
            ratio = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})"
            cpu_ratio = f"{statistics.median(cpus):.2f}" if cpus else ""
        print(f"| {stream} | {m} | {statistics.median(rates)/1e6:.2f} M ({min(rates)/1e6:.2f}–{max(rates)/1e6:.2f}) "
              f"| {ratio} | {statistics.median(cpu):.2f} | {cpu_ratio} |")
PY
