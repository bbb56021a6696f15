"""The ingest benchmark: sluice, DuckDB and Polars on the same job, side by side.

    bench/run.sh [--job full|plain] [--size 1GB] [--threads 1,2]

Every engine runs on as many cores as it has threads (taskset): "1 thread" is
one core, as on a 1,769 MB Lambda function, whatever helper threads an engine
starts. Generates clickstream JSON Lines with `sluice generate` (and the same rows as
CSV, and as gzip), runs every engine with 1 and 2 threads on one job, checks that
every output has the same rows per partition, and prints wall seconds, MB/s,
CPU seconds, peak RSS, output bytes and files, with the ratios and the targets
of issues 7 and 19. Also measures the cold start of each function binary.
Writes bench/results/ingest-<job>.md and bench/results/ingest-<job>.png.

The jobs (both: the declared schema, `properties` kept as JSON text,
partitioned by (dt, event_type), zstd Parquet):
- `full`, bench/ingest.toml: lower(country), sha256(ip) as hex;
- `plain`, bench/plain.toml: every column as read, plus the date of event_time.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "bench", "data")
RESULTS = os.path.join(ROOT, "bench", "results")
RELEASE = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
SLUICE = os.path.join(RELEASE, "sluice")
PY = sys.executable


def timed(cmd, env=None, cores=None):
    """Run cmd under /usr/bin/time: (wall s, cpu s, peak RSS MB). With `cores`,
    pinned to that many CPUs (taskset), as a Lambda function with that many vCPUs."""
    with tempfile.NamedTemporaryFile("r") as t:
        pin = ["taskset", "-c", ",".join(str(c) for c in range(cores))] if cores else []
        full = pin + ["/usr/bin/time", "-f", "%e %U %S %M", "-o", t.name] + cmd
        r = subprocess.run(full, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
        wall, user, sys_, rss = t.read().split()[-4:]
    return float(wall), float(user) + float(sys_), int(rss) / 1024


def output_stats(out):
    files = [os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs if f.endswith(".parquet")]
    return sum(os.path.getsize(f) for f in files), len(files)


def partition_counts(out):
    import duckdb

    con = duckdb.connect()
    return con.sql(
        f"""SELECT CAST(dt AS VARCHAR), event_type, count(*) FROM
            read_parquet('{out}/**/*.parquet', hive_partitioning=true) GROUP BY ALL ORDER BY ALL"""
    ).fetchall()


def prepare(size):
    """The input files: JSON Lines, the same rows as CSV, and gzip. Cached."""
    raw = os.path.join(DATA, f"raw-{size}")
    jsonl = os.path.join(raw, "clickstream", "events-00000.jsonl")
    if not os.path.exists(jsonl):
        subprocess.run([SLUICE, "generate", "--out", raw, "--size", size, "--seed", "42"], check=True,
                       stdout=subprocess.DEVNULL)
    csv_dir = os.path.join(DATA, f"csv-{size}", "clickstream")
    csv = os.path.join(csv_dir, "events-00000.csv")
    if not os.path.exists(csv):
        import duckdb

        os.makedirs(csv_dir, exist_ok=True)
        types = ("{'event_id':'VARCHAR','event_time':'VARCHAR','user_id':'BIGINT','session_id':'VARCHAR',"
                 "'event_type':'VARCHAR','page':'VARCHAR','referrer':'VARCHAR','country':'VARCHAR',"
                 "'device':'VARCHAR','ip':'VARCHAR','price':'VARCHAR','properties':'JSON'}")
        duckdb.connect().sql(
            f"""COPY (SELECT * FROM read_json('{jsonl}', format='newline_delimited', columns={types}))
                TO '{csv}.tmp' (HEADER, FORMAT csv)""")
        os.rename(csv + ".tmp", csv)
    gz_dir = os.path.join(DATA, f"gz-{size}", "clickstream")
    gz = os.path.join(gz_dir, "events-00000.jsonl.gz")
    if not os.path.exists(gz):
        os.makedirs(gz_dir, exist_ok=True)
        with open(gz + ".tmp", "wb") as f:
            subprocess.run(["gzip", "-c", jsonl], stdout=f, check=True)
        os.rename(gz + ".tmp", gz)
    return {"jsonl": jsonl, "csv": csv, "gz": gz}


JOBS = {"full": "ingest.toml", "plain": "plain.toml"}
JOB_TEXT = {
    "full": "bench/ingest.toml: the declared schema, lower(country), sha256(ip) as hex, `properties` kept as "
            "JSON text, partitioned by (dt, event_type), zstd Parquet.",
    "plain": "bench/plain.toml: the declared schema, every column as read plus CAST(event_time AS DATE) AS dt, "
             "`properties` kept as JSON text, partitioned by (dt, event_type), zstd Parquet.",
}


def job_config(job, fmt):
    """The job's pipeline file; for CSV a copy with `format = "csv"`."""
    path = os.path.join(ROOT, "bench", JOBS[job])
    if fmt == "jsonl":
        return path
    with open(path) as f:
        text = f.read()
    if text.count('format = "jsonl"') != 1:
        sys.exit(f"{path}: expected one `format = \"jsonl\"` line to turn into csv")
    csv = os.path.join(DATA, f"{job}-csv.toml")
    os.makedirs(DATA, exist_ok=True)
    with open(csv, "w") as f:
        f.write(text.replace('format = "jsonl"', 'format = "csv"'))
    return csv


def run_sluice(job, fmt, path, threads, out):
    shutil.rmtree(out, ignore_errors=True)
    config = job_config(job, fmt)
    input_root = os.path.dirname(os.path.dirname(path))
    wall, cpu, rss = timed([SLUICE, "run", "--config", config, "--input", input_root, "--lake", out,
                            "--workers", str(threads)], cores=threads)
    return wall, cpu, rss, os.path.join(out, "clickstream")


def run_peer(engine, job, fmt, path, threads, out):
    env = dict(os.environ, POLARS_MAX_THREADS=str(threads))
    wall, cpu, rss = timed([PY, os.path.join(ROOT, "bench", "peers.py"), engine, job, fmt, path, out, str(threads)],
                           env,
                           cores=threads)
    return wall, cpu, rss, out


def cold_starts(size, runs=10):
    """Median ms from process start to the first poll of the Runtime API, per
    function (bench/functions.py's Runtime API stub; settings from a local
    file here, from S3 there)."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from functions import run_function

    lake = tempfile.mkdtemp()
    config = os.path.join(lake, "sluice.toml")
    with open(os.path.join(ROOT, "bench", "ingest.toml")) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(f'[lake]\nroot = "{lake}/lake"\n[input]\nroot = "{DATA}/raw-{size}"\n' + text)
    env = dict(os.environ, AWS_LAMBDA_FUNCTION_NAME="bench", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1769",
               AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="x",
               AWS_SECRET_ACCESS_KEY="x", AWS_EC2_METADATA_DISABLED="true", SLUICE_CONFIG=config,
               RUST_LOG="warn")
    result = {}
    for name in ("planner", "transform", "catalog"):
        times = [run_function(os.path.join(RELEASE, name), env, [])[0] * 1000 for _ in range(runs)]
        result[name] = statistics.median(times)
    shutil.rmtree(lake, ignore_errors=True)
    return result


def row_fingerprint(out, structure=None):
    """Every row of an output, whole, in a form two engines' outputs can be
    compared by: (rows, the sum of a 64-bit hash of each row's every column,
    partition columns included). Order-independent, and a changed, lost or
    doubled row changes it. Values are compared as text after the writers'
    own choices are evened out: timestamps as UTC without a zone, and
    `properties` (JSON text, which Polars writes with every key of every
    row, null where absent) parsed into one struct of the union of keys
    (`structure`, from the first output, returned for the others)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    src = f"read_parquet('{out}/**/*.parquet', hive_partitioning=true)"
    if structure is None:
        structure = con.execute(f"SELECT json_group_structure(json(properties)) FROM {src}").fetchall()[0][0]
    described = sorted(con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall())
    cols = []
    for name, kind, *_ in described:
        q = f'"{name}"'
        if name == "properties":
            cols.append(f"CAST(json_transform(json({q}), '{structure}') AS VARCHAR)")
        elif kind.startswith("TIMESTAMP"):
            cols.append(f"CAST(CAST({q} AS TIMESTAMP) AS VARCHAR)")
        else:
            cols.append(f"CAST({q} AS VARCHAR)")
    names = [n for n, *_ in described]
    rows, total = con.execute(f"SELECT count(*), sum(CAST(hash({', '.join(cols)}) AS HUGEINT)) FROM {src}").fetchall()[0]
    return (tuple(names), rows, int(total or 0)), structure


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", default="full", choices=sorted(JOBS))
    ap.add_argument("--size", default="1GB")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    job = args.job
    files = prepare(args.size)
    mb = {k: os.path.getsize(v) / 1e6 for k, v in files.items()}
    out_root = os.path.join(DATA, "out")
    rows = []  # (case, engine, threads, wall, cpu, rss, out bytes, files, counts, whole-row fingerprint)
    structure = [None]  # the union of `properties` keys, from the first output

    def record(case, engine, t, res):
        wall, cpu, rss, out = res
        size, n = output_stats(out)
        counts = partition_counts(out)
        whole, structure[0] = row_fingerprint(out, structure[0])
        rows.append(dict(case=case, engine=engine, threads=t, wall=wall, cpu=cpu, rss=rss, out=size, files=n,
                         counts=counts, whole=whole, mbs=mb["jsonl" if case == "jsonl.gz" else case] / wall))
        r = rows[-1]
        print(f"  {case:<9} {engine:<7} threads={t}: {wall:6.2f} s, {r['mbs']:6.1f} MB/s, cpu {cpu:6.2f} s, "
              f"peak {rss:6.0f} MB, out {size / 1e6:6.1f} MB in {n} files", flush=True)

    print(f"input: {mb['jsonl']:.0f} MB JSON Lines, {mb['csv']:.0f} MB CSV (same rows), {mb['gz']:.0f} MB gzip")
    for case in ("jsonl", "csv"):
        for t in threads:
            record(case, "sluice", t, run_sluice(job, case, files[case], t, os.path.join(out_root, f"sluice-{case}-{t}")))
            for engine in ("duckdb", "polars"):
                record(case, engine, t, run_peer(engine, job, case, files[case], t,
                                                 os.path.join(out_root, f"{engine}-{case}-{t}")))
    record("jsonl.gz", "sluice", 1, run_sluice(job, "jsonl", files["gz"], 1, os.path.join(out_root, "sluice-gz-1")))
    wall, _, _ = timed(["sh", "-c", f"gzip -dc '{files['gz']}' > /dev/null"], cores=1)
    gunzip_s = wall

    reference = rows[0]["counts"]
    mismatched = [f"{r['engine']} {r['case']} threads={r['threads']}" for r in rows
                  if r["counts"] != reference or r["whole"] != rows[0]["whole"]]
    total_rows = sum(c for _, _, c in reference)
    print(f"rows: {total_rows} in {len(reference)} partitions; every output has the same rows, whole (every "
          f"column), in the same partitions: {'yes' if not mismatched else 'NO: ' + ', '.join(mismatched)}")

    def get(case, engine, t):
        return next(r for r in rows if r["case"] == case and r["engine"] == engine and r["threads"] == t)

    cold = cold_starts(args.size)
    checks = []
    for case in ("jsonl", "csv"):
        s = get(case, "sluice", 1)
        best = max((get(case, e, 1) for e in ("duckdb", "polars")), key=lambda r: r["mbs"])
        checks.append((f"{case}: 1 thread ≥ 1.5× the fastest peer ({best['engine']})",
                       f"{s['mbs'] / best['mbs']:.2f}×", s["mbs"] >= 1.5 * best["mbs"]))
        checks.append((f"{case}: peak memory < 400 MB", f"{s['rss']:.0f} MB", s["rss"] < 400))
        if 2 in threads:
            s2 = get(case, "sluice", 2)
            checks.append((f"{case}: 2 workers ≥ 1.8× one", f"{s2['mbs'] / s['mbs']:.2f}×",
                           s2["mbs"] >= 1.8 * s["mbs"]))
    plain, gz = get("jsonl", "sluice", 1), get("jsonl.gz", "sluice", 1)
    budget = 1.15 * (plain["wall"] + gunzip_s)
    checks.append(("gzip: ≤ 1.15 × (plain + gunzip time)",
                   f"{gz['wall']:.2f} s vs {plain['wall']:.2f} + {gunzip_s:.2f} s", gz["wall"] <= budget))
    d = get("jsonl", "duckdb", 1)
    checks.append(("output within 10% of DuckDB's", f"{plain['out'] / d['out']:.2f}×", plain["out"] <= 1.10 * d["out"]))
    for name, ms in cold.items():
        checks.append((f"cold start of {name} < 50 ms", f"{ms:.1f} ms", ms < 50))
    checks.append(("the same rows, whole, in every output", "yes" if not mismatched else "no", not mismatched))

    lines = [f"# Ingest benchmark, {job} job ({args.size} of generated clickstream, {total_rows:,} rows, "
             f"{len(reference)} partitions)", "",
             f"Job: {JOB_TEXT[job]}", "",
             f"Machine: {os.cpu_count()} cores; `bench/run.sh --job {job} --size {args.size}`; inputs "
             f"{mb['jsonl']:.0f} MB JSON Lines, {mb['csv']:.0f} MB CSV, {mb['gz']:.0f} MB gzip "
             f"(gunzip alone: {gunzip_s:.2f} s). Each engine is pinned to as many cores as threads (taskset). "
             "Throughput is input MB (uncompressed) per wall second; MB/CPU-s per CPU second.", "",
             "| input | engine | threads | wall s | MB/s | CPU s | MB/CPU-s | peak RSS MB | output MB | files |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        size_mb = mb["jsonl" if r["case"] == "jsonl.gz" else r["case"]]
        lines.append(f"| {r['case']} | {r['engine']} | {r['threads']} | {r['wall']:.2f} | {r['mbs']:.1f} | "
                     f"{r['cpu']:.2f} | {size_mb / r['cpu']:.1f} | {r['rss']:.0f} | {r['out'] / 1e6:.1f} | "
                     f"{r['files']} |")
    lines += ["", "| target | measured | met |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value} | {'yes' if ok else '**no**'} |" for name, value, ok in checks]
    print("\n".join(lines))
    if mismatched:
        # Figures of outputs that differ are not results: nothing is written.
        sys.exit(f"the outputs differ ({', '.join(mismatched)}): bench/results/ left as it was")
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"ingest-{job}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    chart(rows, job)
    print(f"wrote {os.path.relpath(RESULTS, ROOT)}/ingest-{job}.md and ingest-{job}.png")


def chart(rows, job):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['case']}\n{r['engine']} ×{r['threads']}" for r in rows]
    colors = {"sluice": "#1f77b4", "duckdb": "#ff7f0e", "polars": "#2ca02c"}
    fig, (a, b) = plt.subplots(2, 1, figsize=(12, 7), sharex=True)
    a.bar(labels, [r["mbs"] for r in rows], color=[colors[r["engine"]] for r in rows])
    a.set_ylabel("MB/s (higher is better)")
    b.bar(labels, [r["rss"] for r in rows], color=[colors[r["engine"]] for r in rows])
    b.set_ylabel("peak RSS MB (lower is better)")
    b.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"JSON Lines / CSV → partitioned zstd Parquet, {job} job, same machine")
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, f"ingest-{job}.png"), dpi=110)


if __name__ == "__main__":
    main()
