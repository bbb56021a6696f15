"""The Delta benchmark (issue 14): the same generated JSON Lines loaded into a
Hive table and into a Delta table by the same sluice binary, one core each;
then the Delta table compacted by sluice (column chunks copied, one commit)
and, on a copy of the same table, by delta-rs's own OPTIMIZE (Python
deltalake), and the Hive table by sluice. Every output is checked to hold the
same rows per partition (DuckDB: read_parquet for Hive, delta_scan for Delta)
before any figure is printed.

    bench/delta.sh [--size 200MB] [--chunk-size 8MiB] [--sluice PATH]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import duckdb_ext
from common import fastest_run, timed

REPO = Path(__file__).resolve().parent.parent


def connect():
    ext = os.path.join(list(duckdb_ext.__path__)[0], "extensions", "v" + duckdb.__version__,
                       "linux_amd64", "delta.duckdb_extension")
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.sql("SET enable_progress_bar = false")
    con.sql(f"LOAD '{ext}'")
    return con


def per_partition(con, source):
    return con.sql(f"SELECT CAST(dt AS VARCHAR), event_type, count(*) FROM {source} "
                   "GROUP BY ALL ORDER BY ALL").fetchall()


def size_of(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*.parquet") if "_delta_log" not in p.parts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="200MB")
    ap.add_argument("--chunk-size", default="8MiB")
    ap.add_argument("--sluice", default=None)
    args = ap.parse_args()
    sluice = args.sluice or next(
        str(p) for p in [REPO / "target/release/sluice", REPO / "target/debug/sluice-under-test",
                         REPO / "target/debug/sluice"] if p.exists())
    work = Path(tempfile.mkdtemp(prefix="sluice-delta-bench-"))
    try:
        subprocess.run([sluice, "generate", "--out", str(work / "raw"), "--size", args.size,
                        "--files", "8"], check=True, capture_output=True)
        raw_mb = sum(p.stat().st_size for p in (work / "raw").rglob("*")) / 1e6
        job = (REPO / "bench/ingest.toml").read_text()
        (work / "hive.toml").write_text(job)
        (work / "delta.toml").write_text('[lake]\ntable_format = "delta"\n' + job)
        print(f"sluice: {sluice}")
        print(f"input: {raw_mb:.0f} MB of JSON Lines in 8 files, chunks of {args.chunk_size}, one core each")

        ingest = {}
        for fmt in ["hive", "delta"]:
            ingest[fmt] = fastest_run(sluice, work / f"{fmt}.toml", work / "raw", work / f"lake-{fmt}",
                                      args.chunk_size)

        con = connect()
        hive_lake, delta_lake = work / "lake-hive", work / "lake-delta"
        want = per_partition(con, f"read_parquet('{hive_lake}/clickstream/**/*.parquet', hive_partitioning=true)")
        got = per_partition(con, f"delta_scan('{delta_lake}/clickstream')")
        if got != want:
            sys.exit("the Delta table and the Hive table hold different rows per partition")
        rows = sum(r[2] for r in want)
        print(f"\ningest ({rows} rows; the same rows per partition in both tables):")
        for fmt, (wall, rss, _) in ingest.items():
            print(f"  {fmt:<6} {wall:7.2f} s  {raw_mb / wall:6.1f} MB/s  peak {rss:5.0f} MB")
        ratio = ingest["delta"][0] / ingest["hive"][0]
        commits = [l for l in ingest["delta"][2].splitlines() if "delta:" in l]
        print(f"  delta / hive time: {ratio:.3f} (the issue's bound: at most 1.05)")
        if commits:
            print(f"  {commits[0].strip()}")

        print("\ncompaction (target 256 MiB, files of any age):")
        copy = work / "lake-delta-rs"
        shutil.copytree(delta_lake, copy)
        in_mb = size_of(delta_lake / "clickstream") / 1e6
        wall, rss, out, _ = timed([sluice, "compact", "--lake", str(delta_lake), "--min-age", "0s",
                                "--target-size", "256MiB", "--min-files", "2"])
        print(f"  sluice, Delta table:   {wall:6.2f} s  {in_mb / wall:6.1f} MB/s  peak {rss:5.0f} MB   {out.strip().splitlines()[0]}")
        script = ("import deltalake, json; t = deltalake.DeltaTable(%r); "
                  "m = t.optimize.compact(target_size=256 * 1024 * 1024); print(json.dumps(m))"
                  % str(copy / "clickstream"))
        wall_rs, rss_rs, out_rs, _ = timed([sys.executable, "-c", script])
        m = json.loads(out_rs)
        print(f"  delta-rs OPTIMIZE:     {wall_rs:6.2f} s  {in_mb / wall_rs:6.1f} MB/s  peak {rss_rs:5.0f} MB   "
              f"{m['numFilesRemoved']} files -> {m['numFilesAdded']}")
        hive_mb = size_of(hive_lake / "clickstream") / 1e6
        wall_h, rss_h, _, _ = timed([sluice, "compact", "--lake", str(hive_lake), "--min-age", "0s",
                                      "--target-size", "256MiB", "--min-files", "2"])
        print(f"  sluice, Hive table:    {wall_h:6.2f} s  {hive_mb / wall_h:6.1f} MB/s  peak {rss_h:5.0f} MB")
        for name, src in [("sluice", f"delta_scan('{delta_lake}/clickstream')"),
                          ("delta-rs", f"delta_scan('{copy}/clickstream')")]:
            if per_partition(con, src) != want:
                sys.exit(f"the table compacted by {name} lost or doubled rows")
        print(f"  sluice / delta-rs time: {wall / wall_rs:.2f}; every compacted table holds the same rows per partition")
        sys.stdout.flush()
        os._exit(0)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
