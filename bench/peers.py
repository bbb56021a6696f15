"""The benchmark job done by a peer engine: DuckDB or Polars.

    python bench/peers.py duckdb|polars full|plain jsonl|csv INPUT OUT THREADS

Both jobs read the declared clickstream schema and write zstd Parquet
partitioned by (dt, event_type), with `properties` kept as JSON text:
- `full` is bench/ingest.toml's: lower(country), sha256(ip) as hex;
- `plain` is bench/plain.toml's: every column as read, plus the date of
  event_time.
Polars reads its thread count from POLARS_MAX_THREADS, which bench/run.py
sets before this process starts.
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
    types = ("{'event_id':'VARCHAR','event_time':'VARCHAR','user_id':'BIGINT','session_id':'VARCHAR',"
             "'event_type':'VARCHAR','page':'VARCHAR','referrer':'VARCHAR','country':'VARCHAR','device':'VARCHAR',"
             "'ip':'VARCHAR','price':'DECIMAL(10,2)','properties':'JSON'}")
    if fmt == "jsonl":
        source = f"read_json('{src}', format='newline_delimited', columns={types})"
    else:
        source = f"read_csv('{src}', header=true, columns={types})"
    if job == "full":
        country, ip = "lower(country) AS country", "sha256(ip) AS ip_hash"
    else:
        country, ip = "country", "ip"
    con.sql(f"""COPY (SELECT event_id, CAST(event_time AS TIMESTAMPTZ) AS event_time, user_id, session_id, page, referrer,
           {country}, device, {ip}, price, CAST(properties AS VARCHAR) AS properties,
           CAST(CAST(event_time AS TIMESTAMPTZ) AS DATE) AS dt, event_type
      FROM {source})
      TO '{out}' (FORMAT parquet, PARTITION_BY (dt, event_type), COMPRESSION zstd)""")
elif engine == "polars":
    import polars as pl
    import polars_hash as plh

    strings = ["event_id", "event_time", "session_id", "event_type", "page", "referrer", "country", "device", "ip"]
    schema = {c: pl.String for c in strings}
    schema |= {"user_id": pl.Int64, "price": pl.Float64}
    if fmt == "jsonl":
        # `properties` is a nested object: read it as a struct, write it back as JSON text.
        lf = pl.scan_ndjson(src, schema_overrides=schema, infer_schema_length=20000)
        properties = pl.col("properties").struct.json_encode()
    else:
        lf = pl.scan_csv(src, schema_overrides=schema | {"properties": pl.String})
        properties = pl.col("properties")
    if job == "full":
        country = pl.col("country").str.to_lowercase().alias("country")
        ip = plh.col("ip").chash.sha2_256().alias("ip_hash")
    else:
        country, ip = pl.col("country"), pl.col("ip")
    event_time = pl.col("event_time").str.to_datetime(time_unit="us", time_zone="UTC")
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
    lf.sink_parquet(pl.PartitionBy(out, key=["dt", "event_type"], include_key=False), compression="zstd", mkdir=True)
else:
    sys.exit(f"unknown engine {engine}")
