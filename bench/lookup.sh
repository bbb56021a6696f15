#!/usr/bin/env bash
# The lookup benchmark (issue 17): the 1 GB clickstream job with and without
# a LEFT JOIN on a users lookup of about 200 MB decoded, one core each.
#
#   bench/lookup.sh [--size 1GB] [--chunk-size 128MiB] [--users 2000000]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SLUICE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
cargo build --release --quiet -p sluice-cli --bin sluice
"$venv/bin/python" bench/lookup.py "$@"
