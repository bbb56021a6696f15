#!/usr/bin/env bash
# The ingest benchmark (issue 7): sluice, DuckDB and Polars on the same job,
# 1 and 2 threads, JSON Lines, CSV and gzip, plus the functions' cold start.
# Prints the figures with ratios and targets; writes bench/results/ingest-<job>.md
# and ingest-<job>.png.
#
#   bench/run.sh [--job full|plain] [--size 1GB] [--threads 1,2]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SLUICE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
bench/build.sh
exec "$venv/bin/python" bench/run.py "$@"
