#!/usr/bin/env bash
# The one test command (CI runs it through .ci/run). In order:
#   1. scripts/deps.sh        install what the tests need (fast when already installed)
#   2. cargo fmt --check      formatting
#   3. cargo clippy           lints, warnings are errors
#   4. cargo test             every crate's unit, property and integration tests
#   5. compat tests           pytest over tests/compat and tests/torture with real clients
#                             (kcat, kafka-python, confluent-kafka) against the release broker;
#                             skipped when SLUICE_SKIP_COMPAT=1 or when there are no test_*.py
#   6. librdkafka's suite     the 14-id quick subset of librdkafka's own integration tests
#                             (scripts/librdkafka-suite.sh run --quick, ~1 min after a first
#                             build of ~2 min) against the release broker; skipped when
#                             SLUICE_SKIP_LIBRDKAFKA=1
#   7. cluster fault bench    tests/cluster in a private network namespace (scripts/cluster.sh
#                             test): the checker's unit tests, the workload against Sluice, the
#                             kill -9 and full-disk faults against one Sluice node, and a killed
#                             and a cut-off leader on 3 nodes with replication factor 3 (a few
#                             minutes); skipped when SLUICE_SKIP_CLUSTER=1
#
#   scripts/test.sh --cluster-kafka   also the whole fault bench against a 3-broker Apache
#                             Kafka 4.4 (every nemesis, ~20 min; docs/cluster-testing.md)
#   scripts/test.sh --librdkafka-all  librdkafka's whole selection (76 ids, ~40 min) instead
#                             of the quick subset (docs/librdkafka-suite.md; ids that fail
#                             only for want of transactions fail this run)
# Stops at the first failing step and exits non-zero.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cluster_kafka=0
librdkafka_selection=--quick
for arg in "$@"; do
    case "$arg" in
        --cluster-kafka) cluster_kafka=1 ;;
        --librdkafka-all) librdkafka_selection=--all ;;
        *) echo "test.sh: unknown option $arg (use --cluster-kafka, --librdkafka-all)" >&2; exit 2 ;;
    esac
done

started=$SECONDS
step_started=
section() {
    if [[ -n "$step_started" ]]; then echo "(step took $((SECONDS - step_started))s)"; fi
    step_started=$SECONDS
    printf '\n==================== %s ====================\n' "$*"
}

section "deps"
scripts/deps.sh

section "cargo fmt --check"
cargo fmt --all -- --check

section "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

section "cargo test"
cargo test --workspace

section "compat tests (pytest)"
compat_dirs=()
for d in tests/compat tests/torture; do
    [[ -d "$d" ]] && compat_dirs+=("$d")
done
test_files=()
if ((${#compat_dirs[@]})); then
    mapfile -t test_files < <(find "${compat_dirs[@]}" -name 'test_*.py' -type f | sort)
fi

if [[ "${SLUICE_SKIP_COMPAT:-0}" == 1 ]]; then
    echo "skipped: SLUICE_SKIP_COMPAT=1"
elif ((${#test_files[@]} == 0)); then
    echo "no compat tests: no test_*.py under tests/compat or tests/torture"
else
    # The compat and torture tests run release binaries: the broker, the `sluice` CLI and
    # the Sluice client's torture producer.
    # `cargo build --release`, the README's command: the broker, the CLI, sluice-bench
    # and sluice-torture-producer, built once with the same features.
    echo "building the release binaries (cargo build --release)"
    cargo build --release
    # Apache Kafka's jars: its tools and Java client run against Sluice in some tests
    # (tests/compat/test_security.py); the cluster step uses them too.
    scripts/peers/kafka.sh install
    # Kafka Streams: a word count with a compacted changelog (tests/compat/test_kafka_streams.py).
    scripts/peers/kafka.sh install-streams
    # Kafka Connect: a distributed worker with compacted topics (tests/compat/test_kafka_connect.py).
    scripts/peers/kafka.sh install-connect
    rc=0
    .venv/bin/python -m pytest -q -p no:cacheprovider --timeout=600 --durations=10 "${compat_dirs[@]}" || rc=$?
    if ((rc != 0)); then
        # rc 5 = no tests collected, but test files exist: that is a failure too.
        echo "compat tests failed (pytest exit code $rc)" >&2
        exit "$rc"
    fi
fi

section "librdkafka's own test suite ($librdkafka_selection)"
if [[ "${SLUICE_SKIP_LIBRDKAFKA:-0}" == 1 ]]; then
    echo "skipped: SLUICE_SKIP_LIBRDKAFKA=1"
else
    # The headers its test-runner is built with; the build is cached in target/.
    scripts/deps.sh --librdkafka
    cargo build --release --bin sluice-broker
    scripts/librdkafka-suite.sh run --target sluice "$librdkafka_selection"
fi

section "cluster fault bench (Sluice)"
# As root (CI) every selected nemesis must run: a permission problem fails, never skips.
strict=0
[[ "$(id -u)" == 0 ]] && strict=1
if [[ "${SLUICE_SKIP_CLUSTER:-0}" == 1 ]]; then
    echo "skipped: SLUICE_SKIP_CLUSTER=1"
else
    # nftables for the network faults, Kafka's jars for the workload's Java producer.
    scripts/deps.sh --cluster
    # One node: every node killed at once, and a full disk (a single node's kill-leader is
    # the same as kill-all).
    SLUICE_CLUSTER_STRICT=$strict SLUICE_CLUSTER_TARGET=sluice SLUICE_CLUSTER_NEMESES=kill-all,disk-full \
        scripts/cluster.sh test --timeout=900
    # Three nodes, replication factor 3, min.insync.replicas 2, acks=all: the short part of
    # the fault bench (issue 17): a killed leader and a cut-off leader (~80 s).
    SLUICE_CLUSTER_STRICT=$strict SLUICE_CLUSTER_TARGET=sluice SLUICE_CLUSTER_NODES=3 \
        SLUICE_CLUSTER_NEMESES=kill-leader,partition-leader \
        scripts/cluster.sh test --timeout=900 -k test_nemesis
fi

if ((cluster_kafka)); then
    section "cluster fault bench (Apache Kafka, 3 brokers, every nemesis)"
    SLUICE_CLUSTER_STRICT=$strict SLUICE_CLUSTER_TARGET=kafka SLUICE_CLUSTER_KAFKA=1 \
        scripts/cluster.sh test --timeout=900
fi

section "done"
echo "all test steps passed in $((SECONDS - started))s"
