"""The lookup benchmark (issue 17): the 1 GB clickstream job (bench/ingest.toml)
run by the same sluice binary on one core, once as it is and once joining a
users lookup of about 200 MB decoded (2,000,000 users, of whom the events
name 200,000) with a LEFT JOIN on user_id. Prints wall time, throughput and
peak RSS of both, and their ratios; before any figure, checks the joined
lake with DuckDB: per partition, the same rows as the plain run and as many
matched users as DuckDB's own join of the raw files with the lookup.

    bench/lookup.sh [--size 1GB] [--chunk-size 128MiB] [--users 2000000]
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from common import fastest_run

REPO = Path(__file__).resolve().parent.parent


def users(path, n):
    """n users, deterministic: ids 1..n, a name, an e-mail, a segment, a plan, a country, a date."""
    ids = pa.array(range(1, n + 1), pa.int64())
    names = pa.array([f"user {i:07d} of the benchmark" for i in range(1, n + 1)])
    emails = pa.array([f"user.{i:07d}@example-company-{i % 997:03d}.com" for i in range(1, n + 1)])
    segments = pa.array([("consumer", "small business", "enterprise")[i % 3] for i in range(n)])
    plans = pa.array([("free", "plus", "pro", "team")[(i * 7) % 4] for i in range(n)])
    countries = pa.array([("DE", "FR", "US", "GB", "JP", "BR", "IN", "ES")[(i * 13) % 8] for i in range(n)])
    signup = pa.array([18000 + i % 2000 for i in range(n)], pa.int32()).cast(pa.date32())
    table = pa.table({"user_id": ids, "name": names, "email": emails, "segment": segments,
                      "plan": plans, "signup_country": countries, "signed_up": signup})
    pq.write_table(table, path, compression="zstd")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1GB")
    ap.add_argument("--chunk-size", default="128MiB")
    ap.add_argument("--users", type=int, default=2_000_000)
    ap.add_argument("--sluice", default=str(REPO / "target/release/sluice"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sluice-lookup-bench-"))
    try:
        subprocess.run([args.sluice, "generate", "--out", str(work / "raw"), "--size", args.size,
                        "--files", "8"], check=True, capture_output=True)
        raw_mb = sum(p.stat().st_size for p in (work / "raw").rglob("*")) / 1e6
        users(work / "users.parquet", args.users)
        job = (REPO / "bench/ingest.toml").read_text()
        (work / "plain.toml").write_text(job)
        assert "SELECT event_id, event_time, user_id," in job and "FROM input\n" in job, \
            "bench/ingest.toml changed shape"
        joined = job.replace("SELECT event_id, event_time, user_id,",
                             "SELECT event_id, event_time, input.user_id, u.segment, u.plan, u.signup_country,")
        joined = joined.replace("FROM input\n", "FROM input LEFT JOIN users u ON input.user_id = u.user_id\n")
        assert "LEFT JOIN users" in joined and "u.segment" in joined
        joined = (f'[[lookups]]\nname = "users"\nsource = "{work / "users.parquet"}"\n'
                  f'format = "parquet"\nmax_size = "1GiB"\n\n' + joined)
        (work / "joined.toml").write_text(joined)
        print(f"sluice: {args.sluice}")
        print(f"input: {raw_mb:.0f} MB of JSON Lines in 8 files, chunks of {args.chunk_size}, one core")

        runs = {}
        for name in ["plain", "joined"]:
            runs[name] = fastest_run(args.sluice, work / f"{name}.toml", work / "raw", work / f"lake-{name}",
                                     args.chunk_size)

        con = duckdb.connect()
        con.sql("SET TimeZone = 'UTC'")
        per = lambda lake, extra: con.sql(
            f"SELECT CAST(dt AS VARCHAR), event_type, count(*){extra} FROM "
            f"read_parquet('{lake}/clickstream/**/*.parquet', hive_partitioning = true) "
            "GROUP BY ALL ORDER BY ALL").fetchall()
        plain = per(work / "lake-plain", "")
        joined_rows = per(work / "lake-joined", ", count(segment)")
        if [r[:3] for r in joined_rows] != plain:
            sys.exit("the joined run holds different rows per partition than the plain run")
        matched = con.sql(
            f"SELECT count(*) FROM read_json('{work}/raw/clickstream/*', columns = {{user_id: 'BIGINT'}}) e "
            f"JOIN read_parquet('{work}/users.parquet') u ON e.user_id = u.user_id").fetchall()[0][0]
        if sum(r[3] for r in joined_rows) != matched:
            sys.exit(f"the joined run matched {sum(r[3] for r in joined_rows)} users, DuckDB's join {matched}")
        lookup_line = next((l.strip() for l in runs["joined"][2].splitlines() if l.startswith("lookup users")), "?")
        rows = sum(r[2] for r in plain)
        print(f"\n{rows} rows; both lakes hold the same rows per partition, and the joined one "
              f"{matched} matched users, as DuckDB's join says")
        print(f"{lookup_line} ({args.users} users, {(work / 'users.parquet').stat().st_size / 1e6:.0f} MB of Parquet)")
        for name, (wall, rss, _) in runs.items():
            print(f"  {name:<7} {wall:7.2f} s  {raw_mb / wall:6.1f} MB/s  peak {rss:5.0f} MB")
        (pw, pr, _), (jw, jr, _) = runs["plain"], runs["joined"]
        print(f"  joined / plain: time {jw / pw:.3f}, peak memory +{jr - pr:.0f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
