#!/usr/bin/env bash
# The release binaries every benchmark script uses, built in one cargo call
# so that the engine crate is compiled once with one feature set (the
# `sluice-tests` package's `stream-bench` unifies its features with the
# others'; two calls with different package sets would compile it twice).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p sluice-cli -p sluice-planner -p sluice-transform -p sluice-catalog \
  -p sluice-tests --bin sluice --bin planner --bin transform --bin catalog --bin stream-bench
