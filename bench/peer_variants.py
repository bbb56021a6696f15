"""Each peer's ways of doing the plain job, timed on one core, to find its
fastest correct form (issue 38). bench/peers.py drives each peer in the
form this finds fastest; bench/README.md lists the times.

    python bench/peer_variants.py [--size 1GB] [--formats jsonl,csv] [--repeat 2]

Every variant reads the same input (bench/data, as bench/run.sh makes it),
writes zstd Parquet partitioned by (dt, event_type), and must give the same
rows, whole, as every other variant (run.py's `row_fingerprint`); one that
does not is reported as different and never counts. Each variant is run
`--repeat` times; its best time is shown.
"""
import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

# The ways each peer can be told the job. Each is Python run as its own
# process with SRC, OUT and FMT set; the plain job only.
DUCKDB_TYPES = {
    "event_id": "VARCHAR", "event_time": "VARCHAR", "user_id": "BIGINT", "session_id": "VARCHAR",
    "event_type": "VARCHAR", "page": "VARCHAR", "referrer": "VARCHAR", "country": "VARCHAR",
    "device": "VARCHAR", "ip": "VARCHAR", "price": "DECIMAL(10,2)", "properties": "JSON",
}


def duckdb_variant(time_type, properties_type, options):
    types = dict(DUCKDB_TYPES, event_time=time_type, properties=properties_type)
    # Braces doubled: the text lands inside an f-string of the variant.
    columns = "{{" + ",".join(f"'{k}':'{v}'" for k, v in types.items()) + "}}"
    event_time = "event_time" if time_type == "TIMESTAMPTZ" else "CAST(event_time AS TIMESTAMPTZ)"
    properties = "properties" if properties_type == "VARCHAR" else "CAST(properties AS VARCHAR)"
    return f"""
import duckdb
con = duckdb.connect()
con.sql("SET threads=1")
con.sql("SET TimeZone='UTC'")
con.sql("SET preserve_insertion_order=false")
if FMT == "jsonl":
    source = f"read_json('{{SRC}}', format='newline_delimited', columns={columns})"
else:
    source = f"read_csv('{{SRC}}', header=true, columns={columns})"
con.sql(f'''COPY (SELECT event_id, {event_time} AS event_time, user_id, session_id, page, referrer,
       country, device, ip, price, {properties} AS properties,
       CAST({event_time} AS DATE) AS dt, event_type FROM {{source}})
  TO '{{OUT}}' (FORMAT parquet, PARTITION_BY (dt, event_type), COMPRESSION zstd{options})''')
"""


POLARS_PROPERTIES = ("pl.Struct({'ab_test': pl.String, 'duration_ms': pl.Int64, 'tags': pl.List(pl.String), "
                     "'depth_pct': pl.Int64, 'viewport': pl.Struct({'w': pl.Int64, 'h': pl.Int64}), "
                     "'results': pl.Int64, 'filters': pl.List(pl.String)})")


def polars_variant(whole_schema, time_format, price, sink_options):
    """`whole_schema`: the reader is given every column's type (no
    inference); else only the strings and numbers, as overrides.
    `time_format`: the format of event_time, or None to let Polars infer it.
    `price`: "float" (read as a float, cast to decimal) or "decimal" (read
    as a decimal)."""
    fmt_arg = f", format={time_format!r}" if time_format else ""
    price_type = "pl.Decimal(10, 2)" if price == "decimal" else "pl.Float64"
    return f"""
import polars as pl
strings = ["event_id", "event_time", "session_id", "event_type", "page", "referrer", "country", "device", "ip"]
schema = {{c: pl.String for c in strings}} | {{"user_id": pl.Int64, "price": {price_type}}}
order = ["event_id", "event_time", "user_id", "session_id", "event_type", "page", "referrer", "country",
         "device", "ip", "price", "properties"]
if FMT == "jsonl":
    if {whole_schema}:
        full = schema | {{"properties": {POLARS_PROPERTIES}}}
        lf = pl.scan_ndjson(SRC, schema={{c: full[c] for c in order}})
    else:
        lf = pl.scan_ndjson(SRC, schema_overrides=schema, infer_schema_length=20000)
    properties = pl.col("properties").struct.json_encode()
else:
    if {whole_schema}:
        full = schema | {{"properties": pl.String}}
        lf = pl.scan_csv(SRC, schema={{c: full[c] for c in order}})
    else:
        lf = pl.scan_csv(SRC, schema_overrides=schema | {{"properties": pl.String}})
    properties = pl.col("properties")
event_time = pl.col("event_time").str.to_datetime(time_unit="us", time_zone="UTC"{fmt_arg})
lf = lf.select(pl.col("event_id"), event_time.alias("event_time"), pl.col("user_id"), pl.col("session_id"),
               pl.col("page"), pl.col("referrer"), pl.col("country"), pl.col("device"), pl.col("ip"),
               pl.col("price").cast(pl.Decimal(10, 2)).alias("price"), properties.alias("properties"),
               event_time.dt.date().alias("dt"), pl.col("event_type"))
lf.sink_parquet(pl.PartitionBy(OUT, key=["dt", "event_type"], include_key=False), compression="zstd",
                mkdir=True{sink_options})
"""


SAME = ", COMPRESSION_LEVEL 3, ROW_GROUP_SIZE 1048576"
POLARS_SAME = ", compression_level=3, row_group_size=1048576"
TIME = "%Y-%m-%dT%H:%M:%S%.fZ"
VARIANTS = [
    ("duckdb", "event_time read as text, then CAST; properties as JSON, then text (before)",
     duckdb_variant("VARCHAR", "JSON", "")),
    ("duckdb", "event_time read as TIMESTAMPTZ by the reader; properties as JSON, then text",
     duckdb_variant("TIMESTAMPTZ", "JSON", "")),
    ("duckdb", "event_time as TIMESTAMPTZ; properties read as VARCHAR",
     duckdb_variant("TIMESTAMPTZ", "VARCHAR", "")),
    ("duckdb", "event_time as TIMESTAMPTZ; properties as VARCHAR; zstd level 3, row groups of 1 Mi rows",
     duckdb_variant("TIMESTAMPTZ", "VARCHAR", SAME)),
    ("duckdb", "event_time as text then CAST; properties as JSON; zstd level 3, row groups of 1 Mi rows",
     duckdb_variant("VARCHAR", "JSON", SAME)),
    ("polars", "schema overrides (inference), event_time format inferred, price float then decimal (before)",
     polars_variant(False, None, "float", "")),
    ("polars", "schema overrides, event_time format given",
     polars_variant(False, TIME, "float", "")),
    ("polars", "whole schema, event_time format given, price float then decimal",
     polars_variant(True, TIME, "float", "")),
    ("polars", "whole schema, event_time format given, price read as decimal",
     polars_variant(True, TIME, "decimal", "")),
    ("polars", "whole schema, format given, price float; zstd level 3, row groups of 1 Mi rows",
     polars_variant(True, TIME, "float", POLARS_SAME)),
    ("polars", "whole schema, format given, price decimal; zstd level 3, row groups of 1 Mi rows",
     polars_variant(True, TIME, "decimal", POLARS_SAME)),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1GB")
    ap.add_argument("--formats", default="jsonl,csv")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--only", default="", help="run only variants whose engine or text contains this")
    args = ap.parse_args()
    inputs = run.prepare(args.size)
    work = tempfile.mkdtemp(prefix="peer-variants-")
    print(f"| input | engine | variant | best wall s | CPU s | peak RSS MB | same rows |")
    print(f"| --- | --- | --- | ---: | ---: | ---: | --- |")
    try:
        for fmt in args.formats.split(","):
            structure, want = None, None
            for engine, what, code in VARIANTS:
                if args.only and args.only not in engine and args.only not in what:
                    continue
                script = os.path.join(work, "variant.py")
                out = os.path.join(work, "out")
                with open(script, "w") as f:
                    f.write(f"SRC, OUT, FMT = {inputs[fmt]!r}, {out!r}, {fmt!r}\n" + code)
                best = None
                for _ in range(args.repeat):
                    shutil.rmtree(out, ignore_errors=True)
                    env = dict(os.environ, POLARS_MAX_THREADS="1")
                    try:
                        t = run.timed([run.PY, script], env, cores=1)
                    except SystemExit as e:
                        said = [line for line in str(e).splitlines() if line.strip()]
                        print(f"| {fmt} | {engine} | {what} | failed: {said[-1][:160]} | | | |")
                        best = None
                        break
                    best = t if best is None or t[0] < best[0] else best
                if best is None:
                    continue
                fingerprint, structure = run.row_fingerprint(out, structure)
                want = want or fingerprint
                same = "yes" if fingerprint == want else f"**no** ({fingerprint[1]} rows)"
                print(f"| {fmt} | {engine} | {what} | {best[0]:.2f} | {best[1]:.2f} | {best[2]:.0f} | {same} |",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
