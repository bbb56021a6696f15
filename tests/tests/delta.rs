//! Delta Lake tables end to end: the `sluice` command on the example data
//! with `table_format = "delta"`, read back by DuckDB's `delta_scan` and by
//! Python `deltalake` (readers nobody here wrote), row for row against
//! DuckDB's own reading of the raw files; time travel, a re-upload replaced
//! in one commit, OPTIMIZE and VACUUM; and the committer crashed at every
//! store call.

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use sluice::commit::CommitRecord;
use sluice::config::Pipeline;
use sluice::delta::{self, AsOf};
use sluice::fault::{FaultKind, Faults, FaultyStore};
use sluice::pipeline::Engine;
use sluice::store::Location;
use sluice_tests::memory::{copy_of, crashes_then_lost_answers, lake_on, load_with};
use sluice_tests::{
    check_delta_matches_raw, compare_delta_script, delta_python_json, repo_root, sluice_ok,
};

const EXAMPLE: &str = "examples/clickstream/sluice.toml";

/// The example's pipeline with Delta tables.
fn delta_config() -> String {
    let text = std::fs::read_to_string(repo_root().join(EXAMPLE)).unwrap();
    let out = text.replacen(
        "root = \"./lake\"\n",
        "root = \"./lake\"\ntable_format = \"delta\"\n",
        1,
    );
    assert_ne!(out, text, "the example's [lake] root line moved");
    out
}

/// A work folder with the Delta pipeline file and the given raw files of
/// the example under `raw/clickstream/`.
fn workdir(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sluice.toml"), delta_config()).unwrap();
    sluice_tests::copy_example_files(files, &dir.path().join("raw/clickstream"));
    dir
}

/// Every file the chunks of `records` wrote, sorted.
fn files_of(records: &[CommitRecord]) -> Vec<String> {
    let mut files: Vec<String> = records
        .iter()
        .flat_map(|r| r.files.iter().map(|f| f.path.clone()))
        .collect();
    files.sort();
    files
}

/// A new version of the example's first file in the work folder's raw data.
fn upload_new_version(dir: &Path) {
    let file = dir.join("raw/clickstream/events-00000.jsonl");
    std::fs::write(file, sluice_tests::new_version()).unwrap();
}

fn run_sluice(dir: &Path, chunk_size: &str) -> String {
    sluice_ok(
        dir,
        &[
            "run",
            "--config",
            "sluice.toml",
            "--input",
            "raw",
            "--lake",
            "lake",
            "--chunk-size",
            chunk_size,
        ],
    )
}

fn query(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["query", "--lake", "lake", "--format", "csv"];
    all.extend_from_slice(args);
    sluice_ok(dir, &all)
}

/// The one number a `--format csv` query printed.
fn number(csv: &str) -> u64 {
    csv.lines().nth(1).unwrap().trim().parse().unwrap()
}

fn versions_and_rows(dir: &Path) -> serde_json::Value {
    delta_python_json(
        dir,
        r#"
import json, deltalake
t = deltalake.DeltaTable("lake/clickstream")
rows = {}
for v in range(t.version() + 1):
    rows[v] = deltalake.DeltaTable("lake/clickstream", version=v).to_pyarrow_table().num_rows
print(json.dumps({"latest": t.version(), "rows": rows, "files": len(t.file_uris())}))
"#,
    )
}

#[test]
fn a_delta_lake_holds_exactly_the_raw_rows_for_delta_scan_and_deltalake() {
    let dir = workdir(&["events-00000.jsonl", "events-00001.jsonl.gz"]);
    let out = run_sluice(dir.path(), "256KiB");
    assert!(out.contains("delta:"), "{out}");
    let lake = dir.path().join("lake");
    assert!(lake.join("clickstream/_delta_log").is_dir());
    let raw = dir.path().join("raw/clickstream/*");
    let v = delta_python_json(
        dir.path(),
        &compare_delta_script(&lake, raw.to_str().unwrap(), None),
    );
    check_delta_matches_raw(&v);
    // Partition columns live in the log, not in the files (Delta's rule),
    // and every reader still sees them.
    let cols = sluice_tests::columns_of(&v);
    assert!(
        cols.contains(&"dt") && cols.contains(&"event_type"),
        "{cols:?}"
    );
    let raw_rows: u64 = v["raw_rows"].as_str().unwrap().parse().unwrap();
    // sluice's own query reads the latest snapshot.
    assert_eq!(
        number(&query(dir.path(), &["SELECT count(*) FROM clickstream"])),
        raw_rows
    );
    let tables = sluice_ok(dir.path(), &["tables", "--lake", "lake"]);
    let line = tables
        .lines()
        .find(|l| l.starts_with("clickstream"))
        .unwrap_or_else(|| panic!("{tables}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[1], "delta", "{tables}");
    assert_eq!(fields[2], v["version"].to_string(), "{tables}");
    assert_eq!(fields[3], v["files"].to_string(), "{tables}");
    assert_eq!(fields[4], raw_rows.to_string(), "{tables}");

    // Running again adds nothing: no new version, the same rows.
    let again = run_sluice(dir.path(), "256KiB");
    assert!(again.contains("committed by an earlier run"), "{again}");
    let after = versions_and_rows(dir.path());
    assert_eq!(after["latest"], v["version"]);
}

#[test]
fn time_travel_and_a_re_upload_replaced_in_one_commit() {
    let dir = workdir(&["events-00000.jsonl"]);
    run_sluice(dir.path(), "256KiB");
    let first = versions_and_rows(dir.path());
    let v1 = first["latest"].as_i64().unwrap();
    let old_rows = first["rows"][v1.to_string()].as_u64().unwrap();
    // Keep the old raw file to compare the old version with.
    let old = dir.path().join("old/clickstream");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::copy(
        dir.path().join("raw/clickstream/events-00000.jsonl"),
        old.join("events-00000.jsonl"),
    )
    .unwrap();
    upload_new_version(dir.path());
    run_sluice(dir.path(), "256KiB");
    let lake = dir.path().join("lake");
    // The latest version holds exactly the new file's rows.
    let raw = dir.path().join("raw/clickstream/*");
    let latest = delta_python_json(
        dir.path(),
        &compare_delta_script(&lake, raw.to_str().unwrap(), None),
    );
    check_delta_matches_raw(&latest);
    let new_rows: u64 = latest["raw_rows"].as_str().unwrap().parse().unwrap();
    assert_ne!(new_rows, old_rows);
    // The old version still reads whole, through both readers and through
    // `sluice query --as-of`.
    let old_glob = old.join("*");
    check_delta_matches_raw(&delta_python_json(
        dir.path(),
        &compare_delta_script(&lake, old_glob.to_str().unwrap(), Some(v1)),
    ));
    assert_eq!(
        number(&query(
            dir.path(),
            &[
                "--as-of",
                &v1.to_string(),
                "SELECT count(*) FROM clickstream"
            ]
        )),
        old_rows
    );
    // No version ever held a mix: the replacement is one commit.
    let all = versions_and_rows(dir.path());
    let latest_version = all["latest"].as_i64().unwrap();
    assert_eq!(
        latest_version,
        v1 + 1,
        "the replacement took one commit: {all}"
    );
    for v in 1..=latest_version {
        let rows = all["rows"][v.to_string()].as_u64().unwrap();
        assert!(
            rows == old_rows || rows == new_rows || v < v1,
            "version {v} holds {rows} rows, neither the old {old_rows} nor the new {new_rows}: {all}"
        );
    }
}

#[test]
fn compact_is_one_optimize_commit_and_vacuum_deletes_only_what_no_snapshot_needs() {
    let dir = workdir(&["events-00000.jsonl", "events-00001.jsonl.gz"]);
    run_sluice(dir.path(), "128KiB");
    let before = versions_and_rows(dir.path());
    let out = sluice_tests::compact_now(dir.path(), "lake");
    assert!(out.contains("committed version"), "{out}");
    let after = versions_and_rows(dir.path());
    assert_eq!(
        after["latest"].as_i64().unwrap(),
        before["latest"].as_i64().unwrap() + 1,
        "{out}"
    );
    assert!(
        after["files"].as_u64().unwrap() < before["files"].as_u64().unwrap(),
        "{before} -> {after}"
    );
    let lake = dir.path().join("lake");
    let raw = dir.path().join("raw/clickstream/*");
    check_delta_matches_raw(&delta_python_json(
        dir.path(),
        &compare_delta_script(&lake, raw.to_str().unwrap(), None),
    ));
    // Running the same input again after the compaction: every chunk's
    // files were merged away (tombstoned), and none comes back.
    let again = run_sluice(dir.path(), "128KiB");
    assert!(again.contains("committed by an earlier run"), "{again}");
    assert_eq!(versions_and_rows(dir.path())["latest"], after["latest"]);
    check_delta_matches_raw(&delta_python_json(
        dir.path(),
        &compare_delta_script(&lake, raw.to_str().unwrap(), None),
    ));
    // Within the retention nothing goes; with none, the merged inputs go,
    // and the table reads whole.
    let kept = sluice_ok(dir.path(), &["vacuum", "--lake", "lake"]);
    assert!(kept.contains("deleted 0 files"), "{kept}");
    let parquet = |d: &Path| {
        sluice_tests::files_under(&d.join("lake/clickstream"))
            .into_iter()
            .filter(|f| f.ends_with(".parquet") && !f.starts_with("_delta_log"))
            .count() as u64
    };
    let on_disk = parquet(dir.path());
    let gone = sluice_ok(dir.path(), &["vacuum", "--lake", "lake", "--retain", "0s"]);
    let removed = before["files"].as_u64().unwrap();
    assert!(gone.contains(&format!("deleted {removed} files")), "{gone}");
    assert_eq!(parquet(dir.path()), on_disk - removed);
    assert_eq!(parquet(dir.path()), after["files"].as_u64().unwrap());
    check_delta_matches_raw(&delta_python_json(
        dir.path(),
        &compare_delta_script(&lake, raw.to_str().unwrap(), None),
    ));
}

/// The Delta pipeline's engine, and the text of the example's first JSON
/// Lines file.
async fn engine_and_example() -> (Arc<Engine>, String) {
    let pipeline = Pipeline::from_toml(&delta_config()).unwrap();
    let engine = Arc::new(Engine::new(pipeline).await.unwrap());
    let text = std::fs::read_to_string(
        repo_root().join("examples/clickstream/raw/clickstream/events-00000.jsonl"),
    )
    .unwrap();
    (engine, text)
}

/// An input folder holding each (name, lines) as `clickstream/<name>`.
fn raw_folder<'a>(
    files: impl IntoIterator<Item = (String, &'a [&'a str])>,
) -> (tempfile::TempDir, Location) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("clickstream")).unwrap();
    for (name, lines) in files {
        std::fs::write(
            dir.path().join(format!("clickstream/{name}")),
            lines.join("\n") + "\n",
        )
        .unwrap();
    }
    let input = Location::open(dir.path().to_str().unwrap(), false).unwrap();
    (dir, input)
}

/// The first `take` events of 2026-11-18 in the example.
fn one_day(text: &str, take: usize) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains("\"event_time\":\"2026-11-18"))
        .take(take)
        .collect()
}

/// An input folder holding `lines` cut into files of `per_file` lines.
fn raw_files(lines: &[&str], per_file: usize) -> (tempfile::TempDir, Location) {
    raw_folder(
        lines
            .chunks(per_file)
            .enumerate()
            .map(|(i, part)| (format!("{i}.jsonl"), part)),
    )
}

/// Compaction with no minimum age: every file is a candidate at once.
fn at_any_age() -> sluice::compact::CompactOptions {
    sluice::compact::CompactOptions {
        min_age: std::time::Duration::ZERO,
        ..Default::default()
    }
}

async fn load(engine: &Arc<Engine>, input: &Location, lake: &Location) -> sluice::Result<()> {
    load_with(engine, input, lake, 2, 16 << 10, false).await
}

/// The table's files (paths relative to the lake) and rows, as delta-rs
/// reads its log, and every chunk's commit record.
async fn table_state(lake: &Location) -> (Vec<String>, u64, Vec<CommitRecord>) {
    let t = delta::open(lake, "clickstream", AsOf::Latest)
        .await
        .unwrap()
        .expect("a Delta table");
    let snapshot = t.snapshot().unwrap();
    let mut files: Vec<String> = snapshot
        .log_data()
        .iter()
        .map(|f| format!("clickstream/{}", f.path()))
        .collect();
    files.sort();
    let rows = snapshot
        .log_data()
        .iter()
        .map(|f| f.num_records().unwrap() as u64)
        .sum();
    let metas = sluice_tests::list_under(lake.store.as_ref(), "_sluice/commits/clickstream").await;
    let mut records = Vec::new();
    for m in metas {
        let bytes = sluice_tests::object_bytes(lake.store.as_ref(), &m.location).await;
        records.push(CommitRecord::from_json(&bytes, m.location.as_ref()).unwrap());
    }
    (files, rows, records)
}

/// A load of two small files into a Delta table, crashed at each of its
/// store calls in turn (chunk writes, the ledger, the committer's log reads,
/// its conditional put of the commit, the checkpoint), and then with each
/// call's answer lost in turn, then run again cleanly: the table holds every
/// chunk's files once, no other file, and the rows of the raw input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_call_of_a_delta_load_then_a_rerun_leaves_each_chunk_once() {
    let (engine, text) = engine_and_example().await;
    // Clicks of two days: few partitions, so crashing at every call is quick.
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"event_type\":\"click\""))
        .filter(|l| {
            l.contains("\"event_time\":\"2026-11-18") || l.contains("\"event_time\":\"2026-11-19")
        })
        .take(400)
        .collect();
    assert!(lines.len() > 50, "{}", lines.len());
    let (_dir, input) = raw_folder(
        lines
            .chunks(lines.len() / 2 + 1)
            .enumerate()
            .map(|(i, part)| (format!("{i}.jsonl"), part)),
    );

    // A clean load: its calls, and the state it leaves.
    let counted = Arc::new(FaultyStore::new(Arc::new(InMemory::new()), Faults::None));
    load(&engine, &input, &lake_on(counted.clone()))
        .await
        .unwrap();
    let calls = counted.calls();
    let (want_files, want_rows, records) = table_state(&lake_on(counted.clone())).await;
    let written: u64 = records.iter().map(|r| r.rows_out).sum();
    assert_eq!(want_rows, written);
    assert!(records.len() >= 4, "{} chunks", records.len());
    let listed = files_of(&records);
    assert_eq!(
        want_files, listed,
        "the clean load's table is its chunks' files"
    );

    assert!(calls > 50, "{calls} store calls");
    // Each call crashed in turn, then each call's answer lost in turn (the
    // store applied the write: a conditional put of a log entry that
    // happened, though its writer was told it failed).
    for (n, fault, kind) in crashes_then_lost_answers(calls) {
        let base: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let faulty = Arc::new(FaultyStore::new(base.clone(), fault).with_kind(kind));
        let _ = load(&engine, &input, &lake_on(faulty)).await;
        let lake = lake_on(copy_of(&base).await);
        load(&engine, &input, &lake)
            .await
            .unwrap_or_else(|e| panic!("{fault:?} {kind:?}: the rerun failed: {e}"));
        let (files, rows, records) = table_state(&lake).await;
        let listed = files_of(&records);
        assert_eq!(
            files, listed,
            "{fault:?} {kind:?} at call {n}: the table's files"
        );
        assert_eq!(rows, want_rows, "{fault:?} {kind:?} at call {n}: rows");
    }
}

#[test]
fn a_re_upload_after_compaction_cuts_the_old_rows_out_of_merged_files_in_one_commit() {
    let dir = workdir(&["events-00000.jsonl", "events-00001.jsonl.gz"]);
    run_sluice(dir.path(), "128KiB");
    let out = sluice_tests::compact_now(dir.path(), "lake");
    assert!(out.contains("committed version"), "{out}");
    let compacted = versions_and_rows(dir.path())["latest"].as_i64().unwrap();
    upload_new_version(dir.path());
    run_sluice(dir.path(), "128KiB");
    let lake = dir.path().join("lake");
    let raw = dir.path().join("raw/clickstream/*");
    // Every old row of the re-uploaded file is gone from the merged files
    // (which also hold the other file's rows), every new row is in.
    check_delta_matches_raw(&delta_python_json(
        dir.path(),
        &compare_delta_script(&lake, raw.to_str().unwrap(), None),
    ));
    let all = versions_and_rows(dir.path());
    assert_eq!(
        all["latest"].as_i64().unwrap(),
        compacted + 1,
        "the replacement took one commit: {all}"
    );
}

/// Every version a reader can see holds whole chunks: a load in small
/// chunks, a compaction, a re-upload of one file and its load, and at every
/// version of the table each chunk's files (directly, or through the merged
/// files that list them) are all there or none is, and no chunk file is
/// there twice. Readers see versions only, so this is what any reader polling
/// the table while the work ran could have seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_version_holds_whole_chunks_through_ingest_compaction_and_a_re_upload() {
    let (engine, text) = engine_and_example().await;
    let lines: Vec<&str> = text.lines().take(1200).collect();
    let (dir, input) = raw_folder([
        ("a.jsonl".to_string(), &lines[..600]),
        ("b.jsonl".to_string(), &lines[600..]),
    ]);
    let lake = lake_on(Arc::new(InMemory::new()));
    load(&engine, &input, &lake).await.unwrap();
    let options = sluice::compact::CompactOptions {
        min_age: std::time::Duration::ZERO,
        min_files: 2,
        ..Default::default()
    };
    let compacted = delta::compact(&lake, "clickstream", &options, chrono::Utc::now())
        .await
        .unwrap();
    assert!(compacted.files_added > 0, "{compacted:?}");
    std::fs::write(
        dir.path().join("clickstream/a.jsonl"),
        sluice_tests::new_version_of(&(lines[..600].join("\n") + "\n")),
    )
    .unwrap();
    load(&engine, &input, &lake).await.unwrap();

    let (_, _, records) = table_state(&lake).await;
    let (latest, saw_merged) = check_every_version_holds_whole_chunks(&lake, &records).await;
    assert!(latest >= 4, "{latest} versions");
    assert!(saw_merged, "the compaction's merged files were seen");
}

/// Two committers (two `sluice run`s, or catalog functions without the
/// lease) and the compactor on one table at once: chunks staged by the
/// transform are committed one per commit by each committer, half each,
/// while the compactor merges what it finds, over and over. No commit is
/// lost to another: every chunk is in the table once, every version a
/// reader could have seen held whole chunks, a redelivery of every record
/// adds nothing, and DuckDB's `delta_scan` and Python `deltalake` read the
/// raw rows exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_committers_and_the_compactor_at_once_lose_and_double_no_chunk() {
    let (engine, text) = engine_and_example().await;
    let lines: Vec<&str> = text.lines().take(2000).collect();
    let (raw, input) = raw_folder(
        lines
            .chunks(500)
            .enumerate()
            .map(|(i, part)| (format!("part-{i}.jsonl"), part)),
    );
    // Stage the chunks: load into a lake in memory, then copy its files and
    // commit records, not its log, into a lake folder.
    let staged = lake_on(Arc::new(InMemory::new()));
    load(&engine, &input, &staged).await.unwrap();
    let lake_dir = tempfile::tempdir().unwrap();
    let lake = Location::open(lake_dir.path().to_str().unwrap(), false).unwrap();
    let objects: Vec<_> = staged.store.list(None).try_collect().await.unwrap();
    for m in objects {
        if m.location.as_ref().contains("/_delta_log/") {
            continue;
        }
        let bytes = sluice_tests::object_bytes(staged.store.as_ref(), &m.location).await;
        let to = lake.child(m.location.as_ref()).unwrap();
        lake.store.put(&to, bytes.into()).await.unwrap();
    }
    let (_, _, records) = table_state(&staged).await;
    assert!(
        records.len() >= 8,
        "{} chunks: too few to race",
        records.len()
    );
    assert!(!delta::exists(&lake, "clickstream").await.unwrap());

    let a: Vec<CommitRecord> = records.iter().step_by(2).cloned().collect();
    let b: Vec<CommitRecord> = records.iter().skip(1).step_by(2).cloned().collect();
    let committer = |records: Vec<CommitRecord>| {
        let lake = lake.clone();
        tokio::spawn(async move {
            let mut added = 0;
            for r in records {
                added += delta::commit_batch(&lake, "clickstream", vec![r])
                    .await
                    .unwrap()
                    .chunks_added;
            }
            added
        })
    };
    let committing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let compactor = {
        let lake = lake.clone();
        let committing = committing.clone();
        tokio::spawn(async move {
            let options = sluice::compact::CompactOptions {
                min_age: std::time::Duration::ZERO,
                min_files: 2,
                ..Default::default()
            };
            let mut merged = 0;
            loop {
                let last = !committing.load(std::sync::atomic::Ordering::SeqCst);
                if delta::exists(&lake, "clickstream").await.unwrap() {
                    merged += delta::compact(&lake, "clickstream", &options, chrono::Utc::now())
                        .await
                        .unwrap()
                        .files_added;
                }
                if last {
                    return merged;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
    };
    let (a, b) = (committer(a), committer(b));
    let added = a.await.unwrap() + b.await.unwrap();
    committing.store(false, std::sync::atomic::Ordering::SeqCst);
    let merged = compactor.await.unwrap();
    assert_eq!(added, records.len(), "chunks added by the two committers");
    assert!(
        merged > 0,
        "the compactor merged files while they committed"
    );

    let again = delta::commit_batch(&lake, "clickstream", records.clone())
        .await
        .unwrap();
    assert_eq!((again.chunks_added, again.version), (0, None), "{again:?}");
    let (latest, saw_merged) = check_every_version_holds_whole_chunks(&lake, &records).await;
    assert!(saw_merged);
    assert!(
        latest as usize > records.len(),
        "{latest} versions for {} chunks",
        records.len()
    );
    // They ran at once: the log interleaves the three writers' commits.
    let evens: std::collections::HashSet<&str> = records
        .iter()
        .step_by(2)
        .map(|r| r.chunk_id.as_str())
        .collect();
    let mut writers = String::new();
    for v in 1..=latest {
        let entry = std::fs::read_to_string(
            lake_dir
                .path()
                .join(format!("clickstream/_delta_log/{v:020}.json")),
        )
        .unwrap();
        let info: serde_json::Value = entry
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find_map(|a| a.get("commitInfo").cloned())
            .unwrap();
        assert_ne!(
            info["operation"], "CREATE TABLE",
            "version {v}: a creator that lost the race for version 0 created the table again"
        );
        let chunk = info["sluice.chunks"][0].as_str();
        writers.push(match chunk {
            Some(c) if evens.contains(c) => 'a',
            Some(_) => 'b',
            None => 'c',
        });
    }
    let switches = writers
        .as_bytes()
        .windows(2)
        .filter(|w| w[0] != w[1])
        .count();
    assert!(
        switches >= 4 && writers.contains('c'),
        "the writers' commits, in version order, barely interleave: {writers}"
    );
    let glob = raw.path().join("clickstream/*");
    let v = delta_python_json(
        lake_dir.path(),
        &compare_delta_script(lake_dir.path(), glob.to_str().unwrap(), None),
    );
    check_delta_matches_raw(&v);
}

/// Check that every version of the table holds whole chunks of `records`:
/// each chunk's files (directly, or through the merged files that list them)
/// all there or none, no chunk file twice, no file that is no chunk's. The
/// latest version, and whether some version held merged files.
async fn check_every_version_holds_whole_chunks(
    lake: &Location,
    records: &[CommitRecord],
) -> (u64, bool) {
    let latest = delta::open(lake, "clickstream", AsOf::Latest)
        .await
        .unwrap()
        .unwrap()
        .version()
        .unwrap();
    let mut saw_merged = false;
    for v in 0..=latest {
        let t = delta::open(lake, "clickstream", AsOf::Version(v))
            .await
            .unwrap()
            .unwrap();
        let mut chunk_files: Vec<String> = Vec::new();
        for f in t.snapshot().unwrap().log_data().iter() {
            #[allow(deprecated)]
            let tags = f.add_action().tags;
            match tags.and_then(|t| t.get(delta::PARTS_TAG).cloned().flatten()) {
                Some(json) => {
                    saw_merged = true;
                    let parts: Vec<delta::Part> = serde_json::from_str(&json).unwrap();
                    chunk_files
                        .extend(parts.into_iter().map(|p| format!("clickstream/{}", p.file)));
                }
                None => chunk_files.push(format!("clickstream/{}", f.path())),
            }
        }
        let mut unique = chunk_files.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            unique.len(),
            chunk_files.len(),
            "version {v}: a chunk file twice"
        );
        for r in records {
            let held = r.files.iter().filter(|f| unique.contains(&f.path)).count();
            assert!(
                held == 0 || held == r.files.len(),
                "version {v}: {held} of the {} files of chunk {} of {}",
                r.files.len(),
                r.chunk.index,
                r.source.url
            );
        }
        let owned = files_of(records);
        for f in &unique {
            assert!(owned.contains(f), "version {v}: {f} is no chunk's file");
        }
    }
    (latest, saw_merged)
}

/// Every row of the table's latest snapshot, read from its data files with
/// the Parquet reader (not from the log's statistics), each as its
/// partition folder and the row as JSON, sorted: the exact multiset of the
/// table's rows. A file the snapshot names that is gone fails the test.
async fn snapshot_rows(lake: &Location, what: &str) -> Vec<String> {
    let (files, _, _) = table_state(lake).await;
    let mut rows = Vec::new();
    for f in files {
        let path = object_store::path::Path::parse(&f).unwrap();
        let bytes = match lake.store.get(&path).await {
            Ok(got) => got.bytes().await.unwrap(),
            Err(e) => panic!("{what}: the table's file {f} is gone: {e}"),
        };
        let folder = f.rsplit_once('/').map(|(d, _)| d.to_string()).unwrap();
        for line in sluice_tests::parquet_json_rows(bytes) {
            rows.push(format!("{folder}|{line}"));
        }
    }
    rows.sort();
    rows
}

/// OPTIMIZE of a table that checkpoints every version, with each store call
/// of it failing in turn: refused with a 500, or applied with its answer
/// lost (the commit's conditional put among them: the version is in the
/// log though its writer was told the write failed), and each checkpoint
/// and log read after the commit failing. Whatever OPTIMIZE answers, no file
/// a version points to is deleted: the table holds the same rows, and a
/// clean OPTIMIZE after it does too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optimize_that_lost_its_answer_or_its_checkpoint_keeps_every_file_its_versions_need() {
    let (engine, text) = engine_and_example().await;
    let lines = one_day(&text, 300);
    assert!(lines.len() > 100, "{}", lines.len());
    let (_dir, input) = raw_files(&lines, lines.len() / 4 + 1);
    let base: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    load(&engine, &input, &lake_on(base.clone())).await.unwrap();
    // A checkpoint after every commit: OPTIMIZE's commit is followed by one.
    let t = delta::open(&lake_on(base.clone()), "clickstream", AsOf::Latest)
        .await
        .unwrap()
        .unwrap();
    t.set_tbl_properties()
        .with_properties(
            [("delta.checkpointInterval".to_string(), "1".to_string())]
                .into_iter()
                .collect(),
        )
        .await
        .unwrap();
    let want = snapshot_rows(&lake_on(base.clone()), "before").await;
    assert!(want.len() >= lines.len(), "{} rows", want.len());
    let options = at_any_age();
    let now = chrono::Utc::now() + chrono::Duration::hours(1);

    let optimize = async |lake: &Location| delta::compact(lake, "clickstream", &options, now).await;
    // A status or a lost answer at every call, and a few calls past the end.
    let faults = |calls| {
        (1..=calls + 5).flat_map(|n| {
            [FaultKind::AnswerLost, FaultKind::Status(500)].map(|kind| (n, Faults::Once(n), kind))
        })
    };
    let swept = fault_sweep(&base, &want, faults, optimize).await;
    let clean = swept.clean;
    assert!(
        clean.version.is_some() && clean.files_removed > clean.files_added,
        "{clean:?}"
    );
    assert!(swept.calls > 10, "{} store calls", swept.calls);
}

/// What [`fault_sweep`] ran.
struct Swept<T> {
    /// The answer of the run with a store that works, and the lake it left.
    clean: T,
    clean_lake: Location,
    /// How many store calls that run made.
    calls: u64,
    /// Each faulty run's name and the lake it left once run again cleanly.
    after: Vec<(String, Location)>,
}

/// `op` (an OPTIMIZE, a VACUUM) on a copy of the table in `base`: once with
/// a store that works, counting its calls; then, for each of `faults(calls)`,
/// with a store failing so, followed by `op` again with a store that works.
/// The table holds the rows `want` after the clean run, after each faulty
/// run whatever it answered, and after each rerun, which must succeed.
async fn fault_sweep<T: std::fmt::Debug, I>(
    base: &Arc<dyn ObjectStore>,
    want: &[String],
    faults: impl Fn(u64) -> I,
    op: impl AsyncFn(&Location) -> sluice::Result<T>,
) -> Swept<T>
where
    I: IntoIterator<Item = (u64, Faults, FaultKind)>,
{
    let counted = Arc::new(FaultyStore::new(copy_of(base).await, Faults::None));
    let clean_lake = lake_on(counted.clone());
    let clean = op(&clean_lake).await.unwrap();
    assert_eq!(snapshot_rows(&clean_lake, "clean").await, want);
    let calls = counted.calls();
    let mut after = Vec::new();
    for (n, fault, kind) in faults(calls) {
        let store = copy_of(base).await;
        let faulty = Arc::new(FaultyStore::new(store.clone(), fault).with_kind(kind));
        let answer = op(&lake_on(faulty)).await;
        let what = format!("call {n} {fault:?} {kind:?} (answered {answer:?})");
        let lake = lake_on(store);
        assert_eq!(snapshot_rows(&lake, &what).await, want, "{what}");
        op(&lake)
            .await
            .unwrap_or_else(|e| panic!("{what}: run again after it, it failed: {e}"));
        assert_eq!(snapshot_rows(&lake, &what).await, want, "{what}, run again");
        after.push((what, lake));
    }
    Swept {
        clean,
        clean_lake,
        calls,
        after,
    }
}

/// VACUUM removes the files in a table's folder that no version names (a
/// crashed chunk's, an OPTIMIZE whose commit never landed) once they are
/// older than the grace a commit record may still need them for, and
/// leaves every file a version names: the table's rows are unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vacuum_deletes_files_no_version_names_after_the_grace_and_nothing_else() {
    let (engine, text) = engine_and_example().await;
    let lines: Vec<&str> = text.lines().take(200).collect();
    let (_dir, input) = raw_folder([("0.jsonl".to_string(), &lines[..])]);
    let lake = lake_on(Arc::new(InMemory::new()));
    load(&engine, &input, &lake).await.unwrap();
    let want = snapshot_rows(&lake, "loaded").await;
    let (files, _, _) = table_state(&lake).await;
    // An orphan beside the table's files: a copy of one of them that no
    // version names.
    let named = object_store::path::Path::parse(&files[0]).unwrap();
    let orphan = object_store::path::Path::parse(format!(
        "{}/part-orphan-00000.parquet",
        files[0].rsplit_once('/').unwrap().0
    ))
    .unwrap();
    let bytes = lake.store.get(&named).await.unwrap().bytes().await.unwrap();
    lake.store.put(&orphan, bytes.into()).await.unwrap();
    let retain = std::time::Duration::from_secs(7 * 24 * 3600);
    let now = chrono::Utc::now();
    // Young: left alone, even with no retention at all.
    let gone = delta::vacuum_at(&lake, "clickstream", std::time::Duration::ZERO, false, now)
        .await
        .unwrap();
    assert!(gone.is_empty(), "{gone:?}");
    assert!(lake.store.head(&orphan).await.is_ok());
    // Past the grace: deleted, and nothing a version names.
    let later = now + chrono::Duration::days(16);
    let gone = delta::vacuum_at(&lake, "clickstream", retain, false, later)
        .await
        .unwrap();
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert!(gone[0].ends_with("part-orphan-00000.parquet"), "{gone:?}");
    assert!(
        lake.store.head(&orphan).await.is_err(),
        "the orphan is gone"
    );
    assert_eq!(snapshot_rows(&lake, "vacuumed").await, want);
}

/// The table's data files, sorted.
async fn data_files(lake: &Location) -> Vec<String> {
    let mut files: Vec<String> = lake
        .store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_filter(|f| {
            futures::future::ready(f.ends_with(".parquet") && !f.contains("_delta_log"))
        })
        .try_collect()
        .await
        .unwrap();
    files.sort();
    files
}

/// A VACUUM (after an OPTIMIZE, a month later) crashed at each of its store
/// calls in turn, and each call's answer lost in turn (a delete applied, its
/// caller told it failed): whatever it answers, the table's rows are
/// unchanged, and a VACUUM run again after it succeeds and leaves exactly
/// the files a clean VACUUM leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vacuum_crashed_or_unanswered_at_any_call_deletes_only_what_a_clean_one_does() {
    let (engine, text) = engine_and_example().await;
    // One day's events in four files: partitions of several small files.
    let (_dir, input) = raw_files(&one_day(&text, 80), 20);
    let base: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    load(&engine, &input, &lake_on(base.clone())).await.unwrap();
    let options = at_any_age();
    let now = chrono::Utc::now() + chrono::Duration::hours(1);
    let merged = delta::compact(&lake_on(base.clone()), "clickstream", &options, now)
        .await
        .unwrap();
    assert!(merged.files_removed > merged.files_added, "{merged:?}");
    let want = snapshot_rows(&lake_on(base.clone()), "compacted").await;
    let retain = std::time::Duration::from_secs(7 * 24 * 3600);
    let later = now + chrono::Duration::days(30);

    let vacuum =
        async |lake: &Location| delta::vacuum_at(lake, "clickstream", retain, false, later).await;
    let swept = fault_sweep(
        &base,
        &want,
        |calls| crashes_then_lost_answers(calls + 2),
        vacuum,
    )
    .await;
    let gone = swept.clean;
    assert!(gone.len() >= merged.files_removed as usize, "{gone:?}");
    assert!(swept.calls > 5, "{} store calls", swept.calls);
    // Every VACUUM run again leaves exactly the files a clean one leaves.
    let left = data_files(&swept.clean_lake).await;
    for (what, lake) in &swept.after {
        assert_eq!(data_files(lake).await, left, "{what}, then a VACUUM");
    }
}

/// Chunks compacted a month ago (their files' tombstones dated then), a
/// checkpoint since (which forgets tombstones past the table's 7-day
/// retention), and VACUUM: every commit record delivered again (a DLQ
/// redrive, a backfill rerun) adds nothing, both while the chunk files are
/// still in the folder and after VACUUM deleted them. The table remembers
/// each chunk it took by a Delta `txn` action, which checkpoints keep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_redelivered_after_compaction_checkpoint_and_vacuum_add_nothing() {
    let (engine, text) = engine_and_example().await;
    let lines = one_day(&text, 200);
    let (_dir, input) = raw_files(&lines, lines.len() / 2 + 1);
    let lake = lake_on(Arc::new(InMemory::new()));
    load(&engine, &input, &lake).await.unwrap();
    let want = snapshot_rows(&lake, "loaded").await;
    let (_, _, records) = table_state(&lake).await;
    assert!(records.len() >= 2, "{} records", records.len());
    let options = at_any_age();
    let now = chrono::Utc::now();
    let done = delta::compact(
        &lake,
        "clickstream",
        &options,
        now - chrono::Duration::days(30),
    )
    .await
    .unwrap();
    assert!(done.files_removed > done.files_added, "{done:?}");
    let t = delta::open(&lake, "clickstream", AsOf::Latest)
        .await
        .unwrap()
        .unwrap();
    deltalake::checkpoints::create_checkpoint(&t, None)
        .await
        .unwrap();
    let t = delta::open(&lake, "clickstream", AsOf::Latest)
        .await
        .unwrap()
        .unwrap();
    let tombstones: Vec<_> = t
        .snapshot()
        .unwrap()
        .all_tombstones(t.log_store().as_ref())
        .try_collect()
        .await
        .unwrap();
    assert!(
        tombstones.is_empty(),
        "the checkpoint forgot the tombstones"
    );

    let retain = std::time::Duration::from_secs(7 * 24 * 3600);
    for (when, vacuumed_at) in [
        ("files kept", now),
        ("files vacuumed", now + chrono::Duration::days(16)),
    ] {
        delta::vacuum_at(&lake, "clickstream", retain, false, vacuumed_at)
            .await
            .unwrap();
        let again = delta::commit(&lake, "clickstream", &records, &[])
            .await
            .unwrap();
        assert_eq!(
            (again.chunks_added, again.version),
            (0, None),
            "{when}: {again:?}"
        );
        assert_eq!(snapshot_rows(&lake, when).await, want, "{when}");
    }
}

/// The committer reads every chunk's `txn` action in one pass over the log
/// (`delta::txns`); it must find exactly the application ids delta-rs's
/// kernel finds one at a time, whether the actions are in JSON commits, in
/// a checkpoint, or in both (commits after the checkpoint), and no others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_one_pass_txn_read_finds_what_the_kernel_finds_id_by_id() {
    let (engine, text) = engine_and_example().await;
    let lines = one_day(&text, 240);
    let (first, second) = lines.split_at(120);
    let lake = lake_on(Arc::new(InMemory::new()));
    let check = async |when: &str, want_at_least: usize| {
        let t = delta::open(&lake, "clickstream", AsOf::Latest)
            .await
            .unwrap()
            .unwrap();
        let snapshot = t.snapshot().unwrap();
        let log = t.log_store();
        let (_, _, records) = table_state(&lake).await;
        let read = delta::txns::app_ids("clickstream", snapshot, log.as_ref())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{when}: the log is in the shape it reads"));
        let mut asked: Vec<String> = records
            .iter()
            .map(|r| delta::chunk_app_id(&r.chunk_id))
            .collect();
        asked.push(delta::chunk_app_id("never-committed"));
        let mut kernel = std::collections::BTreeSet::new();
        for id in &asked {
            if snapshot
                .transaction_version(log.as_ref(), id)
                .await
                .unwrap()
                .is_some()
            {
                kernel.insert(id.clone());
            }
        }
        let read: std::collections::BTreeSet<String> = read.into_iter().collect();
        assert_eq!(read, kernel, "{when}");
        assert!(kernel.len() >= want_at_least, "{when}: {kernel:?}");
        kernel.len()
    };
    let (_a, input) = raw_files(first, 40);
    load(&engine, &input, &lake).await.unwrap();
    let in_json = check("in JSON commits", 3).await;
    let t = delta::open(&lake, "clickstream", AsOf::Latest)
        .await
        .unwrap()
        .unwrap();
    deltalake::checkpoints::create_checkpoint(&t, None)
        .await
        .unwrap();
    assert_eq!(check("in a checkpoint", in_json).await, in_json);
    // New sources (other file names) after the checkpoint.
    let (_b, input) = raw_folder(
        second
            .chunks(40)
            .enumerate()
            .map(|(i, part)| (format!("later-{i}.jsonl"), part)),
    );
    load(&engine, &input, &lake).await.unwrap();
    let both = check("in a checkpoint and the commits after it", in_json + 3).await;
    assert!(both > in_json);
}

/// A re-upload of a file whose first version is in a Delta table, its load
/// crashed at each store call in turn (then each call's answer lost), and
/// at that moment a committer run over every commit record there is (a
/// catalog reading between the transform's writes): the table holds the
/// old version's rows or the new one's, never a mix of both; a clean rerun
/// then leaves exactly the new one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_upload_crashed_at_any_call_shows_the_old_rows_or_the_new_never_both() {
    let (engine, text) = engine_and_example().await;
    let lines = one_day(&text, 120);
    let (old, new) = lines.split_at(60);
    let (dir, input) = raw_folder([("0.jsonl".to_string(), old)]);
    let base: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    load(&engine, &input, &lake_on(base.clone())).await.unwrap();
    let old_rows = snapshot_rows(&lake_on(base.clone()), "the first version").await;
    assert!(old_rows.len() >= old.len(), "{} rows", old_rows.len());
    std::fs::write(
        dir.path().join("clickstream/0.jsonl"),
        new.join("\n") + "\n",
    )
    .unwrap();
    let counted = Arc::new(FaultyStore::new(copy_of(&base).await, Faults::None));
    load(&engine, &input, &lake_on(counted.clone()))
        .await
        .unwrap();
    let new_rows = snapshot_rows(&lake_on(counted.clone()), "the second version").await;
    assert!(new_rows != old_rows && new_rows.len() >= new.len());
    let (_, _, records) = table_state(&lake_on(counted.clone())).await;
    assert!(
        records.len() >= 4,
        "several chunks a version: {}",
        records.len()
    );
    for (n, faults, kind) in crashes_then_lost_answers(counted.calls()) {
        let store = copy_of(&base).await;
        let faulty = Arc::new(FaultyStore::new(store.clone(), faults).with_kind(kind));
        let answer = load(&engine, &input, &lake_on(faulty)).await;
        let what = format!("call {n} {kind:?} (the load answered {answer:?})");
        let lake = lake_on(store);
        let (_, _, records) = table_state(&lake).await;
        delta::commit_batch(&lake, "clickstream", records)
            .await
            .unwrap_or_else(|e| panic!("{what}: a committer between: {e}"));
        let rows = snapshot_rows(&lake, &what).await;
        assert!(
            rows == old_rows || rows == new_rows,
            "{what}: {} rows, neither the old version's {} nor the new one's {}",
            rows.len(),
            old_rows.len(),
            new_rows.len()
        );
        load(&engine, &input, &lake)
            .await
            .unwrap_or_else(|e| panic!("{what}: the rerun: {e}"));
        assert_eq!(snapshot_rows(&lake, &what).await, new_rows, "{what}, rerun");
    }
}

/// Partition values a path would mangle, through a Delta table: quotes,
/// slashes, `=`, `%`, dots, tabs, spaces at either end, unicode, a literal
/// `__HIVE_DEFAULT_PARTITION__`, the empty string and null. DuckDB's
/// `delta_scan` and Python `deltalake` read every row back with its value
/// exactly (Delta keeps partition values in its log, not in folder names);
/// null is null, and so is the empty string, which the Delta protocol
/// defines as null for a partition value. No file lands outside the table.
#[test]
fn hostile_partition_values_come_back_from_delta_readers_value_for_value() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let values = [
        "../../escape",
        "a/b",
        "k=v",
        "=",
        "50%",
        "%2F",
        "it's \"quoted\"",
        "back\\slash",
        "new york",
        " padded ",
        "café",
        "日本語 ✓",
        "..",
        ".",
        "x\ty",
        "__HIVE_DEFAULT_PARTITION__",
        "",
    ];
    let mut text = String::new();
    let mut want = Vec::new();
    for (i, v) in values.iter().enumerate() {
        text.push_str(&serde_json::json!({"id": i, "kind": v}).to_string());
        text.push('\n');
        want.push(serde_json::json!([
            i,
            if v.is_empty() { None } else { Some(v) }
        ]));
    }
    text.push_str("{\"id\": 99, \"kind\": null}\n");
    want.push(serde_json::json!([99, null]));
    std::fs::create_dir_all(root.join("raw/t")).unwrap();
    std::fs::write(root.join("raw/t/a.jsonl"), text).unwrap();
    std::fs::write(
        root.join("p.toml"),
        "[lake]\nroot = \"lake\"\ntable_format = \"delta\"\n[input]\nroot = \"raw\"\n[[tables]]\nname = \"t\"\nsource = \"t/\"\nformat = \"jsonl\"\npartition_by = [\"kind\"]\n[tables.schema]\nid = \"int64\"\nkind = \"string\"\n",
    )
    .unwrap();
    sluice_ok(root, &["run", "--config", "p.toml"]);
    for f in sluice_tests::files_under(root) {
        assert!(
            f.starts_with("lake/t/")
                || f.starts_with("lake/_")
                || f.starts_with("raw/")
                || f == "p.toml",
            "{f} is outside the table"
        );
    }
    let got = delta_python_json(
        root,
        &format!(
            r#"{}
import json, deltalake
rows = lambda pairs: sorted([[int(i), k] for i, k in pairs])
by_deltalake = deltalake.DeltaTable("lake/t").to_pyarrow_table().select(["id", "kind"]).to_pylist()
by_scan = con.sql("SELECT id, kind FROM delta_scan('lake/t')").fetchall()
print(json.dumps({{
    "by_deltalake": rows((r["id"], r["kind"]) for r in by_deltalake),
    "by_scan": rows(by_scan),
}}))
"#,
            sluice_tests::DUCKDB_DELTA
        ),
    );
    want.sort_by_key(|r| r[0].as_i64());
    for reader in ["by_deltalake", "by_scan"] {
        assert_eq!(
            got[reader].as_array().unwrap(),
            &want,
            "{reader}: (id, kind) as read back"
        );
    }
}
