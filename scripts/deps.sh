#!/usr/bin/env bash
# Installs everything the test suites need; idempotent and fast when all is already there.
#
#   scripts/deps.sh           kcat, prometheus, chromium (apt), rustfmt + clippy (rustup), the Python venv .venv
#                             with tests/compat/requirements.txt (re-created only when that
#                             file changes; its hash is kept in .venv/.requirements.sha256)
#   scripts/deps.sh --librdkafka  also the headers librdkafka's test suite is built with
#                             (scripts/librdkafka-suite.sh: zlib1g-dev, libzstd-dev, rapidjson-dev)
#   scripts/deps.sh --bench   also fio and iperf3 (disk / loopback baselines for benchmarks)
#   scripts/deps.sh --kafka   also Java + Maven (apt) and Apache Kafka's jars (scripts/peers/kafka.sh)
#   scripts/deps.sh --cluster the cluster fault bench (tests/cluster): what --kafka installs (its
#                             workload runs Kafka's Java client) and nftables (network faults)
#
# Flags can be combined. Uses sudo for apt-get only when not root.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

want_bench=0
want_librdkafka=0
want_kafka=0
want_cluster=0
for arg in "$@"; do
    case "$arg" in
        --bench) want_bench=1 ;;
        --librdkafka) want_librdkafka=1 ;;
        --kafka) want_kafka=1 ;;
        --cluster) want_cluster=1; want_kafka=1 ;;
        *) echo "deps.sh: unknown option $arg (use --bench, --librdkafka, --kafka, --cluster)" >&2; exit 2 ;;
    esac
done

as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_get_install() {
    echo "deps: installing $* (apt)"
    if [[ $apt_updated == 0 ]]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# apt_install CMD PACKAGE: installs PACKAGE unless the command CMD is already on PATH.
apt_install() {
    local cmd="$1" pkg="$2"
    command -v "$cmd" >/dev/null 2>&1 && return 0
    apt_get_install "$pkg"
    command -v "$cmd" >/dev/null 2>&1 || { echo "deps: $pkg installed but $cmd not found" >&2; exit 1; }
}

# apt_install_header HEADER PACKAGE: installs PACKAGE unless /usr/include/HEADER exists
# (development packages have no command to look for).
apt_install_header() {
    local header="$1" pkg="$2"
    [[ -e "/usr/include/$header" ]] && return 0
    apt_get_install "$pkg"
    [[ -e "/usr/include/$header" ]] || { echo "deps: $pkg installed but $header not found" >&2; exit 1; }
}

# --- system tools -----------------------------------------------------------------------
apt_install kcat kcat
# The observability tests: a real Prometheus scrapes the broker (promtool checks its
# /metrics), and the dashboard is loaded in a real headless browser.
apt_install prometheus prometheus
apt_install chromium chromium
# librdkafka's own test suite (scripts/librdkafka-suite.sh builds it from source): zlib and
# zstd so that 0017_compression covers gzip and zstd too (snappy and lz4 are built in),
# rapidjson (header-only) so that the tests that check statistics JSON (0053_stats,
# 0110_batch_size) run instead of skipping. SSL, SASL and curl are configured out.
if [[ $want_librdkafka == 1 ]]; then
    apt_install_header zlib.h zlib1g-dev
    apt_install_header zstd.h libzstd-dev
    apt_install_header rapidjson/schema.h rapidjson-dev
fi
if [[ $want_bench == 1 ]]; then
    apt_install fio fio
    apt_install iperf3 iperf3
fi
if [[ $want_cluster == 1 ]]; then
    apt_install nft nftables
    apt_install unshare util-linux
    apt_install ip iproute2
fi

# --- Rust components ----------------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
    installed="$(rustup component list --installed 2>/dev/null || true)"
    missing=()
    grep -q '^rustfmt' <<<"$installed" || missing+=(rustfmt)
    grep -q '^clippy' <<<"$installed" || missing+=(clippy)
    if ((${#missing[@]})); then
        echo "deps: rustup component add ${missing[*]}"
        rustup component add "${missing[@]}"
    fi
else
    if ! command -v cargo-clippy >/dev/null || ! command -v rustfmt >/dev/null; then
        echo "deps: no rustup, and rustfmt/clippy are missing" >&2
        exit 1
    fi
fi

# --- Python virtualenv for the compat tests -------------------------------------------------
req=tests/compat/requirements.txt
want_hash="$(sha256sum "$req" | cut -d' ' -f1)"
have_hash="$(cat .venv/.requirements.sha256 2>/dev/null || true)"
if [[ "$want_hash" != "$have_hash" || ! -x .venv/bin/python ]]; then
    echo "deps: creating .venv from $req"
    rm -rf .venv
    python="${SLUICE_PYTHON:-python3}"
    if ! "$python" -m venv .venv 2>/dev/null; then
        # Debian's system python3 needs python3-venv for `python3 -m venv`.
        rm -rf .venv
        apt_get_install python3-venv
        "$python" -m venv .venv
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check --only-binary=:all: -r "$req"
    echo "$want_hash" >.venv/.requirements.sha256
fi

# --- Apache Kafka as the reference peer (optional) ------------------------------------------
if [[ $want_kafka == 1 ]]; then
    apt_install java openjdk-17-jdk-headless
    apt_install mvn maven
    scripts/peers/kafka.sh install
fi

echo "deps: ok (kcat $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*librdkafka \([^ ]*\).*/\1, librdkafka \2/p'), $(.venv/bin/python --version))"
