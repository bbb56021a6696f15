"""The benchmark job done by a peer engine: DuckDB or Polars.

    python bench/peers.py duckdb|polars full|plain jsonl|csv INPUT OUT THREADS

Both jobs read the declared clickstream schema and write zstd Parquet
partitioned by (dt, event_type), with `properties` kept as JSON text:
- `full` is bench/ingest.toml's: lower(country), sha256(ip) as hex;
- `plain` is bench/plain.toml's: every column as read, plus the date of
  event_time.
Polars reads its thread count from POLARS_MAX_THREADS, which bench/run.py
sets before this process starts.

Each peer is driven in the fastest form bench/peer_variants.py found that
gives the same rows (bench/README.md lists the forms tried and their
times): the whole schema given to the reader (no inference), event_time
parsed by the reader (DuckDB) or with its format given (Polars), and the
same zstd level (3) and row-group bound (1 Mi rows) as sluice writes.
Where a peer cannot do a step sluice's way it says so here: Polars' JSON
reader cannot read a number as a decimal (price is read as a float and
cast), nor keep a nested object as JSON text (properties is read as a
struct of every key the generator writes and encoded back).
"""
import shutil
import sys

engine, job, fmt, src, out, threads = sys.argv[1:6] + [int(sys.argv[6])]
if job not in ("full", "plain"):
    sys.exit(f"unknown job {job}")
shutil.rmtree(out, ignore_errors=True)

if engine == "duckdb":
    import duckdb

    con = duckdb.connect()
    con.sql(f"SET threads={threads}")
    con.sql("SET TimeZone='UTC'")
    con.sql("SET preserve_insertion_order=false")
    types = ("{'event_id':'VARCHAR','event_time':'TIMESTAMPTZ','user_id':'BIGINT','session_id':'VARCHAR',"
             "'event_type':'VARCHAR','page':'VARCHAR','referrer':'VARCHAR','country':'VARCHAR','device':'VARCHAR',"
             "'ip':'VARCHAR','price':'DECIMAL(10,2)','properties':'VARCHAR'}")
    if fmt == "jsonl":
        source = f"read_json('{src}', format='newline_delimited', columns={types})"
    else:
        source = f"read_csv('{src}', header=true, columns={types})"
    if job == "full":
        country, ip = "lower(country) AS country", "sha256(ip) AS ip_hash"
    else:
        country, ip = "country", "ip"
    con.sql(f"""COPY (SELECT event_id, event_time, user_id, session_id, page, referrer,
           {country}, device, {ip}, price, properties, CAST(event_time AS DATE) AS dt, event_type
      FROM {source})
      TO '{out}' (FORMAT parquet, PARTITION_BY (dt, event_type), COMPRESSION zstd, COMPRESSION_LEVEL 3,
                  ROW_GROUP_SIZE 1048576)""")
elif engine == "polars":
    import polars as pl
    import polars_hash as plh

    strings = ["event_id", "event_time", "session_id", "event_type", "page", "referrer", "country", "device", "ip"]
    order = ["event_id", "event_time", "user_id", "session_id", "event_type", "page", "referrer", "country",
             "device", "ip", "price", "properties"]
    if fmt == "jsonl":
        properties_type = pl.Struct({"ab_test": pl.String, "duration_ms": pl.Int64, "tags": pl.List(pl.String),
                                     "depth_pct": pl.Int64, "viewport": pl.Struct({"w": pl.Int64, "h": pl.Int64}),
                                     "results": pl.Int64, "filters": pl.List(pl.String)})
        types = {c: pl.String for c in strings} | {"user_id": pl.Int64, "price": pl.Float64,
                                                   "properties": properties_type}
        lf = pl.scan_ndjson(src, schema={c: types[c] for c in order})
        properties = pl.col("properties").struct.json_encode()
    else:
        types = {c: pl.String for c in strings} | {"user_id": pl.Int64, "price": pl.Decimal(10, 2),
                                                   "properties": pl.String}
        lf = pl.scan_csv(src, schema={c: types[c] for c in order})
        properties = pl.col("properties")
    if job == "full":
        country = pl.col("country").str.to_lowercase().alias("country")
        ip = plh.col("ip").chash.sha2_256().alias("ip_hash")
    else:
        country, ip = pl.col("country"), pl.col("ip")
    event_time = pl.col("event_time").str.to_datetime(format="%Y-%m-%dT%H:%M:%S%.fZ", time_unit="us", time_zone="UTC")
    lf = lf.select(
        pl.col("event_id"),
        event_time.alias("event_time"),
        pl.col("user_id"),
        pl.col("session_id"),
        pl.col("page"),
        pl.col("referrer"),
        country,
        pl.col("device"),
        ip,
        pl.col("price").cast(pl.Decimal(10, 2)).alias("price"),
        properties.alias("properties"),
        event_time.dt.date().alias("dt"),
        pl.col("event_type"),
    )
    lf.sink_parquet(pl.PartitionBy(out, key=["dt", "event_type"], include_key=False), compression="zstd",
                    compression_level=3, row_group_size=1048576, mkdir=True)
else:
    sys.exit(f"unknown engine {engine}")
