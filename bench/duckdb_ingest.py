"""DuckDB doing the same job as bench/ingest.toml: JSON Lines -> zstd Parquet
partitioned by (dt, event_type), the same declared schema and transform.
Prints one line of JSON: seconds, cpu seconds, peak RSS, output bytes and files."""
import json, os, resource, shutil, sys, time

import duckdb

src, out, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
shutil.rmtree(out, ignore_errors=True)
con = duckdb.connect()
con.sql(f"SET threads={threads}")
con.sql("SET TimeZone='UTC'")
con.sql("SET preserve_insertion_order=false")
columns = ("{'event_id':'VARCHAR','event_time':'VARCHAR','user_id':'BIGINT','session_id':'VARCHAR',"
           "'event_type':'VARCHAR','page':'VARCHAR','referrer':'VARCHAR','country':'VARCHAR','device':'VARCHAR',"
           "'ip':'VARCHAR','price':'DECIMAL(10,2)','properties':'JSON'}")
wall, cpu = time.time(), time.process_time()
con.sql(f"""COPY (SELECT event_id, CAST(event_time AS TIMESTAMPTZ) AS event_time, user_id, session_id, page, referrer,
       lower(country) AS country, device, sha256(ip) AS ip_hash, price, CAST(properties AS VARCHAR) AS properties,
       CAST(CAST(event_time AS TIMESTAMPTZ) AS DATE) AS dt, event_type
  FROM read_json('{src}', format='newline_delimited', columns={columns}))
  TO '{out}' (FORMAT parquet, PARTITION_BY (dt, event_type), COMPRESSION zstd)""")
wall, cpu = time.time() - wall, time.process_time() - cpu
files = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs]
print(json.dumps({"seconds": wall, "cpu": cpu, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "out_bytes": sum(os.path.getsize(f) for f in files), "files": len(files)}))
