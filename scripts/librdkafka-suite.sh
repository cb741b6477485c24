#!/usr/bin/env bash
# librdkafka's own integration test suite (its tests/ directory and test-runner) against one
# fresh broker: Sluice or Apache Kafka 4.4 (issue 22; results in docs/librdkafka-suite.md).
#
#   scripts/librdkafka-suite.sh build
#       fetch librdkafka's source with `cargo fetch` of rdkafka-sys =4.10.0 (it bundles
#       librdkafka 2.12.1 with its tests/; manifest in scripts/librdkafka/), copy it to
#       target/librdkafka-suite/ and build the library and tests/test-runner there. Cached:
#       a second `build` is a no-op.
#   scripts/librdkafka-suite.sh run [--target sluice|kafka] [--ids "0001 0002 ..."|--quick|--all]
#                                   [--broker-bin PATH] [--timeout S]
#       build if needed, start one fresh broker on 127.0.0.1 (Sluice: a copy of
#       --broker-bin, default target/release/sluice-broker; Kafka: scripts/peers/kafka.sh),
#       run each selected test id in its own test-runner process in full mode (not -Q),
#       print a table (id, name, PASSED/FAILED/SKIPPED/TIMEOUT, seconds) and a summary.
#       Defaults: --target sluice, --quick, --timeout 900 (seconds per test id; the slowest,
#       0081_admin, takes about 400 s on this 2-core machine).
#       Exits non-zero if a selected test fails or times out (SKIPPED is not a failure).
#   scripts/librdkafka-suite.sh list [--quick|--all]
#       print the selected ids with their names.
#
# Logs: target/librdkafka-suite/logs/<target>/<id>.log (test-runner output), <id>.json (its
# report), broker.log, results.tsv (the table). Needs gcc, g++, make, python3, curl, and the
# headers `scripts/deps.sh --librdkafka` installs (zlib, zstd, rapidjson; `build` runs it);
# Kafka needs `scripts/deps.sh --kafka`.
#
# Environment: CARGO_TARGET_DIR (default ./target); TEST_DEBUG / TEST_LEVEL are passed to
# the test-runner (librdkafka debug contexts, verbosity) for troubleshooting one test.
#
# Selection (--all, 76 ids). Every id of tests/test.c that test-runner runs against a real
# broker in non-local mode on a plain PLAINTEXT cluster, i.e. `test-runner -L -E` with the
# default scenario: at least one of its entries is not TEST_F_LOCAL (no broker needed),
# TEST_F_SOCKEM (socket fault injection), TEST_F_KNOWN_ISSUE, TEST_F_MANUAL (8xxx), nor only in
# the "noautocreate" scenario (93 ids). Of those, left out because they cannot run here:
#   mock cluster although flagged non-local: 0139 offset_validation_mock, 0150 telemetry_mock
#   a Kafka install path (KAFKA_PATH) for its shell tools or Java, which fail without it:
#     0052 msg_timestamps, 0077 compaction (kafka-topics.sh --config), 0098 consumer_txn
#     (a Java transactional producer), 0109 auto_create_topics, 0115 producer_auth,
#     0119 consumer_auth (kafka-acls.sh), 0113 cooperative_rebalance (a Java consumer)
#   SSL / SASL test configurations: 0097 ssl_verify, 0126 oauthbearer_oidc,
#     0135 sasl_credentials, 0142 reauthentication
#   three brokers (topics with replication factor 3): 0101 fetch_from_follower (with racks),
#     0103 transactions
#   skip by design with Kafka >= 4.0 and the classic group protocol: 0092 mixed_msgver
#     (MsgVersion 1), 0153 memberid (KIP-848 member ids)
# Both brokers get the settings of librdkafka's test clusters (trivup) for one node, and the
# client is told it talks to Kafka 4.4.0 (TEST_KAFKA_VERSION), so the same code paths run on
# both. Ids are whole: an id runs all its broker tests (0045 has three), and its local or
# mock entries are skipped. Results and reasons: docs/librdkafka-suite.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO="$PWD"

RDKAFKA_SYS_VERSION=4.10.0
LIBRDKAFKA_VERSION=2.12.1
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
[[ "$TARGET_DIR" == /* ]] || TARGET_DIR="$REPO/$TARGET_DIR"
SUITE_DIR="$TARGET_DIR/librdkafka-suite"
SRC_DIR="$SUITE_DIR/librdkafka-$LIBRDKAFKA_VERSION"
TESTS_DIR="$SRC_DIR/tests"
MANIFEST="$REPO/scripts/librdkafka/Cargo.toml"
# Only what the selected tests need: no SSL, SASL/GSSAPI or curl (the security and OIDC
# tests are not selected); zlib and zstd are required so that 0017_compression covers every
# codec; lz4 is librdkafka's built-in copy so the build does not depend on liblz4-dev.
CONFIGURE_FLAGS=(--no-download --disable-ssl --disable-gssapi --disable-curl
    --disable-lz4-ext --enable-zlib --enable-zstd)
# Changing any of these rebuilds from a fresh copy of the source.
BUILD_ID="rdkafka-sys=$RDKAFKA_SYS_VERSION librdkafka=$LIBRDKAFKA_VERSION configure=${CONFIGURE_FLAGS[*]}"

# The broker version test-runner assumes: it skips or adapts some tests by version (>= 4.0:
# no MsgVersion 0/1 produce paths; >= 0.10.2: topics made with the Admin API). Sluice serves
# Kafka 4.4's protocol, so both targets get the same value.
TEST_KAFKA_VERSION=4.4.0

# The broker settings of the clusters librdkafka's suite is run on (trivup's KafkaBrokerApp
# with the "default" scenario, tests/scenarios/default.json), for one node, on both brokers.
# Kafka gets them as server.properties lines, Sluice as its SLUICE_* variables.
BROKER_PROPERTIES=(
    auto.create.topics.enable=true
    num.partitions=4
    default.replication.factor=1
    offsets.topic.replication.factor=1
    # Kafka's default, which trivup keeps (kafka.sh sets 0): with 0 the first consumer of a
    # new group is assigned before the second joins, and 0089's timing checks fail on Kafka.
    group.initial.rebalance.delay.ms=3000
    # An authorizer that allows what no ACL covers: 0081_admin creates, describes and
    # deletes ACLs ("No Authorizer is configured" without it).
    authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
    allow.everyone.if.no.acl.found=true
)
# Sluice only: no free-space floor. Below log.dir.min.free.bytes (default 1 GiB here) Sluice
# refuses produce and gives up its leaderships; Kafka has no such floor, and the free space
# of a shared build machine should not decide a protocol suite (it failed 0114 once).
SLUICE_ONLY_PROPERTIES=(
    log.dir.min.free.bytes=0
)

# Every selected id and the name of its (first) broker test; --all runs them in this order.
ALL_TESTS=(
    "0001 multiobj" "0002 unkpart" "0003 msgmaxsize" "0005 order" "0007 autotopic"
    "0008 reqacks" "0011 produce_batch" "0012 produce_consume" "0013 null_msgs"
    "0014 reconsume_191" "0015 offsets_seek" "0016 client_swname" "0017 compression"
    "0018 cgrp_term" "0019 list_groups" "0020 destroy_hang" "0021 rkt_destroy"
    "0022 consume_batch" "0026 consume_pause" "0029 assign_offset" "0030 offset_commit"
    "0031 get_offsets" "0033 regex_subscribe" "0034 offset_reset" "0035 api_version"
    "0036 partial_fetch" "0038 performance" "0039 event_dr" "0040 io_event"
    "0041 fetch_max_bytes" "0042 many_topics" "0044 partition_cnt" "0045 subscribe_update"
    "0048 partitioner" "0050 subscribe_adds" "0051 assign_adds"
    "0053 stats" "0054 offset_time" "0055 producer_latency" "0056 balanced_group_mt"
    "0057 invalid_topic" "0059 bsearch" "0060 op_prio" "0061 consumer_lag" "0063 clusterid"
    "0064 interceptors" "0065 yield" "0067 empty_topic" "0069 consumer_add_parts"
    "0070 null_empty" "0073 headers" "0081 admin" "0082 fetch_max_bytes"
    "0083 cb_event" "0084 destroy_flags" "0085 headers" "0086 purge_remote"
    "0089 max_poll_interval" "0090 idempotence" "0091 max_poll_interval_timeout"
    "0093 holb_consumer" "0099 commit_metadata" "0102 static_group_rebalance"
    "0110 batch_size" "0112 assign_unknown_part"
    "0114 sticky_partitioning" "0118 commit_rebalance"
    "0122 buffer_cleaning_after_rebalance" "0123 connections_max_idle" "0125 immediate_flush"
    "0127 fetch_queue_backoff" "0129 fetch_aborted_msgs" "0130 store_offsets"
    "0132 strategy_ordering" "0137 barrier_batch_consume" "0140 commit_metadata"
)
# --quick (the default; meant for scripts/test.sh): fast ids that pass on both (about 40 s
# of tests): producer objects, message size limits, produce/consume, every codec, the
# consumer group list and a balanced group, ListOffsets, ApiVersions, delivery reports,
# CreatePartitions, headers, the idempotent producer, commits with metadata, stored offsets.
QUICK_IDS="0001 0003 0012 0017 0019 0031 0035 0039 0044 0056 0073 0090 0099 0130"

die() { echo "librdkafka-suite: $*" >&2; exit 1; }
log() { echo "librdkafka-suite: $*" >&2; }

name_of() {
    local entry
    for entry in "${ALL_TESTS[@]}"; do
        if [[ "${entry%% *}" == "$1" ]]; then
            echo "${entry#* }"
            return
        fi
    done
    # An id outside the selection (--ids): its first entry in test.c's list.
    entry="$(grep -o "_TEST($1_[A-Za-z0-9_]*" "$TESTS_DIR/test.c" 2>/dev/null | head -n1 || true)"
    echo "${entry:-_TEST(${1}_?}" | sed "s/^_TEST($1_//"
}

# ---------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------

cmd_build() {
    if [[ -x "$TESTS_DIR/test-runner" && "$(cat "$SUITE_DIR/build.stamp" 2>/dev/null)" == "$BUILD_ID" ]]; then
        log "test-runner is up to date ($TESTS_DIR/test-runner)"
        return 0
    fi
    local started=$SECONDS tool
    for tool in cargo gcc g++ make python3; do
        command -v "$tool" >/dev/null || die "$tool not found"
    done
    # Headers of the libraries configured in (see CONFIGURE_FLAGS); rapidjson is optional
    # for configure, which would silently turn 0053_stats and 0110_batch_size into skips.
    scripts/deps.sh --librdkafka
    local header
    for header in zlib.h zstd.h rapidjson/schema.h; do
        echo "#include <$header>" | g++ -E -x c++ - >/dev/null 2>&1 ||
            die "header <$header> not found: run scripts/deps.sh --librdkafka (zlib1g-dev, libzstd-dev, rapidjson-dev)"
    done

    # The source: rdkafka-sys from crates.io through cargo's own cache (its Cargo.lock is
    # kept beside the manifest; --locked so that it is never rewritten).
    log "cargo fetch (rdkafka-sys =$RDKAFKA_SYS_VERSION)"
    cargo fetch --locked --manifest-path "$MANIFEST" >&2
    local crate_dir
    crate_dir="$(cargo metadata --locked --offline --format-version 1 --manifest-path "$MANIFEST" |
        python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
for p in meta["packages"]:
    if p["name"] == "rdkafka-sys":
        print(os.path.dirname(p["manifest_path"]))
')"
    [[ -f "$crate_dir/librdkafka/tests/test.c" ]] || die "no librdkafka/tests in $crate_dir"
    grep -q "define RD_KAFKA_VERSION  *0x020c01ff" "$crate_dir/librdkafka/src/rdkafka.h" ||
        die "$crate_dir does not bundle librdkafka $LIBRDKAFKA_VERSION"

    # Build in a copy: never inside ~/.cargo/registry (shared, and meant to be read-only).
    mkdir -p "$SUITE_DIR"
    rm -rf "$SRC_DIR" "$SRC_DIR.tmp" "$SUITE_DIR/build.stamp"
    cp -R "$crate_dir/librdkafka" "$SRC_DIR.tmp"
    mv "$SRC_DIR.tmp" "$SRC_DIR"

    local build_log="$SUITE_DIR/build.log"
    log "configure + make -j2 (log: $build_log)"
    (
        cd "$SRC_DIR"
        ./configure "${CONFIGURE_FLAGS[@]}"
        # Only the libraries and the test runner (not the examples, docs or plugins).
        make -j2 libs
        make -j2 -C tests test-runner
    ) >"$build_log" 2>&1 || { tail -n 30 "$build_log" >&2; die "build failed (log: $build_log)"; }
    grep -q '^#define WITH_RAPIDJSON 1' "$SRC_DIR/config.h" || die "built without rapidjson"
    echo "$BUILD_ID" >"$SUITE_DIR/build.stamp"
    log "built $TESTS_DIR/test-runner in $((SECONDS - started))s"
}

# ---------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------

# State of the broker started by this script, for cleanup().
TMP_DIR=
SLUICE_PID=
KAFKA_DATA=
RUNNER_PID=

stop_sluice() {
    [[ -n "$SLUICE_PID" ]] || return 0
    if kill -0 "$SLUICE_PID" 2>/dev/null; then
        kill -TERM "$SLUICE_PID" 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        while kill -0 "$SLUICE_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$SLUICE_PID" 2>/dev/null; then
            log "sluice-broker (pid $SLUICE_PID) did not stop within 30s; SIGKILL"
            kill -KILL "$SLUICE_PID" 2>/dev/null || true
        fi
    fi
    wait "$SLUICE_PID" 2>/dev/null || true
    SLUICE_PID=
}

cleanup() {
    local rc=$?
    if [[ -n "$RUNNER_PID" ]]; then
        # `timeout` forwards the signal to its test-runner child.
        kill -TERM "$RUNNER_PID" 2>/dev/null || true
        wait "$RUNNER_PID" 2>/dev/null || true
        RUNNER_PID=
    fi
    stop_sluice
    if [[ -n "$KAFKA_DATA" ]]; then
        cp "$KAFKA_DATA/kafka.log" "$LOG_DIR/broker.log" 2>/dev/null || true
        scripts/peers/kafka.sh stop "$KAFKA_DATA" >/dev/null 2>&1 || true
        KAFKA_DATA=
    fi
    [[ -n "$TMP_DIR" ]] && rm -rf "$TMP_DIR"
    TMP_DIR=
    return "$rc"
}

# Starts Sluice from a copy of $1 (target/release is rebuilt under our feet otherwise) with
# a fresh data dir and the suite's properties; sets BOOTSTRAP.
start_sluice() {
    local bin="$1"
    [[ -x "$bin" ]] || die "broker binary not found: $bin (cargo build --release --bin sluice-broker)"
    cp "$bin" "$TMP_DIR/sluice-broker"
    local -a env_args=(SLUICE_ADMIN_LISTENERS=127.0.0.1:0)
    local prop name
    for prop in "${BROKER_PROPERTIES[@]}" "${SLUICE_ONLY_PROPERTIES[@]}"; do
        name="${prop%%=*}"
        name="SLUICE_${name//./_}"
        env_args+=("${name^^}=${prop#*=}")
    done
    {
        echo "---- copy of $bin ($("$TMP_DIR/sluice-broker" --version), sha256 $(sha256sum <"$TMP_DIR/sluice-broker" | cut -c1-16))"
        echo "---- env ${env_args[*]} sluice-broker --listen 127.0.0.1:0 --data-dir $TMP_DIR/data"
    } >"$LOG_DIR/broker.log"
    # Port 0: the broker binds a free loopback port and prints it.
    env "${env_args[@]}" "$TMP_DIR/sluice-broker" --listen 127.0.0.1:0 --data-dir "$TMP_DIR/data" \
        </dev/null >"$TMP_DIR/broker.stdout" 2>>"$LOG_DIR/broker.log" &
    SLUICE_PID=$!

    local deadline=$((SECONDS + 30)) line admin=
    BOOTSTRAP=
    while :; do
        kill -0 "$SLUICE_PID" 2>/dev/null || { tail -n 20 "$LOG_DIR/broker.log" >&2; die "sluice-broker exited during startup"; }
        ((SECONDS < deadline)) || die "sluice-broker not ready within 30s (log: $LOG_DIR/broker.log)"
        if [[ -z "$BOOTSTRAP" ]]; then
            line="$(grep -m1 -o 'listening on [0-9.]*:[0-9]*' "$TMP_DIR/broker.stdout" || true)"
            [[ -n "$line" ]] && BOOTSTRAP="${line#listening on }"
            line="$(grep -m1 -o 'admin listener on [0-9.]*:[0-9]*' "$TMP_DIR/broker.stdout" || true)"
            [[ -n "$line" ]] && admin="${line#admin listener on }"
        fi
        # Bound is not ready: /v1/ready answers 200 once it serves clients.
        if [[ -n "$BOOTSTRAP" && -n "$admin" ]] &&
            curl -fs --max-time 2 "http://$admin/v1/ready" >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    cat "$TMP_DIR/broker.stdout" >>"$LOG_DIR/broker.log"
    log "sluice-broker ready on $BOOTSTRAP (pid $SLUICE_PID, admin $admin)"
}

start_kafka() {
    KAFKA_DATA="$TMP_DIR/kafka"
    local props out
    props="$(printf '%s\n' "${BROKER_PROPERTIES[@]}")"
    # kafka.sh picks a free port, formats, starts and polls Metadata with a deadline.
    out="$(SLUICE_KAFKA_EXTRA_PROPERTIES="$props" scripts/peers/kafka.sh start "$KAFKA_DATA" 0)" ||
        die "kafka did not start (scripts/deps.sh --kafka installs it)"
    BOOTSTRAP="$(grep -o '127\.0\.0\.1:[0-9]*' <<<"$out" | head -n1)"
    [[ -n "$BOOTSTRAP" ]] || die "kafka.sh printed no address: $out"
    log "kafka ready on $BOOTSTRAP"
}

broker_alive() {
    if [[ -n "$SLUICE_PID" ]]; then
        kill -0 "$SLUICE_PID" 2>/dev/null
    else
        kill -0 "$(cat "$KAFKA_DATA/kafka.pid" 2>/dev/null || echo 0)" 2>/dev/null
    fi
}

# Prints "STATE" for one test id from its test-runner report ($1) and exit code ($2):
# FAILED if any of the id's tests failed (or never finished), PASSED if at least one passed,
# SKIPPED if all were skipped (local, mock and scenario entries of an id are always skipped).
result_of() {
    local report="$1" rc="$2"
    if [[ "$rc" == 124 || "$rc" == 137 ]]; then
        echo TIMEOUT
        return
    fi
    [[ -s "$report" ]] || { echo FAILED; return; }
    python3 - "$report" "$rc" <<'EOF'
import json, sys
try:
    with open(sys.argv[1]) as f:
        report = json.load(f)
except (OSError, ValueError):
    print("FAILED")
    sys.exit()
states = [t["state"] for name, t in report["tests"].items() if name != "<MAIN>"]
if sys.argv[2] != "0" or any(s in ("FAILED", "RUNNING") for s in states):
    print("FAILED")
elif "PASSED" in states:
    print("PASSED")
else:
    print("SKIPPED")
EOF
}

cmd_run() {
    local target=sluice ids="" broker_bin="$TARGET_DIR/release/sluice-broker" timeout_s=900 mode=quick
    while (($#)); do
        case "$1" in
            --target) target="${2:?--target needs sluice or kafka}"; shift 2 ;;
            --target=*) target="${1#*=}"; shift ;;
            --ids) ids="${2:?--ids needs a list}"; mode=ids; shift 2 ;;
            --ids=*) ids="${1#*=}"; mode=ids; shift ;;
            --quick) mode=quick; shift ;;
            --all) mode=all; shift ;;
            --broker-bin) broker_bin="${2:?--broker-bin needs a path}"; shift 2 ;;
            --broker-bin=*) broker_bin="${1#*=}"; shift ;;
            --timeout) timeout_s="${2:?--timeout needs seconds}"; shift 2 ;;
            --timeout=*) timeout_s="${1#*=}"; shift ;;
            *) die "unknown option $1 (see the header of $0)" ;;
        esac
    done
    [[ "$target" == sluice || "$target" == kafka ]] || die "--target must be sluice or kafka"
    [[ "$timeout_s" =~ ^[0-9]+$ && "$timeout_s" -gt 0 ]] || die "--timeout must be a number of seconds"
    case "$mode" in
        quick) ids="$QUICK_IDS" ;;
        all) ids="$(for e in "${ALL_TESTS[@]}"; do echo "${e%% *}"; done)" ;;
    esac
    local -a id_list
    read -r -d '' -a id_list <<<"$ids" || true
    ((${#id_list[@]})) || die "no test ids selected"
    local id
    for id in "${id_list[@]}"; do
        [[ "$id" =~ ^[0-9]{4}$ ]] || die "not a test id: $id (4 digits, e.g. 0001)"
    done
    [[ "$broker_bin" == /* ]] || broker_bin="$REPO/$broker_bin"

    local started=$SECONDS
    cmd_build
    local build_s=$((SECONDS - started))

    LOG_DIR="$SUITE_DIR/logs/$target"
    rm -rf "$LOG_DIR"
    mkdir -p "$LOG_DIR"
    TMP_DIR="$(mktemp -d "${TMPDIR:-/tmp}/sluice-librdkafka-suite.XXXXXX")"
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    if [[ "$target" == sluice ]]; then start_sluice "$broker_bin"; else start_kafka; fi

    # test.conf as librdkafka's trivup harness writes it (LibrdkafkaTestApp.py) for a
    # PLAINTEXT cluster: IPv4 only, timeouts x2 (its CI value; this is a 2-core machine).
    local conf="$TMP_DIR/test.conf"
    cat >"$conf" <<EOF
bootstrap.servers=$BOOTSTRAP
security.protocol=plaintext
broker.address.family=v4
test.timeout.multiplier=2
EOF
    cp "$conf" "$LOG_DIR/test.conf"

    local results="$LOG_DIR/results.tsv"
    printf 'id\tname\tresult\tseconds\n' >"$results"
    printf '%-5s %-38s %-8s %8s\n' id name result seconds
    local passed=0 failed=0 skipped=0 timed_out=0 run_started=$SECONDS
    local t0 rc state secs name
    for id in "${id_list[@]}"; do
        name="$(name_of "$id")"
        if ! broker_alive; then
            printf '%-5s %-38s %-8s %8s\n' "$id" "$name" FAILED "-"
            printf '%s\t%s\t%s\t%s\n' "$id" "$name" "FAILED (broker down)" 0 >>"$results"
            failed=$((failed + 1))
            continue
        fi
        t0=$EPOCHREALTIME
        # One process per id, tests of the id one at a time (-p1), broker tests only (-L:
        # no local tests, -E: no sockem), full mode (no -Q). The runner's own knobs that
        # would change what runs are cleared (CI=1 would also triple its timeouts).
        # cwd = tests/, as in librdkafka's run-test.sh; its libraries are not installed.
        (
            cd "$TESTS_DIR"
            exec env -u CI -u TESTS_SKIP -u TESTS_SKIP_BEFORE -u SUBTESTS -u TEST_SCENARIO \
                -u TEST_MODE -u TEST_CONSUMER_GROUP_PROTOCOL -u KAFKA_PATH -u BROKERS -u ZK_ADDRESS \
                TESTS="$id" RDKAFKA_TEST_CONF="$conf" TEST_KAFKA_VERSION="$TEST_KAFKA_VERSION" \
                TEST_REPORT="$LOG_DIR/$id.json" LD_LIBRARY_PATH="../src:../src-cpp" \
                timeout --kill-after=10 "$timeout_s" ./test-runner -L -E -p1
        ) </dev/null >"$LOG_DIR/$id.log" 2>&1 &
        RUNNER_PID=$!
        rc=0
        # 2>/dev/null: no "Aborted" job notice from bash; test-runner abort()s on failure.
        wait "$RUNNER_PID" 2>/dev/null || rc=$?
        RUNNER_PID=
        secs="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
        state="$(result_of "$LOG_DIR/$id.json" "$rc")"
        case "$state" in
            PASSED) passed=$((passed + 1)) ;;
            SKIPPED) skipped=$((skipped + 1)) ;;
            TIMEOUT) timed_out=$((timed_out + 1)); echo "(killed after ${timeout_s}s)" >>"$LOG_DIR/$id.log" ;;
            *) failed=$((failed + 1)) ;;
        esac
        printf '%-5s %-38s %-8s %8s\n' "$id" "$name" "$state" "$secs"
        printf '%s\t%s\t%s\t%s\n' "$id" "$name" "$state" "$secs" >>"$results"
    done
    local run_s=$((SECONDS - run_started))
    local broker_note=""
    broker_alive || broker_note=" (the broker exited during the run: $LOG_DIR/broker.log)"
    echo "librdkafka $LIBRDKAFKA_VERSION suite on $target: $passed passed, $failed failed," \
        "$timed_out timed out, $skipped skipped of ${#id_list[@]} ids; tests ${run_s}s," \
        "build ${build_s}s, total $((SECONDS - started))s; logs in $LOG_DIR$broker_note"
    [[ -z "$broker_note" ]] && ((failed == 0 && timed_out == 0))
}

cmd_list() {
    local mode="${1:---quick}" entry
    case "$mode" in
        --quick) for id in $QUICK_IDS; do echo "$id $(name_of "$id")"; done ;;
        --all) for entry in "${ALL_TESTS[@]}"; do echo "$entry"; done ;;
        *) die "list takes --quick or --all" ;;
    esac
}

cmd="${1:-}"
shift || true
case "$cmd" in
    build) cmd_build ;;
    run) cmd_run "$@" ;;
    list) cmd_list "$@" ;;
    *)
        # The header comment is the usage.
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2
        exit 2
        ;;
esac
