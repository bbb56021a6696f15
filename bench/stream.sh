#!/usr/bin/env bash
# The stream benchmark (issue 16): the stream function's handler on Kinesis
# batches of 10,000 clickstream records, on one core, beside the file path
# on the same rows in the same process; records/s, MB/s, files per batch,
# peak memory, and the cost per TB at Lambda arm64 prices. With
# --latency-ms N, every request to either lake waits N ms first, as S3's
# small PUTs and GETs take tens of milliseconds (a local folder answers in
# microseconds). With --order arrival, the records go in the order of their
# event times, as a stream delivers them (a batch touches one day or two),
# instead of as generated (event times scattered over a week: a batch
# touches every day).
#
#   bench/stream.sh [--size 200MB] [--batch 10000] [--latency-ms 20] [--order arrival]
set -euo pipefail
cd "$(dirname "$0")/.."
size=200MB
batch=10000
latency=0
order=generated
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --latency-ms) latency=$2; shift 2 ;;
    --order) order=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
bench/build.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
target/release/sluice generate --out "$work/gen" --size "$size" >/dev/null
target/release/stream-bench "$work/gen/clickstream/events-00000.jsonl" "$work" "$batch" "$latency" "$order"
