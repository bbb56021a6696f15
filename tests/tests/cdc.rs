//! Change data capture end to end. A random workload is applied to a real
//! database (SQLite, `tests/cdc_workload.py`) and written as the change
//! files Debezium and AWS DMS (CSV and Parquet) would write for it; the
//! `sluice` command merges them into Delta tables, which two readers nobody
//! here wrote (DuckDB's `delta_scan`, Python `deltalake`) must find equal,
//! row for row, to the database's table. Files arrive late, out of order,
//! twice, in small chunks; a load crashed at any store call and run again
//! ends in the same rows; bad changes are quarantined with their reason.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, Decimal128Type, Int64Type, TimestampMicrosecondType};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use sluice::config::Pipeline;
use sluice::delta::{self, AsOf};
use sluice::fault::FaultyStore;
use sluice::pipeline::Engine;
use sluice::store::Location;
use sluice_tests::cdc::{TABLES, check_tables, config, expected, workload};
use sluice_tests::memory::{copy_of, counted_lake, crashes_then_lost_answers, lake_on, load_with};
use sluice_tests::{
    DUCKDB_DELTA, delta_python_json, files_under, python, repo_root, sluice, sluice_ok,
};

fn copy_files(from: &Path, to: &Path, names: &[String]) {
    std::fs::create_dir_all(to).unwrap();
    for n in names {
        std::fs::copy(from.join(n), to.join(n)).unwrap();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

/// `sluice run` of `dir`'s input into its lake, then `extra`.
fn run_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "--config",
        "sluice.toml",
        "--input",
        "input",
        "--lake",
        "lake",
    ];
    args.extend_from_slice(extra);
    args
}

fn run(dir: &Path, chunk_size: &str) -> String {
    sluice_ok(dir, &run_args(&["--chunk-size", chunk_size]))
}

/// One plain `sluice run` of `dir`'s input into its lake, as it ended.
fn run_once(dir: &Path) -> std::process::Output {
    sluice(dir, &run_args(&[]))
}

fn versions(dir: &Path) -> Vec<i64> {
    TABLES
        .iter()
        .map(|t| {
            let log = dir.join("lake").join(t).join("_delta_log");
            names(&log)
                .iter()
                .filter_map(|n| n.strip_suffix(".json")?.parse().ok())
                .max()
                .unwrap_or(-1)
        })
        .collect()
}

/// The newest half of the change files first, then all of them with copies
/// under other names (a redelivery), in 4 KiB chunks, then a rerun: after
/// each of the last two runs every table is the source table, the late and
/// redelivered changes lost to the newer ones, deleted keys stayed deleted,
/// and the rerun committed nothing.
#[test]
fn late_redelivered_and_chunked_changes_leave_the_tables_equal_to_the_source_database() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let raw = dir.join("raw");
    workload(&raw, 11, 500, 8);
    std::fs::write(dir.join("sluice.toml"), config()).unwrap();
    let folders = ["debezium", "dms", "dms_parquet"];

    // The newer half of each folder (by name, which is source order; DMS's
    // full load sorts last and is held back too).
    for f in folders {
        let all: Vec<String> = names(&raw.join(f))
            .into_iter()
            .filter(|n| !n.starts_with("LOAD"))
            .collect();
        copy_files(
            &raw.join(f),
            &dir.join("input").join(f),
            &all[all.len() / 2..],
        );
    }
    run(dir, "4KiB");
    // Version 0 creates each table; its many small chunks' changes then wait
    // for the end of the run and are merged in one commit.
    assert_eq!(
        versions(dir),
        vec![1, 1, 1],
        "one merge commit per table for the run's chunks"
    );

    // Everything, and the first two files of each folder again under new names.
    for f in folders {
        let all = names(&raw.join(f));
        copy_files(&raw.join(f), &dir.join("input").join(f), &all);
        for n in &all[..2] {
            std::fs::copy(
                raw.join(f).join(n),
                dir.join("input").join(f).join(format!("again-{n}")),
            )
            .unwrap();
        }
    }
    let summary = run(dir, "4KiB");
    let got = check_tables(dir, &raw, "after the late files");
    // The change table holds every Debezium change: each position at least
    // once (the copies under new names were delivered again).
    let changes = got["changes"].as_object().unwrap();
    let distinct: u64 = changes.values().map(|v| v[1].as_u64().unwrap()).sum();
    assert_eq!(
        distinct,
        got["events"].as_u64().unwrap(),
        "customers_dbz_changes: {changes:?}"
    );
    assert!(
        changes
            .keys()
            .all(|op| ["c", "u", "d", "r"].contains(&op.as_str())),
        "{changes:?}"
    );
    assert!(
        summary.contains("tombstone"),
        "the summary counts the skipped tombstones: {summary}"
    );

    let before = versions(dir);
    run(dir, "4KiB");
    assert_eq!(versions(dir), before, "a rerun of loaded files commits");
    check_tables(dir, &raw, "after a rerun");
}

/// The rows of the CDC table `table` in the lake, as delta-rs's snapshot
/// lists its files, read with the Parquet reader.
async fn rows_of(lake: &Location, table: &str) -> Vec<Vec<String>> {
    let t = delta::open(lake, table, AsOf::Latest)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no Delta table {table}"));
    let snapshot = t.snapshot().unwrap();
    let paths: Vec<String> = snapshot
        .log_data()
        .iter()
        .map(|f| format!("{table}/{}", f.path()))
        .collect();
    let mut out = Vec::new();
    for p in paths {
        let bytes = sluice_tests::object_bytes(lake.store.as_ref(), &lake.child(&p).unwrap()).await;
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
        {
            let b = batch.unwrap();
            let id = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
            let email = b.column_by_name("email").unwrap().as_string::<i32>();
            let balance = b
                .column_by_name("balance")
                .unwrap()
                .as_primitive::<Decimal128Type>();
            let signup = b
                .column_by_name("signup")
                .unwrap()
                .as_primitive::<Date32Type>();
            let updated = b
                .column_by_name("updated_at")
                .unwrap()
                .as_primitive::<TimestampMicrosecondType>();
            for i in 0..b.num_rows() {
                let email = if email.is_null(i) {
                    "None".to_string()
                } else {
                    email.value(i).to_string()
                };
                out.push(vec![
                    id.value(i).to_string(),
                    email,
                    balance.value_as_string(i),
                    signup.value_as_date(i).unwrap().to_string(),
                    chrono::DateTime::from_timestamp_micros(updated.value(i))
                        .unwrap()
                        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                        .to_string(),
                ]);
            }
        }
    }
    out.sort();
    out
}

/// A Debezium load (two change files, the second partly older than the
/// first's newest changes) crashed at each of its store calls in turn, and
/// with each call's answer lost in turn, then run again cleanly: the table
/// is the source table every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_call_of_a_cdc_load_then_a_rerun_ends_in_the_source_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    workload(&raw, 5, 60, 2);
    let want = expected(&raw);
    let input_dir = tmp.path().join("input");
    copy_files(
        &raw.join("debezium"),
        &input_dir.join("debezium"),
        &names(&raw.join("debezium")),
    );
    let text = std::fs::read_to_string(repo_root().join("examples/cdc/sluice.toml")).unwrap();
    let engine = Arc::new(
        Engine::new(Pipeline::from_toml(&text).unwrap())
            .await
            .unwrap(),
    );
    let input = Location::open(input_dir.to_str().unwrap(), false).unwrap();
    let load = |lake: Location| {
        let engine = engine.clone();
        let input = input.clone();
        async move { load_with(&engine, &input, &lake, 2, 2 << 10, false).await }
    };

    let (counted, clean) = counted_lake(Arc::new(InMemory::new()));
    load(clean.clone()).await.unwrap();
    let calls = counted.calls();
    assert_eq!(rows_of(&clean, "customers_dbz").await, want);
    assert!(calls > 30, "{calls} store calls");

    for (n, fault, kind) in crashes_then_lost_answers(calls) {
        let base: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let faulty = Arc::new(FaultyStore::new(base.clone(), fault).with_kind(kind));
        let _ = load(lake_on(faulty)).await;
        let lake = lake_on(copy_of(&base).await);
        load(lake.clone())
            .await
            .unwrap_or_else(|e| panic!("{fault:?} {kind:?}: the rerun failed: {e}"));
        assert_eq!(
            rows_of(&lake, "customers_dbz").await,
            want,
            "{fault:?} {kind:?} at call {n}: the merged table"
        );
    }
}

/// A second Debezium load, into a table that already holds the first
/// load's rows (its changes update, delete and re-insert keys those rows
/// hold), crashed at each of its store calls in turn and with each call's
/// answer lost in turn, then run again cleanly: the table is the source
/// table every time, never the first load's rows doubled or half-merged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_into_a_table_with_rows_crashed_at_any_call_then_rerun_ends_in_the_source_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    workload(&raw, 11, 80, 4);
    let want = expected(&raw);
    let files = names(&raw.join("debezium"));
    assert_eq!(files.len(), 4, "{files:?}");
    let first = tmp.path().join("first");
    copy_files(&raw.join("debezium"), &first.join("debezium"), &files[..2]);
    let all = tmp.path().join("all");
    copy_files(&raw.join("debezium"), &all.join("debezium"), &files);
    let text = std::fs::read_to_string(repo_root().join("examples/cdc/sluice.toml")).unwrap();
    let engine = Arc::new(
        Engine::new(Pipeline::from_toml(&text).unwrap())
            .await
            .unwrap(),
    );
    let load = |input: &Path, lake: Location| {
        let engine = engine.clone();
        let input = Location::open(input.to_str().unwrap(), false).unwrap();
        async move { load_with(&engine, &input, &lake, 2, 1 << 20, false).await }
    };
    // The first load: the table holds rows before the load under test.
    let base: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    load(&first, lake_on(base.clone())).await.unwrap();
    let before = rows_of(&lake_on(base.clone()), "customers_dbz").await;
    assert!(
        before.len() > 10,
        "{} rows after the first load",
        before.len()
    );
    assert_ne!(before, want, "the second load changes the table");

    let (counted, clean) = counted_lake(copy_of(&base).await);
    load(&all, clean.clone()).await.unwrap();
    let calls = counted.calls();
    assert_eq!(rows_of(&clean, "customers_dbz").await, want);
    assert!(calls > 20, "{calls} store calls");

    for (n, fault, kind) in crashes_then_lost_answers(calls) {
        let store = copy_of(&base).await;
        let faulty = Arc::new(FaultyStore::new(store.clone(), fault).with_kind(kind));
        let _ = load(&all, lake_on(faulty)).await;
        let lake = lake_on(copy_of(&store).await);
        load(&all, lake.clone())
            .await
            .unwrap_or_else(|e| panic!("{fault:?} {kind:?} at call {n}: the rerun failed: {e}"));
        assert_eq!(
            rows_of(&lake, "customers_dbz").await,
            want,
            "{fault:?} {kind:?} at call {n}: the merged table"
        );
    }
}

/// Changes without their key, with an unknown operation, or whose `after`
/// does not fit the schema are quarantined with the reason; the good ones
/// are merged.
#[test]
fn bad_changes_are_quarantined_with_their_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Most of these records are bad: no ratio fails the chunks.
    let config = config().replace(
        "format = \"jsonl\"\n",
        "format = \"jsonl\"\nmax_rejected_ratio = 1.0\n",
    );
    let config = config.replace(
        "format = \"csv\"\n",
        "format = \"csv\"\nmax_rejected_ratio = 1.0\n",
    );
    std::fs::write(dir.join("sluice.toml"), config).unwrap();
    let ev = |op: &str, id: Value, email: &str, lsn: u64| {
        serde_json::json!({"op": op, "before": null,
            "after": {"id": id, "email": email, "balance": "AeI=", "signup": 19723, "updated_at": 1_704_067_200_000_000i64},
            "source": {"lsn": lsn}, "ts_ms": 1_704_067_200_000i64})
        .to_string()
    };
    let lines = [
        ev("c", 1.into(), "a@x", 10),
        ev("c", Value::Null, "no-key@x", 11),
        ev("x", 3.into(), "unknown-op@x", 12),
        ev("c", "four".into(), "bad-type@x", 13),
        ev("c", 5.into(), "e@x", 14),
        "null".to_string(),
        ev("u", 1.into(), "a2@x", 15),
    ];
    std::fs::create_dir_all(dir.join("input/debezium")).unwrap();
    std::fs::write(
        dir.join("input/debezium/bad.jsonl"),
        lines.join("\n") + "\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("input/dms")).unwrap();
    std::fs::write(
        dir.join("input/dms/20260101-000000000.csv"),
        "I,2026-01-01 00:00:00.000001,7,g@x,1.00,2024-01-01,2024-01-01T00:00:00Z\n\
         X,2026-01-01 00:00:00.000002,8,unknown-op@x,1.00,2024-01-01,2024-01-01T00:00:00Z\n\
         I,2026-01-01 00:00:00.000003,,no-key@x,1.00,2024-01-01,2024-01-01T00:00:00Z\n",
    )
    .unwrap();
    let out = run_once(dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lake = dir.join("lake");
    let mut reasons = Vec::new();
    for f in files_under(&lake) {
        if f.starts_with("_quarantine/") {
            for line in std::fs::read_to_string(lake.join(&f)).unwrap().lines() {
                let r: Value = serde_json::from_str(line).unwrap();
                reasons.push(format!(
                    "{} {} {}",
                    r["table"].as_str().unwrap_or_default(),
                    r["reason"].as_str().unwrap_or_default(),
                    r["raw"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    reasons.sort();
    let find = |table: &str, words: &[&str], record: &str| {
        assert!(
            reasons.iter().any(|r| r.starts_with(table)
                && words.iter().all(|w| r.contains(w))
                && r.contains(record)),
            "no quarantined {record} of {table} saying {words:?}: {reasons:#?}\n{stderr}"
        );
    };
    find("customers_dbz", &["id"], "no-key@x");
    find("customers_dbz", &["\"x\""], "unknown-op@x");
    find("customers_dbz", &["id"], "bad-type@x");
    find("customers_dms", &["Op"], "unknown-op@x");
    find("customers_dms", &["id"], "no-key@x");
    assert_eq!(reasons.len(), 5, "{reasons:#?}");

    let got = delta_python_json(
        dir,
        &format!(
            r#"{DUCKDB_DELTA}
import json
q = lambda t: [list(r) for r in con.sql(f"SELECT id, email FROM delta_scan('lake/{{t}}') ORDER BY id").fetchall()]
print(json.dumps({{"dbz": q("customers_dbz"), "dms": q("customers_dms")}}))
"#
        ),
    );
    assert_eq!(
        got,
        serde_json::json!({"dbz": [[1, "a2@x"], [5, "e@x"]], "dms": [[7, "g@x"]]})
    );
}

/// A DMS Parquet change file whose row has no key fails its file with the
/// file and the row in the message (Parquet has no raw text to quarantine).
#[test]
fn a_parquet_change_without_its_key_fails_naming_the_file_and_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("sluice.toml"), config()).unwrap();
    std::fs::create_dir_all(dir.join("input/dms_parquet")).unwrap();
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(
            r#"import pyarrow as pa, pyarrow.parquet as pq
import datetime, decimal
pq.write_table(pa.table({"Op": ["I", "I"], "ts": ["a", "b"], "id": pa.array([1, None], pa.int64()),
    "email": ["x", "y"], "balance": pa.array([decimal.Decimal("1.00")] * 2, pa.decimal128(12, 2)),
    "signup": [datetime.date(2024, 1, 1)] * 2,
    "updated_at": pa.array([datetime.datetime(2024, 1, 1)] * 2, pa.timestamp("us", tz="UTC"))}),
    "input/dms_parquet/20260101-000000000.parquet")"#,
        )
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(out.success());
    let stderr = sluice_tests::sluice_err(dir, &run_args(&[]));
    assert!(
        ["20260101-000000000.parquet", "change 2", "'id'"]
            .iter()
            .all(|s| stderr.contains(s)),
        "{stderr}"
    );
}
