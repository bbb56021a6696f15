"""The CDC benchmark (issue 15): a batch of DMS change files (70% updates,
10% deletes, 20% inserts) merged into a large table by sluice, and the same
upsert done by DuckDB (`DELETE` + `INSERT OR REPLACE` into a keyed table,
read from and written back to Parquet), one core each, in the same run.

    bench/cdc.sh [--rows 10000000] [--changes 1000000] [--files 10] [--sluice PATH]

1. DuckDB generates the full load (`LOAD*.parquet`, the table's rows, keys
   1..rows) and the change files (`Op`, `ts`, then the columns), as the DMS
   Parquet endpoint writes them. Updated keys are drawn at random over the
   whole table (some more than once), so every table file holds rows the
   batch replaces: the worst case for copy-on-write.
2. sluice loads the full load into a Delta table (timed, reported), then the
   change files are added to the input and `sluice run` merges them (timed:
   decoding and staging the changes, and the merge commits).
3. DuckDB, from the same files: the full load into a table with a primary
   key, each key's newest change, `DELETE` and `INSERT OR REPLACE`, the
   table written to zstd Parquet (timed).
4. Both results are compared row for row (DuckDB reads the Delta table with
   `delta_scan`; `EXCEPT ALL` both ways must be empty) before any figure is
   printed.
"""

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

from delta import connect, timed  # bench/delta.py: pinned, measured runs; DuckDB with delta_scan

REPO = Path(__file__).resolve().parent.parent
COLUMNS = "id, email, balance, signup, updated_at"

CONFIG = """
[lake]
root = "{lake}"
table_format = "delta"

[input]
root = "{raw}"

[[tables]]
name = "customers"
source = "dms/"
format = "parquet"

[tables.cdc]
envelope = "dms"
key = ["id"]
order_by = "ts"

[tables.schema]
id = "int64"
email = "string"
balance = "decimal(12,2)"
signup = "date"
updated_at = "timestamp"
"""

# DuckDB's side, run in its own process (pinned, measured): the full load into
# a keyed table, each key's newest change applied, the table written back.
PEER = """
import duckdb, sys
raw, out = sys.argv[1], sys.argv[2]
con = duckdb.connect(config={"threads": "1", "preserve_insertion_order": "false"})
con.sql("SET enable_progress_bar = false")
con.sql("CREATE TABLE customers (id BIGINT PRIMARY KEY, email VARCHAR, balance DECIMAL(12,2), "
        "signup DATE, updated_at TIMESTAMPTZ)")
con.sql(f"INSERT INTO customers SELECT id, email, balance, signup, updated_at "
        f"FROM read_parquet('{raw}/dms/LOAD*.parquet')")
con.sql(f"CREATE TEMP TABLE latest AS SELECT * FROM read_parquet('{raw}/dms/2*.parquet') "
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY ts DESC) = 1")
con.sql("DELETE FROM customers WHERE id IN (SELECT id FROM latest WHERE Op = 'D')")
con.sql("INSERT OR REPLACE INTO customers SELECT id, email, balance, signup, updated_at "
        "FROM latest WHERE Op <> 'D'")
con.sql(f"COPY customers TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
"""


def generate(con, folder, rows, changes, files):
    """The full load in 10 files and the change files, as DMS writes them."""
    folder.mkdir(parents=True)
    load_files = 10
    per = -(-rows // load_files)
    for f in range(load_files):
        lo, hi = f * per + 1, min(rows, (f + 1) * per)
        con.sql(f"""COPY (
            SELECT TIMESTAMP '2026-12-01 00:00:00' AS ts, i AS id,
                   'user' || i || '@example.com' AS email,
                   CAST(CAST(hash(i) % 10000000 AS BIGINT) * 0.01 AS DECIMAL(12,2)) AS balance,
                   DATE '2010-01-01' + CAST(i % 6000 AS INTEGER) AS signup,
                   TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_microseconds(i) AS updated_at
            FROM range({lo}, {hi + 1}) t(i)
        ) TO '{folder}/LOAD{f + 1:08d}.parquet' (FORMAT parquet)""")
    # Change n: n % 10 == 0 deletes a key (distinct keys, never updated),
    # 1 and 2 insert a new key, the rest update a random key (keys may repeat:
    # the newest change of a key wins).
    per = -(-changes // files)
    for f in range(files):
        lo, hi = f * per, min(changes, (f + 1) * per)
        con.sql(f"""COPY (
            SELECT CASE WHEN n % 10 = 0 THEN 'D' WHEN n % 10 IN (1, 2) THEN 'I' ELSE 'U' END AS Op,
                   TIMESTAMP '2026-12-01 01:00:00' + to_microseconds(n) AS ts,
                   CASE WHEN n % 10 = 0 THEN (n // 10) * 100 + 10
                        WHEN n % 10 IN (1, 2) THEN {rows} + n + 1
                        ELSE 1 + CAST(hash(n) % {rows} AS BIGINT)
                             + CASE WHEN (1 + CAST(hash(n) % {rows} AS BIGINT)) % 100 = 10 THEN 1 ELSE 0 END
                   END AS id,
                   'changed' || n || '@example.com' AS email,
                   CAST(CAST(hash(n + 3) % 10000000 AS BIGINT) * 0.01 AS DECIMAL(12,2)) AS balance,
                   DATE '2020-01-01' + CAST(n % 2000 AS INTEGER) AS signup,
                   TIMESTAMPTZ '2026-12-01 01:00:00+00' + to_microseconds(n) AS updated_at
            FROM range({lo}, {hi}) t(n)
        ) TO '{folder}/20261201-{f:09d}.parquet' (FORMAT parquet)""")


def mb_of(paths):
    return sum(p.stat().st_size for p in paths) / 1e6


def delta_version(table):
    return max(int(p.stem) for p in (table / "_delta_log").glob("*.json"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--changes", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=10)
    ap.add_argument("--sluice", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    if args.rows % 100 or args.changes * 10 > args.rows:
        sys.exit("--rows: a multiple of 100, at least 10 times --changes (deleted keys are spread over it)")
    sluice = args.sluice or str(REPO / "target/release/sluice")
    work = Path(tempfile.mkdtemp(prefix="sluice-cdc-bench-"))
    try:
        con = connect()
        data = work / "data" / "dms"
        generate(con, data, args.rows, args.changes, args.files)
        load = sorted(data.glob("LOAD*.parquet"))
        change_files = sorted(data.glob("2*.parquet"))
        raw = work / "raw" / "dms"
        raw.mkdir(parents=True)
        for p in load:
            shutil.copy(p, raw / p.name)
        lake = work / "lake"
        config = work / "cdc.toml"
        config.write_text(CONFIG.format(lake=lake, raw=work / "raw"))
        print(f"sluice: {sluice}; one core each (taskset), sluice --workers 1, DuckDB threads=1")
        print(f"table: {args.rows} rows ({mb_of(load):.0f} MB of DMS full-load Parquet, {len(load)} files)")

        wall_load, rss_load, _ = timed([sluice, "run", "--config", str(config), "--workers", "1"])
        table = lake / "customers"
        before = delta_version(table)
        table_files = len([p for p in table.glob("*.parquet")])
        print(f"full load: {wall_load:.2f} s, peak {rss_load:.0f} MB; the table: {table_files} files, version {before}")

        for p in change_files:
            shutil.copy(p, raw / p.name)
        changes_mb = mb_of(change_files)
        wall, rss, out = timed([sluice, "run", "--config", str(config), "--workers", "1"])
        after = delta_version(table)
        line = next((l.strip() for l in out.splitlines() if l.strip().startswith("cdc:")), "")
        m = re.search(r"(\d+) table files read, (\d+) rewritten", line)
        if not m:
            sys.exit(f"sluice printed no cdc summary:\n{out}")
        rewritten = int(m.group(2))
        merges = after - before

        peer_out = work / "duckdb.parquet"
        wall_db, rss_db, _ = timed([sys.executable, "-c", PEER, str(work / "raw"), str(peer_out)])

        # Row for row: both results hold the same rows.
        con.sql(f"CREATE VIEW s AS SELECT {COLUMNS} FROM delta_scan('{table}')")
        con.sql(f"CREATE VIEW d AS SELECT {COLUMNS} FROM read_parquet('{peer_out}')")
        n_s = con.sql("SELECT count(*) FROM s").fetchone()[0]
        n_d = con.sql("SELECT count(*) FROM d").fetchone()[0]
        only_s = con.sql("SELECT count(*) FROM (SELECT * FROM s EXCEPT ALL SELECT * FROM d)").fetchone()[0]
        only_d = con.sql("SELECT count(*) FROM (SELECT * FROM d EXCEPT ALL SELECT * FROM s)").fetchone()[0]
        if (n_s, only_s, only_d) != (n_d, 0, 0):
            sys.exit(f"the results differ: sluice {n_s} rows, DuckDB {n_d}; "
                     f"{only_s} rows only in sluice's, {only_d} only in DuckDB's")

        print(f"changes: {args.changes} in {len(change_files)} DMS Parquet files, {changes_mb:.1f} MB "
              f"(70% updates, 10% deletes, 20% inserts)")
        print(f"  {line}")
        print(f"both results hold the same {n_s} rows (delta_scan vs read_parquet, EXCEPT ALL both ways)")
        print()
        print(f"  {'':<8} {'seconds':>8} {'change MB/s':>12} {'peak RSS':>10}")
        print(f"  {'sluice':<8} {wall:8.2f} {changes_mb / wall:12.2f} {rss:8.0f} MB"
              f"   {merges} merge commit(s), {rewritten / max(merges, 1):.1f} of {table_files} table files rewritten per commit")
        print(f"  {'DuckDB':<8} {wall_db:8.2f} {changes_mb / wall_db:12.2f} {rss_db:8.0f} MB"
              f"   the whole table read from and written to Parquet")
        print(f"  DuckDB / sluice time: {wall_db / wall:.2f} (above 1: sluice faster); "
              f"sluice / DuckDB peak memory: {rss / rss_db:.2f}")
        sys.stdout.flush()
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
