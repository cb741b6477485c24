#!/usr/bin/env bash
# The one test command (CI runs it through .ci/run). In order:
#   1. scripts/deps.sh        install what the tests need (fast when already installed)
#   2. cargo fmt --check      formatting
#   3. cargo clippy           lints, warnings are errors
#   4. cargo test             every crate's unit, property and integration tests
#   5. compat tests           pytest over tests/compat and tests/torture with real clients
#                             (kcat, kafka-python, confluent-kafka) against the release broker;
#                             skipped when SLUICE_SKIP_COMPAT=1 or when there are no test_*.py
# Stops at the first failing step and exits non-zero.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

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
    echo "building release sluice-broker, sluice and torture_producer"
    cargo build --release --bin sluice-broker --bin sluice --example torture_producer
    rc=0
    .venv/bin/python -m pytest -q -p no:cacheprovider --timeout=600 "${compat_dirs[@]}" || rc=$?
    if ((rc != 0)); then
        # rc 5 = no tests collected, but test files exist: that is a failure too.
        echo "compat tests failed (pytest exit code $rc)" >&2
        exit "$rc"
    fi
fi

section "done"
echo "all test steps passed in $((SECONDS - started))s"
