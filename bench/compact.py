"""The compaction benchmark: `sluice compact` (column chunks copied, and
re-encoded) beside DuckDB rewriting the same files into one per partition.

    bench/compact.sh [--size 1GB] [--chunk-size 8MiB]

Builds a lake from `--size` of generated clickstream JSON Lines (bench/ingest.toml's
job) with a small chunk size, so every partition holds many small files; then,
on copies of that lake and each pinned to one core (taskset), as a compactor
Lambda function with 1,769 MB has:
- `sluice compact --min-age 0s` (the fast path: column chunks copied undecoded);
- `sluice compact --min-age 0s --reencode` (rows decoded and re-encoded);
- DuckDB (threads=1): per partition, `COPY (SELECT * FROM read_parquet([...]))
  TO ... (COMPRESSION zstd)`, the same files in, one file out.
Checks that all three hold the same rows as before, whole (every column,
`row_fingerprint`) and in the same partitions, and prints
MB/s of input merged, peak memory, and files before and after. Writes
bench/results/compact.md.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

from run import DATA, RESULTS, ROOT, SLUICE, output_stats, partition_counts, prepare, row_fingerprint, timed

PY = sys.executable

DUCKDB_REWRITE = r"""
import duckdb, os, sys
lake, out = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.sql("SET threads=1")
table = os.path.join(lake, "clickstream")
for dt in sorted(os.listdir(table)):
    for et in sorted(os.listdir(os.path.join(table, dt))):
        folder = os.path.join(table, dt, et)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".parquet"))
        dest = os.path.join(out, "clickstream", dt, et)
        os.makedirs(dest, exist_ok=True)
        listed = ", ".join("'" + f + "'" for f in files)
        con.sql(f"COPY (SELECT * FROM read_parquet([{listed}])) TO '{dest}/part-0.parquet' "
                "(FORMAT parquet, COMPRESSION zstd)")
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1GB")
    ap.add_argument("--chunk-size", default="8MiB")
    args = ap.parse_args()
    files = prepare(args.size)
    work = os.path.join(DATA, "compact")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    base = os.path.join(work, "lake")
    input_root = os.path.dirname(os.path.dirname(files["jsonl"]))
    t0 = time.time()
    subprocess.run([SLUICE, "run", "--config", os.path.join(ROOT, "bench", "ingest.toml"), "--input",
                    input_root, "--lake", base, "--chunk-size", args.chunk_size], check=True,
                   stdout=subprocess.DEVNULL)
    in_bytes, in_files = output_stats(os.path.join(base, "clickstream"))
    want = partition_counts(os.path.join(base, "clickstream"))
    whole, structure = row_fingerprint(os.path.join(base, "clickstream"))
    partitions = len(want)
    print(f"lake: {os.path.getsize(files['jsonl']) / 1e6:.0f} MB of JSON Lines in {args.chunk_size} chunks "
          f"({time.time() - t0:.0f} s): {in_files} files, {in_bytes / 1e6:.1f} MB, {partitions} partitions, "
          f"{sum(c for *_, c in want)} rows", flush=True)

    rows = []
    for name, extra in (("sluice (copy)", []), ("sluice (re-encode)", ["--reencode"])):
        lake = os.path.join(work, name.split()[1].strip("()"))
        shutil.copytree(base, lake)
        wall, cpu, rss = timed([SLUICE, "compact", "--lake", lake, "--min-age", "0s"] + extra, cores=1)
        out_bytes, out_files = output_stats(os.path.join(lake, "clickstream"))
        same = (partition_counts(os.path.join(lake, "clickstream")) == want
                and row_fingerprint(os.path.join(lake, "clickstream"), structure)[0] == whole)
        rows.append(dict(engine=name, wall=wall, cpu=cpu, rss=rss, out=out_bytes, files=out_files, same=same))
    out = os.path.join(work, "duckdb")
    wall, cpu, rss = timed([PY, "-c", DUCKDB_REWRITE, base, out], cores=1)
    out_bytes, out_files = output_stats(os.path.join(out, "clickstream"))
    same = (partition_counts(os.path.join(out, "clickstream")) == want
            and row_fingerprint(os.path.join(out, "clickstream"), structure)[0] == whole)
    rows.append(dict(engine="DuckDB COPY", wall=wall, cpu=cpu, rss=rss, out=out_bytes, files=out_files, same=same))

    duck = rows[-1]
    lines = [
        f"# Compaction: {in_files} small files of {partitions} partitions, {in_bytes / 1e6:.1f} MB",
        "",
        f"`bench/compact.sh --size {args.size} --chunk-size {args.chunk_size}`: a lake built by `sluice run` from "
        f"{args.size} of generated JSON Lines in {args.chunk_size} chunks; each engine on its own copy, pinned to one "
        "core. MB/s is Parquet input merged per second of wall time.",
        "",
        "| | wall s | MB/s | vs DuckDB | CPU s | peak MB | files after | MB after | same rows, whole |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        mbs = in_bytes / 1e6 / r["wall"]
        ratio = duck["wall"] / r["wall"]
        line = (f"| {r['engine']} | {r['wall']:.2f} | {mbs:.1f} | {ratio:.2f}x | {r['cpu']:.2f} | {r['rss']:.0f} | "
                f"{r['files']} | {r['out'] / 1e6:.1f} | {'yes' if r['same'] else 'NO'} |")
        lines.append(line)
        print(f"  {r['engine']:<19} {r['wall']:7.2f} s {mbs:7.1f} MB/s ({ratio:.2f}x DuckDB), cpu {r['cpu']:.2f} s, "
              f"peak {r['rss']:.0f} MB, {in_files} -> {r['files']} files, {r['out'] / 1e6:.1f} MB, "
              f"same rows: {'yes' if r['same'] else 'NO'}", flush=True)
    copy, reencode = rows[0], rows[1]
    lines += ["", f"Copying column chunks is {reencode['wall'] / copy['wall']:.1f}x as fast as re-encoding the same "
              "files; the copied outputs keep the inputs' row groups (small ones, from small files), which readers "
              "pay for with more, smaller reads; re-encoded outputs have full row groups."]
    print(lines[-1])
    if not all(r["same"] for r in rows):
        # Figures of outputs that differ are not results: nothing is written.
        sys.exit("an engine changed the rows of a partition: bench/results/ left as it was")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "compact.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
