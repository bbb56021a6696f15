//! Compaction: crash at every call, fail at every call, race a transform at
//! every call; the finished state always holds exactly the rows it started
//! with. Loading a new version of a raw file (row cutting in merged files,
//! settling the old version, the local catalog) crashed at every call. And `sluice compact` on a real lake, read back with DuckDB.

use std::collections::HashSet;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::array::{Array, Decimal128Array, Int64Array, StringArray};
use futures::{FutureExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice::catalog::{Catalog, LocalCatalog, PartitionDef, TableDef};
use sluice::compact::{CompactOptions, CompactReport, compact_partition};
use sluice::config::Pipeline;
use sluice::fault::{FaultKind, Faults, FaultyStore, Hook};
use sluice::pipeline::{Counters, Engine, RunOptions, run};
use sluice::retry::RetryStore;
use sluice::store::Location;
use sluice_tests::memory::{copy_of, crashes_then_lost_answers, lake_on, load_with};
use sluice_tests::{check_lake_matches_raw, compare_script, python_json, repo_root, sluice_ok};

const EXAMPLE: &str = "examples/clickstream/sluice.toml";

async fn engine() -> Arc<Engine> {
    let pipeline = Pipeline::from_file(&repo_root().join(EXAMPLE)).unwrap();
    Arc::new(Engine::new(pipeline).await.unwrap())
}

/// A folder with just these files of the example's raw data.
fn raw_input(files: &[&str]) -> (tempfile::TempDir, Location) {
    let dir = tempfile::tempdir().unwrap();
    sluice_tests::copy_example_files(files, &dir.path().join("clickstream"));
    let input = Location::open(dir.path().to_str().unwrap(), false).unwrap();
    (dir, input)
}

/// Run the pipeline over `input` into `lake`, 64 KiB chunks: many small files.
async fn ingest(engine: &Arc<Engine>, input: &Location, lake: &Location) {
    let catalog: Arc<dyn Catalog> = Arc::new(LocalCatalog::new(lake));
    let options = RunOptions {
        fail_fast: true,
        ..RunOptions::new(2, 64 * 1024)
    };
    run(
        engine,
        input,
        lake,
        &catalog,
        &options,
        &Arc::new(Counters::default()),
    )
    .await
    .unwrap();
}

/// Rows, sum of price (cents), distinct event ids, sum of user ids, files:
/// the figures of one partition folder, read with arrow's Parquet reader.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Figures {
    rows: usize,
    price_cents: i128,
    ids: usize,
    users: i64,
    files: usize,
    /// Every row, every non-null column as `name=value`, sorted: the exact
    /// multiset of rows, however they are spread over files and row groups.
    all: Vec<String>,
}

async fn figures(lake: &Location, folder: &str) -> (Figures, HashSet<String>) {
    let prefix = Path::parse(folder).unwrap();
    let listed = lake.store.list_with_delimiter(Some(&prefix)).await.unwrap();
    let mut f = Figures {
        rows: 0,
        price_cents: 0,
        ids: 0,
        users: 0,
        files: 0,
        all: Vec::new(),
    };
    let mut ids = HashSet::new();
    for m in listed.objects {
        if !m.location.as_ref().ends_with(".parquet") {
            continue;
        }
        f.files += 1;
        let bytes = sluice_tests::object_bytes(lake.store.as_ref(), &m.location).await;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            f.rows += b.num_rows();
            let id = b.column_by_name("event_id").unwrap();
            let id = id.as_any().downcast_ref::<StringArray>().unwrap();
            let price = b.column_by_name("price").unwrap();
            let price = price.as_any().downcast_ref::<Decimal128Array>().unwrap();
            let user = b.column_by_name("user_id").unwrap();
            let user = user.as_any().downcast_ref::<Int64Array>().unwrap();
            let mut names: Vec<(usize, String)> = b
                .schema()
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| (i, f.name().clone()))
                .collect();
            names.sort_by(|a, b| a.1.cmp(&b.1));
            let options = arrow::util::display::FormatOptions::default();
            let formatters: Vec<_> = names
                .iter()
                .map(|(i, _)| {
                    arrow::util::display::ArrayFormatter::try_new(b.column(*i).as_ref(), &options)
                        .unwrap()
                })
                .collect();
            for i in 0..b.num_rows() {
                let row: Vec<String> = names
                    .iter()
                    .zip(&formatters)
                    .filter(|((c, _), _)| b.column(*c).is_valid(i))
                    .map(|((_, name), f)| format!("{name}={}", f.value(i)))
                    .collect();
                f.all.push(row.join("\u{1f}"));
                ids.insert(id.value(i).to_string());
                if price.is_valid(i) {
                    f.price_cents += price.value(i);
                }
                if user.is_valid(i) {
                    f.users += user.value(i);
                }
            }
        }
    }
    f.ids = ids.len();
    f.all.sort();
    (f, ids)
}

async fn pending_intents(lake: &Location) -> Vec<String> {
    let metas = sluice_tests::list_under(lake.store.as_ref(), "_sluice/compactions").await;
    let mut out = Vec::new();
    for m in metas {
        let bytes = sluice_tests::object_bytes(lake.store.as_ref(), &m.location).await;
        let text = String::from_utf8_lossy(&bytes).to_string();
        if m.location.as_ref().ends_with("lease.json") || text.contains("\"pending\"") {
            out.push(m.location.to_string());
        }
    }
    out
}

/// The example's table and its partition with the most files.
async fn busiest(lake: &Location) -> (TableDef, PartitionDef, String) {
    let catalog = LocalCatalog::new(lake);
    let table = catalog.table("clickstream").await.unwrap().unwrap();
    let mut best = None;
    for p in catalog.partitions("clickstream").await.unwrap() {
        let folder = format!("clickstream/{}", p.path);
        let n = lake
            .store
            .list_with_delimiter(Some(&Path::parse(&folder).unwrap()))
            .await
            .unwrap()
            .objects
            .len();
        if best.as_ref().is_none_or(|(m, _, _)| n > *m) {
            best = Some((n, p, folder));
        }
    }
    let (_, p, folder) = best.unwrap();
    (table, p, folder)
}

fn options(lease_ttl: Duration) -> CompactOptions {
    CompactOptions {
        min_age: Duration::ZERO,
        min_files: 2,
        lease_ttl,
        ..Default::default()
    }
}

/// The compactor's lease in these tests: longer than any of them runs.
const LEASE_TTL: Duration = Duration::from_secs(60);

async fn compact_on(
    lake: &Location,
    table: &TableDef,
    p: &PartitionDef,
    o: &CompactOptions,
) -> sluice::Result<CompactReport> {
    let catalog = LocalCatalog::new(lake);
    compact_partition(lake, &catalog, table, p, o, chrono::Utc::now()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_or_a_failure_at_any_call_loses_and_doubles_nothing() {
    every_call_fails(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_or_a_failure_at_any_call_of_a_re_encoding_loses_and_doubles_nothing() {
    every_call_fails(true).await;
}

/// Compact the busiest partition once per store call, failing that call
/// (see the cases below); whatever happened, a rerun leaves exactly the
/// partition's rows, in one file. `reencode`: decode and re-encode rows
/// instead of copying column chunks.
async fn every_call_fails(reencode: bool) {
    let options = |ttl| CompactOptions {
        force_reencode: reencode,
        ..options(ttl)
    };
    let engine = engine().await;
    let (_dir, input) = raw_input(&["events-00000.jsonl", "events-00001.jsonl.gz"]);
    let base = lake_on(Arc::new(InMemory::new()));
    ingest(&engine, &input, &base).await;
    let (table, partition, folder) = busiest(&base).await;
    let (before, ids_before) = figures(&base, &folder).await;
    assert!(before.files >= 10, "a partition of many files: {before:?}");

    // A clean run: how many calls it makes, and what it leaves.
    let counted = Arc::new(FaultyStore::new(copy_of(&base.store).await, Faults::None));
    let clean_lake = lake_on(counted.clone());
    let report = compact_on(&clean_lake, &table, &partition, &options(LEASE_TTL))
        .await
        .unwrap();
    let calls = counted.calls();
    let (clean, _) = figures(&clean_lake, &folder).await;
    assert_eq!(report.files_before, before.files);
    assert_eq!(clean.files, 1, "{report:?}");
    assert_eq!(
        Figures {
            files: 0,
            ..clean.clone()
        },
        Figures {
            files: 0,
            ..before.clone()
        }
    );
    assert_eq!(
        report.copied,
        usize::from(!reencode),
        "same-schema inputs are copied undecoded, unless re-encoding is asked for"
    );
    assert!(calls > 20, "{calls}");
    println!(
        "compacting {folder} ({} files): {calls} store calls, each crashed at and failed once",
        before.files
    );

    // Each call crashed at, refused once, applied with its answer lost, and
    // answered with a 503 (through the retrying store S3 lakes have: retried
    // in place) or a 403 for good (never retried: a permanent error).
    let cases = (1..=calls).flat_map(|n| {
        [
            (Faults::CrashAt(n), FaultKind::Refused),
            (Faults::Once(n), FaultKind::Refused),
            (Faults::Once(n), FaultKind::AnswerLost),
            (Faults::Once(n), FaultKind::Status(503)),
            (Faults::CrashAt(n), FaultKind::Status(403)),
        ]
    });
    for (faults, kind) in cases {
        let store = copy_of(&base.store).await;
        let faulty: Arc<dyn ObjectStore> =
            Arc::new(FaultyStore::new(store.clone(), faults).with_kind(kind));
        let faulty = match kind {
            FaultKind::Status(_) => lake_on(Arc::new(RetryStore::new(faulty))),
            _ => lake_on(faulty),
        };
        let first = compact_on(&faulty, &table, &partition, &options(LEASE_TTL)).await;
        match kind {
            FaultKind::Status(503) => {
                assert!(first.is_ok(), "{faults:?} {kind:?}: not retried: {first:?}")
            }
            FaultKind::Status(_) => match &first {
                Err(e) => assert!(!e.is_retryable(), "{faults:?} {kind:?}: {e}"),
                Ok(r) => panic!("{faults:?} {kind:?}: a 403 from then on was swallowed: {r:?}"),
            },
            _ => {}
        }
        let faults = (faults, kind);
        let after = lake_on(store);
        // However it stopped, no row is missing (a reader listing files in the
        // window between an output's upload and its inputs' retirement sees
        // some rows twice; that is what the rerun settles).
        let (mid, ids_mid) = figures(&after, &folder).await;
        assert!(
            ids_mid == ids_before && mid.rows >= before.rows,
            "{faults:?}: rows lost after the fault: {mid:?} vs {before:?}"
        );
        // A rerun (the lease of a crashed run has expired) finishes or undoes it.
        let rerun = compact_on(&after, &table, &partition, &options(Duration::ZERO)).await;
        assert!(rerun.is_ok(), "{faults:?}: rerun failed: {rerun:?}");
        let (end, _) = figures(&after, &folder).await;
        assert_eq!(
            Figures {
                files: 0,
                ..end.clone()
            },
            Figures {
                files: 0,
                ..before.clone()
            },
            "{faults:?}: first run {first:?}, rerun {rerun:?}"
        );
        assert_eq!(end.files, 1, "{faults:?}: {rerun:?}");
        let left = pending_intents(&after).await;
        assert!(left.is_empty(), "{faults:?}: left behind: {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transform_writing_into_the_partition_during_compaction_loses_nothing() {
    let engine = engine().await;
    let (_a, input_a) = raw_input(&["events-00000.jsonl"]);
    let (_b, input_b) = raw_input(&["events-00001.jsonl.gz"]);
    let base = lake_on(Arc::new(InMemory::new()));
    ingest(&engine, &input_a, &base).await;
    let (table, partition, folder) = busiest(&base).await;
    // What the partition holds once both files are in.
    let reference = lake_on(copy_of(&base.store).await);
    ingest(&engine, &input_b, &reference).await;
    let (want, _) = figures(&reference, &folder).await;
    let (only_a, _) = figures(&base, &folder).await;
    assert!(want.rows > only_a.rows, "file B has rows in the partition");

    let counted = Arc::new(FaultyStore::new(copy_of(&base.store).await, Faults::None));
    compact_on(
        &lake_on(counted.clone()),
        &table,
        &partition,
        &options(LEASE_TTL),
    )
    .await
    .unwrap();
    let calls = counted.calls();

    for n in 1..=calls {
        let store = copy_of(&base.store).await;
        let plain = lake_on(store.clone());
        let fired = Arc::new(AtomicBool::new(false));
        let hook: Hook = {
            let (engine, input_b, plain, fired) = (
                engine.clone(),
                input_b.clone(),
                plain.clone(),
                fired.clone(),
            );
            Arc::new(move |call| {
                let (engine, input_b, plain, fired) = (
                    engine.clone(),
                    input_b.clone(),
                    plain.clone(),
                    fired.clone(),
                );
                async move {
                    if call == n && !fired.swap(true, Ordering::SeqCst) {
                        // The whole transform of file B, before call n goes on.
                        ingest(&engine, &input_b, &plain).await;
                    }
                }
                .boxed()
            })
        };
        let racing = lake_on(Arc::new(
            FaultyStore::new(store, Faults::None).with_hook(hook),
        ));
        let r = compact_on(&racing, &table, &partition, &options(LEASE_TTL)).await;
        assert!(r.is_ok(), "call {n}: {r:?}");
        assert!(fired.load(Ordering::SeqCst), "call {n}: the transform ran");
        let (got, _) = figures(&plain, &folder).await;
        assert_eq!(
            Figures { files: 0, ..got },
            Figures {
                files: 0,
                ..want.clone()
            },
            "call {n}: {r:?}"
        );
        // And a second compaction merges what the transform added.
        compact_on(&plain, &table, &partition, &options(LEASE_TTL))
            .await
            .unwrap();
        let (again, _) = figures(&plain, &folder).await;
        assert_eq!(
            Figures {
                files: 0,
                ..again.clone()
            },
            Figures {
                files: 0,
                ..want.clone()
            }
        );
        assert_eq!(again.files, 1, "call {n}");
    }
}

fn count_parquet(dir: &FsPath) -> usize {
    sluice_tests::parquet_files_under(dir).len()
}

#[test]
fn sluice_compact_merges_a_real_lake_and_a_rerun_of_the_input_adds_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    let run = || sluice_tests::run_into(&repo_root(), EXAMPLE, lake_s, &["--chunk-size", "64KiB"]);
    run();
    let before = count_parquet(&lake.join("clickstream"));
    assert!(before > 500, "{before}");

    // Files younger than the default quiet period (15 minutes) are left alone.
    let out = sluice_ok(&repo_root(), &["compact", "--lake", lake_s]);
    assert!(out.contains("nothing to merge"), "{out}");
    assert_eq!(count_parquet(&lake.join("clickstream")), before);

    let out = sluice_ok(
        &repo_root(),
        &["compact", "--lake", lake_s, "--min-age", "0s"],
    );
    assert!(
        out.contains(&format!("{before} files -> 56")) && out.contains("copied in 56 of 56"),
        "{out}"
    );
    assert_eq!(count_parquet(&lake.join("clickstream")), 56);
    sluice_tests::check_example_lake(&lake);

    // Running the same input again after compaction: every chunk is
    // committed already, so nothing is written twice.
    let out = run();
    assert!(
        out.contains("chunks were committed by an earlier run and not processed again"),
        "{out}"
    );
    assert_eq!(count_parquet(&lake.join("clickstream")), 56);
    sluice_tests::check_example_lake(&lake);

    // One partition only: nothing left to merge there.
    let out = sluice_ok(
        &repo_root(),
        &[
            "compact",
            "--lake",
            lake_s,
            "--min-age",
            "0s",
            "--table",
            "clickstream",
            "--partition",
            "dt=2026-11-20/event_type=click",
        ],
    );
    assert!(out.contains("1 partitions, 0 compacted"), "{out}");
    let parts = sluice_tests::partitions_of(lake_s, "clickstream");
    assert!(parts.contains("56 partitions"), "{parts}");
    let e = sluice_tests::sluice_err(
        &repo_root(),
        &[
            "compact",
            "--lake",
            lake_s,
            "--table",
            "clickstream",
            "--partition",
            "dt=1999-01-01",
        ],
    );
    assert!(e.contains("no partition \"dt=1999-01-01\""), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_two_schemas_are_re_encoded_into_the_wider_one() {
    // File A with the example's columns; file B through a transform that
    // adds one (as a table evolves): the partition's files differ in schema.
    let engine_a = engine().await;
    let text = std::fs::read_to_string(repo_root().join(EXAMPLE)).unwrap();
    let wider = text.replace("price, properties,", "price, properties, 'web' AS channel,");
    assert_ne!(wider, text, "the example changed shape");
    let engine_b = Arc::new(
        Engine::new(Pipeline::from_toml(&wider).unwrap())
            .await
            .unwrap(),
    );
    let (_a, input_a) = raw_input(&["events-00000.jsonl"]);
    let (_b, input_b) = raw_input(&["events-00001.jsonl.gz"]);
    let lake = lake_on(Arc::new(InMemory::new()));
    ingest(&engine_a, &input_a, &lake).await;
    ingest(&engine_b, &input_b, &lake).await;
    let (table, partition, folder) = busiest(&lake).await;
    let (before, _) = figures(&lake, &folder).await;
    let report = compact_on(&lake, &table, &partition, &options(LEASE_TTL))
        .await
        .unwrap();
    assert_eq!((report.outputs, report.copied), (1, 0), "{report:?}");
    let (after, _) = figures(&lake, &folder).await;
    assert_eq!(
        Figures {
            files: 0,
            ..after.clone()
        },
        Figures { files: 0, ..before }
    );
    assert_eq!(after.files, 1);
    // The output has the wider schema: B's rows say 'web', A's are null.
    let listed = lake
        .store
        .list_with_delimiter(Some(&Path::parse(&folder).unwrap()))
        .await
        .unwrap();
    let bytes = sluice_tests::object_bytes(lake.store.as_ref(), &listed.objects[0].location).await;
    let (mut web, mut null) = (0, 0);
    for b in ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
    {
        let b = b.unwrap();
        let c = b.column_by_name("channel").expect("the new column is kept");
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..c.len() {
            if c.is_null(i) {
                null += 1
            } else {
                assert_eq!(c.value(i), "web");
                web += 1
            }
        }
    }
    assert!(web > 0 && null > 0, "web {web}, null {null}");
    // The catalog has the partition's new figures.
    let stats = LocalCatalog::new(&lake)
        .partition_stats("clickstream", &partition)
        .await
        .unwrap()
        .expect("figures recorded");
    assert_eq!((stats.files, stats.rows), (1, after.rows as u64));
}

/// Every row of every Parquet file of the table, as `figures` writes a row:
/// the exact multiset of the table's rows.
async fn table_rows(lake: &Location) -> Vec<String> {
    let metas = sluice_tests::list_under(lake.store.as_ref(), "clickstream").await;
    let mut folders: Vec<String> = metas
        .iter()
        .filter(|m| m.location.as_ref().ends_with(".parquet"))
        .filter_map(|m| {
            let s = m.location.as_ref();
            s.rfind('/').map(|i| s[..i].to_string())
        })
        .collect();
    folders.sort();
    folders.dedup();
    let mut all = Vec::new();
    for folder in folders {
        let (f, _) = figures(lake, &folder).await;
        all.extend(f.all.into_iter().map(|r| format!("{folder}\u{1e}{r}")));
    }
    all.sort();
    all
}

/// Load `input` into `lake` with the lake's own catalog: one worker, so the
/// calls come in the same order every time, and 1 MiB chunks.
async fn load(engine: &Arc<Engine>, input: &Location, lake: &Location) -> sluice::Result<()> {
    load_with(engine, input, lake, 1, 1 << 20, true).await
}

/// A new version of a raw file whose old rows compaction merged with another
/// file's: loading it writes its chunks, commits them, records them in the
/// source ledger, settles the old version (cutting its rows out of every
/// merged file, under the partition leases and the intent protocol) and
/// registers partitions in the catalog (the local catalog, on the same
/// store). The load is crashed at each of its store calls in turn, then has
/// each call's answer lost in turn (the store applied the write, its caller
/// was told it failed); after the failed run's leases expire, a clean rerun
/// leaves exactly the rows of a load that never failed, which are DuckDB's
/// reading of the raw files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_call_while_a_new_version_replaces_merged_rows_loses_and_doubles_nothing() {
    // Two files of the example's `click` rows of three days (six partitions
    // at most, so that crashing at every call stays quick): the odd and the
    // even lines.
    let engine = engine().await;
    let text = std::fs::read_to_string(
        repo_root().join("examples/clickstream/raw/clickstream/events-00000.jsonl"),
    )
    .unwrap();
    let day = |l: &str| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        v["event_time"].as_str().unwrap()[..10].to_string()
    };
    let is_click = |l: &&str| l.contains("\"event_type\":\"click\"");
    let days: std::collections::BTreeSet<String> = text.lines().filter(is_click).map(day).collect();
    let first_days: Vec<&String> = days.iter().take(3).collect();
    let clicks: Vec<&str> = text
        .lines()
        .filter(is_click)
        .filter(|l| first_days.contains(&&day(l)))
        .collect();
    let half = |parity: usize| -> String {
        clicks
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == parity)
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("clickstream")).unwrap();
    std::fs::write(dir.path().join("clickstream/a.jsonl"), half(0)).unwrap();
    std::fs::write(dir.path().join("clickstream/b.jsonl"), half(1)).unwrap();
    let input = Location::open(dir.path().to_str().unwrap(), false).unwrap();
    let base = lake_on(Arc::new(InMemory::new()));
    load(&engine, &input, &base).await.unwrap();
    let catalog = LocalCatalog::new(&base);
    let table = catalog.table("clickstream").await.unwrap().unwrap();
    for p in catalog.partitions("clickstream").await.unwrap() {
        compact_on(&base, &table, &p, &options(LEASE_TTL))
            .await
            .unwrap();
    }
    let partitions = catalog.partitions("clickstream").await.unwrap().len();
    assert!(
        (2..=3).contains(&partitions) && clicks.len() > 100,
        "{partitions} partitions, {} rows",
        clicks.len()
    );
    std::fs::write(
        dir.path().join("clickstream/a.jsonl"),
        sluice_tests::new_version_of(&half(0)),
    )
    .unwrap();

    // A load that never failed: its calls, and the rows it leaves, which
    // DuckDB confirms are the raw files' rows.
    let counted = Arc::new(FaultyStore::new(copy_of(&base.store).await, Faults::None));
    let clean_lake = lake_on(counted.clone());
    load(&engine, &input, &clean_lake).await.unwrap();
    let calls = counted.calls();
    // The old version's rows were cut out of merged files: every merged
    // output of the base lake is gone, replaced by one written without them.
    let merged = |lake: Location| async move {
        let metas: Vec<_> = lake.store.list(None).try_collect().await.unwrap();
        metas
            .into_iter()
            .map(|m| m.location.to_string())
            .filter(|p| sluice::write::compaction_output_id(p).is_some())
            .collect::<HashSet<String>>()
    };
    let (before, after) = (merged(base.clone()).await, merged(clean_lake.clone()).await);
    assert!(
        !before.is_empty() && before.is_disjoint(&after) && after.len() == before.len(),
        "merged outputs before {before:?}, after {after:?}"
    );
    let clean = table_rows(&clean_lake).await;
    let on_disk = tempfile::tempdir().unwrap();
    let local = Location::open(on_disk.path().to_str().unwrap(), true).unwrap();
    for m in counted.list(None).try_collect::<Vec<_>>().await.unwrap() {
        let bytes = sluice_tests::object_bytes(&*counted, &m.location).await;
        let path = local.child(m.location.as_ref()).unwrap();
        local.store.put(&path, bytes.into()).await.unwrap();
    }
    let glob = format!("{}/clickstream/*", dir.path().display());
    let v = python_json(
        &repo_root(),
        &compare_script(on_disk.path(), &glob, "read_json"),
    );
    check_lake_matches_raw(&v);
    println!("loading the new version: {calls} store calls, each crashed at, each answer lost");

    for (n, fault, kind) in crashes_then_lost_answers(calls) {
        let store = copy_of(&base.store).await;
        let faulty = lake_on(Arc::new(
            FaultyStore::new(store.clone(), fault).with_kind(kind),
        ));
        let first = load(&engine, &input, &faulty).await;
        if let Faults::CrashAt(_) = fault {
            assert!(first.is_err(), "call {n}: the crash went unnoticed");
        }
        let after = lake_on(store);
        // The crashed run's leases have expired by the time it is rerun.
        let leases: Vec<Path> = after
            .store
            .list(None)
            .try_filter(|m| futures::future::ready(m.location.as_ref().ends_with("lease.json")))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .unwrap();
        for l in leases {
            after.store.delete(&l).await.unwrap();
        }
        load(&engine, &input, &after)
            .await
            .unwrap_or_else(|e| panic!("call {n} {kind:?}: the rerun failed: {e}"));
        let got = table_rows(&after).await;
        if got != clean {
            let only_got: Vec<_> = got.iter().filter(|r| !clean.contains(r)).take(3).collect();
            let only_clean: Vec<_> = clean.iter().filter(|r| !got.contains(r)).take(3).collect();
            panic!(
                "{fault:?} {kind:?} at call {n} of {calls} ({first:?}): {} rows, {} wanted; extra {only_got:?}; missing {only_clean:?}",
                got.len(),
                clean.len()
            );
        }
        let left = pending_intents(&after).await;
        assert!(left.is_empty(), "call {n} {kind:?}: left behind: {left:?}");
    }
}
