//! The local pipeline: discover → plan → (read → transform → partition →
//! write → commit → register) per chunk, with a bounded number of chunks in
//! flight. The Lambda functions run the same per-chunk step one at a time.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arrow::array::RecordBatch;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};
use tokio::sync::mpsc;

use crate::catalog::{Catalog, register_commit};
use crate::commit::{
    ColumnDef, CommitRecord, QUARANTINE_DIR, SourceInfo, chunk_id, column_defs, schema_fingerprint,
};
use serde::{Deserialize, Serialize};

use crate::config::{Codec, Column, ColumnType, Format, Pipeline, Table, UnknownFields};
use crate::error::{Error, Result};
use crate::partition::{RefusedSlice, Splitter};
use crate::plan::{Chunk, plan_parquet, plan_text};
use crate::read::{
    MAX_EVOLVED_COLUMNS, QuarantineEntry, ReadOptions, SourceObject, parquet_row_groups,
    read_chunk, too_many_rejected, type_name,
};
use crate::store::Location;
use crate::transform::Transform;
use crate::write::ChunkWriter;

/// Live counters, for progress reporting while a run goes on.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_in: AtomicU64,
    pub rows_in: AtomicU64,
    pub rows_out: AtomicU64,
    pub rows_rejected: AtomicU64,
    /// Values dropped or nulled by a table's contract.
    pub values_discarded: AtomicU64,
    pub chunks_done: AtomicU64,
    /// Chunks found already committed, so not processed again.
    pub chunks_skipped: AtomicU64,
    /// Chunks of older versions of a source retired (their rows removed).
    pub chunks_replaced: AtomicU64,
    pub chunks_total: AtomicU64,
    pub bytes_total: AtomicU64,
}

/// Run settings.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Chunks processed at once.
    pub workers: usize,
    /// Chunk size in bytes.
    pub chunk_size: u64,
    pub read: ReadOptions,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub files_in: u64,
    pub bytes_in: u64,
    pub chunks: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_rejected: u64,
    /// Values dropped or nulled by a table's contract (unknown fields, wrong types).
    pub values_discarded: u64,
    pub partitions: u64,
    pub files_out: u64,
    pub bytes_out: u64,
    pub seconds: f64,
    /// Chunks found already committed (by an earlier run), so not processed again.
    pub chunks_skipped: u64,
    /// Chunks of older versions of a source whose rows were removed, a newer
    /// version of the source being complete.
    pub chunks_replaced: u64,
    /// Objects under the input that no table claims.
    pub unmatched: Vec<String>,
}

/// A table with its checked transform: everything needed to process its chunks.
#[derive(Debug, Clone)]
pub struct PreparedTable {
    pub table: Table,
    pub transform: Transform,
    /// Catalog columns of the data files (the output without the partition columns).
    pub columns: Vec<ColumnDef>,
    /// Catalog columns of the partition keys, in path order.
    pub partition_keys: Vec<ColumnDef>,
}

impl PreparedTable {
    /// Plan a table's transform and derive its catalog columns.
    pub async fn new(t: &Table) -> Result<PreparedTable> {
        let transform = Transform::plan(t).await?;
        let out_schema = transform.output_schema();
        let splitter = Splitter::new(out_schema, &t.partition_by)?;
        let columns = column_defs(&t.name, splitter.data_schema())?;
        let key_indices: Vec<usize> = t
            .partition_by
            .iter()
            .map(|k| out_schema.index_of(k).expect("checked by Transform::plan"))
            .collect();
        let keys_schema = out_schema
            .project(&key_indices)
            .map_err(|e| Error::transform(&t.name, e))?;
        let partition_keys = column_defs(&t.name, &keys_schema)?;
        Ok(PreparedTable {
            table: t.clone(),
            transform,
            columns,
            partition_keys,
        })
    }
}

/// Where the columns a table gained by evolution are kept, under the lake
/// root: `<dir>/<table>.json`.
pub const SCHEMAS_DIR: &str = "_sluice/schemas";

#[derive(Debug, Default, Serialize, Deserialize)]
struct EvolvedColumns {
    columns: Vec<EvolvedColumn>,
}

#[derive(Debug, Serialize, Deserialize)]
struct EvolvedColumn {
    name: String,
    #[serde(rename = "type")]
    ty: String,
}

/// The columns `table` gained by evolution (`unknown_fields = "evolve"`), in
/// the order they were added; those the config now declares are left out.
pub async fn evolved_columns(lake: &Location, table: &Table) -> Result<Vec<Column>> {
    let path = lake.child(&format!("{SCHEMAS_DIR}/{}.json", table.name))?;
    let bytes = match lake.store.get(&path).await {
        Ok(r) => r.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let file: EvolvedColumns = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Catalog(format!(
            "table '{}': bad {}: {e}",
            table.name,
            lake.url_of(&path)
        ))
    })?;
    let mut out = Vec::new();
    for c in file.columns {
        let ty = ColumnType::parse(&c.ty).ok_or_else(|| {
            Error::Catalog(format!(
                "table '{}': {} gives column '{}' the unknown type {:?}",
                table.name,
                lake.url_of(&path),
                c.name,
                c.ty
            ))
        })?;
        if !table.columns.iter().any(|d| d.name == c.name) {
            out.push(Column { name: c.name, ty });
        }
    }
    Ok(out)
}

/// Add `found` to the table's evolved columns (a column already there keeps
/// its type: the first chunk to add it decides); the columns after.
async fn add_evolved_columns(
    lake: &Location,
    table: &Table,
    found: &[Column],
) -> Result<Vec<Column>> {
    let mut columns = evolved_columns(lake, table).await?;
    for c in found {
        if !columns.iter().any(|e| e.name == c.name)
            && !table.columns.iter().any(|d| d.name == c.name)
            && columns.len() < MAX_EVOLVED_COLUMNS
        {
            tracing::info!(table = %table.name, column = %c.name, ty = %type_name(c.ty), "the table gains a column");
            columns.push(c.clone());
        }
    }
    let file = EvolvedColumns {
        columns: columns
            .iter()
            .map(|c| EvolvedColumn {
                name: c.name.clone(),
                ty: type_name(c.ty),
            })
            .collect(),
    };
    let path = lake.child(&format!("{SCHEMAS_DIR}/{}.json", table.name))?;
    lake.store
        .put(
            &path,
            PutPayload::from(serde_json::to_vec_pretty(&file).expect("serializes")),
        )
        .await
        .map_err(|e| Error::write(lake.url_of(&path), e))?;
    Ok(columns)
}

/// The pipeline, with every table's SQL checked.
#[derive(Debug, Clone)]
pub struct Engine {
    pub pipeline: Pipeline,
    pub tables: Vec<PreparedTable>,
}

impl Engine {
    /// Check every table's transform before reading anything.
    pub async fn new(pipeline: Pipeline) -> Result<Engine> {
        let mut tables = Vec::new();
        for t in &pipeline.tables {
            tables.push(PreparedTable::new(t).await?);
        }
        Ok(Engine { pipeline, tables })
    }

    /// The prepared table named `name`.
    pub fn table(&self, name: &str) -> Option<&PreparedTable> {
        self.tables.iter().find(|t| t.table.name == name)
    }
}

/// One unit of work: a chunk of an object of a table.
#[derive(Debug, Clone)]
pub struct ChunkTask {
    pub table: String,
    pub object: SourceObject,
    pub chunk: Chunk,
    /// How many chunks the object was cut into.
    pub chunks: usize,
}

/// A chunk task as it travels between functions: an SQS message body, a
/// line of a Step Functions manifest, a Map item. Small (a few hundred bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub table: String,
    pub source: SourceInfo,
    pub chunk: Chunk,
    /// How many chunks the source object was cut into.
    pub chunks: usize,
}

impl ChunkTask {
    /// The message form of this task.
    pub fn spec(&self, chunks: usize) -> TaskSpec {
        TaskSpec {
            table: self.table.clone(),
            source: SourceInfo {
                url: self.object.url.clone(),
                size: self.object.size,
                e_tag: self.object.e_tag.clone(),
                version: self.object.version.clone(),
                modified: self.object.modified.clone(),
            },
            chunk: self.chunk,
            chunks,
        }
    }
}

impl TaskSpec {
    /// Where this task's commit record is written, relative to the lake root.
    pub fn commit_path(&self) -> String {
        CommitRecord::path(&self.table, &chunk_id(&self.source, &self.chunk))
    }

    /// The task again, reading from `input` (the source must lie under it).
    pub fn resolve(&self, input: &Location) -> Result<ChunkTask> {
        let relative = self
            .source
            .url
            .strip_prefix(&input.url)
            .and_then(|r| r.strip_prefix('/'))
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                Error::Config(format!(
                    "task for table '{}': {} is not under the input root {}",
                    self.table, self.source.url, input.url
                ))
            })?;
        Ok(ChunkTask {
            table: self.table.clone(),
            object: SourceObject {
                store: input.store.clone(),
                path: input.child(relative)?,
                url: self.source.url.clone(),
                size: self.source.size,
                e_tag: self.source.e_tag.clone(),
                version: self.source.version.clone(),
                modified: self.source.modified.clone(),
            },
            chunk: self.chunk,
            chunks: self.chunks,
        })
    }
}

/// Whether a path (relative to the input root) is hidden: a segment starting
/// with `.` or `_` (`_SUCCESS`, `.tmp/`), as Hive and Spark treat them.
pub fn hidden(relative: &str) -> bool {
    relative
        .split('/')
        .any(|seg| seg.starts_with('.') || seg.starts_with('_'))
}

/// Find the objects under `input` and the table each belongs to.
pub async fn discover(
    engine: &Engine,
    input: &Location,
) -> Result<(Vec<(String, SourceObject)>, Vec<String>)> {
    let mut found = Vec::new();
    let mut unmatched = Vec::new();
    let prefix = if input.prefix.as_ref().is_empty() {
        None
    } else {
        Some(&input.prefix)
    };
    let mut listing = input.store.list(prefix);
    let mut seen = HashSet::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| Error::read(&input.url, e))?;
        let relative = input.relative(&meta.location);
        if hidden(&relative) || !seen.insert(meta.location.clone()) {
            continue;
        }
        match engine.pipeline.table_for(&relative) {
            Some(t) => found.push((
                t.name.clone(),
                SourceObject {
                    store: input.store.clone(),
                    url: input.url_of(&meta.location),
                    path: meta.location,
                    size: meta.size,
                    e_tag: meta.e_tag,
                    version: meta.version,
                    modified: Some(crate::sources::timestamp(meta.last_modified)),
                },
            )),
            None => unmatched.push(relative),
        }
    }
    found.sort_by(|a, b| a.1.path.cmp(&b.1.path));
    unmatched.sort();
    Ok((found, unmatched))
}

/// Cut an object into chunk tasks.
pub async fn plan_object(
    table: &Table,
    object: &SourceObject,
    chunk_size: u64,
) -> Result<Vec<ChunkTask>> {
    let chunks = match table.format {
        Format::Parquet => {
            if object.size == 0 {
                Vec::new()
            } else {
                plan_parquet(&parquet_row_groups(object).await?, object.size, chunk_size)
            }
        }
        Format::JsonLines | Format::Csv => {
            let splittable = table.codec_for(object.path.as_ref()) == Codec::None
                && !(table.format == Format::Csv && table.csv.newlines_in_values);
            plan_text(object.size, chunk_size, splittable)
        }
    };
    let n = chunks.len();
    Ok(chunks
        .into_iter()
        .map(|chunk| ChunkTask {
            table: table.name.clone(),
            object: object.clone(),
            chunk,
            chunks: n,
        })
        .collect())
}

/// Process one chunk: read, transform, split, write its files, then its
/// commit record, then (given a catalog) register it. In AWS the catalog
/// function registers commit records instead. Retrying a chunk that failed
/// before its commit record writes the same file names with the same
/// content; a chunk whose commit record exists is done and is not processed
/// again (its files may have been merged by compaction since: writing them
/// again would double its rows).
pub async fn process_chunk(
    engine: &Engine,
    lake: &Location,
    catalog: Option<&dyn Catalog>,
    task: &ChunkTask,
    options: &ReadOptions,
    counters: &Arc<Counters>,
) -> Result<CommitRecord> {
    let prepared = engine
        .table(&task.table)
        .ok_or_else(|| Error::Config(format!("no table '{}' in the pipeline", task.table)))?;
    let table = &prepared.table;
    let source = SourceInfo {
        url: task.object.url.clone(),
        size: task.object.size,
        e_tag: task.object.e_tag.clone(),
        version: task.object.version.clone(),
        modified: task.object.modified.clone(),
    };
    let id = chunk_id(&source, &task.chunk);
    let commit_path = lake.child(&CommitRecord::path(&table.name, &id))?;
    match lake.store.get(&commit_path).await {
        Ok(r) => {
            let bytes = r.bytes().await?;
            let record = CommitRecord::from_json(&bytes, &lake.url_of(&commit_path))?;
            counters.chunks_skipped.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                object = %source.url,
                chunk = task.chunk.index,
                commit = %lake.url_of(&commit_path),
                "already committed: not processed again"
            );
            settle(lake, &record, task.chunks, counters).await?;
            if let Some(catalog) = catalog {
                register_commit(catalog, &record).await?;
            }
            return Ok(record);
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // Under `unknown_fields = "evolve"`, a chunk that finds fields the
    // table lacks adds them to the table's evolved columns and is read again
    // with them (its first read's files are removed): once per new field.
    let mut evolved = if table.contract.unknown_fields == UnknownFields::Evolve {
        evolved_columns(lake, table).await?
    } else {
        Vec::new()
    };
    let mut widened: Option<PreparedTable> = None;
    let mut rounds = 0;
    let output = loop {
        if !evolved.is_empty() {
            let mut t = table.clone();
            t.columns.extend(evolved.iter().cloned());
            widened = Some(PreparedTable::new(&t).await?);
        }
        let current = widened.as_ref().unwrap_or(prepared);
        let mut read = *options;
        read.evolve_room = MAX_EVOLVED_COLUMNS.saturating_sub(evolved.len());
        let output = write_chunk(current, lake, task, &read, counters, &id).await?;
        if output.stats.discovered.is_empty() {
            break output;
        }
        rounds += 1;
        if rounds > 2 {
            return Err(Error::read(
                &task.object.url,
                format!(
                    "table '{}': still finding new fields after {rounds} reads: {:?}",
                    table.name, output.stats.discovered
                ),
            ));
        }
        evolved = add_evolved_columns(lake, table, &output.stats.discovered).await?;
    };
    let current = widened.as_ref().unwrap_or(prepared);
    let ChunkOutput {
        stats,
        rows_out,
        files,
        refused,
    } = output;
    let mut rejected = stats.rejected;
    rejected.extend(refused);
    if let Some(e) = too_many_rejected(table, &task.object.url, &rejected, stats.rows, true) {
        abandon(
            lake,
            &id,
            &table.name,
            files.iter().map(|f| f.path.clone()).collect(),
        )
        .await;
        return Err(e);
    }
    let rows_rejected = rejected.len() as u64;
    counters
        .rows_rejected
        .fetch_add(rows_rejected, Ordering::Relaxed);
    counters
        .values_discarded
        .fetch_add(stats.values_discarded, Ordering::Relaxed);
    let quarantine = if rejected.is_empty() {
        None
    } else {
        let relative = format!("{QUARANTINE_DIR}/{}/{id}.jsonl", table.name);
        let mut body = Vec::new();
        for entry in &rejected {
            serde_json::to_writer(&mut body, entry).expect("entries serialize");
            body.push(b'\n');
        }
        let path = lake.child(&relative)?;
        lake.store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|e| Error::write(lake.url_of(&path), e))?;
        Some(relative)
    };

    let record = CommitRecord {
        version: 1,
        table: table.name.clone(),
        source,
        chunk: task.chunk,
        chunk_id: id.clone(),
        schema_fingerprint: schema_fingerprint(&current.columns, &current.partition_keys),
        columns: current.columns.clone(),
        partition_keys: current.partition_keys.clone(),
        files,
        rows_in: stats.rows,
        rows_out,
        rows_rejected,
        values_discarded: stats.values_discarded,
        bytes_in: stats.bytes,
        quarantine,
        compression: Some(codec_name(table.parquet.compression).to_string()),
    };
    // A previous run of this chunk may have rolled files differently: remove
    // the files it listed that this run did not write again.
    if let Ok(previous) = lake.store.get(&commit_path).await {
        let bytes = previous.bytes().await?;
        if let Ok(old) = CommitRecord::from_json(&bytes, commit_path.as_ref()) {
            for f in old.files {
                if !record.files.iter().any(|n| n.path == f.path) {
                    let _ = lake.store.delete(&lake.child(&f.path)?).await;
                }
            }
            if let Some(q) = old.quarantine
                && record.quarantine.is_none()
            {
                let _ = lake.store.delete(&lake.child(&q)?).await;
            }
        }
    }
    lake.store
        .put(&commit_path, PutPayload::from(record.to_json()))
        .await
        .map_err(|e| Error::write(lake.url_of(&commit_path), e))?;
    settle(lake, &record, task.chunks, counters).await?;
    if let Some(catalog) = catalog {
        register_commit(catalog, &record).await?;
    }
    Ok(record)
}

/// Record a committed chunk in its source's ledger, and retire the rows of
/// the source's older versions if a newer one is now complete.
async fn settle(
    lake: &Location,
    record: &CommitRecord,
    chunks: usize,
    counters: &Counters,
) -> Result<()> {
    let settled = crate::sources::record_and_settle(lake, record, chunks).await?;
    counters
        .chunks_replaced
        .fetch_add(settled.chunks_retired as u64, Ordering::Relaxed);
    Ok(())
}

/// What one read of a chunk wrote.
struct ChunkOutput {
    stats: crate::read::ReadStats,
    rows_out: u64,
    files: Vec<crate::commit::FileInfo>,
    /// Rows refused after the transform (a partition value that cannot be a path).
    refused: Vec<QuarantineEntry>,
}

/// Remove files a chunk wrote but will not commit, unless the chunk is
/// committed by now: another delivery of the same chunk (a duplicate SQS
/// message, a retry that overlapped a slow first try) wrote the same names
/// and committed them, and they are no longer this run's to remove.
async fn abandon(lake: &Location, id: &str, table: &str, paths: Vec<String>) {
    if let Ok(commit) = lake.child(&CommitRecord::path(table, id))
        && lake.store.head(&commit).await.is_ok()
    {
        tracing::warn!(
            chunk = id,
            "the chunk was committed by another delivery: its files stay"
        );
        return;
    }
    for path in paths {
        if let Ok(p) = lake.child(&path) {
            let _ = lake.store.delete(&p).await;
        }
    }
}

/// Read, transform, split and write one chunk with `prepared`'s schema.
/// When the read found fields to evolve, nothing is kept (the files are
/// removed) and the stats say which.
async fn write_chunk(
    prepared: &PreparedTable,
    lake: &Location,
    task: &ChunkTask,
    options: &ReadOptions,
    counters: &Arc<Counters>,
    id: &str,
) -> Result<ChunkOutput> {
    let table = &prepared.table;
    let splitter = Splitter::new(prepared.transform.output_schema(), &table.partition_by)?;
    // Reader task → channel → DataFusion → splitter → writers.
    let (tx, mut rx) =
        mpsc::channel::<std::result::Result<RecordBatch, datafusion::error::DataFusionError>>(4);
    let reader = {
        let table = table.clone();
        let object = task.object.clone();
        let chunk = task.chunk;
        let options = *options;
        let counters = counters.clone();
        tokio::spawn(async move {
            let r = read_chunk(
                &table,
                &object,
                chunk,
                options,
                &tx,
                Some(&counters.bytes_in),
            )
            .await;
            if let Err(e) = &r {
                let _ = tx
                    .send(Err(datafusion::error::DataFusionError::External(
                        e.to_string().into(),
                    )))
                    .await;
            }
            r
        })
    };
    let live = counters.clone();
    let input = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).inspect(move |b| {
        if let Ok(b) = b {
            live.rows_in
                .fetch_add(b.num_rows() as u64, Ordering::Relaxed);
        }
    });
    let input = Box::pin(RecordBatchStreamAdapter::new(table.input_schema(), input));
    let mut writer = ChunkWriter::new(
        lake,
        &table.name,
        id,
        &table.partition_by,
        splitter.data_schema().clone(),
        &table.parquet,
    );
    let mut refused = Vec::new();
    let written: Result<u64> = async {
        let mut output = prepared.transform.run(input).await?;
        let mut rows_out = 0u64;
        while let Some(batch) = output.next().await {
            let batch = batch.map_err(|e| Error::transform(&table.name, e))?;
            writer.sample(&batch);
            let split = splitter.split_checked(&batch)?;
            for slice in split.slices {
                rows_out += slice.batch.num_rows() as u64;
                counters
                    .rows_out
                    .fetch_add(slice.batch.num_rows() as u64, Ordering::Relaxed);
                writer.write(slice).await?;
            }
            for r in split.refused {
                refused.extend(refused_entries(table, &task.object, &r)?);
            }
            writer.end_batch().await?;
        }
        Ok(rows_out)
    }
    .await;
    let read = reader
        .await
        .map_err(|e| Error::read(&task.object.url, format!("reader task failed: {e}")))?;
    match (read, written) {
        (Err(e), _) | (Ok(_), Err(e)) => {
            // Files already closed by this chunk have no commit record; remove them.
            abandon(lake, id, &table.name, writer.started()).await;
            Err(e)
        }
        (Ok(stats), Ok(_)) if !stats.discovered.is_empty() => {
            abandon(lake, id, &table.name, writer.started()).await;
            Ok(ChunkOutput {
                stats,
                rows_out: 0,
                files: Vec::new(),
                refused: Vec::new(),
            })
        }
        (Ok(stats), Ok(rows_out)) => {
            let started = writer.started();
            let files = match writer.finish().await {
                Ok(files) => files,
                Err(e) => {
                    abandon(lake, id, &table.name, started).await;
                    return Err(e);
                }
            };
            Ok(ChunkOutput {
                stats,
                rows_out,
                files,
                refused,
            })
        }
    }
}

/// Quarantine entries for rows refused after the transform: each row as JSON.
fn refused_entries(
    table: &Table,
    object: &SourceObject,
    refused: &RefusedSlice,
) -> Result<Vec<QuarantineEntry>> {
    let mut buf = Vec::new();
    {
        let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
        w.write(&refused.batch)
            .map_err(|e| Error::transform(&table.name, e))?;
        w.finish().map_err(|e| Error::transform(&table.name, e))?;
    }
    Ok(String::from_utf8_lossy(&buf)
        .lines()
        .map(|row| QuarantineEntry {
            table: table.name.clone(),
            source: object.url.clone(),
            e_tag: object.e_tag.clone(),
            offset: None,
            reason: refused.reason.clone(),
            raw: row.to_string(),
        })
        .collect())
}

/// Run the whole pipeline over `input` into `lake`.
///
/// Each chunk runs as its own task, so `options.workers` chunks really run on
/// that many threads (polled together inside one task, the transform and
/// writing of every chunk would share one thread).
pub async fn run(
    engine: &Arc<Engine>,
    input: &Location,
    lake: &Location,
    catalog: &Arc<dyn Catalog>,
    options: &RunOptions,
    counters: &Arc<Counters>,
) -> Result<Summary> {
    let started = Instant::now();
    let (objects, unmatched) = discover(engine, input).await?;
    let mut tasks = Vec::new();
    let mut summary = Summary {
        files_in: objects.len() as u64,
        unmatched,
        ..Default::default()
    };
    for (table, object) in &objects {
        let table = &engine.table(table).expect("discovered for a table").table;
        summary.bytes_in += object.size;
        tasks.extend(plan_object(table, object, options.chunk_size).await?);
    }
    counters
        .chunks_total
        .store(tasks.len() as u64, Ordering::Relaxed);
    counters
        .bytes_total
        .store(summary.bytes_in, Ordering::Relaxed);
    summary.chunks = tasks.len() as u64;
    let records: Vec<CommitRecord> = futures::stream::iter(tasks)
        .map(|task| {
            let (engine, lake, catalog, counters) = (
                engine.clone(),
                lake.clone(),
                catalog.clone(),
                counters.clone(),
            );
            let read = options.read;
            tokio::spawn(async move {
                let r = process_chunk(
                    &engine,
                    &lake,
                    Some(catalog.as_ref()),
                    &task,
                    &read,
                    &counters,
                )
                .await;
                counters.chunks_done.fetch_add(1, Ordering::Relaxed);
                r
            })
        })
        .buffer_unordered(options.workers.max(1))
        .map(|joined| {
            joined.unwrap_or_else(|e| {
                Err(Error::Unavailable(format!(
                    "a chunk task panicked or was cancelled: {e}"
                )))
            })
        })
        .try_collect()
        .await?;
    let mut partitions = HashSet::new();
    for r in &records {
        summary.rows_in += r.rows_in;
        summary.rows_out += r.rows_out;
        summary.rows_rejected += r.rows_rejected;
        summary.values_discarded += r.values_discarded;
        for f in &r.files {
            summary.files_out += 1;
            summary.bytes_out += f.bytes;
            partitions.insert((r.table.clone(), f.partition_path.clone()));
        }
    }
    summary.partitions = partitions.len() as u64;
    summary.chunks_skipped = counters.chunks_skipped.load(Ordering::Relaxed);
    summary.chunks_replaced = counters.chunks_replaced.load(Ordering::Relaxed);
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The name readers use for a Parquet codec (`zstd`, `snappy`, `uncompressed`).
fn codec_name(c: parquet::basic::Compression) -> &'static str {
    use parquet::basic::Compression as C;
    match c {
        C::UNCOMPRESSED => "uncompressed",
        C::SNAPPY => "snappy",
        C::GZIP(_) => "gzip",
        C::LZO => "lzo",
        C::BROTLI(_) => "brotli",
        C::LZ4 => "lz4",
        C::ZSTD(_) => "zstd",
        C::LZ4_RAW => "lz4_raw",
    }
}
