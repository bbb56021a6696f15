#!/usr/bin/env bash
# The Delta benchmark (issue 14): Hive vs Delta ingest with the same binary,
# and Delta compaction by sluice vs delta-rs's OPTIMIZE; then the committer's
# costs (commits, store calls, opening with and without checkpoints).
#
#   bench/delta.sh [--size 200MB] [--chunk-size 8MiB]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SLUICE_DELTA_VENV:-.venv-delta}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements-delta.txt
cargo build --release --quiet -p sluice-cli -p sluice-tests --bin sluice --bin delta-bench
"$venv/bin/python" bench/delta.py --sluice target/release/sluice "$@"
echo
target/release/delta-bench 1000 100
