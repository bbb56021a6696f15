#!/usr/bin/env bash
# Ingest benchmark: sluice and DuckDB on the same generated JSON Lines file
# and the same job (bench/ingest.toml), one thread each, in one run.
# Prints wall seconds, MB/s, CPU seconds, peak RSS and output size, with ratios.
#
#   bench/ingest.sh [SIZE]     # default 1GB
set -euo pipefail
cd "$(dirname "$0")/.."
size="${1:-1GB}"
data="bench/data"
venv="${SLUICE_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
cargo build --release --quiet -p sluice-cli
bin=target/release/sluice

if [ ! -f "$data/raw-$size/clickstream/events-00000.jsonl" ]; then
  "$bin" generate --out "$data/raw-$size" --size "$size" --seed 42 >/dev/null
fi
input="$data/raw-$size/clickstream/events-00000.jsonl"
mb=$(python3 -c "import os,sys; print(os.path.getsize(sys.argv[1]) / 1e6)" "$input")

rm -rf "$data/lake"
/usr/bin/time -f "%e %U %S %M" -o "$data/sluice.time" \
  "$bin" run --config bench/ingest.toml --input "$data/raw-$size" --lake "$data/lake" --workers 1 >/dev/null
read -r s_wall s_user s_sys s_rss < "$data/sluice.time"
s_out=$(du -sb --exclude=_sluice "$data/lake" | cut -f1)
s_files=$(find "$data/lake/clickstream" -name '*.parquet' | wc -l)

duck=$("$venv/bin/python" bench/duckdb_ingest.py "$input" "$data/duck" 1)

"$venv/bin/python" - "$mb" "$s_wall" "$s_user" "$s_sys" "$s_rss" "$s_out" "$s_files" "$duck" <<'PY'
import json, sys
mb, wall, user, sys_, rss, out, files = map(float, sys.argv[1:8])
d = json.loads(sys.argv[8])
rows = [("sluice (1 worker)", wall, user + sys_, rss / 1024, out, files),
        ("duckdb (threads=1)", d["seconds"], d["cpu"], d["rss_mb"], d["out_bytes"], d["files"])]
print(f"input: {mb:.0f} MB of JSON Lines")
print(f"{'engine':<20} {'wall s':>7} {'MB/s':>7} {'cpu s':>7} {'peak MB':>8} {'out MB':>7} {'files':>6}")
for name, w, c, r, o, f in rows:
    print(f"{name:<20} {w:>7.2f} {mb / w:>7.1f} {c:>7.2f} {r:>8.0f} {o / 1e6:>7.1f} {f:>6.0f}")
s, k = rows
print(f"ratios sluice/duckdb: throughput {k[1] / s[1]:.2f}x, memory {s[3] / k[3]:.2f}x, output size {s[4] / k[4]:.2f}x")
PY
