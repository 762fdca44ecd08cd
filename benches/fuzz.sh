#!/usr/bin/env bash
# Runs the property tests of tests/fuzz.rs (lead and rep conversion/validation, extraction and
# scoring, segment rules, damaged artifacts, CSV reading) for N cases per property.
#   usage: benches/fuzz.sh [cases per property]      (default 1,000,000)
# CI runs the same tests with proptest's default of 256 cases each. A failure prints the
# minimal failing input; proptest also saves it under proptest-regressions/ for replay.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
start=$(date +%s)
PROPTEST_CASES=$N cargo test --release --test fuzz -- --test-threads 2
echo "fuzz: 4 properties x $N cases in $(( $(date +%s) - start )) s"
