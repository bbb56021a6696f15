//! Helpers for the end-to-end tests: the `sluice` binary, run as a user runs
//! it, and independent readers (DuckDB and pyarrow, through Python) to check
//! what it wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod cdc;
pub mod enrichment;
pub mod memory;
pub mod moto;

use serde_json::Value;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

/// The `sluice` binary of this build: the `sluice-under-test` target of this
/// crate, which is the `sluice` command (`sluice_cli::main`), or `SLUICE_BIN`.
pub fn sluice_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var("SLUICE_BIN") {
        Ok(p) => PathBuf::from(p),
        Err(_) => {
            let exe = std::env::current_exe().expect("test binary path");
            let dir = exe
                .parent()
                .and_then(Path::parent)
                .expect("target/<profile>/deps/<test>");
            let bin = dir.join(format!("sluice-under-test{}", std::env::consts::EXE_SUFFIX));
            assert!(
                bin.exists(),
                "{} is missing: run the tests with cargo test",
                bin.display()
            );
            bin
        }
    })
}

/// Run `sluice` with `args` in `cwd`.
pub fn sluice(cwd: &Path, args: &[&str]) -> Output {
    Command::new(sluice_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("SLUICE_LOG")
        .output()
        .expect("sluice runs")
}

/// `sluice run --config pipeline.toml` with `more` arguments, in `cwd`.
pub fn sluice_run(cwd: &Path, more: &[&str]) -> Output {
    let mut args = vec!["run", "--config", "pipeline.toml"];
    args.extend_from_slice(more);
    sluice(cwd, &args)
}

/// What a command printed: its stdout, then its stderr.
pub fn printed(out: &Output) -> String {
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    format!(
        "{}{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    )
}

/// Run `sluice` and require success; returns stdout.
pub fn sluice_ok(cwd: &Path, args: &[&str]) -> String {
    let out = sluice(cwd, args);
    assert!(
        out.status.success(),
        "sluice {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Run `sluice`, require failure; returns stderr.
pub fn sluice_err(cwd: &Path, args: &[&str]) -> String {
    let out = sluice(cwd, args);
    assert!(
        !out.status.success(),
        "sluice {args:?} should have failed:\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).expect("utf-8 output")
}

/// The Python interpreter with duckdb and pyarrow (`SLUICE_PYTHON`, else `python3`).
pub fn python() -> String {
    std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Run a Python script (with duckdb and pyarrow importable) in `cwd`; it must
/// print one JSON document, which is returned.
pub fn python_json(cwd: &Path, script: &str) -> serde_json::Value {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the Python check failed (the test command installs duckdb and pyarrow: see README):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "Python printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Every Parquet file under `dir`, relative, sorted; none when `dir` is
/// not there.
pub fn parquet_files_under(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut files = files_under(dir);
    files.retain(|f| f.ends_with(".parquet"));
    files
}

/// Copies of the bundled example's raw files `files` in `to`.
pub fn copy_example_files(files: &[&str], to: &Path) {
    let from = repo_root().join("examples/clickstream/raw/clickstream");
    std::fs::create_dir_all(to).unwrap();
    for f in files {
        std::fs::copy(from.join(f), to.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

/// Every file under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).expect("readable folder") {
            let e = e.expect("entry");
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(
                    p.strip_prefix(base)
                        .expect("under base")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// A Python script that compares the example table (`examples/clickstream/sluice.toml`'s
/// SQL) in `lake` with DuckDB's own reading of the raw files, row for row on
/// every column: the transform is applied on the DuckDB side (lower(country),
/// sha256(ip) as hex, the date of event_time as `dt`, rows without an
/// event_type left out), and the two sides are compared as multisets with
/// `EXCEPT ALL` both ways. It prints the rows found on one side only (up to
/// five each, with their counts), per-partition row counts from both sides,
/// and the lake's row count through pyarrow. `raw_reader` is `read_json` or
/// `read_csv`. Check its output with [`check_lake_matches_raw`].
pub fn compare_script(lake: &Path, raw_glob: &str, raw_reader: &str) -> String {
    let types = "{'event_id':'VARCHAR','event_time':'VARCHAR','user_id':'BIGINT','session_id':'VARCHAR','event_type':'VARCHAR','page':'VARCHAR','referrer':'VARCHAR','country':'VARCHAR','device':'VARCHAR','ip':'VARCHAR','price':'DECIMAL(10,2)','properties':'VARCHAR'}";
    let source = match raw_reader {
        "read_csv" => format!("read_csv('{raw_glob}', header=true, types={types})"),
        _ => format!("read_json('{raw_glob}', columns={types})"),
    };
    format!(
        r#"
import duckdb, json, pyarrow.dataset as ds
con = duckdb.connect()
con.sql("SET TimeZone='UTC'")
lake = {lake:?}
q = lambda s: [list(map(str, r)) for r in con.sql(s).fetchall()]
# Every column, each side in the same order and the same types; JSON minified.
con.sql(f"""CREATE TABLE lake_rows AS
  SELECT event_id, CAST(event_time AS TIMESTAMPTZ) AS event_time, user_id, session_id, page, referrer,
         country, device, ip_hash, price, json(properties)::VARCHAR AS properties,
         CAST(dt AS VARCHAR) AS dt, event_type
  FROM read_parquet('{{lake}}/clickstream/**/*.parquet', hive_partitioning=true)""")
con.sql("""CREATE TABLE raw_rows AS
  SELECT event_id, CAST(event_time AS TIMESTAMPTZ) AS event_time, user_id, session_id, page, referrer,
         lower(country) AS country, device, sha256(ip) AS ip_hash, price, json(properties)::VARCHAR AS properties,
         CAST(CAST(CAST(event_time AS TIMESTAMPTZ) AS DATE) AS VARCHAR) AS dt, event_type
  FROM {source}
  WHERE event_type IS NOT NULL""")
diff = lambda a, b: q(f"SELECT * FROM (SELECT * FROM {{a}} EXCEPT ALL SELECT * FROM {{b}}) ORDER BY ALL")
only_lake = diff("lake_rows", "raw_rows")
only_raw = diff("raw_rows", "lake_rows")
per_partition = "SELECT dt, event_type, count(*) FROM {{}} GROUP BY ALL ORDER BY ALL"
table = ds.dataset(f"{{lake}}/clickstream", format="parquet", partitioning="hive").to_table()
print(json.dumps({{
    "only_lake": len(only_lake), "only_lake_rows": only_lake[:5],
    "only_raw": len(only_raw), "only_raw_rows": only_raw[:5],
    "lake_rows": q("SELECT count(*) FROM lake_rows")[0][0],
    "raw_rows": q("SELECT count(*) FROM raw_rows")[0][0],
    "got": q(per_partition.format("lake_rows")), "want": q(per_partition.format("raw_rows")),
    "pyarrow_rows": table.num_rows, "columns": table.schema.names}}))
"#
    )
}

/// Require that a comparison found no row only in `what` (`only_lake`)
/// and none only in the raw input (`only_raw`); else name a few of each.
fn assert_no_difference(what: &str, s: &Value) {
    assert_eq!(
        (s["only_lake"].as_u64(), s["only_raw"].as_u64()),
        (Some(0), Some(0)),
        "{what} and the raw input differ: rows only in {what}: {}, only in the raw input: {}",
        s["only_lake_rows"],
        s["only_raw_rows"]
    );
}

/// Require that [`compare_script`] found the same rows on both sides: every
/// row of the raw input, transformed, is in the lake once, on every column,
/// and nothing else is.
pub fn check_lake_matches_raw(v: &Value) {
    let raw_rows: u64 = v["raw_rows"].as_str().unwrap().parse().unwrap();
    assert!(raw_rows > 0, "the raw side is empty: {v}");
    assert_no_difference("the lake", v);
    assert_eq!(v["got"], v["want"], "per-partition counts");
    assert_eq!(
        v["pyarrow_rows"].as_u64().unwrap(),
        raw_rows,
        "pyarrow's count"
    );
}

/// Compare two DuckDB queries as multisets of rows (`EXCEPT ALL` both ways),
/// run in `cwd`; panics naming up to five rows found on one side only. The
/// queries must give the same columns in the same order and types. Returns
/// the number of rows on each side (equal when it returns).
pub fn assert_same_rows(cwd: &Path, got: &str, want: &str) -> u64 {
    let script = format!(
        r#"
import duckdb, json
con = duckdb.connect()
con.sql("SET TimeZone='UTC'")
con.sql({got:?}.join(["CREATE TABLE got AS ", ""]))
con.sql({want:?}.join(["CREATE TABLE want AS ", ""]))
q = lambda s: [list(map(str, r)) for r in con.sql(s).fetchall()]
diff = lambda a, b: q(f"SELECT * FROM (SELECT * FROM {{a}} EXCEPT ALL SELECT * FROM {{b}}) ORDER BY ALL")
only_got, only_want = diff("got", "want"), diff("want", "got")
print(json.dumps({{"only_got": len(only_got), "only_got_rows": only_got[:5],
                  "only_want": len(only_want), "only_want_rows": only_want[:5],
                  "got": q("SELECT count(*) FROM got")[0][0], "want": q("SELECT count(*) FROM want")[0][0]}}))
"#
    );
    let v = python_json(cwd, &script);
    assert_eq!(
        (v["only_got"].as_u64(), v["only_want"].as_u64()),
        (Some(0), Some(0)),
        "the rows differ: {} rows only in {got}: {}; {} rows only in {want}: {}",
        v["only_got"],
        v["only_got_rows"],
        v["only_want"],
        v["only_want_rows"]
    );
    v["got"].as_str().unwrap().parse().unwrap()
}

/// A new version of the example's first raw file that differs in every way a
/// re-upload can: half the rows are gone, every price changed, a third of the
/// rows moved to another day (new `dt` partitions), no `scroll` event is left
/// (its partitions vanish), and rows that were not there before are added.
pub fn new_version() -> String {
    new_version_of(
        &std::fs::read_to_string(
            repo_root()
                .join("examples/clickstream/raw/clickstream")
                .join("events-00000.jsonl"),
        )
        .unwrap(),
    )
}

/// [`new_version`] of any JSON Lines text of the example's schema.
pub fn new_version_of(text: &str) -> String {
    let mut out = String::new();
    for (i, line) in text.lines().enumerate().filter(|(i, _)| i % 2 == 0) {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["event_type"] == "scroll" {
            continue;
        }
        if v["price"].is_number() {
            let p = v["price"].as_f64().unwrap();
            v["price"] = serde_json::json!(((p + 1.25) * 100.0).round() / 100.0);
        }
        if i % 3 == 0 {
            let t =
                chrono::DateTime::parse_from_rfc3339(v["event_time"].as_str().unwrap()).unwrap();
            v["event_time"] = (t + chrono::Duration::days(40)).to_rfc3339().into();
        }
        out.push_str(&v.to_string());
        out.push('\n');
        if i % 10 == 0 {
            v["event_id"] = format!("new-{i}").into();
            out.push_str(&v.to_string());
            out.push('\n');
        }
    }
    out
}

/// The Python interpreter with the Delta readers (`deltalake`, DuckDB 1.4.4
/// with the `delta` extension, Polars): `SLUICE_DELTA_PYTHON`, else
/// `.venv-delta` of the repository (scripts/test makes it).
pub fn delta_python() -> String {
    std::env::var("SLUICE_DELTA_PYTHON").unwrap_or_else(|_| {
        repo_root()
            .join(".venv-delta/bin/python")
            .to_string_lossy()
            .into_owned()
    })
}

/// Run a Python script with the Delta readers in `cwd`; it must print one
/// JSON document, which is returned.
pub fn delta_python_json(cwd: &Path, script: &str) -> serde_json::Value {
    // The readers' threads (pyarrow's, the delta extension's) can abort the
    // interpreter's shutdown ("terminate called without an active
    // exception") after the answer is out: end the process at once.
    let script =
        format!("{script}\nimport os as _os, sys as _sys\n_sys.stdout.flush()\n_os._exit(0)\n");
    let out = Command::new(delta_python())
        .arg("-c")
        .arg(&script)
        .current_dir(cwd)
        .output()
        .expect(
            "the Delta readers' Python runs (scripts/test installs tests/requirements-delta.txt)",
        );
    assert!(
        out.status.success(),
        "the Python check failed:\n{}\nstdout: {}\nscript: {}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
        &script[..script.len().min(400)]
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "Python printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Python that opens DuckDB (`con`) with the `delta` extension loaded from
/// the installed `duckdb-ext-delta` package (DuckDB cannot download it here).
pub const DUCKDB_DELTA: &str = r#"
import duckdb, os, duckdb_ext
ext = os.path.join(list(duckdb_ext.__path__)[0], "extensions", "v" + duckdb.__version__, "linux_amd64", "delta.duckdb_extension")
con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
con.sql("SET enable_progress_bar = false")
con.sql(f"LOAD '{ext}'")
con.sql("SET TimeZone='UTC'")
"#;

/// A Python script comparing the example table of the Delta lake `lake`
/// (at `version`, or its latest) with DuckDB's own reading and transform of
/// the raw files, as [`compare_script`] does for a Hive lake, through two
/// readers nobody here wrote: DuckDB's `delta_scan` and Python `deltalake`
/// (`to_pyarrow_table`); an older `version` is read by Polars (`read_delta`)
/// instead of `delta_scan`, which reads only the latest. Check it with
/// [`check_delta_matches_raw`].
pub fn compare_delta_script(lake: &Path, raw_glob: &str, version: Option<i64>) -> String {
    let types = "{'event_id':'VARCHAR','event_time':'VARCHAR','user_id':'BIGINT','session_id':'VARCHAR','event_type':'VARCHAR','page':'VARCHAR','referrer':'VARCHAR','country':'VARCHAR','device':'VARCHAR','ip':'VARCHAR','price':'DECIMAL(10,2)','properties':'VARCHAR'}";
    let version = version.map_or("None".to_string(), |v| v.to_string());
    format!(
        r#"{DUCKDB_DELTA}
import json, deltalake
table = {lake:?} + "/clickstream"
version = {version}
dt = deltalake.DeltaTable(table, version=version)
arrow_table = dt.to_pyarrow_table()
con.register("deltalake_rows", arrow_table)
if version is None:
    con.sql(f"CREATE VIEW scan AS SELECT * FROM delta_scan('{{table}}')")
else:
    # delta_scan (duckdb-ext-delta 1.4) reads the latest version only: an
    # older one is read by a third reader, Polars.
    import polars
    con.register("scan", polars.read_delta(table, version=version).to_arrow())
q = lambda s: [list(map(str, r)) for r in con.sql(s).fetchall()]
shape = lambda src: f"""SELECT event_id, CAST(event_time AS TIMESTAMPTZ) AS event_time, user_id, session_id, page, referrer,
         country, device, ip_hash, price, json(properties)::VARCHAR AS properties,
         CAST(dt AS VARCHAR) AS dt, event_type FROM {{src}}"""
con.sql("CREATE TABLE by_scan AS " + shape("scan"))
con.sql("CREATE TABLE by_deltalake AS " + shape("deltalake_rows"))
con.sql("""CREATE TABLE raw_rows AS
  SELECT event_id, CAST(event_time AS TIMESTAMPTZ) AS event_time, user_id, session_id, page, referrer,
         lower(country) AS country, device, sha256(ip) AS ip_hash, price, json(properties)::VARCHAR AS properties,
         CAST(CAST(CAST(event_time AS TIMESTAMPTZ) AS DATE) AS VARCHAR) AS dt, event_type
  FROM read_json('{raw_glob}', columns={types})
  WHERE event_type IS NOT NULL""")
diff = lambda a, b: q(f"SELECT * FROM (SELECT * FROM {{a}} EXCEPT ALL SELECT * FROM {{b}}) ORDER BY ALL")
per_partition = "SELECT dt, event_type, count(*) FROM {{}} GROUP BY ALL ORDER BY ALL"
out = {{"raw_rows": q("SELECT count(*) FROM raw_rows")[0][0], "want": q(per_partition.format("raw_rows")),
       "version": dt.version(), "files": len(dt.file_uris()), "columns": arrow_table.schema.names}}
for side in ["by_scan", "by_deltalake"]:
    only_lake, only_raw = diff(side, "raw_rows"), diff("raw_rows", side)
    out[side] = {{"only_lake": len(only_lake), "only_lake_rows": only_lake[:5],
                 "only_raw": len(only_raw), "only_raw_rows": only_raw[:5],
                 "rows": q(f"SELECT count(*) FROM {{side}}")[0][0], "got": q(per_partition.format(side))}}
print(json.dumps(out))
"#
    )
}

/// Require that [`compare_delta_script`] found, through both readers, every
/// row of the raw input, transformed, once, and nothing else.
pub fn check_delta_matches_raw(v: &Value) {
    let raw_rows: u64 = v["raw_rows"].as_str().unwrap().parse().unwrap();
    assert!(raw_rows > 0, "the raw side is empty: {v}");
    for side in ["by_scan", "by_deltalake"] {
        let s = &v[side];
        assert_no_difference(&format!("the Delta table read {side}"), s);
        assert_eq!(s["got"], v["want"], "{side}: per-partition counts");
        assert_eq!(s["rows"].as_str().unwrap(), v["raw_rows"].as_str().unwrap());
    }
}

/// The bytes of the object at `path` in `store`; a test fails loudly
/// naming the object when it cannot be read.
pub async fn object_bytes(
    store: &dyn object_store::ObjectStore,
    path: &object_store::path::Path,
) -> bytes::Bytes {
    use object_store::ObjectStoreExt as _;
    let got = store.get(path).await;
    let got = got.unwrap_or_else(|e| panic!("{path}: {e}"));
    got.bytes().await.unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every object under `prefix` in `store`, in the store's order; a test
/// fails loudly naming the prefix when it cannot be listed.
pub async fn list_under(
    store: &dyn object_store::ObjectStore,
    prefix: &str,
) -> Vec<object_store::ObjectMeta> {
    use futures::TryStreamExt as _;
    let path = object_store::path::Path::parse(prefix).unwrap_or_else(|e| panic!("{prefix}: {e}"));
    let listed = store.list(Some(&path)).try_collect().await;
    listed.unwrap_or_else(|e| panic!("listing {prefix}: {e}"))
}

/// Every row of a Parquet file, as one JSON line each (arrow's JSON
/// writer), in the file's order.
pub fn parquet_json_rows(bytes: bytes::Bytes) -> Vec<String> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for batch in reader {
        let mut buf = Vec::new();
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(&batch.unwrap()).unwrap();
        w.finish().unwrap();
        rows.extend(String::from_utf8(buf).unwrap().lines().map(String::from));
    }
    rows
}

/// `sluice compact` of every table of the lake `lake` (under `cwd`) into
/// 64 MiB files, whatever their age; what it printed.
pub fn compact_now(cwd: &Path, lake: &str) -> String {
    sluice_ok(
        cwd,
        &[
            "compact",
            "--lake",
            lake,
            "--target-size",
            "64MiB",
            "--min-age",
            "0s",
        ],
    )
}

/// `sluice run` of the pipeline file `config` into `lake` (under `cwd`),
/// with `more` arguments after them; what it printed.
pub fn run_into(cwd: &Path, config: &str, lake: &str, more: &[&str]) -> String {
    let mut args = vec!["run", "--config", config, "--lake", lake];
    args.extend_from_slice(more);
    sluice_ok(cwd, &args)
}

/// The lake's clickstream table holds exactly the bundled example's raw
/// rows (DuckDB reads both, row for row); what the comparison found.
pub fn check_example_lake(lake: &Path) -> Value {
    let v = python_json(
        &repo_root(),
        &compare_script(lake, "examples/clickstream/raw/clickstream/*", "read_json"),
    );
    check_lake_matches_raw(&v);
    v
}

/// What `sluice partitions <table> --lake <lake>` prints.
pub fn partitions_of(lake: &str, table: &str) -> String {
    sluice_ok(&repo_root(), &["partitions", table, "--lake", lake])
}

/// The column names a comparison script reported (`v["columns"]`).
pub fn columns_of(v: &Value) -> Vec<&str> {
    let columns = v["columns"].as_array().expect("the script lists columns");
    columns.iter().map(|c| c.as_str().unwrap()).collect()
}

/// `sluice query` over the lake `lake`, as CSV.
pub fn query_csv(cwd: &Path, lake: &str, sql: &str) -> String {
    sluice_ok(cwd, &["query", "--lake", lake, "--format", "csv", sql])
}
