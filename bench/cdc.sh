#!/usr/bin/env bash
# The CDC benchmark (issue 15): DMS change files merged into a large Delta
# table by sluice, against DuckDB doing the same upsert on Parquet, one core
# each, in the same run; both results compared row for row.
#
#   bench/cdc.sh [--rows 10000000] [--changes 1000000] [--files 10]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SLUICE_DELTA_VENV:-.venv-delta}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements-delta.txt
cargo build --release --quiet -p sluice-cli --bin sluice
"$venv/bin/python" bench/cdc.py --sluice target/release/sluice "$@"
