//! Compaction: a partition's small files merged into files near a target
//! size, with the same rows, crash-safely.
//!
//! [`plan_partition`] is pure: which committed files, old enough and smaller
//! than the target, go together into which output (first-fit decreasing).
//! [`compact_partition`] does the I/O, per partition under a lease
//! (`_sluice/compactions/<table>/<partition>/lease.json`, created only if
//! absent), and per output:
//!
//! 1. **intent**: `_sluice/compactions/<table>/<partition>/m<id>.json` names
//!    the inputs and the output, state `pending`;
//! 2. **output**: one Parquet file `part-m<id>-00000.parquet` (`m` is no hex digit, so
//!    no chunk's file has such a name), uploaded in one
//!    step (a single PUT or a completed multipart upload);
//! 3. **retire**: the inputs are deleted;
//! 4. **done**: the intent is rewritten with state `done`; it is what marks
//!    the output as committed for later compactions.
//!
//! A rerun first settles every `pending` intent of the partition: if its
//! output exists, the output is complete (uploads are atomic), so it retires
//! the inputs and marks it done; if not, no input was touched yet, so it
//! drops the intent. Either way no row is lost or doubled once it finishes.
//! Only committed files are ever inputs (those a chunk's commit record lists,
//! or a finished compaction's output), so a chunk still being written, or
//! retried, is never merged.
//!
//! Where all inputs have the same Parquet schema, their column chunks are
//! copied into the output without being decoded (the fast path: the output
//! keeps the inputs' row groups). Otherwise (a column added since, say) the
//! rows are decoded and re-encoded into the table's current schema, a batch
//! at a time. Either way the output is streamed to the store in 5 MiB parts,
//! and one input is held in memory at a time.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{RecordBatch, new_null_array};
use arrow::datatypes::{Schema, SchemaRef};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::column::writer::ColumnCloseResult;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tracing::info;

use crate::catalog::{Catalog, PartitionDef, PartitionStats, TableDef};
use crate::commit::CommitRecord;
use crate::error::{Error, Result};
use crate::read::parquet_io::ObjectReader;
use crate::store::Location;
use crate::write::UPLOAD_BUFFER;

use crate::layout::COMPACTIONS_DIR;

/// The default output size.
pub const DEFAULT_TARGET_SIZE: u64 = 256 * 1024 * 1024;

/// How compaction chooses and merges files.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Outputs are made near this size (never more than it from small inputs).
    pub target_size: u64,
    /// A partition is left alone unless it has at least this many small files.
    pub min_files: usize,
    /// Only files at least this old are merged: a partition still being
    /// written is left alone until it is quiet.
    pub min_age: Duration,
    /// A lease older than this is taken over (its holder is taken to have died).
    pub lease_ttl: Duration,
    /// Settings of re-encoded outputs (the fast path copies the inputs' encoding).
    pub writer: WriterProperties,
    /// Decode and re-encode even where column chunks could be copied (for
    /// benchmarks and tests).
    pub force_reencode: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            target_size: DEFAULT_TARGET_SIZE,
            min_files: 4,
            min_age: Duration::from_secs(15 * 60),
            lease_ttl: Duration::from_secs(30 * 60),
            writer: crate::write::writer_properties(&crate::config::ParquetOptions {
                compression: parquet::basic::Compression::ZSTD(
                    parquet::basic::ZstdLevel::try_new(3).expect("a valid level"),
                ),
                row_group_rows: 1024 * 1024,
                target_file_bytes: DEFAULT_TARGET_SIZE,
            }),
            force_reencode: false,
        }
    }
}

/// A file of a partition that may be merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Path relative to the lake root.
    pub path: String,
    pub size: u64,
    /// How long ago it was written.
    pub age: Duration,
}

/// One output and the inputs it is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bin {
    pub inputs: Vec<Candidate>,
    pub bytes: u64,
}

/// Which files of one partition to merge into which outputs. Pure.
///
/// A file is small if it is under three quarters of the target. Small files
/// old enough are packed, largest first, into the first output they fit in
/// (first-fit decreasing); outputs of one file are dropped (nothing to
/// merge). Nothing happens unless at least `min_files` small files are old
/// enough.
pub fn plan_partition(files: &[Candidate], options: &CompactOptions) -> Vec<Bin> {
    let small = options.target_size / 4 * 3;
    let mut candidates: Vec<&Candidate> = files
        .iter()
        .filter(|f| f.size < small && f.age >= options.min_age)
        .collect();
    if candidates.len() < options.min_files.max(2) {
        return Vec::new();
    }
    candidates.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    let mut bins: Vec<Bin> = Vec::new();
    for c in candidates {
        match bins
            .iter_mut()
            .find(|b| b.bytes + c.size <= options.target_size)
        {
            Some(b) => {
                b.bytes += c.size;
                b.inputs.push(c.clone());
            }
            None => bins.push(Bin {
                inputs: vec![c.clone()],
                bytes: c.size,
            }),
        }
    }
    bins.retain(|b| b.inputs.len() > 1);
    for b in &mut bins {
        b.inputs.sort_by(|a, b| a.path.cmp(&b.path));
    }
    bins
}

/// The record of one compaction of a partition's files into one output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub version: u32,
    pub table: String,
    /// `k=v/...`, relative to the table's location.
    pub partition: String,
    /// Input files, relative to the lake root.
    pub inputs: Vec<String>,
    /// The output file, relative to the lake root.
    pub output: String,
    pub state: IntentState,
    #[serde(default)]
    pub rows: Option<u64>,
    #[serde(default)]
    pub bytes: Option<u64>,
    /// The chunk files whose rows the output holds, in order, with their
    /// row counts: an input that is itself an output contributes its own
    /// parts. Lets the rows of one chunk file be found (and removed, when a
    /// newer version of its source replaces it) after compaction. `None` for
    /// intents written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<PartRows>>,
}

/// Rows of one chunk file inside a compaction output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRows {
    pub file: String,
    pub rows: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IntentState {
    Pending,
    Done,
}

/// What a compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactReport {
    /// Partitions looked at.
    pub partitions: usize,
    /// Partitions with at least one output written.
    pub compacted: usize,
    /// Partitions another compaction held the lease of.
    pub busy: usize,
    pub files_before: usize,
    pub files_after: usize,
    pub inputs: usize,
    pub outputs: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub rows: u64,
    /// Outputs whose column chunks were copied without decoding.
    pub copied: usize,
    /// Interrupted compactions finished (inputs retired) or dropped by this run.
    pub recovered: usize,
    /// The longest time an output and its inputs were both in place (from
    /// the output's upload completing to the last input's deletion): a
    /// reader listing the folder then could have read those rows twice.
    #[serde(default)]
    pub max_overlap_ms: u64,
}

/// What merging one bin did.
struct Merged {
    rows: u64,
    bytes: u64,
    copied: bool,
    overlap: Duration,
}

impl CompactReport {
    /// Add another report's figures to these.
    pub fn add(&mut self, o: &CompactReport) {
        self.partitions += o.partitions;
        self.compacted += o.compacted;
        self.busy += o.busy;
        self.files_before += o.files_before;
        self.files_after += o.files_after;
        self.inputs += o.inputs;
        self.outputs += o.outputs;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.rows += o.rows;
        self.copied += o.copied;
        self.recovered += o.recovered;
        self.max_overlap_ms = self.max_overlap_ms.max(o.max_overlap_ms);
    }
}

/// Compact one partition (see the module docs for the protocol).
pub async fn compact_partition(
    lake: &Location,
    catalog: &dyn Catalog,
    table: &TableDef,
    partition: &PartitionDef,
    options: &CompactOptions,
    now: DateTime<Utc>,
) -> Result<CompactReport> {
    let part = Partition::new(lake, table, partition);
    let mut report = CompactReport {
        partitions: 1,
        ..Default::default()
    };
    if !part.take_lease(options, now).await? {
        info!(table = %table.name, partition = %partition.path, "busy: another compaction holds its lease");
        report.busy = 1;
        return Ok(report);
    }
    let result = async {
        report.recovered = part.recover().await?;
        let files = part.files().await?;
        report.files_before = files.len();
        let candidates: Vec<Candidate> = {
            let mut out = Vec::new();
            for f in &files {
                if part.is_committed(&f.path).await? {
                    out.push(Candidate {
                        path: f.path.clone(),
                        size: f.size,
                        age: (now - f.modified).to_std().unwrap_or_default(),
                    });
                }
            }
            out
        };
        let bins = plan_partition(&candidates, options);
        for bin in &bins {
            let m = part.merge(bin, options).await?;
            report.inputs += bin.inputs.len();
            report.outputs += 1;
            report.bytes_in += bin.bytes;
            report.bytes_out += m.bytes;
            report.rows += m.rows;
            report.copied += usize::from(m.copied);
            report.max_overlap_ms = report.max_overlap_ms.max(m.overlap.as_millis() as u64);
        }
        let after = part.files().await?;
        report.files_after = after.len();
        if !bins.is_empty() || report.recovered > 0 {
            report.compacted = usize::from(!bins.is_empty());
            let stats = part.stats(&after).await?;
            catalog
                .set_partition_stats(&table.name, partition, &stats)
                .await?;
        }
        Ok::<_, Error>(())
    }
    .await;
    // Released on failure too, when the store lets us; if not, the lease
    // expires after `lease_ttl`.
    let released = part.release_lease().await;
    result?;
    released?;
    if report.outputs > 0 {
        info!(
            table = %table.name,
            partition = %partition.path,
            files_before = report.files_before,
            files_after = report.files_after,
            rows = report.rows,
            "compacted"
        );
    }
    Ok(report)
}

/// A file of a partition's folder.
#[derive(Debug, Clone)]
struct FileMeta {
    path: String,
    size: u64,
    modified: DateTime<Utc>,
}

struct Partition<'a> {
    lake: &'a Location,
    table: &'a TableDef,
    partition: &'a PartitionDef,
    /// `<table location>/<partition>`, relative to the lake root.
    folder: String,
    /// `_sluice/compactions/<table>/<partition>`.
    state_dir: String,
}

impl<'a> Partition<'a> {
    fn new(lake: &'a Location, table: &'a TableDef, partition: &'a PartitionDef) -> Self {
        let join = |a: &str, b: &str| {
            if b.is_empty() {
                a.to_string()
            } else {
                format!("{a}/{b}")
            }
        };
        Partition {
            lake,
            table,
            partition,
            folder: join(table.location.trim_end_matches('/'), &partition.path),
            state_dir: join(
                &format!("{COMPACTIONS_DIR}/{}", table.name),
                &partition.path,
            ),
        }
    }

    fn path(&self, relative: &str) -> Result<Path> {
        self.lake.child(relative)
    }

    async fn read_json<T: for<'de> Deserialize<'de>>(&self, relative: &str) -> Result<Option<T>> {
        self.lake.get_json(&self.path(relative)?).await
    }

    async fn put_json<T: Serialize>(&self, relative: &str, value: &T) -> Result<()> {
        self.lake.put_json(&self.path(relative)?, value).await
    }

    async fn delete(&self, relative: &str) -> Result<()> {
        match self.lake.store.delete(&self.path(relative)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn lease(&self) -> String {
        format!("{}/lease.json", self.state_dir)
    }

    /// Create the lease if absent; take it over if older than the TTL.
    async fn take_lease(&self, options: &CompactOptions, now: DateTime<Utc>) -> Result<bool> {
        let path = self.path(&self.lease())?;
        crate::lease::take(self.lake.store.as_ref(), &path, options.lease_ttl, now).await
    }

    async fn release_lease(&self) -> Result<()> {
        crate::lease::release(self.lake.store.as_ref(), &self.path(&self.lease())?).await
    }

    /// The Parquet files directly in the partition's folder.
    async fn files(&self) -> Result<Vec<FileMeta>> {
        let prefix = self.path(&self.folder)?;
        let listed = self.lake.store.list_with_delimiter(Some(&prefix)).await?;
        let mut out: Vec<FileMeta> = listed
            .objects
            .into_iter()
            .filter(|m| m.location.as_ref().ends_with(".parquet"))
            .map(|m| FileMeta {
                path: self.lake.relative(&m.location),
                size: m.size,
                modified: m.last_modified,
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Whether a file is committed: listed by its chunk's commit record, or
    /// the output of a finished compaction.
    async fn is_committed(&self, path: &str) -> Result<bool> {
        let Some(name) = path.rsplit('/').next() else {
            return Ok(false);
        };
        let Some(id) = name
            .strip_prefix("part-")
            .and_then(|n| n.strip_suffix(".parquet"))
            .and_then(|n| n.rsplit_once('-'))
            .map(|(id, _seq)| id)
        else {
            return Ok(false);
        };
        if let Some(mid) = id.strip_prefix('m') {
            let intent: Option<Intent> = self
                .read_json(&format!("{}/m{mid}.json", self.state_dir))
                .await?;
            return Ok(intent.is_some_and(|i| i.state == IntentState::Done && i.output == path));
        }
        let record: Option<CommitRecord> = self
            .read_json(&CommitRecord::path(&self.table.name, id))
            .await?;
        Ok(record.is_some_and(|r| r.files.iter().any(|f| f.path == path)))
    }

    /// The partition's compaction intents, with their paths.
    async fn intents(&self) -> Result<Vec<(String, Intent)>> {
        let prefix = self.path(&self.state_dir)?;
        let listed = self.lake.store.list_with_delimiter(Some(&prefix)).await?;
        let mut out = Vec::new();
        for m in listed.objects {
            let relative = self.lake.relative(&m.location);
            let Some(name) = relative.rsplit('/').next() else {
                continue;
            };
            if !(name.starts_with('m') && name.ends_with(".json")) {
                continue;
            }
            if let Some(intent) = self.read_json::<Intent>(&relative).await? {
                out.push((relative, intent));
            }
        }
        Ok(out)
    }

    /// Settle the pending intents of this partition; returns how many.
    async fn recover(&self) -> Result<usize> {
        let mut settled = 0;
        for (relative, mut intent) in self.intents().await? {
            if intent.state == IntentState::Done {
                continue;
            }
            match self.lake.store.head(&self.path(&intent.output)?).await {
                Ok(meta) => {
                    // The output is complete: finish the retirement.
                    self.retire(&intent.inputs).await?;
                    intent.state = IntentState::Done;
                    intent.bytes = Some(meta.size);
                    self.put_json(&relative, &intent).await?;
                    info!(output = %intent.output, "finished an interrupted compaction");
                }
                Err(object_store::Error::NotFound { .. }) => {
                    // No output, so no input was retired: nothing happened.
                    self.delete(&relative).await?;
                    info!(output = %intent.output, "dropped an interrupted compaction");
                }
                Err(e) => return Err(e.into()),
            }
            settled += 1;
        }
        Ok(settled)
    }

    /// Merge one bin: intent, output, retire, done.
    async fn merge(&self, bin: &Bin, options: &CompactOptions) -> Result<Merged> {
        let mut h = Sha256::new();
        for i in &bin.inputs {
            h.update(i.path.as_bytes());
            h.update([0]);
            h.update(i.size.to_le_bytes());
        }
        let id = hex::encode(&h.finalize()[..12]);
        let output = format!("{}/part-m{id}-00000.parquet", self.folder);
        let intent_path = format!("{}/m{id}.json", self.state_dir);
        let mut intent = Intent {
            version: 1,
            table: self.table.name.clone(),
            partition: self.partition.path.clone(),
            inputs: bin.inputs.iter().map(|i| i.path.clone()).collect(),
            output: output.clone(),
            state: IntentState::Pending,
            rows: None,
            bytes: None,
            parts: None,
        };
        self.put_json(&intent_path, &intent).await?;
        let (rows, bytes, copied, input_rows) =
            write_merged(self.lake, &bin.inputs, &output, options).await?;
        intent.parts = self.lineage(&intent.inputs, &input_rows).await?;
        let visible = Instant::now();
        self.retire(&intent.inputs).await?;
        let overlap = visible.elapsed();
        intent.state = IntentState::Done;
        intent.rows = Some(rows);
        intent.bytes = Some(bytes);
        self.put_json(&intent_path, &intent).await?;
        Ok(Merged {
            rows,
            bytes,
            copied,
            overlap,
        })
    }

    /// The parts of an output made of `inputs` (with these row counts):
    /// `None` when an input is an output whose own parts are unknown.
    async fn lineage(&self, inputs: &[String], rows: &[u64]) -> Result<Option<Vec<PartRows>>> {
        let mut parts = Vec::new();
        for (input, &n) in inputs.iter().zip(rows) {
            match output_id(input) {
                Some(mid) => {
                    let intent: Option<Intent> = self
                        .read_json(&format!("{}/m{mid}.json", self.state_dir))
                        .await?;
                    match intent.and_then(|i| i.parts) {
                        Some(p) => parts.extend(p),
                        None => return Ok(None),
                    }
                }
                None => parts.push(PartRows {
                    file: input.clone(),
                    rows: n,
                }),
            }
        }
        Ok(Some(parts))
    }

    /// Remove these chunk files' rows from the partition: a file still there
    /// is deleted; one merged into an output has its rows cut out of that
    /// output, which is written again without them (intent, new output,
    /// retire the old one, done: the same protocol as a merge). Returns the
    /// files deleted and the outputs rewritten.
    async fn remove(&self, files: &[String], options: &CompactOptions) -> Result<(usize, usize)> {
        self.recover().await?;
        let present: std::collections::HashSet<String> =
            self.files().await?.into_iter().map(|f| f.path).collect();
        let (direct, merged): (Vec<String>, Vec<String>) =
            files.iter().cloned().partition(|f| present.contains(f));
        self.retire(&direct).await?;
        let mut rewritten = 0;
        if merged.is_empty() {
            return Ok((direct.len(), 0));
        }
        // The finished merges whose outputs are still there hold the rest.
        for (_, intent) in self.intents().await? {
            if intent.state != IntentState::Done || !present.contains(&intent.output) {
                continue;
            }
            let Some(parts) = &intent.parts else {
                if let Some(f) = merged.iter().find(|f| intent.inputs.contains(f)) {
                    return Err(Error::Catalog(format!(
                        "cannot remove the rows of {f}: it was merged into {} before compactions kept which rows came from which file",
                        intent.output
                    )));
                }
                continue;
            };
            if !parts.iter().any(|p| merged.contains(&p.file)) {
                continue;
            }
            self.cut(&intent, parts, &merged, options).await?;
            rewritten += 1;
        }
        Ok((direct.len(), rewritten))
    }

    /// Write `intent`'s output again without the rows of `drop`.
    async fn cut(
        &self,
        old: &Intent,
        parts: &[PartRows],
        drop: &[String],
        options: &CompactOptions,
    ) -> Result<()> {
        let mut h = Sha256::new();
        h.update(old.output.as_bytes());
        for d in drop {
            h.update([0]);
            h.update(d.as_bytes());
        }
        let id = hex::encode(&h.finalize()[..12]);
        let output = format!("{}/part-m{id}-00000.parquet", self.folder);
        let intent_path = format!("{}/m{id}.json", self.state_dir);
        let mut ranges = Vec::new();
        let mut kept = Vec::new();
        let mut at = 0u64;
        for p in parts {
            if drop.contains(&p.file) {
                ranges.push(at..at + p.rows);
            } else {
                kept.push(p.clone());
            }
            at += p.rows;
        }
        let mut intent = Intent {
            version: 1,
            table: self.table.name.clone(),
            partition: self.partition.path.clone(),
            inputs: vec![old.output.clone()],
            output: output.clone(),
            state: IntentState::Pending,
            rows: None,
            bytes: None,
            parts: Some(kept),
        };
        self.put_json(&intent_path, &intent).await?;
        let (rows, bytes) =
            write_without(self.lake, &old.output, &ranges, &output, options).await?;
        self.retire(&intent.inputs).await?;
        intent.state = IntentState::Done;
        intent.rows = Some(rows);
        intent.bytes = Some(bytes);
        self.put_json(&intent_path, &intent).await?;
        info!(from = %old.output, to = %output, rows_removed = at - rows, "cut a replaced source's rows out of a compacted file");
        Ok(())
    }

    /// Delete the inputs: in bulk where the store can (S3's DeleteObjects
    /// takes 1,000 keys a request), so they vanish close together.
    async fn retire(&self, inputs: &[String]) -> Result<()> {
        let paths: Vec<Result<Path>> = inputs.iter().map(|i| self.path(i)).collect();
        let paths: Vec<object_store::Result<Path>> = paths
            .into_iter()
            .map(|p| {
                p.map_err(|e| object_store::Error::Generic {
                    store: "lake",
                    source: Box::new(e),
                })
            })
            .collect();
        let mut deleted = self
            .lake
            .store
            .delete_stream(futures::stream::iter(paths).boxed());
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Files, bytes and rows of the partition (rows from the files' footers).
    async fn stats(&self, files: &[FileMeta]) -> Result<PartitionStats> {
        let mut rows = 0;
        for f in files {
            let mut reader = ObjectReader::at(self.lake.store.clone(), self.path(&f.path)?, f.size);
            let meta = reader
                .get_metadata(None)
                .await
                .map_err(|e| Error::read(format!("{}/{}", self.lake.url, f.path), e))?;
            rows += meta.file_metadata().num_rows() as u64;
        }
        Ok(PartitionStats {
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.size).sum(),
            rows,
        })
    }
}

/// A `Write` that streams what it is given to an object, in parts of
/// [`UPLOAD_BUFFER`] bytes, through an upload task. The object appears only
/// when [`UploadSink::finish`] is called and the task completes it.
struct UploadSink {
    tx: mpsc::Sender<Part>,
    buf: Vec<u8>,
    written: u64,
}

enum Part {
    Data(Bytes),
    Done,
}

impl UploadSink {
    fn start(
        store: Arc<dyn ObjectStore>,
        path: Path,
    ) -> (UploadSink, tokio::task::JoinHandle<Result<()>>) {
        let (tx, mut rx) = mpsc::channel::<Part>(2);
        let task = tokio::spawn(async move {
            let mut w = BufWriter::with_capacity(store, path.clone(), UPLOAD_BUFFER);
            while let Some(part) = rx.recv().await {
                match part {
                    Part::Data(b) => {
                        if let Err(e) = w.put(b).await {
                            let _ = w.abort().await;
                            return Err(Error::write(&path, e));
                        }
                    }
                    Part::Done => {
                        return w.shutdown().await.map_err(|e| Error::write(&path, e));
                    }
                }
            }
            // The writer gave up: leave no object behind.
            let _ = w.abort().await;
            Err(Error::write(&path, "the output was abandoned"))
        });
        (
            UploadSink {
                tx,
                buf: Vec::with_capacity(UPLOAD_BUFFER),
                written: 0,
            },
            task,
        )
    }

    fn send(&mut self) -> std::io::Result<()> {
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(UPLOAD_BUFFER));
        self.tx
            .blocking_send(Part::Data(Bytes::from(part)))
            .map_err(|_| std::io::Error::other("the upload stopped"))
    }

    /// Send the rest and complete the upload; returns the bytes written.
    fn finish(mut self) -> std::io::Result<u64> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        self.tx
            .blocking_send(Part::Done)
            .map_err(|_| std::io::Error::other("the upload stopped"))?;
        Ok(self.written)
    }
}

impl Write for UploadSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        self.written += data.len() as u64;
        if self.buf.len() >= UPLOAD_BUFFER {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The id of a compaction output's file name (`part-m<id>-00000.parquet`).
fn output_id(path: &str) -> Option<&str> {
    path.rsplit('/')
        .next()?
        .strip_prefix("part-m")?
        .strip_suffix(".parquet")?
        .rsplit_once('-')
        .map(|(id, _)| id)
}

/// Remove the rows of these chunk files from a partition (see
/// [`compact_partition`] for the protocol), under the partition's lease. A
/// busy lease is [`Error::Unavailable`]: try again later.
pub async fn remove_files(
    lake: &Location,
    table: &TableDef,
    partition: &PartitionDef,
    files: &[String],
    options: &CompactOptions,
    now: DateTime<Utc>,
) -> Result<(usize, usize)> {
    let part = Partition::new(lake, table, partition);
    if !part.take_lease(options, now).await? {
        return Err(Error::Unavailable(format!(
            "table '{}', partition {}: a compaction holds the partition; its replaced rows are removed on a retry",
            table.name, partition.path
        )));
    }
    let result = part.remove(files, options).await;
    let released = part.release_lease().await;
    let done = result?;
    released?;
    Ok(done)
}

/// `input` without the rows in `ranges` (row numbers), re-encoded into `output`.
async fn write_without(
    lake: &Location,
    input: &str,
    ranges: &[std::ops::Range<u64>],
    output: &str,
    options: &CompactOptions,
) -> Result<(u64, u64)> {
    let url = format!("{}/{input}", lake.url);
    let bytes = lake
        .store
        .get(&lake.child(input)?)
        .await
        .map_err(|e| Error::read(&url, e))?
        .bytes()
        .await
        .map_err(|e| Error::read(&url, e))?;
    let (sink, upload) = UploadSink::start(lake.store.clone(), lake.child(output)?);
    let props = options.writer.clone();
    let ranges = ranges.to_vec();
    let out_url = format!("{}/{output}", lake.url);
    let work = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| Error::read(&url, e))?;
        let schema = arrow::array::RecordBatchReader::schema(&reader);
        let mut writer = ArrowWriter::try_new(sink, schema, Some(props))
            .map_err(|e| Error::write(&out_url, e))?;
        let (mut row, mut kept) = (0u64, 0u64);
        for batch in reader {
            let batch = batch.map_err(|e| Error::read(&url, e))?;
            let keep: arrow::array::BooleanArray = (0..batch.num_rows() as u64)
                .map(|i| Some(!ranges.iter().any(|r| r.contains(&(row + i)))))
                .collect();
            row += batch.num_rows() as u64;
            let batch = arrow::compute::filter_record_batch(&batch, &keep)
                .map_err(|e| Error::read(&url, e))?;
            kept += batch.num_rows() as u64;
            writer
                .write(&batch)
                .map_err(|e| Error::write(&out_url, e))?;
        }
        let sink = writer.into_inner().map_err(|e| Error::write(&out_url, e))?;
        let bytes = sink.finish().map_err(|e| Error::write(&out_url, e))?;
        Ok((kept, bytes))
    });
    let outcome = match work.await {
        Ok(r) => r,
        Err(e) => Err(Error::write(
            output,
            format!("the rewrite task failed: {e}"),
        )),
    };
    let uploaded = upload
        .await
        .map_err(|e| Error::write(output, format!("the upload task failed: {e}")));
    let done = outcome?;
    uploaded??;
    Ok(done)
}

/// Merge `inputs` into `output`; returns (rows, bytes written, copied, rows of each input).
async fn write_merged(
    lake: &Location,
    inputs: &[Candidate],
    output: &str,
    options: &CompactOptions,
) -> Result<(u64, u64, bool, Vec<u64>)> {
    // The footers first: they decide between copying and re-encoding. The
    // sizes come from the partition's listing, so no HEAD is needed.
    let mut metas = Vec::with_capacity(inputs.len());
    for input in inputs {
        let path = lake.child(&input.path)?;
        let mut reader = ObjectReader::at(lake.store.clone(), path, input.size);
        let meta = reader
            .get_metadata(None)
            .await
            .map_err(|e| Error::read(format!("{}/{}", lake.url, input.path), e))?;
        metas.push(meta);
    }
    let same_schema = metas.windows(2).all(|w| {
        w[0].file_metadata().schema_descr().root_schema()
            == w[1].file_metadata().schema_descr().root_schema()
    });
    let copy = same_schema && !options.force_reencode;
    let input_rows: Vec<u64> = metas
        .iter()
        .map(|m| m.file_metadata().num_rows() as u64)
        .collect();
    let out_path = lake.child(output)?;
    let (sink, upload) = UploadSink::start(lake.store.clone(), out_path);
    let store = lake.store.clone();
    let lake_url = lake.url.clone();
    let input_paths: Vec<(String, Path)> = inputs
        .iter()
        .map(|i| Ok((format!("{lake_url}/{}", i.path), lake.child(&i.path)?)))
        .collect::<Result<_>>()?;
    let writer_props = options.writer.clone();
    let handle = tokio::runtime::Handle::current();
    let out_url = format!("{lake_url}/{output}");
    let work = tokio::task::spawn_blocking(move || -> Result<(u64, u64)> {
        let fetch = |url: &str, path: &Path| -> Result<Bytes> {
            handle
                .block_on(async { store.get(path).await?.bytes().await })
                .map_err(|e| Error::read(url, e))
        };
        let (rows, sink) = if copy {
            copy_column_chunks(sink, &metas, &input_paths, fetch, &out_url)?
        } else {
            reencode(sink, &metas, &input_paths, fetch, writer_props, &out_url)?
        };
        // On an error above, the sink is dropped unfinished: the upload aborts.
        let bytes = sink.finish().map_err(|e| Error::write(&out_url, e))?;
        Ok((rows, bytes))
    });
    let outcome = match work.await {
        Ok(r) => r,
        Err(e) => Err(Error::write(output, format!("the merge task failed: {e}"))),
    };
    let uploaded = upload
        .await
        .map_err(|e| Error::write(output, format!("the upload task failed: {e}")));
    let (rows, bytes) = outcome?;
    uploaded??;
    Ok((rows, bytes, copy, input_rows))
}

/// The fast path: every input's column chunks appended, undecoded.
fn copy_column_chunks(
    sink: UploadSink,
    metas: &[Arc<ParquetMetaData>],
    inputs: &[(String, Path)],
    fetch: impl Fn(&str, &Path) -> Result<Bytes>,
    out: &str,
) -> Result<(u64, UploadSink)> {
    let first = metas[0].file_metadata();
    let props = WriterProperties::builder()
        .set_key_value_metadata(first.key_value_metadata().cloned())
        .set_created_by(format!("sluice {} (compaction)", env!("CARGO_PKG_VERSION")))
        .build();
    let schema = first.schema_descr().root_schema_ptr();
    let mut writer = SerializedFileWriter::new(sink, schema, Arc::new(props))
        .map_err(|e| Error::write(out, e))?;
    let mut rows = 0u64;
    for ((url, path), _) in inputs.iter().zip(metas) {
        let bytes = fetch(url, path)?;
        // The footer again, from the bytes just read: the copy must use the
        // offsets of exactly these bytes.
        let meta = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes)
            .map_err(|e| Error::read(url, e))?;
        for rg in meta.row_groups() {
            let mut rg_out = writer.next_row_group().map_err(|e| Error::write(out, e))?;
            for column in rg.columns() {
                let close = ColumnCloseResult {
                    bytes_written: column.compressed_size() as u64,
                    rows_written: rg.num_rows() as u64,
                    metadata: column.clone(),
                    bloom_filter: None,
                    column_index: None,
                    offset_index: None,
                };
                rg_out
                    .append_column(&bytes, close)
                    .map_err(|e| Error::read(url, format!("copying a column chunk: {e}")))?;
            }
            rg_out.close().map_err(|e| Error::write(out, e))?;
            rows += rg.num_rows() as u64;
        }
    }
    let sink = writer.into_inner().map_err(|e| Error::write(out, e))?;
    Ok((rows, sink))
}

/// The general path: rows decoded and re-encoded into one schema (the
/// inputs' schemas merged: a column missing from a file is null there).
fn reencode(
    sink: UploadSink,
    metas: &[Arc<ParquetMetaData>],
    inputs: &[(String, Path)],
    fetch: impl Fn(&str, &Path) -> Result<Bytes>,
    props: WriterProperties,
    out: &str,
) -> Result<(u64, UploadSink)> {
    let mut schemas = Vec::with_capacity(metas.len());
    for ((url, _), meta) in inputs.iter().zip(metas) {
        let s = parquet::arrow::parquet_to_arrow_schema(
            meta.file_metadata().schema_descr(),
            meta.file_metadata().key_value_metadata(),
        )
        .map_err(|e| Error::read(url, e))?;
        schemas.push(s.with_metadata(HashMap::new()));
    }
    let merged = Schema::try_merge(schemas)
        .map_err(|e| Error::Catalog(format!("the files' schemas do not merge: {e}")))?;
    // A column some files lack is null in their rows (and every column of a
    // table is nullable to its readers anyway).
    let merged: SchemaRef = Arc::new(Schema::new(
        merged
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ));
    let mut writer = ArrowWriter::try_new(sink, merged.clone(), Some(props))
        .map_err(|e| Error::write(out, e))?;
    let mut rows = 0u64;
    for (url, path) in inputs {
        let bytes = fetch(url, path)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(|e| Error::read(url, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| Error::read(url, e))?;
            let aligned = align(&batch, &merged).map_err(|e| Error::read(url, e))?;
            rows += aligned.num_rows() as u64;
            writer.write(&aligned).map_err(|e| Error::write(out, e))?;
        }
    }
    let sink = writer.into_inner().map_err(|e| Error::write(out, e))?;
    Ok((rows, sink))
}

/// `batch` in `schema`: columns by name, cast where the type differs, null
/// where missing.
fn align(batch: &RecordBatch, schema: &SchemaRef) -> std::result::Result<RecordBatch, String> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let column = match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => c.clone(),
            Some(c) => arrow::compute::cast(c, f.data_type())
                .map_err(|e| format!("column '{}': {e}", f.name()))?,
            None => new_null_array(f.data_type(), batch.num_rows()),
        };
        columns.push(column);
    }
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mb: u64, age_min: u64) -> Candidate {
        Candidate {
            path: path.into(),
            size: mb * 1024 * 1024,
            age: Duration::from_secs(age_min * 60),
        }
    }

    fn opts(target_mb: u64, min_files: usize, min_age_min: u64) -> CompactOptions {
        CompactOptions {
            target_size: target_mb * 1024 * 1024,
            min_files,
            min_age: Duration::from_secs(min_age_min * 60),
            ..Default::default()
        }
    }

    fn paths(bins: &[Bin]) -> Vec<Vec<&str>> {
        bins.iter()
            .map(|b| b.inputs.iter().map(|i| i.path.as_str()).collect())
            .collect()
    }

    #[test]
    fn plans_are_table_driven() {
        struct Case {
            name: &'static str,
            files: Vec<Candidate>,
            options: CompactOptions,
            want: Vec<Vec<&'static str>>,
        }
        let cases = vec![
            Case {
                name: "no files",
                files: vec![],
                options: opts(256, 2, 0),
                want: vec![],
            },
            Case {
                name: "fewer small files than the threshold",
                files: vec![file("a", 1, 60), file("b", 1, 60), file("c", 1, 60)],
                options: opts(256, 4, 0),
                want: vec![],
            },
            Case {
                name: "enough small files: one output",
                files: vec![
                    file("a", 1, 60),
                    file("b", 2, 60),
                    file("c", 3, 60),
                    file("d", 4, 60),
                ],
                options: opts(256, 4, 0),
                want: vec![vec!["a", "b", "c", "d"]],
            },
            Case {
                name: "files younger than the quiet period are left alone",
                files: vec![
                    file("old1", 1, 60),
                    file("old2", 1, 60),
                    file("new1", 1, 5),
                    file("new2", 1, 5),
                ],
                options: opts(256, 2, 15),
                want: vec![vec!["old1", "old2"]],
            },
            Case {
                name: "young files do not count towards the threshold",
                files: vec![file("old", 1, 60), file("new1", 1, 5), file("new2", 1, 5)],
                options: opts(256, 2, 15),
                want: vec![],
            },
            Case {
                name: "large files are not inputs",
                files: vec![
                    file("big", 200, 60),
                    file("exact", 256, 60),
                    file("s1", 10, 60),
                    file("s2", 10, 60),
                ],
                options: opts(256, 2, 0),
                want: vec![vec!["s1", "s2"]],
            },
            Case {
                name: "first-fit decreasing: outputs never pass the target",
                files: vec![
                    file("a", 150, 60),
                    file("b", 120, 60),
                    file("c", 100, 60),
                    file("d", 90, 60),
                    file("e", 10, 60),
                ],
                options: opts(256, 2, 0),
                // a(150)+c(100)=250; b(120)+d(90)+e(10)=220
                want: vec![vec!["a", "c"], vec!["b", "d", "e"]],
            },
            Case {
                name: "an output of one file is dropped",
                files: vec![file("a", 180, 60), file("b", 180, 60), file("c", 10, 60)],
                options: opts(256, 2, 0),
                // a+c = 190, b alone: dropped
                want: vec![vec!["a", "c"]],
            },
        ];
        for c in cases {
            let got = plan_partition(&c.files, &c.options);
            assert_eq!(paths(&got), c.want, "{}", c.name);
            for b in &got {
                assert!(b.bytes <= c.options.target_size, "{}", c.name);
                assert_eq!(b.bytes, b.inputs.iter().map(|i| i.size).sum::<u64>());
            }
        }
    }

    #[test]
    fn a_plan_does_not_depend_on_the_order_of_the_listing() {
        let mut files: Vec<Candidate> = (0..40)
            .map(|i| file(&format!("f{i:02}"), 1 + (i * 7) % 60, 60))
            .collect();
        let o = opts(128, 4, 0);
        let a = plan_partition(&files, &o);
        files.reverse();
        let b = plan_partition(&files, &o);
        assert_eq!(a, b);
        let planned: usize = a.iter().map(|b| b.inputs.len()).sum();
        assert!(planned >= 38, "nearly every file is merged: {planned}");
    }
}
