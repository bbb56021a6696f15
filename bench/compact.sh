#!/usr/bin/env bash
# The compaction benchmark (issue 5): sluice compact (copying column chunks,
# and re-encoding) beside DuckDB rewriting the same files, one core each.
# Prints the figures; writes bench/results/compact.md.
#
#   bench/compact.sh [--size 1GB] [--chunk-size 8MiB]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SLUICE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
cargo build --release --quiet -p sluice-cli
cd bench && exec "../$venv/bin/python" compact.py "$@"
