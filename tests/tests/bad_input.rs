//! The bad-input corpus (`tests/fixtures/bad/cases.toml`), run end to end:
//! each file is loaded by `sluice run` into its own lake, then the landed
//! rows are read back by DuckDB, the quarantine and the commit records are
//! read as files, and each is compared with the case's expected outcome.
//! Uncompressed files are run again cut into 100-byte chunks, which must
//! give the same outcome. The whole corpus runs again into Delta tables,
//! read back by DuckDB's `delta_scan` and Python `deltalake`: the same
//! outcome, evolved columns in the Delta schema.

use std::path::Path;

use serde_json::Value;
use sluice_tests::{DUCKDB_DELTA, delta_python_json, files_under, python_json, repo_root};

/// The lake's table format a case runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Hive,
    Delta,
}

fn corpus() -> Vec<toml::Table> {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/bad/cases.toml"))
        .expect("cases.toml");
    let doc: toml::Table = toml::from_str(&text).expect("cases.toml parses");
    doc["case"]
        .as_array()
        .expect("[[case]]")
        .iter()
        .map(|c| c.as_table().expect("a case is a table").clone())
        .collect()
}

fn strings(case: &toml::Table, key: &str) -> Vec<String> {
    case.get(key)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("strings").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn int(case: &toml::Table, key: &str) -> Option<u64> {
    case.get(key)
        .map(|v| v.as_integer().expect("an integer") as u64)
}

/// What one run of a case left.
#[derive(Debug, PartialEq)]
struct Outcome {
    rows: u64,
    rejected: Vec<Value>,
    discarded: u64,
    /// The table's columns in the local catalog.
    catalog_columns: Vec<String>,
    /// DuckDB's answers: rows, columns, the case's query, partition folders.
    read_back: Value,
}

/// Run a case in a fresh folder; `Err(stderr)` when sluice fails.
fn run_case(case: &toml::Table, chunk_size: &str, format: Format) -> Result<Outcome, String> {
    let name = case["name"].as_str().unwrap();
    let file = case["file"].as_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("input").join(name)).unwrap();
    std::fs::copy(
        repo_root().join("tests/fixtures/bad").join(file),
        dir.join("input").join(name).join(file),
    )
    .unwrap();
    let config = format!(
        "[lake]\nroot = \"lake\"\ntable_format = \"{}\"\n[input]\nroot = \"input\"\n[[tables]]\nname = \"{name}\"\nsource = \"{name}/\"\n{}",
        if format == Format::Delta {
            "delta"
        } else {
            "hive"
        },
        case["table"].as_str().unwrap()
    );
    std::fs::write(dir.join("pipeline.toml"), config).unwrap();
    let out = sluice_tests::sluice_run(dir, &["--chunk-size", chunk_size]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let lake = dir.join("lake");
    let mut rejected = Vec::new();
    let mut discarded = 0;
    let mut parquet = 0;
    if lake.exists() {
        for f in files_under(&lake) {
            let text = || std::fs::read_to_string(lake.join(&f)).unwrap();
            if f.starts_with(&format!("_quarantine/{name}/")) {
                for line in text().lines() {
                    rejected.push(serde_json::from_str::<Value>(line).unwrap());
                }
            } else if f.starts_with(&format!("_sluice/commits/{name}/")) {
                let record: Value = serde_json::from_str(&text()).unwrap();
                discarded += record["values_discarded"].as_u64().unwrap();
            } else if f.ends_with(".parquet") {
                assert!(
                    f.starts_with(&format!("{name}/")),
                    "{name}: a data file outside the table's folder: {f}"
                );
                parquet += 1;
            }
        }
    }
    rejected.sort_by_key(|r| r["offset"].as_u64());
    let sql = case.get("sql").and_then(|s| s.as_str());
    let landed = match format {
        Format::Hive => parquet > 0,
        Format::Delta => lake.join(name).join("_delta_log").is_dir(),
    };
    let read_back = if landed {
        read_back(&lake, name, sql, format)
    } else {
        serde_json::json!({"rows": 0})
    };
    let catalog = lake.join(format!("_sluice/catalog/{name}/table.json"));
    let catalog_columns = if catalog.exists() {
        let def: Value = serde_json::from_str(&std::fs::read_to_string(catalog).unwrap()).unwrap();
        def["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    } else {
        Vec::new()
    };
    Ok(Outcome {
        catalog_columns,
        rows: read_back["rows"].as_u64().unwrap(),
        rejected,
        discarded,
        read_back,
    })
}

/// DuckDB's reading of the table: rows, columns, the case's query and the
/// partition folders. A Hive table is its Parquet files (`read_parquet`); a
/// Delta table its latest snapshot (`delta_scan`), whose row count Python
/// `deltalake` must agree with.
fn read_back(lake: &Path, table: &str, sql: Option<&str>, format: Format) -> Value {
    let (setup, view) = match format {
        Format::Hive => (
            "import duckdb\ncon = duckdb.connect()",
            "read_parquet('{lake}/{table}/**/*.parquet', hive_partitioning=false, union_by_name=true)",
        ),
        Format::Delta => (DUCKDB_DELTA, "delta_scan('{lake}/{table}')"),
    };
    let script = format!(
        r#"{setup}
import json, os
lake, table, sql = {lake:?}, {table:?}, {sql}
con.execute(f"CREATE VIEW t AS SELECT * FROM {view}")
out = {{"rows": con.execute("SELECT count(*) FROM t").fetchone()[0]}}
if {delta}:
    import deltalake
    out["deltalake_rows"] = deltalake.DeltaTable(f"{{lake}}/{{table}}").to_pyarrow_table().num_rows
out["columns"] = [r[0] for r in con.execute("DESCRIBE t").fetchall()]
if sql is not None:
    out["sql"] = [["NULL" if v is None else str(v) for v in row] for row in con.execute(sql).fetchall()]
out["partitions"] = sorted(d for d in os.listdir(os.path.join(lake, table)) if "=" in d)
print(json.dumps(out))
"#,
        lake = lake.to_str().unwrap(),
        sql = match sql {
            Some(s) => format!("{s:?}"),
            None => "None".into(),
        },
        delta = if format == Format::Delta {
            "True"
        } else {
            "False"
        },
    );
    match format {
        Format::Hive => python_json(lake, &script),
        Format::Delta => {
            let v = delta_python_json(lake, &script);
            assert_eq!(
                v["rows"], v["deltalake_rows"],
                "{table}: delta_scan and deltalake disagree"
            );
            v
        }
    }
}

/// Compare an outcome with the case; the problems found.
fn check(case: &toml::Table, got: &Result<Outcome, String>) -> Vec<String> {
    let name = case["name"].as_str().unwrap();
    let file = case["file"].as_str().unwrap();
    let mut problems = Vec::new();
    if let Some(error) = case.get("error").and_then(|e| e.as_str()) {
        match got {
            Ok(o) => problems.push(format!(
                "should fail with {error:?}, landed {} rows",
                o.rows
            )),
            Err(stderr) => {
                if !stderr.contains(error) || !stderr.contains(file) {
                    problems.push(format!(
                        "should fail naming {file} with {error:?}, said: {stderr}"
                    ));
                }
            }
        }
        return problems;
    }
    let o = match got {
        Ok(o) => o,
        Err(stderr) => return vec![format!("failed: {stderr}")],
    };
    if Some(o.rows) != int(case, "rows") {
        problems.push(format!(
            "{} rows landed, expected {:?}",
            o.rows,
            int(case, "rows")
        ));
    }
    if Some(o.rejected.len() as u64) != int(case, "rejected") {
        problems.push(format!(
            "{} records quarantined, expected {:?}: {:?}",
            o.rejected.len(),
            int(case, "rejected"),
            o.rejected
        ));
    }
    for r in &o.rejected {
        let source = r["source"].as_str().unwrap_or_default();
        if !source.ends_with(&format!("{name}/{file}")) || r["table"] != name {
            problems.push(format!(
                "quarantined record without its source or table: {r}"
            ));
        }
    }
    for reason in strings(case, "reasons") {
        if !o
            .rejected
            .iter()
            .any(|r| r["reason"].as_str().unwrap_or_default().contains(&reason))
        {
            let got: Vec<_> = o.rejected.iter().map(|r| &r["reason"]).collect();
            problems.push(format!("no quarantined record says {reason:?}: {got:?}"));
        }
    }
    // Where each quarantined record starts, and how its raw text begins
    // and ends (a record of several lines is kept whole).
    if let Some(offsets) = case.get("offsets").and_then(|v| v.as_array()) {
        let want: Vec<Option<u64>> = offsets
            .iter()
            .map(|v| v.as_integer().map(|i| i as u64))
            .collect();
        let got: Vec<Option<u64>> = o.rejected.iter().map(|r| r["offset"].as_u64()).collect();
        if got != want {
            problems.push(format!("quarantined at offsets {got:?}, expected {want:?}"));
        }
    }
    for (i, (start, end)) in strings(case, "raw_starts")
        .into_iter()
        .zip(strings(case, "raw_ends"))
        .enumerate()
    {
        let raw = o
            .rejected
            .get(i)
            .and_then(|r| r["raw"].as_str())
            .unwrap_or_default();
        if !raw.starts_with(&start) || !raw.ends_with(&end) {
            problems.push(format!(
                "quarantined record {i} is {raw:?}, expected it to run from {start:?} to {end:?}"
            ));
        }
    }
    if o.discarded != int(case, "discarded").unwrap_or(0) {
        problems.push(format!(
            "{} values discarded, expected {:?}",
            o.discarded,
            int(case, "discarded")
        ));
    }
    for column in strings(case, "columns") {
        if !o.read_back["columns"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c == column.as_str()))
        {
            problems.push(format!("no column {column:?}: {}", o.read_back["columns"]));
        }
        if !o.catalog_columns.contains(&column) {
            problems.push(format!(
                "the catalog has no column {column:?}: {:?}",
                o.catalog_columns
            ));
        }
    }
    if let Some(expect) = case.get("expect") {
        let want: Value = serde_json::to_value(expect).unwrap();
        if o.read_back["sql"] != want {
            problems.push(format!(
                "query gave {}, expected {want}",
                o.read_back["sql"]
            ));
        }
    }
    let partitions = strings(case, "partitions");
    if !partitions.is_empty() {
        let mut want = partitions.clone();
        want.sort();
        let want: Value = serde_json::to_value(want).unwrap();
        if o.read_back["partitions"] != want {
            problems.push(format!(
                "partition folders {}, expected {want}",
                o.read_back["partitions"]
            ));
        }
    }
    problems
}

#[test]
fn every_bad_input_has_its_expected_outcome() {
    run_corpus(Format::Hive);
}

#[test]
fn every_bad_input_has_its_expected_outcome_in_a_delta_table() {
    run_corpus(Format::Delta);
}

/// Every case of the corpus, in one chunk and (Hive tables) in 100-byte chunks.
fn run_corpus(format: Format) {
    let mut failures = Vec::new();
    for case in corpus() {
        let name = case["name"].as_str().unwrap();
        let file = case["file"].as_str().unwrap();
        let whole = run_case(&case, "128MiB", format);
        let problems = check(&case, &whole);
        let outcome = match &whole {
            Ok(o) => format!(
                "{} rows landed, {} quarantined, {} values discarded",
                o.rows,
                o.rejected.len(),
                o.discarded
            ),
            Err(e) => format!("failed: {}", e.trim()),
        };
        println!("{name} ({file}): {outcome}");
        for p in problems {
            failures.push(format!("{name}: {p}"));
        }
        // Cut small, an uncompressed file gives the same records (chunk
        // boundaries fall inside bad records too). Errors and per-chunk
        // rules (unique, max_rejected_ratio) depend on the cut, so only
        // cases that land rows are compared.
        let per_chunk = case["table"].as_str().unwrap().contains("unique");
        // (Cutting is the readers' business, the same for both formats.)
        if format == Format::Hive
            && whole.is_ok()
            && !file.ends_with(".gz")
            && !file.ends_with(".parquet")
            && !per_chunk
        {
            let cut = run_case(&case, "100", format);
            match (&whole, &cut) {
                (Ok(a), Ok(b)) => {
                    let key = |o: &Outcome| {
                        let mut r: Vec<String> =
                            o.rejected.iter().map(|r| r["reason"].to_string()).collect();
                        r.sort();
                        (o.rows, r, o.discarded, o.read_back.get("sql").cloned())
                    };
                    if key(a) != key(b) {
                        failures.push(format!(
                            "{name}: 100-byte chunks gave {:?}, one chunk {:?}",
                            key(b),
                            key(a)
                        ));
                    }
                }
                (_, Err(e)) => failures.push(format!("{name}: 100-byte chunks failed: {e}")),
                _ => {}
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{format:?} tables:\n{}",
        failures.join("\n")
    );
}

#[global_allocator]
static HEAP: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// A zstd "bomb": 256 MiB of JSON Lines compressed to under 100 KB, read
/// in one piece (as a small object is). Every row arrives, and the reader's
/// heap stays far below what the read inflates to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstd_bomb_is_read_a_bounded_piece_at_a_time() {
    use std::io::Write;
    use std::sync::Arc;

    use object_store::ObjectStoreExt;
    use sluice::read::{ReadOptions, SourceObject, read_chunk};

    let line = b"{\"id\":7,\"note\":\"one line, again and again, to fill the file\"}\n";
    let lines = (256 << 20) / line.len();
    let mut encoder = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    for _ in 0..lines {
        encoder.write_all(line).unwrap();
    }
    let compressed = encoder.finish().unwrap();
    assert!(compressed.len() < 100_000, "{} bytes", compressed.len());
    let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
    let path = object_store::path::Path::from("bomb/lines.jsonl.zst");
    store.put(&path, compressed.clone().into()).await.unwrap();
    let table = sluice::config::Pipeline::from_toml(
        "[[tables]]\nname = \"t\"\nsource = \"bomb/\"\nformat = \"jsonl\"\n[tables.schema]\nid = \"int64\"\nnote = \"string\"\n",
    )
    .unwrap()
    .tables
    .remove(0);
    let obj = SourceObject::new(
        store,
        path,
        "memory:///bomb/lines.jsonl.zst".into(),
        compressed.len() as u64,
    );
    let chunk = sluice::plan::plan_text(obj.size, 64 << 20, false)[0];
    HEAP.reset_peak_usage();
    let before = HEAP.current_usage();
    let (tx, mut rx): (sluice::read::BatchSender, _) = tokio::sync::mpsc::channel(4);
    let counting = tokio::spawn(async move {
        let mut rows = 0usize;
        while let Some(b) = rx.recv().await {
            let b: arrow::array::RecordBatch = b.expect("a batch");
            rows += b.num_rows();
        }
        rows
    });
    let stats = read_chunk(&table, &obj, chunk, ReadOptions::default(), &tx, None)
        .await
        .unwrap();
    drop(tx);
    let rows = counting.await.unwrap();
    let peak = HEAP.peak_usage().saturating_sub(before);
    eprintln!(
        "zstd bomb: {rows} rows, reader heap peak {} MiB",
        peak >> 20
    );
    assert_eq!(rows, lines);
    assert_eq!(stats.rows as usize, lines);
    assert!(
        peak < 128 << 20,
        "the reader's heap grew by {} MiB for a read inflating to 256 MiB",
        peak >> 20
    );
}
