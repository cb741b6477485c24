#!/usr/bin/env bash
# Storage benchmarks beside the machine's own disk bandwidth, in one run.
#
# 1. fio: sequential buffered writes of 16 KiB blocks, 2 GiB, one fsync at the end (the
#    bandwidth an append-only log can hope for), on the same file system as the logs.
# 2. criterion: storage/benches/log.rs (append with policy OS and `always`, reads,
#    lookups).
# Prints both; docs/storage.md records the last run. Needs fio (scripts/deps.sh --bench).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_DIR="${SLUICE_BENCH_DIR:-$(mktemp -d)}"
export SLUICE_BENCH_DIR="$BENCH_DIR"
trap 'rm -rf "$BENCH_DIR/fio-seqwrite" "$BENCH_DIR"/fio*' EXIT

command -v fio >/dev/null || scripts/deps.sh --bench

echo "== machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, kernel $(uname -r)"
echo "== fio: --rw=write --bs=16k --size=2G --end_fsync=1 in $BENCH_DIR"
fio --name=seqwrite --directory="$BENCH_DIR" --rw=write --bs=16k --size=2G --end_fsync=1 \
    --output-format=json >"$BENCH_DIR/fio.json"
python3 - "$BENCH_DIR/fio.json" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]["write"]
print(f"fio buffered 16k seq write + end fsync: {job['bw_bytes'] / 2**20:.0f} MiB/s")
PY
rm -f "$BENCH_DIR"/seqwrite*
echo "== fio: --rw=write --bs=16k --size=512M --fdatasync=1 (a sync per block)"
fio --name=syncwrite --directory="$BENCH_DIR" --rw=write --bs=16k --size=512M --fdatasync=1 \
    --output-format=json >"$BENCH_DIR/fio-sync.json"
python3 - "$BENCH_DIR/fio-sync.json" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]["write"]
print(f"fio 16k write + fdatasync each: {job['bw_bytes'] / 2**20:.0f} MiB/s")
PY
rm -f "$BENCH_DIR"/syncwrite*
echo "== criterion"
cargo bench -p sluice-storage --bench log -- "$@"
