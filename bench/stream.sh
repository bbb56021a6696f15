#!/usr/bin/env bash
# The stream benchmark (issue 16): the stream function's handler on Kinesis
# batches of 10,000 clickstream records, on one core, beside the file path
# on the same rows in the same process; records/s, MB/s, files per batch,
# peak memory, and the cost per TB at Lambda arm64 prices. With
# --latency-ms N, every request to either lake waits N ms first, as S3's
# small PUTs and GETs take tens of milliseconds (a local folder answers in
# microseconds).
#
#   bench/stream.sh [--size 200MB] [--batch 10000] [--latency-ms 20]
set -euo pipefail
cd "$(dirname "$0")/.."
size=200MB
batch=10000
latency=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --latency-ms) latency=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bench/build.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/sluice generate --out "$work/gen" --size "$size" >/dev/null
target/release/stream-bench "$work/gen/clickstream/events-00000.jsonl" "$work" "$batch" "$latency"
