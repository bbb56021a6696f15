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
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt as _};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;
use sluice::config::Pipeline;
use sluice::delta::{self, AsOf};
use sluice::fault::FaultyStore;
use sluice::layout::CDC_STAGED_DIR;
use sluice::pipeline::Engine;
use sluice::store::Location;
use sluice_tests::cdc::{
    COMPOSITE_KEY, KEY, TABLES, check_tables, check_tables_keyed, config, config_keyed, expected,
    workload, workload_keyed,
};
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

/// A workload keyed by (region, id), the text column first (quotes,
/// commas, unicode, values past Parquet's 64-byte statistics), whose
/// transactions change one key twice at one source position, merged in
/// four runs of 4 KiB chunks into tables that already hold rows: every
/// table, read by both readers, is the source table, and a rerun commits
/// nothing.
#[test]
fn composite_text_keys_and_shared_positions_merged_run_by_run_equal_the_source_database() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let raw = dir.join("raw");
    workload_keyed(&raw, 13, 400, 8, COMPOSITE_KEY);
    std::fs::write(dir.join("sluice.toml"), config_keyed(COMPOSITE_KEY)).unwrap();
    // A quarter more of each folder's files (in name order) each run.
    for run_no in 1..=4 {
        for f in ["debezium", "dms", "dms_parquet"] {
            let all = names(&raw.join(f));
            let upto = all.len() * run_no / 4;
            copy_files(&raw.join(f), &dir.join("input").join(f), &all[..upto]);
        }
        run(dir, "4KiB");
    }
    assert!(
        versions(dir).iter().all(|&v| v >= 4),
        "a merge commit per run: {:?}",
        versions(dir)
    );
    // Every file holds keys of every region (the first key column), so each
    // merge reads and rewrites the whole table.
    check_tables_keyed(dir, &raw, "after four runs", COMPOSITE_KEY);
    let before = versions(dir);
    run(dir, "4KiB");
    assert_eq!(versions(dir), before, "a rerun of loaded files commits");
}

/// One merge after another, each changing only keys that sit exactly on
/// a table file's smallest or largest key (its `minValues`/`maxValues`),
/// by update, delete and re-insert, for an integer key and a text key: the
/// table is the rows the changes leave after every merge, never the old
/// row of a key beside its new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_to_keys_on_a_files_statistics_bounds_replace_their_rows() {
    for (table, key_type) in [("by_int", "int64"), ("by_text", "string")] {
        statistics_bounds(table, key_type).await;
    }
}

async fn statistics_bounds(table: &str, key_type: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "[lake]\nroot = \"unused\"\ntable_format = \"delta\"\n\n[[tables]]\nname = \"{table}\"\n\
         source = \"changes/\"\nformat = \"jsonl\"\n\n[tables.cdc]\nenvelope = \"debezium\"\n\
         key = [\"k\"]\n\n[tables.schema]\nk = \"{key_type}\"\nnote = \"string\"\n"
    );
    let engine = Arc::new(
        Engine::new(Pipeline::from_toml(&config).unwrap())
            .await
            .unwrap(),
    );
    let key = |n: i64| -> Value {
        if key_type == "int64" {
            Value::from(n * 10)
        } else {
            Value::from(format!("k-{:03}", n * 10))
        }
    };
    let lake = lake_on(Arc::new(InMemory::new()));
    let changes_dir = tmp.path().join("input/changes");
    std::fs::create_dir_all(&changes_dir).unwrap();
    let input = Location::open(tmp.path().join("input").to_str().unwrap(), false).unwrap();
    // The rows the changes leave, key to note.
    let mut want: std::collections::BTreeMap<String, String> = Default::default();
    let mut lsn = 100u64;
    // One change file (`n`), merged; then the table must be `want`.
    let mut merge =
        async |changes: Vec<(&'static str, Value, Option<String>)>, n: usize, what: String| {
            let mut lines = Vec::new();
            for (op, k, note) in changes {
                lsn += 1;
                let row = serde_json::json!({"k": k, "note": note});
                let (before, after) = if op == "d" {
                    (row, Value::Null)
                } else {
                    (Value::Null, row)
                };
                lines.push(
                    serde_json::json!({"op": op, "before": before, "after": after,
                    "source": {"lsn": lsn}, "ts_ms": 1})
                    .to_string(),
                );
                let k = k.as_str().map_or_else(|| k.to_string(), str::to_string);
                match note {
                    Some(note) => want.insert(k, note),
                    None => want.remove(&k),
                };
            }
            let file = changes_dir.join(format!("{n:03}.jsonl"));
            std::fs::write(file, lines.join("\n") + "\n").unwrap();
            load_with(&engine, &input, &lake, 1, 1 << 20, true)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let want: Vec<(String, String)> = want.clone().into_iter().collect();
            assert_eq!(rows(&lake, table).await, want, "{table}: {what}");
        };
    // Two files of ten keys each: [0, 90] and [100, 190].
    for (n, range) in [(0, 0..10), (1, 10..20)] {
        let inserts = range
            .map(|i| ("c", key(i), Some(format!("v{i}"))))
            .collect();
        merge(inserts, n, format!("insert {n}")).await;
    }
    let mut deleted: Vec<Value> = Vec::new();
    let mut fresh = 20;
    for round in 2..14 {
        // A merge touching two files writes their rows into one: new keys
        // in a file of their own keep the table at two files or more.
        if bounds(&lake, table).await.len() < 2 {
            let inserts = (fresh..fresh + 5)
                .map(|i| ("c", key(i), Some(format!("v{i}"))))
                .collect();
            fresh += 5;
            merge(
                inserts,
                100 + round,
                format!("more keys before round {round}"),
            )
            .await;
        }
        let files = bounds(&lake, table).await;
        assert!(files.len() >= 2, "{table}: {} files", files.len());
        // A file's lower bound in even rounds, its upper one in odd rounds;
        // every third round also the other end of the next file.
        let (lo, hi) = &files[round % files.len()];
        let mut picks = vec![if round % 2 == 0 {
            lo.clone()
        } else {
            hi.clone()
        }];
        if round % 3 == 0 {
            let (lo, hi) = &files[(round + 1) % files.len()];
            picks.push(if round % 2 == 0 {
                hi.clone()
            } else {
                lo.clone()
            });
        }
        picks.dedup();
        let mut changes = Vec::new();
        for k in picks {
            if round % 4 == 1 {
                deleted.push(k.clone());
                changes.push(("d", k, None));
            } else {
                changes.push(("u", k, Some(format!("round {round}"))));
            }
        }
        if round % 4 == 3
            && let Some(k) = deleted.pop()
        {
            changes.push(("c", k, Some(format!("back in round {round}"))));
        }
        let what = format!("round {round}: {changes:?} over files {files:?}");
        merge(changes, round, what).await;
    }
}

/// The latest snapshot of Delta table `table` of the lake.
async fn latest(lake: &Location, table: &str) -> deltalake::DeltaTable {
    delta::open(lake, table, AsOf::Latest)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no Delta table {table}"))
}

/// Every batch of the files the latest snapshot of `table` lists, read
/// with the Parquet reader.
async fn snapshot_batches(lake: &Location, table: &str) -> Vec<arrow::array::RecordBatch> {
    let t = latest(lake, table).await;
    let mut out = Vec::new();
    for f in t.snapshot().unwrap().log_data().iter() {
        let path = lake.child(&format!("{table}/{}", f.path())).unwrap();
        let bytes = sluice_tests::object_bytes(lake.store.as_ref(), &path).await;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        out.extend(reader.map(Result::unwrap));
    }
    out
}

/// The (k, note) rows of table `table`, as its snapshot's files hold them.
async fn rows(lake: &Location, table: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for b in snapshot_batches(lake, table).await {
        let k = arrow::util::display::ArrayFormatter::try_new(
            b.column_by_name("k").unwrap().as_ref(),
            &Default::default(),
        )
        .unwrap();
        let note = b.column_by_name("note").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            out.push((k.value(i).to_string(), note.value(i).to_string()));
        }
    }
    out.sort();
    out
}

/// Each file's smallest and largest `k`, from its statistics.
async fn bounds(lake: &Location, table: &str) -> Vec<(Value, Value)> {
    let t = latest(lake, table).await;
    let mut out = Vec::new();
    for f in t.snapshot().unwrap().log_data().iter() {
        #[allow(deprecated)]
        let stats: Value = serde_json::from_str(f.add_action().stats.as_deref().unwrap()).unwrap();
        out.push((
            stats["minValues"]["k"].clone(),
            stats["maxValues"]["k"].clone(),
        ));
    }
    out
}

/// The rows of the CDC table `table` in the lake, as delta-rs's snapshot
/// lists its files, read with the Parquet reader.
async fn rows_of(lake: &Location, table: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for b in snapshot_batches(lake, table).await {
        let region = b
            .column_by_name("region")
            .map(|r| r.as_string::<i32>().clone());
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
            let mut row: Vec<String> = region.iter().map(|r| r.value(i).into()).collect();
            row.extend([
                id.value(i).to_string(),
                email,
                balance.value_as_string(i),
                signup.value_as_date(i).unwrap().to_string(),
                chrono::DateTime::from_timestamp_micros(updated.value(i))
                    .unwrap()
                    .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                    .to_string(),
            ]);
            out.push(row);
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

/// A second load, into tables that already hold the first load's rows (its
/// changes update, delete and re-insert keys those rows hold), crashed at
/// each of its store calls in turn and with each call's answer lost in
/// turn, then run again cleanly: every table is the source table every
/// time, never the first load's rows doubled or half-merged, and a table
/// without a change table keeps no staged change once merged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_into_a_table_with_rows_crashed_at_any_call_then_rerun_ends_in_the_source_rows() {
    merge_into_rows_at_any_call(KEY, &["debezium", "dms"]).await;
}

/// [`a_merge_into_a_table_with_rows_crashed_at_any_call_then_rerun_ends_in_the_source_rows`]
/// with a text-first composite key and changes sharing source positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_key_merge_crashed_at_any_call_then_rerun_ends_in_the_source_rows() {
    merge_into_rows_at_any_call(COMPOSITE_KEY, &["debezium"]).await;
}

/// The tables of the example's pipeline, by the folder they read.
const TABLE_OF: [(&str, &str); 3] = [
    ("debezium", "customers_dbz"),
    ("dms", "customers_dms"),
    ("dms_parquet", "customers_dmsp"),
];

async fn merge_into_rows_at_any_call(key: &[&str], folders: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    workload_keyed(&raw, 11, 80, 4, key);
    let want = expected(&raw);
    let (first, all) = (tmp.path().join("first"), tmp.path().join("all"));
    for f in folders {
        let files = names(&raw.join(f));
        copy_files(&raw.join(f), &first.join(f), &files[..2]);
        copy_files(&raw.join(f), &all.join(f), &files);
    }
    let tables: Vec<&str> = TABLE_OF
        .iter()
        .filter(|(f, _)| folders.contains(f))
        .map(|(_, t)| *t)
        .collect();
    let engine = Arc::new(
        Engine::new(Pipeline::from_toml(&config_keyed(key)).unwrap())
            .await
            .unwrap(),
    );
    let load = |input: &Path, lake: Location| {
        let engine = engine.clone();
        let input = Location::open(input.to_str().unwrap(), false).unwrap();
        async move { load_with(&engine, &input, &lake, 2, 1 << 20, false).await }
    };
    // Every table the source table; no staged change left of a table that
    // keeps no change table.
    let check = |lake: Location, what: String| {
        let (want, tables) = (want.clone(), tables.clone());
        async move {
            for t in tables {
                assert_eq!(rows_of(&lake, t).await, want, "{what}: {t}");
            }
            let staged = lake
                .child(&format!("{CDC_STAGED_DIR}/customers_dms/"))
                .unwrap();
            let left: Vec<_> = lake.store.list(Some(&staged)).try_collect().await.unwrap();
            assert!(left.is_empty(), "{what}: staged changes left: {left:?}");
        }
    };
    // The first load: the tables hold rows before the load under test.
    let base: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    load(&first, lake_on(base.clone())).await.unwrap();
    for t in &tables {
        let before = rows_of(&lake_on(base.clone()), t).await;
        assert!(
            before.len() > 10,
            "{t}: {} rows after the first load",
            before.len()
        );
        assert_ne!(before, want, "the second load changes {t}");
    }

    let (counted, clean) = counted_lake(copy_of(&base).await);
    load(&all, clean.clone()).await.unwrap();
    let calls = counted.calls();
    check(clean, "a clean load".into()).await;
    assert!(calls > 20, "{calls} store calls");

    for (n, fault, kind) in crashes_then_lost_answers(calls) {
        let store = copy_of(&base).await;
        let faulty = Arc::new(FaultyStore::new(store.clone(), fault).with_kind(kind));
        let _ = load(&all, lake_on(faulty)).await;
        let lake = lake_on(copy_of(&store).await);
        load(&all, lake.clone())
            .await
            .unwrap_or_else(|e| panic!("{fault:?} {kind:?} at call {n}: the rerun failed: {e}"));
        check(lake, format!("{fault:?} {kind:?} at call {n}")).await;
    }
}

/// Change files (Debezium and DMS, a composite key, transactions sharing
/// positions) arriving in any order, in any grouping into loads (each a
/// merge into what the earlier ones left), merge into the source table:
/// a delete arriving before the older changes of its key, a key's
/// re-insert before its delete, the full load last.
#[test]
fn change_files_in_any_order_and_grouping_merge_into_the_source_table() {
    use proptest::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let raw = tmp.path().join("raw");
    workload_keyed(&raw, 17, 120, 4, COMPOSITE_KEY);
    let want = expected(&raw);
    let folders = ["debezium", "dms"];
    let files: Vec<(String, Vec<u8>)> = folders
        .iter()
        .flat_map(|f| {
            let raw = &raw;
            names(&raw.join(f)).into_iter().map(move |n| {
                (
                    format!("{f}/{n}"),
                    std::fs::read(raw.join(f).join(&n)).unwrap(),
                )
            })
        })
        .collect();
    assert_eq!(
        files.len(),
        9,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = runtime.block_on(async {
        Arc::new(
            Engine::new(Pipeline::from_toml(&config_keyed(COMPOSITE_KEY)).unwrap())
                .await
                .unwrap(),
        )
    });
    let order = Just((0..files.len()).collect::<Vec<_>>()).prop_shuffle();
    let cuts = proptest::collection::vec(proptest::bool::weighted(0.35), files.len());
    let config = proptest::test_runner::Config {
        cases: 10,
        failure_persistence: None,
        ..Default::default()
    };
    proptest::test_runner::TestRunner::new(config)
        .run(&(order, cuts), |(order, cuts)| {
            runtime.block_on(async {
                let input = lake_on(Arc::new(InMemory::new()));
                let lake = lake_on(Arc::new(InMemory::new()));
                let mut loads = Vec::new();
                for (n, (&i, &cut)) in order.iter().zip(&cuts).enumerate() {
                    let (name, bytes) = &files[i];
                    let path = input.child(name).unwrap();
                    input.store.put(&path, bytes.clone().into()).await.unwrap();
                    loads.push(name.as_str());
                    if cut || n + 1 == order.len() {
                        load_with(&engine, &input, &lake, 2, 1 << 20, true)
                            .await
                            .unwrap();
                        loads.push("|");
                    }
                }
                for t in ["customers_dbz", "customers_dms"] {
                    assert_eq!(rows_of(&lake, t).await, want, "{t} after loads {loads:?}");
                }
            });
            Ok(())
        })
        .unwrap();
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
