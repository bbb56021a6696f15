//! The Delta committer's costs (bench/README.md): commit records made
//! visible one commit each and in batches, seconds and store calls; opening
//! the table after those commits, with its checkpoints and without them.
//!
//!   cargo run --release -p sluice-tests --bin delta-bench -- [records] [batch] [batched]
//!
//! Defaults: 1000 records, batches of 100; `batched` leaves out the commits
//! of one record each (a backfill's scale: 100000 10000 batched). The lake
//! is a local folder; every store call is counted.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use sluice::commit::{ColumnDef, CommitRecord, FileInfo, SourceInfo};
use sluice::delta::{self, AsOf};
use sluice::fault::{Faults, FaultyStore};
use sluice::plan::Chunk;
use sluice::store::Location;

fn lake(dir: &std::path::Path) -> (Location, Arc<FaultyStore>) {
    // As `Location::open` opens a folder: the file system's root, the
    // folder as the prefix.
    let dir = std::fs::canonicalize(dir).unwrap();
    let fs: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let counted = Arc::new(FaultyStore::new(fs, Faults::None));
    let lake = Location {
        store: counted.clone(),
        prefix: Path::from_filesystem_path(&dir).unwrap(),
        url: format!("file://{}", dir.display()),
    };
    (lake, counted)
}

/// `n` chunks of ten rows each, their files written, their records made.
async fn records(lake: &Location, n: usize) -> Vec<CommitRecord> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ids: Vec<i64> = (0..10).map(|j| (i * 10 + j) as i64).collect();
        let names: Vec<String> = ids.iter().map(|v| format!("n{v}")).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema.clone(), None).unwrap();
        w.write(&batch).unwrap();
        let meta = w.close().unwrap();
        let day = format!("2026-12-{:02}", i % 28 + 1);
        let id = format!("{i:024x}");
        let path = format!("bench/dt={day}/part-{id}-00000.parquet");
        let bytes = buf.len() as u64;
        lake.store
            .put(&lake.child(&path).unwrap(), PutPayload::from(buf))
            .await
            .unwrap();
        let stats = sluice::stats::from_footer(&meta, &schema);
        out.push(CommitRecord {
            version: 1,
            table: "bench".into(),
            source: SourceInfo {
                url: format!("file:///raw/{i}.jsonl"),
                size: 100,
                e_tag: Some(format!("e{i}")),
                version: None,
                modified: None,
                sequencer: None,
            },
            chunk: Chunk {
                index: 0,
                start: 0,
                end: 100,
            },
            chunk_id: id,
            columns: vec![
                ColumnDef {
                    name: "id".into(),
                    hive_type: "bigint".into(),
                },
                ColumnDef {
                    name: "name".into(),
                    hive_type: "string".into(),
                },
            ],
            partition_keys: vec![ColumnDef {
                name: "dt".into(),
                hive_type: "date".into(),
            }],
            schema_fingerprint: String::new(),
            files: vec![FileInfo {
                path,
                partition: vec![Some(day.clone())],
                partition_path: format!("dt={day}"),
                rows: 10,
                bytes,
                stats: Some(stats),
            }],
            rows_in: 10,
            rows_out: 10,
            rows_rejected: 0,
            values_discarded: 0,
            tombstones: 0,
            bytes_in: 100,
            quarantine: None,
            compression: None,
        });
    }
    out
}

async fn commit_all(lake: &Location, records: &[CommitRecord], batch: usize) -> u64 {
    let mut versions = 0;
    for chunk in records.chunks(batch.max(1)) {
        let done = delta::commit(lake, "bench", chunk, &[]).await.unwrap();
        versions += u64::from(done.version.is_some());
    }
    versions
}

async fn open_cost(lake: &Location, counted: &FaultyStore) -> (f64, u64, u64) {
    let before = counted.calls();
    let t = Instant::now();
    let table = delta::open(lake, "bench", AsOf::Latest)
        .await
        .unwrap()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    let files = table.snapshot().unwrap().log_data().num_files() as u64;
    (secs, counted.calls() - before, files)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(1000, |a| a.parse().expect("records"));
    let batch: usize = args.get(2).map_or(100, |a| a.parse().expect("batch"));
    let sizes: Vec<usize> = match args.get(3).map(String::as_str) {
        Some("batched") => vec![batch],
        None => vec![1, batch],
        Some(other) => panic!("{other:?}: the third argument is `batched` or nothing"),
    };
    println!(
        "delta committer: {n} commit records of one 10-row file each, one table, local folder"
    );
    for size in sizes {
        let dir = tempfile::tempdir().unwrap();
        let (lake, counted) = lake(dir.path());
        let recs = records(&lake, n).await;
        let before = counted.calls();
        let t = Instant::now();
        let versions = commit_all(&lake, &recs, size).await;
        let secs = t.elapsed().as_secs_f64();
        let calls = counted.calls() - before;
        println!(
            "  batches of {size:>4}: {versions:>5} commits in {secs:7.2} s ({:6.2} ms a record), {calls:>7} store calls ({:.1} a record)",
            secs * 1e3 / n as f64,
            calls as f64 / n as f64
        );
        // Again: every record is in the table, so nothing is committed.
        let before = counted.calls();
        let t = Instant::now();
        let again = commit_all(&lake, &recs, size).await;
        println!(
            "    the same records again: {again} commits, {:.2} s, {} store calls",
            t.elapsed().as_secs_f64(),
            counted.calls() - before
        );
        let (secs, calls, files) = open_cost(&lake, &counted).await;
        println!(
            "    opening the table ({files} files) with its checkpoints: {:.1} ms, {calls} store calls",
            secs * 1e3
        );
        let log = dir.path().join("bench/_delta_log");
        let (mut entries, mut checkpoints, mut bytes) = (0, 0, 0);
        for e in std::fs::read_dir(&log).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            bytes += e.metadata().unwrap().len();
            if name.contains(".checkpoint") {
                checkpoints += 1;
            } else if name.ends_with(".json") {
                entries += 1;
            }
        }
        println!(
            "    the log: {entries} commits, {checkpoints} checkpoint files, {:.1} MB in all",
            bytes as f64 / 1e6
        );
        // Without checkpoints: every JSON entry is read.
        let log = dir.path().join("bench/_delta_log");
        for e in std::fs::read_dir(&log).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if name.contains("checkpoint") {
                std::fs::remove_file(&p).unwrap();
            }
        }
        let (secs, calls, files) = open_cost(&lake, &counted).await;
        println!(
            "    opening the table ({files} files) without checkpoints: {:.1} ms, {calls} store calls",
            secs * 1e3
        );
    }
}
